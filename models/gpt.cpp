#include "models/gpt.h"

#include <cmath>
#include <nlohmann/json.hpp>

#include "nn/init.h"

namespace dg::models {

// ---------------------------------------------------------------- config
std::string to_json(const GPTConfig& c) {
  nlohmann::json j = {{"n_layer", c.n_layer},       {"n_head", c.n_head},     {"n_embd", c.n_embd},
                      {"block_size", c.block_size}, {"vocab_size", c.vocab_size}, {"dropout", c.dropout},
                      {"tied_head", c.tied_head},   {"seed", c.seed},         {"dtype", std::string(dtype_name(c.dtype))}};
  return j.dump();
}

namespace {

template <class T>
T field(const nlohmann::json& j, const char* name, const char* who) {
  DG_CHECK(j.contains(name), "{}: config has no field '{}'", who, name);
  try {
    return j.at(name).get<T>();
  } catch (const nlohmann::json::exception& e) {
    throw Error(fmt::format("{}: config field '{}' has the wrong type ({})", who, name, e.what()));
  }
}

}  // namespace

GPTConfig gpt_config_from_json(const std::string& text) {
  nlohmann::json j = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  DG_CHECK(j.is_object(), "GPT config: not a JSON object: {}", text.substr(0, 200));
  GPTConfig c;
  c.n_layer = field<int64_t>(j, "n_layer", "GPT config");
  c.n_head = field<int64_t>(j, "n_head", "GPT config");
  c.n_embd = field<int64_t>(j, "n_embd", "GPT config");
  c.block_size = field<int64_t>(j, "block_size", "GPT config");
  c.vocab_size = field<int64_t>(j, "vocab_size", "GPT config");
  c.dropout = field<double>(j, "dropout", "GPT config");
  c.tied_head = field<bool>(j, "tied_head", "GPT config");
  c.seed = field<uint64_t>(j, "seed", "GPT config");
  std::string dt = field<std::string>(j, "dtype", "GPT config");
  DG_CHECK(dt == "f32" || dt == "f64", "GPT config: dtype must be f32 or f64, got '{}'", dt);
  c.dtype = dt == "f32" ? DType::f32 : DType::f64;
  return c;
}

double block_flops_per_token(int64_t C, int64_t T) {
  const double c = static_cast<double>(C);
  return 24.0 * c * c + 2.0 * c * static_cast<double>(T + 1);
}

double dense_flops_per_token(int64_t L, int64_t C, int64_t V, int64_t T) {
  return static_cast<double>(L) * block_flops_per_token(C, T) + 2.0 * static_cast<double>(C) * static_cast<double>(V);
}

void check_tokens(const char* who, const Tensor& idx, int64_t limit, int64_t vocab) {
  DG_CHECK(idx.defined() && idx.dim() == 2 && idx.dtype() == DType::i64,
           "{}: expected token ids of shape (B, T) and dtype i64, got {} {}", who, idx.defined() ? idx.shape() : Shape{},
           idx.defined() ? dtype_name(idx.dtype()) : "undefined");
  DG_CHECK(idx.size(1) > 0 && idx.size(1) <= limit, "{}: sequence length {} must be in [1, block_size = {}] (shape {})",
           who, idx.size(1), limit, idx.shape());
  (void)vocab;  // the embedding checks every id against the vocabulary, naming the bad value
}

Tensor lm_loss(const Tensor& logits, const Tensor& targets) {
  DG_CHECK(targets.defined() && targets.dim() == 2 && targets.shape()[0] == logits.size(0) &&
               targets.shape()[1] == logits.size(1),
           "loss: targets of shape {} do not match logits {}", targets.defined() ? targets.shape() : Shape{},
           logits.shape());
  return cross_entropy(logits, targets);
}

// ---------------------------------------------------------------- model
GPT::GPT(const GPTConfig& cfg) : cfg_(cfg) {
  DG_CHECK(cfg.n_layer >= 0 && cfg.n_head > 0 && cfg.n_embd > 0 && cfg.block_size > 0 && cfg.vocab_size > 0,
           "GPT: invalid config {}", to_json(cfg));
  DG_CHECK(cfg.n_embd % cfg.n_head == 0, "GPT: n_embd {} is not divisible by n_head {}", cfg.n_embd, cfg.n_head);
  DG_CHECK(cfg.dropout >= 0 && cfg.dropout < 1, "GPT: dropout must be in [0, 1), got {}", cfg.dropout);
  Generator gen(cfg.seed);
  nn::LayerOptions opt{cfg.dtype, &gen};
  wte = register_module("wte", std::make_shared<nn::Embedding>(cfg.vocab_size, cfg.n_embd, opt));
  wpe = register_module("wpe", std::make_shared<nn::Embedding>(cfg.block_size, cfg.n_embd, opt));
  drop = register_module("drop", std::make_shared<nn::Dropout>(cfg.dropout));
  for (int64_t i = 0; i < cfg.n_layer; ++i) {
    auto b = std::make_shared<nn::Block>(cfg.n_embd, cfg.n_head, cfg.dropout, opt);
    // GPT-2: residual projections scaled by 1/sqrt(2L) (two per block).
    const double std_resid = 0.02 / std::sqrt(2.0 * static_cast<double>(cfg.n_layer));
    nn::init::normal_(b->attn->proj->weight, 0.0, std_resid, &gen);
    nn::init::normal_(b->mlp->proj->weight, 0.0, std_resid, &gen);
    blocks.push_back(register_module(fmt::format("blocks.{}", i), b));
  }
  ln_f = register_module("ln_f", std::make_shared<nn::LayerNorm>(cfg.n_embd, 1e-5, true, opt));
  if (!cfg.tied_head)
    lm_head = register_module("lm_head", std::make_shared<nn::Linear>(cfg.n_embd, cfg.vocab_size, false, opt));
}

Tensor GPT::embed(const Tensor& idx, int64_t pos0) const {
  const int64_t T = idx.size(1);
  DG_CHECK(pos0 + T <= cfg_.block_size, "GPT: positions {}..{} exceed block_size {}", pos0, pos0 + T - 1,
           cfg_.block_size);
  Tensor pos = arange(static_cast<double>(pos0), static_cast<double>(pos0 + T), 1.0, {DType::i64});
  return drop->forward(wte->forward(idx) + wpe->forward(pos));  // (B, T, C) + (T, C)
}

Tensor GPT::head(const Tensor& x) const {
  Tensor h = ln_f->forward(x);
  return lm_head ? lm_head->forward(h) : matmul(h, transpose(wte->weight, 0, 1));
}

Tensor GPT::forward(const Tensor& idx) {
  check_tokens("GPT", idx, cfg_.block_size, cfg_.vocab_size);
  Tensor x = embed(idx);
  for (auto& b : blocks) x = x + b->forward(x);
  last_flops_ = dense_flops_per_token(cfg_.n_layer, cfg_.n_embd, cfg_.vocab_size, idx.size(1));
  return head(x);
}

LossOutput GPT::loss(const Tensor& idx, const Tensor& targets) {
  Tensor l = lm_loss(forward(idx), targets);
  return {l, l, {}};
}

void GPT::init_caches(GPTDecodeState& s, int64_t batch, int64_t n_caches) const {
  const int64_t H = cfg_.n_head, D = cfg_.n_embd / cfg_.n_head;
  s.caches.resize(n_caches);
  for (auto& c : s.caches) {
    c.k = zeros({batch, H, cfg_.block_size, D}, {cfg_.dtype});
    c.v = zeros({batch, H, cfg_.block_size, D}, {cfg_.dtype});
    c.length = 0;
  }
}

std::unique_ptr<DecodeState> GPT::start_decoding(int64_t batch) {
  auto s = std::make_unique<GPTDecodeState>();
  init_caches(*s, batch, cfg_.n_layer);
  return s;
}

Tensor GPT::decode(DecodeState& state, const Tensor& idx) {
  auto* s = dynamic_cast<GPTDecodeState*>(&state);
  DG_CHECK(s != nullptr, "GPT::decode: the state was not made by this model's start_decoding");
  check_tokens("GPT::decode", idx, cfg_.block_size - s->position, cfg_.vocab_size);
  NoGradGuard no_grad;
  Tensor x = embed(idx, s->position);
  for (size_t i = 0; i < blocks.size(); ++i) x = x + blocks[i]->forward(x, &s->caches[i]);
  s->position += idx.size(1);
  return head(x);
}

}  // namespace dg::models
