#pragma once
// Mixture-of-Experts: a GPT whose MLP in every moe_every-th block is replaced
// by E expert MLPs of the dense MLP's shape, chosen per token (token choice).
// The attention half of each block is the block's own (nn::attention_delta);
// then, on h = ln2(x + a):
//
//   logits = router(h)            Linear C -> E, no bias          (N, E)
//   p      = softmax(logits)                                      (N, E)
//   top-k experts of p per token, k = 1 or 2, ties to the lower index
//   gates  k = 1: p[e]                (Switch Transformer, Fedus et al. 2021)
//          k = 2: p[e] / (p[e1] + p[e2])  renormalised over the two (Mixtral,
//                 Jiang et al. 2024; GShard's top-2 gate)
//   out    = x + a + sum over kept assignments gate * expert_e(h)
//
// Execution is batched, "dropless" (MegaBlocks, Gale et al. 2022): the kept
// assignments are grouped by expert (stable counting sort), the experts run
// as one grouped op per layer (grouped_linear over expert-ordered rows, the
// one MLP formula nn::mlp_delta) and the weighted outputs are scattered back.
// Expert 0 of a layer is the block's own MLP (blocks.{i}.mlp), experts 1..E-1
// are moe.{i}.experts.{e}: with E = 1 the gate is 1 and the model is the dense
// GPT of the same seed.
//
// Capacity (training only): capacity_factor 0 is dropless; cf > 0 lets each
// expert take at most ceil(cf * N * k / E) assignments of the N tokens of a
// batch, first come first served in token order (row b*T + t, a token's first
// choice before its second); an overflowing assignment is dropped: it adds
// nothing, the token passes that expert unchanged. Evaluation and decoding
// never drop (a token's capacity would depend on later tokens), so cached
// decoding equals the full forward in eval mode.
//
// Losses (averaged over the MoE layers and added to the LM loss):
//   balance * E * sum_i f_i P_i   Switch's load-balancing loss: f_i the share
//                                 of the N*k chosen assignments (before
//                                 dropping) that went to expert i, P_i the
//                                 mean router probability of expert i (1 at
//                                 a uniform router and uniform choices)
//   z_loss * mean_n logsumexp(logits_n)^2   the router z-loss of ST-MoE
//                                 (Zoph et al. 2022)
//
// loss() stats: "balance" and "z" (the unweighted terms, on the device),
// "dropped" (share of the assignments capacity dropped) and "expert{e}_share"
// (share of the chosen assignments that went to expert e, all MoE layers).
//
// FLOPs per token: dense attention, router 2CE, and 16C^2 per expert
// assignment actually run (dropped ones are not counted); at k = 1 dropless
// that is the dense model's plus the router's.
//
// Legend: B = batch, T = time, C = channels, N = B*T tokens, E = experts,
// k = experts per token, M = kept assignments (<= N*k).
//
//   models::MoEConfig cfg;  cfg.gpt.n_layer = 4;  cfg.n_experts = 8;  cfg.top_k = 2;
//   models::MoE model(cfg);
//   auto out = model.loss(x, y);                 // lm + balance + z terms
//   const RoutingTrace* tr = model.last_routing_trace();   // step = MoE layer, block = expert
#include <memory>
#include <string>
#include <vector>

#include "models/trace.h"
#include "models/trunk.h"

