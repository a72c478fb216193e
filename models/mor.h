#pragma once
// Mixture-of-Recursions (Bae et al. 2025, "Mixture-of-Recursions: Learning
// Dynamic Recursive Depths for Adaptive Token-Level Computation"): a cycle of
// `cycle` blocks whose weights are shared across up to N_r = n_recursions
// recursions. At recursion r each token still active either goes through the
// cycle again — x <- x + g·Delta_j(x) for every block j of the cycle, attention
// only among the tokens of its sequence active at r, causal by position — or
// stops for good (hierarchical: a token stopped at r is never active later).
// Every token runs recursion 0; the depths are 1..N_r recursions.
//
// Two routers (`router`):
//   expert (default): recursion r >= 1 has its own router s = w_r·x (Linear
//     C -> 1 on the residual). Per sequence, of the k_{r-1} tokens active at
//     r, the top k_r by s go on, k_0 = T and k_r = ceil(capacity·k_{r-1})
//     (at least 1): `capacity` is the share of the previous recursion's tokens
//     kept. g = sigmoid(s) (g = 1 at recursion 0). Top-k looks at the whole
//     sequence, so an auxiliary BCE of s against the selection (weight
//     aux_weight, mean over the recursions' active tokens, summed over the
//     recursions) teaches the router to decide alone: in causal routing
//     (set_routing(causal), and always in decode()) a token goes on at r
//     while sigmoid(s) > 0.5, and stops at the first recursion it does not.
//   token: a router on the embedded token (Linear C -> N_r, with bias) gives
//     p = softmax over depths 1..N_r; the token's depth is the argmax (first
//     maximum), decided up front, and g = p[depth] scales its delta at every
//     recursion it runs, so the router is on the gradient path. A Switch-style
//     balancing loss N_r·sum_d f_d·P_d (f_d share of tokens with depth d, no
//     gradient; P_d mean of p_d; weight `balance`) keeps the depths in use.
//     Per token, so already causal.
//
// Decoding keeps one KV cache per (recursion, block of the cycle): caches[r ·
// cycle + j]; only tokens active at r store keys and values there, so a later
// token attends at recursion r to exactly the tokens that were active at r,
// as in the full forward. decode() equals forward() under causal routing.
//
// Legend: B = batch, T = time, C = channels, N = B*T tokens, N_r =
// n_recursions, n = tokens active at a recursion, k_r = kept per sequence.
//
//   models::MoRConfig cfg;  cfg.cycle = 2;  cfg.n_recursions = 3;  cfg.capacity = 0.5;
//   models::MoR model(cfg);
//   auto out = model.loss(x, y);                 // LM + aux BCE (expert) or balance (token)
//   model.set_routing(models::MoRRouting::causal);
//   Tensor logits = model.forward(x);            // the sampling rule, equal to decode()
//   const RoutingTrace* tr = model.last_routing_trace();   // per token: (recursion, block, g, stop prob.)
#include <memory>
#include <string>
#include <vector>

#include "models/routing.h"
#include "models/trace.h"
#include "models/trunk.h"

namespace dg::models {

enum class MoRRouter { expert, token };
enum class MoRRouting { topk, causal };

struct MoRConfig {
  GPTConfig gpt;               // sizes; n_layer is not read (the cycle's blocks are `cycle`)
  int64_t cycle = 2;           // blocks of the shared cycle
  int64_t n_recursions = 3;    // N_r: the cycle runs 1..N_r times per token
  MoRRouter router = MoRRouter::expert;
  double capacity = 0.5;       // expert: share of the previous recursion's tokens kept
  double aux_weight = 0.01;    // expert: BCE of router logits vs top-k selection
  double balance = 0.01;       // token: weight of the balancing loss over depths
};
// MoR's own fields (flags --cycle, --recursions, --mor-router, ...), and the
// whole config's (the GPT fields under the same keys, then these).
const config::Table<MoRConfig>& mor_fields();
const config::Table<MoRConfig>& mor_config_table();
std::string to_json(const MoRConfig& c);  // n_layer written as cycle
// Parses what to_json wrote and validates it; a dg::Error names the key and
// the allowed values ("'n_recursions' must be an integer in [1, 64], got 0").
MoRConfig mor_config_from_json(const std::string& json, const std::string& where = "MoR config");
// The field ranges and the trunk's size; a dg::Error prefixed by `where`.
void validate(const MoRConfig& c, const std::string& where = "MoR config");

// Expert-choice selection at one recursion, per sequence: of the n active
// tokens with router scores s (B, n), the k largest go on.
struct ExpertChoice {
  Tensor idx;     // (B, k) i64: places in the active list, ascending (no gradient)
  Tensor weight;  // (B, k) g = sigmoid(s) of the kept
  Tensor aux;     // 0-dim: mean BCE of every s against membership of the kept
};
ExpertChoice expert_choice(const Tensor& scores, int64_t k);

// Token-choice depths from router logits (N, N_r).
struct TokenChoice {
  std::vector<int64_t> depth;  // (N) on the host: recursions per token, 1..N_r
  Tensor weight;               // (N) g = p of the chosen depth
  std::vector<double> weight_value;  // the same g on the host (the trace)
  Tensor balance;              // 0-dim: N_r · sum_d f_d · mean_i p_{i,d}
};
TokenChoice token_choice(const Tensor& logits);

class MoR : public LanguageModel {
 public:
  explicit MoR(const MoRConfig& cfg);

