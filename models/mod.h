#pragma once
// Mixture-of-Depths (Raposo et al. 2024, "Mixture-of-Depths: Dynamically
// allocating compute in transformer-based language models"): every
// mod_every-th block is routed. A router r = w·x scores each token; per
// sequence the top k = ceil(capacity·T) tokens are gathered (in position
// order), run through the block as a (B, k, C) batch — attention only among
// them, causal by position — and scattered back as x[i] += g(r[i])·Δ[i], with
// g = identity ("raw", the paper) or sigmoid. The other tokens pass unchanged
// and are invisible to that block. Shapes are static: exactly k per sequence.
//
// Top-k over a sequence looks into the future, so sampling uses a causal
// method: (1) aux_loss: BCE of the router logits against top-k membership,
// route when sigmoid(r) > 0.5; (2) predictor: a small MLP on the stop-gradient
// residual trained with BCE against membership, route when it says so. The
// predictor's input is detached, so it never changes the LM gradients.
//
// Legend: B = batch, T = time, C = channels, k = ceil(capacity·T).
//
//   models::MoDConfig cfg;  cfg.gpt.n_layer = 4;  cfg.capacity = 0.125;
//   models::MoD model(cfg);
//   auto out = model.loss(x, y);                 // top-k routing + aux terms
//   model.set_routing(models::MoDRouting::causal);
//   Tensor logits = model.forward(x);            // causal routing (sampling mode)
#include "models/trunk.h"

namespace dg::models {

enum class MoDRouting { topk, causal };
// raw: Δ scaled by r (the paper); sigmoid: by sigmoid(r); none: unscaled (the
// router only selects and gets no gradient from the LM loss; an ablation, and
// with capacity 1 it makes MoD exactly the dense model).
enum class RouterWeight { raw, sigmoid, none };
enum class CausalMethod { aux_loss, predictor, both };

struct MoDConfig {
  GPTConfig gpt;
  double capacity = 0.125;
  int64_t mod_every = 2;            // blocks i with i % mod_every == mod_every - 1 are routed
  RouterWeight router_weight = RouterWeight::raw;
  CausalMethod causal = CausalMethod::both;
  int64_t predictor_hidden = 64;
  double aux_weight = 0.01;         // BCE of router logits vs top-k membership
  double predictor_weight = 0.01;   // BCE of the predictor vs membership
};
// MoD's own fields (flags --capacity, --mod-every, ...), and the whole config's
// (the GPT fields under the same keys, then these).
const config::Table<MoDConfig>& mod_fields();
const config::Table<MoDConfig>& mod_config_table();
std::string to_json(const MoDConfig& c);
// Parses what to_json wrote and validates it; a dg::Error names the key.
MoDConfig mod_config_from_json(const std::string& json, const std::string& where = "MoD config");

// Router of one routed block: r = x·w (a Linear C -> 1 without bias), and the
// causal predictor MLP (C -> hidden -> 1) on the detached residual.
class Router : public nn::Module {
 public:
  Router(int64_t C, int64_t hidden, nn::LayerOptions opt);
  Tensor logits(const Tensor& x) const;            // (B, T, C) -> (B, T)
  Tensor predictor_logits(const Tensor& x) const;  // on x.detach()
  std::shared_ptr<nn::Linear> proj, pred_fc, pred_out;
};

// Routing statistics of the last forward, per routed block. The accuracies
// are 0-dim f64 tensors on the model's device (computed there, read only when
// someone asks: training makes no host read per step).
struct MoDStats {
  std::vector<double> fraction;            // tokens processed / tokens
  std::vector<Tensor> predictor_accuracy;  // predictor vs top-k membership (topk mode)
  std::vector<Tensor> router_accuracy;     // sigmoid(r) > 0.5 vs top-k membership
};

class MoD : public LanguageModel {
 public:
  explicit MoD(const MoDConfig& cfg);

  Tensor forward(const Tensor& idx) override;
  LossOutput loss(const Tensor& idx, const Tensor& targets) override;
  std::unique_ptr<DecodeState> start_decoding(int64_t batch) override;
  Tensor decode(DecodeState& state, const Tensor& idx) override;
  int64_t block_size() const override { return trunk_.cfg.block_size; }
  int64_t vocab_size() const override { return trunk_.cfg.vocab_size; }
  double last_forward_flops_per_token() const override { return last_flops_; }
  std::string kind() const override { return "mod"; }
  std::string config_json() const override { return to_json(mcfg_); }

  void set_routing(MoDRouting r) { routing_ = r; }
  MoDRouting routing() const { return routing_; }
  bool is_routed(int64_t block) const { return block % mcfg_.mod_every == mcfg_.mod_every - 1; }
  int64_t capacity_k(int64_t T) const;
  const MoDStats& last_stats() const { return stats_; }
  const MoDConfig& mod_config() const { return mcfg_; }
  const Trunk& trunk() const { return trunk_; }

  std::vector<std::shared_ptr<Router>> routers;  // one per block; null for unrouted blocks

 private:
  // x (B, T, C) through every block; aux (when not null) collects the
  // auxiliary BCE terms of the top-k mode.
  Tensor run_blocks(const Tensor& x, Tensor* aux);
  Tensor routed_block(int64_t i, const Tensor& x, Tensor* aux);
  Tensor route_weight(const Tensor& r) const;
  bool causal_choice(const Tensor& r, const Tensor& pred, std::vector<uint8_t>& chosen) const;

  MoDConfig mcfg_;
  Trunk trunk_;  // n_layer blocks
  double last_flops_ = 0;
  MoDRouting routing_ = MoDRouting::topk;
  MoDStats stats_;
};

}  // namespace dg::models
