#include "models/trunk.h"

#include <cmath>

#include "nn/init.h"

namespace dg::models {

// ---------------------------------------------------------------- config
const config::EnumNames<DType>& dtype_names() {
  static const config::EnumNames<DType> names{{{DType::f32, "f32"}, {DType::f64, "f64"}}};
  return names;
}

const config::Table<GPTConfig>& gpt_config_table() {
  using G = GPTConfig;
  static const config::Table<G> t = {
      config::integer<G>("n_layer", "--layers", &G::n_layer, 1, 1024, "dense/MoD: transformer blocks"),
      config::integer<G>("n_head", "--heads", &G::n_head, 1, 1024, "attention heads (must divide --embd)"),
      config::integer<G>("n_embd", "--embd", &G::n_embd, 1, 65536, "channels C"),
      config::integer<G>("block_size", "--block", &G::block_size, 1, 1 << 20,
                         "context length (train_lm: also the sequence length T)"),
      config::integer<G>("vocab_size", "", &G::vocab_size, 1, 1 << 24, "vocabulary size"),
      config::real<G>("dropout", "--dropout", &G::dropout, {0, 1, false, true}, "dropout probability"),
      config::boolean<G>("tied_head", "", &G::tied_head, "LM head tied to the token embedding"),
      config::seed<G>("seed", "--seed", &G::seed, "seed of the weights (train_lm: also the data order and corpus)"),
      config::choice<G>("dtype", "", &G::dtype, dtype_names(), "parameter dtype"),
  };
  return t;
}

std::string to_json(const GPTConfig& c) { return config::to_json(gpt_config_table(), c).dump(); }

GPTConfig gpt_config_from_json(const std::string& text, const std::string& where) {
  GPTConfig c = config::from_json_text(gpt_config_table(), text, where);
  validate(c, c.n_layer, where);
  return c;
}

double trunk_parameters(const GPTConfig& c, int64_t n_blocks) {
  const double C = static_cast<double>(c.n_embd), V = static_cast<double>(c.vocab_size);
  const double per_block = 12 * C * C + 13 * C;  // qkv, proj, fc, proj (+ biases), two LayerNorms
  return V * C + static_cast<double>(c.block_size) * C + static_cast<double>(n_blocks) * per_block + 2 * C +
         (c.tied_head ? 0 : V * C);
}

void validate(const GPTConfig& c, int64_t n_blocks, const std::string& where) {
  DG_CHECK(c.n_head > 0 && c.n_embd % c.n_head == 0, "{}: n_head (--heads) {} must divide n_embd (--embd) {}", where,
           c.n_head, c.n_embd);
  const double p = trunk_parameters(c, n_blocks);
  DG_CHECK(p <= kMaxParameters, "{}: {} blocks of n_embd {} with vocab_size {} and block_size {} need {:.3g} "
           "parameters, more than the {:.3g} allowed", where, n_blocks, c.n_embd, c.vocab_size, c.block_size, p,
           kMaxParameters);
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
  // The table's ranges (a config made in code never went through them), then the cross-field checks.
  GPTConfig ranges = c;
  ranges.n_layer = 1;  // not read here (MoB leaves it unset)
  config::check_ranges(gpt_config_table(), ranges, "GPT config");
  DG_CHECK(n_blocks >= 0, "GPT: {} blocks", n_blocks);
  validate(c, n_blocks);
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
  Tensor pos = arange(static_cast<double>(pos0), static_cast<double>(pos0 + T), 1.0, {DType::i64, idx.device()});
  return drop->forward(wte->forward(idx) + wpe->forward(pos));  // (B, T, C) + (T, C)
}

Tensor Trunk::head(const Tensor& x) const {
  Tensor h = ln_f->forward(x);
  return lm_head ? lm_head->forward(h) : linear(h, wte->weight);  // tied: h @ wte^T
}

std::unique_ptr<KVDecodeState> Trunk::start_decoding(const LanguageModel& owner, int64_t batch,
                                                     int64_t n_caches) const {
  auto s = std::make_unique<KVDecodeState>();
  s->owner = &owner;
  const int64_t H = cfg.n_head, D = cfg.n_embd / cfg.n_head;
  s->caches.resize(n_caches);
  for (auto& c : s->caches) {
    c.k = zeros({batch, H, cfg.block_size, D}, {cfg.dtype, device()});
    c.v = zeros({batch, H, cfg.block_size, D}, {cfg.dtype, device()});
  }
  return s;
}

KVDecodeState& Trunk::decode_state(DecodeState& state, const LanguageModel& owner, const char* who) {
  auto* s = dynamic_cast<KVDecodeState*>(&state);
  DG_CHECK(s != nullptr && s->owner == &owner, "{}: the state was not made by this model's start_decoding", who);
  return *s;
}

}  // namespace dg::models
