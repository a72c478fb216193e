#pragma once
// The dense GPT: token + learned position embeddings, n_layer pre-norm blocks
// (each returning its delta; the residual add is here), final LayerNorm, LM
// head (tied to the token embedding by default).
//
// Legend: B = batch, T = time, C = n_embd, L = n_layer, V = vocab (256).
//
//   models::GPTConfig cfg{.n_layer = 4, .n_head = 4, .n_embd = 128, .block_size = 128};
//   models::GPT model(cfg);
//   Tensor logits = model.forward(idx);          // idx (B, T) i64 -> (B, T, V)
//   auto out = model.loss(idx, targets);         // out.objective.backward()
//
// State-dict names match GPT-2 style PyTorch code (bench/torch_models.py):
// wte.weight, wpe.weight, blocks.{i}.ln1/attn.qkv/attn.proj/ln2/mlp.fc/mlp.proj
// .weight/.bias, ln_f.weight/.bias, lm_head.weight (untied only).
#include <memory>
#include <string>
#include <vector>

#include "models/lm.h"
#include "nn/block.h"

namespace dg::models {

struct GPTConfig {
  int64_t n_layer = 4;
  int64_t n_head = 4;
  int64_t n_embd = 128;
  int64_t block_size = 128;
  int64_t vocab_size = 256;
  double dropout = 0.0;
  bool tied_head = true;
  uint64_t seed = 0;  // initial weights
  DType dtype = DType::f32;
};
std::string to_json(const GPTConfig& c);
// Parses what to_json wrote; a dg::Error names the missing or bad field.
GPTConfig gpt_config_from_json(const std::string& json);

// Forward FLOPs per token of a dense stack of L blocks at sequence length T
// (multiply-add = 2): per block 24 C^2 (qkv 6C^2, proj 2C^2, mlp 16C^2) plus
// causal attention 2 C (T + 1) (q k^T and p v, T/2 keys on average... exactly
// (T+1)/2), plus the head 2 C V. Embedding lookups and norms are not counted.
double block_flops_per_token(int64_t C, int64_t T);
double dense_flops_per_token(int64_t L, int64_t C, int64_t V, int64_t T);

struct GPTDecodeState : DecodeState {
  std::vector<nn::KVCache> caches;  // one per block
};

class GPT : public LanguageModel {
 public:
  explicit GPT(const GPTConfig& cfg);

  Tensor forward(const Tensor& idx) override;
  LossOutput loss(const Tensor& idx, const Tensor& targets) override;
  std::unique_ptr<DecodeState> start_decoding(int64_t batch) override;
  Tensor decode(DecodeState& state, const Tensor& idx) override;
  int64_t block_size() const override { return cfg_.block_size; }
  int64_t vocab_size() const override { return cfg_.vocab_size; }
  double last_forward_flops_per_token() const override { return last_flops_; }
  std::string kind() const override { return "dense"; }
  std::string config_json() const override { return to_json(cfg_); }
  const GPTConfig& config() const { return cfg_; }

  // Pieces shared with the routed models.
  // idx (B, T) at positions pos0.. -> x (B, T, C) (dropout applied in training).
  Tensor embed(const Tensor& idx, int64_t pos0 = 0) const;
  // x (B, T, C) -> logits (B, T, V) through ln_f and the (tied) head.
  Tensor head(const Tensor& x) const;

  std::shared_ptr<nn::Embedding> wte, wpe;
  std::vector<std::shared_ptr<nn::Block>> blocks;
  std::shared_ptr<nn::LayerNorm> ln_f;
  std::shared_ptr<nn::Linear> lm_head;  // null when tied
  std::shared_ptr<nn::Dropout> drop;

 protected:
  // Allocates one KV cache of capacity block_size per block.
  void init_caches(GPTDecodeState& s, int64_t batch, int64_t n_caches) const;
  GPTConfig cfg_;
  double last_flops_ = 0;
};

// Checks idx (B, T) i64 with 0 < T <= limit, naming the model.
void check_tokens(const char* who, const Tensor& idx, int64_t limit, int64_t vocab);
// Mean cross-entropy of logits (B, T, V) against targets (B, T).
Tensor lm_loss(const Tensor& logits, const Tensor& targets);

}  // namespace dg::models
