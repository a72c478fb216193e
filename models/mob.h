#pragma once
// Mixture-of-Blocks: n transformer blocks F_1..F_n and a "return" choice. At
// step d a gate G(d, R) = W·norm(R) + b_d (a learned bias per step; +beta·d on
// the return logit) gives p over n + 1 choices for every active token; the
// routing policy decides who halts and which block each remaining token runs
// (argmax of q_k = p_k / (1 - p_return)), and R <- R + w·Delta_k(R). Blocks
// repeat and come in any order, per token; each token's path is recorded on
// the tape, and parameters used several times accumulate gradient from every
// use. At d = D_max return is forced.
//
// Execution is batched: at each step the active tokens are grouped by block
// (stable counting sort: permutation + offsets), the blocks are called on
// their groups, and the deltas are scattered back — batched per (step,
// block), never one call per token. The blocks are the one nn::Block
// (nn/block.h), called, not re-spelled. Attention is over packed
// variable-length sequences: scope `step` — among all tokens of the sequence
// active at this step, each projecting q/k/v with its own block; the blocks
// run as nn::GroupedBlocks, each on its rows of one group-ordered tensor —
// or scope `block` — among those that chose the same block; each group runs
// through Block::forward_packed. Both causal by original position.
//
// Gate init `dense_path`: the per-step bias starts at +3 on block d at step
// d < n and on return at d >= n (gate weights zero), so an untrained MoB runs
// the dense n-layer path: with BlockWeight::straight_through it equals the
// dense model; with the default weight q each block's output is scaled by
// q = e^3 / (e^3 + n - 1).
//
// Legend: B = batch, T = time, C = channels, N = B*T tokens, Na = active
// tokens at a step, n = blocks, D = max depth.
//
//   models::MoBConfig cfg;  cfg.gpt.n_embd = 128;  cfg.n_blocks = 4;  cfg.max_depth = 6;
//   models::MoB model(cfg);
//   auto out = model.loss(x, y);        // ponder objective; out.stats["depth"] = mean depth
//   model.eval();
//   Tensor logits = model.forward(x);   // halts at the first step with p_return > 0.5
//   const RoutingTrace& tr = model.last_trace();
//
// Adding a routing policy: implement models::RoutingPolicy (mob_policy.h) and
// pass it with MoB::set_policy(); the model calls begin / step / finish and
// needs nothing else.
#include <memory>
#include <string>
#include <vector>

#include "models/mob_policy.h"
#include "models/routing.h"
#include "models/trace.h"
#include "models/trunk.h"

namespace dg::models {

enum class Halting { ponder, bias };
enum class GateInit { dense_path, uniform };
enum class AttnScope { step, block };

struct MoBConfig {
  GPTConfig gpt;           // sizes; n_layer is not read (the blocks are n_blocks)
  int64_t n_blocks = 4;
  int64_t max_depth = 6;
  Halting halting = Halting::ponder;
  GateInit gate_init = GateInit::dense_path;
  AttnScope attn_scope = AttnScope::step;
  BlockWeight weight = BlockWeight::q;
  Explore explore = Explore::none;
  double explore_param = 0.0;
  double return_bias = 0.0;    // beta: + beta * d on the return logit
  double prior = 0.3;          // ponder: geometric prior lambda_p
  double kl = 0.01;            // ponder: kappa
  double eps = 0.1;            // ponder: stop computing under this surviving mass
  double ponder_cost = 0.01;   // bias policy
  double depth_target = 0.0;   // optional two-sided budget (E[steps] - D*)^2
  double depth_weight = 0.0;
  double balance = 0.0;        // load-balance loss weight
};
// MoB's own fields (flags --blocks, --max-depth, ...), and the whole config's
// (the GPT fields under the same keys, then these).
const config::Table<MoBConfig>& mob_fields();
const config::Table<MoBConfig>& mob_config_table();
std::string to_json(const MoBConfig& c);  // n_layer written as n_blocks
// Parses what to_json wrote and validates it; a dg::Error names the key.
MoBConfig mob_config_from_json(const std::string& json, const std::string& where = "MoB config");
// The checks across fields (explore_param of epsilon at most 1, depth_target
// at most max_depth, the trunk's size); a dg::Error prefixed by `where`.
void validate(const MoBConfig& c, const std::string& where = "MoB config");

class MoB : public LanguageModel {
 public:
  explicit MoB(const MoBConfig& cfg);

  // Evaluation semantics (deterministic halting), any mode.
  Tensor forward(const Tensor& idx) override;
  // The policy's training objective in training mode; in eval mode the LM loss
  // of forward().
  LossOutput loss(const Tensor& idx, const Tensor& targets) override;
  std::unique_ptr<DecodeState> start_decoding(int64_t batch) override;
  // Decoding keeps a KV cache per step (scope step: caches[d]) or per step and
  // block (scope block: caches[d * n + k]).
  Tensor decode(DecodeState& state, const Tensor& idx) override;
  int64_t block_size() const override { return trunk_.cfg.block_size; }
  int64_t vocab_size() const override { return trunk_.cfg.vocab_size; }
  double last_forward_flops_per_token() const override { return last_flops_; }
  std::string kind() const override { return "mob"; }
  // The config as checkpoints store it: n_layer written as n_blocks.
  std::string config_json() const override;

  void set_policy(std::unique_ptr<RoutingPolicy> p) { policy_ = std::move(p); }
  const RoutingTrace& last_trace() const { return trace_; }
  const RoutingTrace* last_routing_trace() const override { return &trace_; }
  const MoBConfig& mob_config() const { return mcfg_; }
  const Trunk& trunk() const { return trunk_; }  // embeddings, the n blocks, head

  // Gate logits (Na, n + 1) of residuals x (Na, C) at step d.
  Tensor gate_logits(const Tensor& x, int64_t d) const;

  std::shared_ptr<nn::LayerNorm> gate_ln;
  std::shared_ptr<nn::Linear> gate;
  Tensor step_bias;  // (D + 1, n + 1)

 private:
  struct Run {
    Tensor logits;     // (N, V) at each token's output step
    Tensor objective;  // policy terms, summed over tokens (training)
  };
  Run run(const Tensor& idx, const Tensor& targets, bool training);
  // One step's deltas for the continuing rows (flat rows of R), computed
  // grouped by block and left in that order: delta row i belongs to rows[perm[i]].
  struct StepDeltas {
    Tensor delta;               // (Nc, C), group order
    std::vector<int64_t> perm;  // group order -> position in rows
    Rows rows;                  // the rows of R the deltas belong to, group order: rows[perm[i]]
  };
  StepDeltas step_deltas(const Tensor& R, const std::vector<int64_t>& rows, const std::vector<int64_t>& blocks,
                         int64_t T);

  MoBConfig mcfg_;
  Trunk trunk_;
  double last_flops_ = 0;
  std::unique_ptr<RoutingPolicy> policy_;
  RoutingTrace trace_;
  Generator explore_gen_;
};

}  // namespace dg::models
