#include "models/gpt.h"

namespace dg::models {

GPT::GPT(const GPTConfig& cfg) : trunk_(cfg, cfg.n_layer) {
  for (auto& [name, m] : trunk_.modules()) register_module(name, m);
}

Tensor GPT::forward(const Tensor& idx) {
  const GPTConfig& c = trunk_.cfg;
  check_tokens("GPT", idx, c.block_size, c.vocab_size);
  Tensor x = trunk_.embed(idx);
  for (auto& b : trunk_.blocks) x = x + b->forward(x);
  last_flops_ = dense_flops_per_token(c.n_layer, c.n_embd, c.vocab_size, idx.size(1));
  return trunk_.head(x);
}

LossOutput GPT::loss(const Tensor& idx, const Tensor& targets) {
  Tensor l = lm_loss(forward(idx), targets);
  return {l, l, {}, {}};
}

std::unique_ptr<DecodeState> GPT::start_decoding(int64_t batch) {
  return trunk_.start_decoding(*this, batch, trunk_.cfg.n_layer);
}

Tensor GPT::decode(DecodeState& state, const Tensor& idx) {
  KVDecodeState& s = Trunk::decode_state(state, *this, "GPT::decode");
  check_tokens("GPT::decode", idx, trunk_.cfg.block_size - s.position, trunk_.cfg.vocab_size);
  NoGradGuard no_grad;
  Tensor x = trunk_.embed(idx, s.position);
  for (size_t i = 0; i < trunk_.blocks.size(); ++i) x = x + trunk_.blocks[i]->forward(x, &s.caches[i]);
  s.position += idx.size(1);
  return trunk_.head(x);
}

}  // namespace dg::models