namespace dg::models {

struct MoEConfig {
  GPTConfig gpt;
  int64_t n_experts = 4;
  int64_t top_k = 1;             // 1 (Switch) or 2 (Mixtral)
  int64_t moe_every = 1;         // blocks i with i % moe_every == moe_every - 1 have experts (1: every block)
  double capacity_factor = 0.0;  // 0: dropless
  double balance = 0.01;         // weight of the load-balancing loss
  double z_loss = 1e-3;          // weight of the router z-loss
};
// MoE's own fields (flags --experts, --top-k, ...), and the whole config's.
const config::Table<MoEConfig>& moe_fields();
const config::Table<MoEConfig>& moe_config_table();
std::string to_json(const MoEConfig& c);
// The checks across fields (top_k <= n_experts, moe_every <= n_layer, the
// parameter limit): a one-line dg::Error naming the field and what is allowed.
void validate(const MoEConfig& c, const std::string& where = "MoE config");
MoEConfig moe_config_from_json(const std::string& json, const std::string& where = "MoE config");
// The parameters beyond the trunk's (trunk_parameters): per MoE layer the
// router (C E) and experts 1..E-1 (8C^2 + 5C each).
double expert_parameters(const MoEConfig& c);

// ---------------------------------------------------------------- routing pieces
// The routing decision of one layer, made on the host from p (N, E).
struct MoERoutes {
  int64_t N = 0, E = 0, k = 0;
  int64_t capacity = -1;          // assignments per expert; -1: dropless
  std::vector<int64_t> choice;    // (N*k) expert of assignment n*k + j, j in rank order
  std::vector<uint8_t> kept;      // (N*k) 0 where capacity dropped it
  std::vector<double> gate;       // (N*k) the gate weights, as gate_weights computes them (for traces)
  std::vector<int64_t> chosen;    // (E) assignments chosen per expert, before dropping
  int64_t dropped() const;
};
// Top-k of each row of p (N*E values, row-major), ties to the lower index;
// capacity_factor > 0 drops assignments past ceil(cf * N * k / E) per expert
// in token order.
MoERoutes route_top_k(const std::vector<double>& p, int64_t N, int64_t E, int64_t k, double capacity_factor);

// p (N, E), choice (N, k) i64 -> gates (N, k): p at the choices, renormalised
// over them when k = 2. Differentiable in p.
Tensor gate_weights(const Tensor& p, const Tensor& choice);
// E * sum_i f_i * mean_n p[n, i], f_i = chosen[i] / sum(chosen) (a constant).
Tensor balance_loss(const Tensor& p, const std::vector<int64_t>& chosen);
// mean_n logsumexp(logits[n, :])^2 of logits (N, E).
Tensor router_z_loss(const Tensor& logits);

// One layer's router and experts. Expert 0 is the block's MLP (held, not
// registered here); experts 1..E-1 are this module's, registered as
// experts.{e}, initialised like the block's (fc N(0, 0.02), proj N(0, resid_std)).
class MoELayer : public nn::Module {
 public:
  MoELayer(const nn::Block& block, int64_t E, int64_t k, nn::LayerOptions opt, double resid_std);

  struct Output {
    Tensor out;       // (N, C) x1 + the weighted expert outputs
    MoERoutes routes;
    Tensor p;         // (N, E) router probabilities
    Tensor gates;     // (N, k)
    Tensor balance;   // 0-dim, unweighted
    Tensor z;         // 0-dim, unweighted
  };
  // x1 (N, C) the residual after attention, h = ln2(x1) (N, C). One host read (p).
  Output forward(const Tensor& x1, const Tensor& h, double capacity_factor) const;

  int64_t n_experts() const { return static_cast<int64_t>(experts.size()); }
  int64_t top_k() const { return k_; }

  std::shared_ptr<nn::Linear> router;
  std::vector<std::shared_ptr<nn::MLP>> experts;  // [0] is the block's MLP
  std::shared_ptr<nn::Dropout> drop;              // the block's

 private:
  int64_t k_;
};

class MoE : public LanguageModel {
 public:
  explicit MoE(const MoEConfig& cfg);

  Tensor forward(const Tensor& idx) override;
  LossOutput loss(const Tensor& idx, const Tensor& targets) override;
  std::unique_ptr<DecodeState> start_decoding(int64_t batch) override;
  Tensor decode(DecodeState& state, const Tensor& idx) override;
  int64_t block_size() const override { return trunk_.cfg.block_size; }
  int64_t vocab_size() const override { return trunk_.cfg.vocab_size; }
  double last_forward_flops_per_token() const override { return last_flops_; }
  const RoutingTrace* last_routing_trace() const override { return &trace_; }
  std::string kind() const override { return "moe"; }
  std::string config_json() const override { return to_json(mcfg_); }

  bool has_experts(int64_t block) const { return block % mcfg_.moe_every == mcfg_.moe_every - 1; }
  const MoEConfig& moe_config() const { return mcfg_; }
  const Trunk& trunk() const { return trunk_; }
  // The routes of the last forward, one per MoE layer.
  const std::vector<MoERoutes>& last_routes() const { return routes_; }

  std::vector<std::shared_ptr<MoELayer>> layers;  // one per block; null for blocks without experts

 private:
  struct Aux {
    std::vector<Tensor> balance, z;
  };
  // x (B, T, C) through every block, each through its KV cache when caches
  // is given (decoding); aux (when not null) collects the router losses;
  // record: keep the routes, the trace and the FLOPs. Capacity drops only in
  // training mode and never when decoding.
  Tensor run_blocks(const Tensor& x, std::vector<nn::KVCache>* caches, Aux* aux, bool record);

  MoEConfig mcfg_;
  Trunk trunk_;
  double last_flops_ = 0;
  RoutingTrace trace_;
  std::vector<MoERoutes> routes_;
};

}  // namespace dg::models
