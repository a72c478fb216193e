#include "models/trunk.h"

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

// ---------------------------------------------------------------- trunk
Trunk::Trunk(const GPTConfig& c, int64_t n_blocks) : cfg(c) {
  DG_CHECK(n_blocks >= 0 && c.n_head > 0 && c.n_embd > 0 && c.block_size > 0 && c.vocab_size > 0,
           "GPT: invalid config {} ({} blocks)", to_json(c), n_blocks);
  DG_CHECK(c.n_embd % c.n_head == 0, "GPT: n_embd {} is not divisible by n_head {}", c.n_embd, c.n_head);
  DG_CHECK(c.dropout >= 0 && c.dropout < 1, "GPT: dropout must be in [0, 1), got {}", c.dropout);
  Generator gen(c.seed);
  nn::LayerOptions opt{c.dtype, &gen};
  wte = std::make_shared<nn::Embedding>(c.vocab_size, c.n_embd, opt);
  wpe = std::make_shared<nn::Embedding>(c.block_size, c.n_embd, opt);
  drop = std::make_shared<nn::Dropout>(c.dropout);
  for (int64_t i = 0; i < n_blocks; ++i) {
    auto b = std::make_shared<nn::Block>(c.n_embd, c.n_head, c.dropout, opt);
    // GPT-2: residual projections scaled by 1/sqrt(2L) (two per block).
    const double std_resid = 0.02 / std::sqrt(2.0 * static_cast<double>(n_blocks));
    nn::init::normal_(b->attn->proj->weight, 0.0, std_resid, &gen);
    nn::init::normal_(b->mlp->proj->weight, 0.0, std_resid, &gen);
    blocks.push_back(b);
  }
  ln_f = std::make_shared<nn::LayerNorm>(c.n_embd, 1e-5, true, opt);
  if (!c.tied_head) lm_head = std::make_shared<nn::Linear>(c.n_embd, c.vocab_size, false, opt);
}

std::vector<std::pair<std::string, std::shared_ptr<nn::Module>>> Trunk::modules() const {
  std::vector<std::pair<std::string, std::shared_ptr<nn::Module>>> m = {{"wte", wte}, {"wpe", wpe}, {"drop", drop}};
  for (size_t i = 0; i < blocks.size(); ++i) m.emplace_back(fmt::format("blocks.{}", i), blocks[i]);
  m.emplace_back("ln_f", ln_f);
  if (lm_head) m.emplace_back("lm_head", lm_head);
  return m;
}

Tensor Trunk::embed(const Tensor& idx, int64_t pos0) const {
  const int64_t T = idx.size(1);
  DG_CHECK(pos0 + T <= cfg.block_size, "GPT: positions {}..{} exceed block_size {}", pos0, pos0 + T - 1,
           cfg.block_size);
  Tensor pos = arange(static_cast<double>(pos0), static_cast<double>(pos0 + T), 1.0, {DType::i64});
  return drop->forward(wte->forward(idx) + wpe->forward(pos));  // (B, T, C) + (T, C)
}

Tensor Trunk::head(const Tensor& x) const {
  Tensor h = ln_f->forward(x);
  return lm_head ? lm_head->forward(h) : matmul(h, transpose(wte->weight, 0, 1));
}

std::unique_ptr<KVDecodeState> Trunk::start_decoding(const LanguageModel& owner, int64_t batch,
                                                     int64_t n_caches) const {
  auto s = std::make_unique<KVDecodeState>();
  s->owner = &owner;
  const int64_t H = cfg.n_head, D = cfg.n_embd / cfg.n_head;
  s->caches.resize(n_caches);
  for (auto& c : s->caches) {
    c.k = zeros({batch, H, cfg.block_size, D}, {cfg.dtype});
    c.v = zeros({batch, H, cfg.block_size, D}, {cfg.dtype});
  }
  return s;
}

KVDecodeState& Trunk::decode_state(DecodeState& state, const LanguageModel& owner, const char* who) {
  auto* s = dynamic_cast<KVDecodeState*>(&state);
  DG_CHECK(s != nullptr && s->owner == &owner, "{}: the state was not made by this model's start_decoding", who);
  return *s;
}

}  // namespace dg::models