  Tensor forward(const Tensor& idx) override;
  LossOutput loss(const Tensor& idx, const Tensor& targets) override;
  // Batch 1; expert-choice routes causally (whatever set_routing says).
  std::unique_ptr<DecodeState> start_decoding(int64_t batch) override;
  Tensor decode(DecodeState& state, const Tensor& idx) override;
  int64_t block_size() const override { return trunk_.cfg.block_size; }
  int64_t vocab_size() const override { return trunk_.cfg.vocab_size; }
  double last_forward_flops_per_token() const override { return last_flops_; }
  // Per token, each recursion it ran: one step per block of the cycle
  // (step = r, block = j, w = g, lambda = 1 - sigmoid(s), or p of its depth
  // for token-choice), and a return step (block -1) at the recursion where
  // it stopped, if it stopped before N_r. Depth = block applications.
  const RoutingTrace* last_routing_trace() const override;
  std::string kind() const override { return "mor"; }
  std::string config_json() const override { return to_json(mcfg_); }

  void set_routing(MoRRouting r) { routing_ = r; }
  MoRRouting routing() const { return routing_; }
  // Expert-choice tokens kept per sequence at recursion r of a length-T sequence.
  int64_t capacity_k(int64_t T, int64_t r) const;
  const MoRConfig& mor_config() const { return mcfg_; }
  const Trunk& trunk() const { return trunk_; }  // embeddings, the cycle's blocks, head

  std::vector<std::shared_ptr<nn::Linear>> routers;  // expert: [r] for r >= 1 (null at 0)
  std::shared_ptr<nn::Linear> depth_router;          // token

 private:
  struct Terms {      // auxiliary terms of one forward (unweighted), and stats
    Tensor aux, balance;
    std::vector<Tensor> router_accuracy;
    double applications = 0;  // block applications, summed over tokens
  };
  // idx (B, T) -> the residual (B, T, C) after the recursions; terms
  // collects the routing losses.
  Tensor run(const Tensor& idx, Terms& terms);
  Tensor run_topk(Tensor x, int64_t B, int64_t T, Terms& terms);     // expert, top-k routing
  Tensor run_causal(Tensor x, int64_t B, int64_t T, Terms& terms);   // expert causal, or token
  // Every block of the cycle on `rows` of x (N, C) (ascending; counts[b] of
  // them in sequence b), x <- x + w·Delta_j(x), attention among each
  // sequence's rows (a (B, k, C) batch when every count is k, else packed).
  Tensor apply_cycle(Tensor x, const Rows& rows, const std::vector<int64_t>& counts, const Tensor& w);
  // Adds the FLOPs of the cycle on counts[b] tokens of each sequence b.
  void count_cycle(const std::vector<int64_t>& counts);
  // Causal routing at recursion r: which of the `active` rows of x (N, C)
  // (ascending) run it, with g and the stop probabilities (the trace).
  struct Step {
    std::vector<uint8_t> on;        // per active row
    std::vector<int64_t> rows;      // the rows that run recursion r
    Tensor w;                       // (rows) g, undefined for 1 (recursion 0, expert)
    std::vector<double> w_value, lambda;  // per active row
  };
  Step causal_step(int64_t r, const Tensor& x, const std::vector<int64_t>& active, const TokenChoice* tc);

  MoRConfig mcfg_;
  Trunk trunk_;  // `cycle` blocks
  double last_flops_ = 0;
  MoRRouting routing_ = MoRRouting::topk;
  // The trace: filled directly by the causal and token paths; in top-k mode
  // the selections stay on the device and the trace is read from them on
  // first request (no host read per training step).
  struct TopkRecord {
    Tensor prev;    // (B, kp) positions active at r (undefined: all, r = 1)
    Tensor scores;  // (B, kp)
    Tensor sel;     // (B, k) places in prev kept
  };
  mutable RoutingTrace trace_;
  mutable std::vector<TopkRecord> pending_;
  mutable bool trace_pending_ = false;
};

}  // namespace dg::models
