#pragma once
// The dense GPT: token + learned position embeddings, n_layer pre-norm blocks
// (each returning its delta; the residual add is here), final LayerNorm, LM
// head (tied to the token embedding by default) — a Trunk (models/trunk.h)
// run straight through.
//
// Legend: B = batch, T = time, C = n_embd, L = n_layer, V = vocab (256).
//
//   models::GPTConfig cfg{.n_layer = 4, .n_head = 4, .n_embd = 128, .block_size = 128};
//   models::GPT model(cfg);
//   Tensor logits = model.forward(idx);          // idx (B, T) i64 -> (B, T, V)
//   auto out = model.loss(idx, targets);         // out.objective.backward()
#include <memory>
#include <string>

#include "models/trunk.h"

namespace dg::models {

class GPT : public LanguageModel {
 public:
  explicit GPT(const GPTConfig& cfg);

  Tensor forward(const Tensor& idx) override;
  LossOutput loss(const Tensor& idx, const Tensor& targets) override;
  std::unique_ptr<DecodeState> start_decoding(int64_t batch) override;
  Tensor decode(DecodeState& state, const Tensor& idx) override;
  int64_t block_size() const override { return trunk_.cfg.block_size; }
  int64_t vocab_size() const override { return trunk_.cfg.vocab_size; }
  double last_forward_flops_per_token() const override { return last_flops_; }
  std::string kind() const override { return "dense"; }
  std::string config_json() const override { return to_json(trunk_.cfg); }
  const GPTConfig& config() const { return trunk_.cfg; }
  const Trunk& trunk() const { return trunk_; }

 private:
  Trunk trunk_;
  double last_flops_ = 0;
};

}  // namespace dg::models
