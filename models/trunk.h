#pragma once
// What the dense GPT, MoD and MoB are made of, composed into each of them
// (none inherits another): the GPT config that sizes them; the Trunk — token
// + learned position embeddings, a stack of pre-norm blocks, the final
// LayerNorm and the LM head (tied to the token embedding by default); the
// one decoding state they share (a KV cache per attention); and the token
// check, LM loss and FLOP counts they all use.
//
// Legend: B = batch, T = time, C = n_embd, L = blocks, V = vocab (256).
//
//   struct MyModel : models::LanguageModel {
//     models::Trunk trunk;
//     explicit MyModel(const models::GPTConfig& c) : trunk(c, c.n_layer) {
//       for (auto& [name, m] : trunk.modules()) register_module(name, m);   // wte, wpe, blocks.{i}, ...
//     }
//     Tensor forward(const Tensor& idx) override {
//       Tensor x = trunk.embed(idx);
//       for (auto& b : trunk.blocks) x = x + b->forward(x);
//       return trunk.head(x);
//     }
//     ...
//   };
//
// State-dict names match GPT-2 style PyTorch code (bench/torch_models.py):
// wte.weight, wpe.weight, blocks.{i}.ln1/attn.qkv/attn.proj/ln2/mlp.fc/mlp.proj
// .weight/.bias, ln_f.weight/.bias, lm_head.weight (untied only).
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "models/config_table.h"
#include "models/lm.h"
#include "nn/block.h"

namespace dg::models {

struct GPTConfig {
  int64_t n_layer = 4;  // the dense stack's blocks (MoB has n_blocks of its own)
  int64_t n_head = 4;
  int64_t n_embd = 128;
  int64_t block_size = 128;
  int64_t vocab_size = 256;
  double dropout = 0.0;
  bool tied_head = true;
  uint64_t seed = 0;  // initial weights
  DType dtype = DType::f32;
};
// The GPT config's fields (models/config_table.h): JSON keys, flags, ranges.
const config::Table<GPTConfig>& gpt_config_table();
const config::EnumNames<DType>& dtype_names();  // f32 | f64
std::string to_json(const GPTConfig& c);
// Parses what to_json wrote, then validate(c, c.n_layer); a dg::Error names
// the missing, unknown or bad key, prefixed by `where`.
GPTConfig gpt_config_from_json(const std::string& json, const std::string& where = "GPT config");

// Sizes no model here is meant to exceed: a config asking for more
// parameters than this is refused before anything is allocated.
inline constexpr double kMaxParameters = 2e9;
// Parameters of a trunk of n_blocks blocks (embeddings, blocks, ln_f, head).
double trunk_parameters(const GPTConfig& c, int64_t n_blocks);
// The checks across fields: n_head divides n_embd, and the trunk of
// n_blocks blocks stays within kMaxParameters. A dg::Error prefixed by `where`.
void validate(const GPTConfig& c, int64_t n_blocks, const std::string& where = "GPT config");

// Forward FLOPs per token of a dense stack of L blocks at sequence length T
// (multiply-add = 2): per block 24 C^2 (qkv 6C^2, proj 2C^2, mlp 16C^2) plus
// causal attention 2 C (T + 1) (q k^T and p v, T/2 keys on average... exactly
// (T+1)/2), plus the head 2 C V. Embedding lookups and norms are not counted.
double block_flops_per_token(int64_t C, int64_t T);
double dense_flops_per_token(int64_t L, int64_t C, int64_t V, int64_t T);

// Checks idx (B, T) i64 with 0 < T <= limit, naming the model.
void check_tokens(const char* who, const Tensor& idx, int64_t limit, int64_t vocab);
// Mean cross-entropy of logits (B, T, V) against targets (B, T).
Tensor lm_loss(const Tensor& logits, const Tensor& targets);

// Incremental decoding of every model here: the position and one KV cache
// per attention the model runs (dense and MoD: per block; MoB: per step, or
// per step and block), each of capacity block_size.
struct KVDecodeState : DecodeState {
  std::vector<nn::KVCache> caches;
  const LanguageModel* owner = nullptr;  // the model whose start_decoding made it
};

class Trunk {
 public:
  // n_blocks blocks of cfg's sizes (cfg.n_layer is not read). Initial weights
  // come from one generator seeded cfg.seed, in GPT-2 style and order: wte,
  // wpe, then each block (residual projections N(0, 0.02 / sqrt(2 n_blocks))),
  // then an untied head.
  Trunk(const GPTConfig& cfg, int64_t n_blocks);

  // The modules under their checkpoint names, in the order a model registers
  // them (first): wte, wpe, drop, blocks.{i}, ln_f, lm_head (untied only).
  std::vector<std::pair<std::string, std::shared_ptr<nn::Module>>> modules() const;

  // idx (B, T) at positions pos0.. -> x (B, T, C) (dropout applied in training).
  Tensor embed(const Tensor& idx, int64_t pos0 = 0) const;
  // x (..., C) -> logits (..., V) through ln_f and the (tied) head.
  Tensor head(const Tensor& x) const;

  // The device of the weights (Module::to moves them): where a model makes
  // the tensors it needs that are not computed from its input.
  Device device() const { return wte->weight.device(); }

  // A decoding state of n_caches empty KV caches for `batch` sequences, on device().
  std::unique_ptr<KVDecodeState> start_decoding(const LanguageModel& owner, int64_t batch, int64_t n_caches) const;
  // `state` as made by owner's start_decoding; a dg::Error naming `who` otherwise.
  static KVDecodeState& decode_state(DecodeState& state, const LanguageModel& owner, const char* who);

  GPTConfig cfg;
  std::shared_ptr<nn::Embedding> wte, wpe;
  std::shared_ptr<nn::Dropout> drop;
  std::vector<std::shared_ptr<nn::Block>> blocks;
  std::shared_ptr<nn::LayerNorm> ln_f;
  std::shared_ptr<nn::Linear> lm_head;  // null when tied
};

}  // namespace dg::models
