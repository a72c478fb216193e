#include "models/mod.h"

#include <cmath>

#include "models/routing.h"
#include "nn/loss.h"

namespace dg::models {

// ---------------------------------------------------------------- config
const config::Table<MoDConfig>& mod_fields() {
  using M = MoDConfig;
  static const config::Table<M> t = {
      config::real<M>("capacity", "--capacity", &M::capacity, {0, 1, true, false},
                      "share of tokens a routed block processes"),
      config::integer<M>("mod_every", "--mod-every", &M::mod_every, 1, 1024, "route every N-th block"),
      config::choice<M>("router_weight", "--router-weight", &M::router_weight,
                        config::EnumNames<RouterWeight>{{{RouterWeight::raw, "raw"},
                                                         {RouterWeight::sigmoid, "sigmoid"},
                                                         {RouterWeight::none, "none"}}},
                        "how the router's score scales a routed block's delta"),
      config::choice<M>("causal", "--causal", &M::causal,
                        config::EnumNames<CausalMethod>{{{CausalMethod::aux_loss, "aux_loss"},
                                                         {CausalMethod::predictor, "predictor"},
                                                         {CausalMethod::both, "both"}}},
                        "causal routing for sampling"),
      config::integer<M>("predictor_hidden", "--predictor-hidden", &M::predictor_hidden, 1, 65536,
                         "hidden width of the causal predictor"),
      config::real<M>("aux_weight", "--aux-weight", &M::aux_weight, {0, config::kInf},
                      "weight of the router's BCE against top-k membership"),
      config::real<M>("predictor_weight", "--predictor-weight", &M::predictor_weight, {0, config::kInf},
                      "weight of the predictor's BCE against top-k membership"),
  };
  return t;
}

const config::Table<MoDConfig>& mod_config_table() {
  static const config::Table<MoDConfig> t = config::nested(gpt_config_table(), &MoDConfig::gpt) + mod_fields();
  return t;
}

std::string to_json(const MoDConfig& c) { return config::to_json(mod_config_table(), c).dump(); }

MoDConfig mod_config_from_json(const std::string& text, const std::string& where) {
  MoDConfig c = config::from_json_text(mod_config_table(), text, where);
  validate(c.gpt, c.gpt.n_layer, where);
  return c;
}

// ---------------------------------------------------------------- router
Router::Router(int64_t C, int64_t hidden, nn::LayerOptions opt) {
  proj = register_module("proj", std::make_shared<nn::Linear>(C, 1, false, opt));
  pred_fc = register_module("pred_fc", std::make_shared<nn::Linear>(C, hidden, true, opt));
  pred_out = register_module("pred_out", std::make_shared<nn::Linear>(hidden, 1, true, opt));
}

Tensor Router::logits(const Tensor& x) const { return squeeze(proj->forward(x), -1); }

Tensor Router::predictor_logits(const Tensor& x) const {
  return squeeze(pred_out->forward(relu(pred_fc->forward(x.detach()))), -1);
}

// ---------------------------------------------------------------- model
MoD::MoD(const MoDConfig& cfg) : mcfg_(cfg), trunk_(cfg.gpt, cfg.gpt.n_layer) {
  for (auto& [name, m] : trunk_.modules()) register_module(name, m);
  config::check_ranges(mod_fields(), cfg, "MoD config");
  Generator gen(cfg.gpt.seed + 1);
  nn::LayerOptions opt{cfg.gpt.dtype, &gen};
  routers.resize(cfg.gpt.n_layer);
  for (int64_t i = 0; i < cfg.gpt.n_layer; ++i)
    if (is_routed(i))
      routers[i] = register_module(fmt::format("routers.{}", i),
                                   std::make_shared<Router>(cfg.gpt.n_embd, cfg.predictor_hidden, opt));
}

int64_t MoD::capacity_k(int64_t T) const {
  return std::clamp<int64_t>(static_cast<int64_t>(std::ceil(mcfg_.capacity * static_cast<double>(T) - 1e-9)), 1, T);
}

Tensor MoD::route_weight(const Tensor& r) const {
  switch (mcfg_.router_weight) {
    case RouterWeight::raw: return r;
    case RouterWeight::sigmoid: return sigmoid(r);
    case RouterWeight::none: return ones(r.shape(), {r.dtype(), r.device()});
  }
  return r;
}

// Causal decision per token: sigmoid(logit) > 0.5, from the router (aux_loss)
// or the predictor (predictor, both). Returns whether any token was chosen.
bool MoD::causal_choice(const Tensor& r, const Tensor& pred, std::vector<uint8_t>& chosen) const {
  const Tensor& decider = mcfg_.causal == CausalMethod::aux_loss ? r : pred;
  std::vector<double> v = decider.to_vector<double>();
  chosen.resize(v.size());
  bool any = false;
  for (size_t i = 0; i < v.size(); ++i) any |= (chosen[i] = v[i] > 0.0) != 0;
  return any;
}

namespace {

// The mean of 0-dim tensors (one device stat), or undefined for none.
Tensor mean_of(const std::vector<Tensor>& xs) {
  return xs.empty() ? Tensor() : mean(stack(xs));
}

}  // namespace

Tensor MoD::routed_block(int64_t i, const Tensor& x, Tensor* aux) {
  const int64_t B = x.size(0), T = x.size(1), C = x.size(2);
  const Router& router = *routers[i];
  Tensor r = router.logits(x);  // (B, T)
  const bool use_pred = mcfg_.causal != CausalMethod::aux_loss;
  Tensor pred = use_pred ? router.predictor_logits(x) : Tensor();
  if (routing_ == MoDRouting::topk) {
    const int64_t k = capacity_k(T);
    Tensor idx = topk_positions(r, k);
    Tensor delta = trunk_.blocks[i]->forward(gather_tokens(x, idx));  // (B, k, C)
    Tensor out = scatter_add_tokens(x, idx, delta, route_weight(gather(r, 1, idx)));
    Tensor target = membership(idx, T, x.dtype());
    stats_.fraction.push_back(static_cast<double>(k) / static_cast<double>(T));
    stats_.router_accuracy.push_back(agreement(r, target));
    stats_.predictor_accuracy.push_back(use_pred ? agreement(pred, target) : zeros({}, {DType::f64, x.device()}));
    if (aux) {
      Tensor term;
      if (mcfg_.causal != CausalMethod::predictor) term = nn::bce_with_logits(r, target) * mcfg_.aux_weight;
      if (use_pred) {
        Tensor p = nn::bce_with_logits(pred, target) * mcfg_.predictor_weight;
        term = term.defined() ? term + p : p;
      }
      if (term.defined()) *aux = aux->defined() ? *aux + term : term;
    }
    last_flops_ += static_cast<double>(B * k) * block_flops_per_token(C, k);
    return out;
  }
  // Causal routing: a variable number of tokens per sequence, packed to the
  // longest and padded after the real ones (see pack_choice).
  std::vector<uint8_t> chosen;
  const bool any = causal_choice(r, pred, chosen);
  PackedChoice p = pack_choice(chosen, B, T, x.device());
  int64_t n = 0;
  for (int64_t c : p.counts) n += c;
  stats_.fraction.push_back(static_cast<double>(n) / static_cast<double>(B * T));
  stats_.router_accuracy.push_back(zeros({}, {DType::f64, x.device()}));
  stats_.predictor_accuracy.push_back(zeros({}, {DType::f64, x.device()}));
  if (!any) return x;
  Tensor delta = trunk_.blocks[i]->forward(gather_tokens(x, p.idx));  // (B, kmax, C)
  Tensor delta_real = gather_rows(reshape(delta, {B * p.kmax, C}), p.real_rows);
  Tensor w = route_weight(gather_rows(reshape(r, {B * T}), p.target_rows));
  for (int64_t c : p.counts) last_flops_ += static_cast<double>(c) * block_flops_per_token(C, c);
  return reshape(scatter_add_rows(reshape(x, {B * T, C}), p.target_rows, delta_real, w), {B, T, C});
}

Tensor MoD::run_blocks(const Tensor& x0, Tensor* aux) {
  stats_ = {};
  const int64_t B = x0.size(0), T = x0.size(1), C = x0.size(2);
  last_flops_ = 0;
  Tensor x = x0;
  for (size_t i = 0; i < trunk_.blocks.size(); ++i) {
    if (routers[i]) {
      x = routed_block(static_cast<int64_t>(i), x, aux);
      // router 2C per token; predictor 2(C h + h) per token
      last_flops_ += static_cast<double>(B * T) *
                     (2.0 * C + 2.0 * static_cast<double>(mcfg_.predictor_hidden) * (C + 1));
    } else {
      x = x + trunk_.blocks[i]->forward(x);
      last_flops_ += static_cast<double>(B * T) * block_flops_per_token(C, T);
    }
  }
  last_flops_ = last_flops_ / static_cast<double>(B * T) + 2.0 * C * static_cast<double>(trunk_.cfg.vocab_size);
  return x;
}

Tensor MoD::forward(const Tensor& idx) {
  check_tokens("MoD", idx, trunk_.cfg.block_size, trunk_.cfg.vocab_size);
  return trunk_.head(run_blocks(trunk_.embed(idx), nullptr));
}

LossOutput MoD::loss(const Tensor& idx, const Tensor& targets) {
  check_tokens("MoD", idx, trunk_.cfg.block_size, trunk_.cfg.vocab_size);
  Tensor aux;
  Tensor lm = lm_loss(trunk_.head(run_blocks(trunk_.embed(idx), &aux)), targets);
  LossOutput out{aux.defined() ? lm + aux : lm, lm, {}, {}};
  // Statistics stay on the device: the trainer reads them with the loss.
  if (aux.defined()) out.device_stats["aux"] = aux.detach();
  if (!stats_.fraction.empty()) {
    out.device_stats["predictor_acc"] = mean_of(stats_.predictor_accuracy);
    out.device_stats["router_acc"] = mean_of(stats_.router_accuracy);
  }
  return out;
}

std::unique_ptr<DecodeState> MoD::start_decoding(int64_t batch) {
  DG_CHECK(batch == 1, "MoD::decode: incremental decoding runs one sequence at a time (batch 1), got {}", batch);
  return trunk_.start_decoding(*this, batch, trunk_.cfg.n_layer);
}

// Causal routing, one sequence: each routed block takes the new tokens its
// causal method chooses, attends to the ones it cached before, caches them.
Tensor MoD::decode(DecodeState& state, const Tensor& idx) {
  KVDecodeState& s = Trunk::decode_state(state, *this, "MoD::decode");
  check_tokens("MoD::decode", idx, trunk_.cfg.block_size - s.position, trunk_.cfg.vocab_size);
  DG_CHECK(idx.size(0) == 1, "MoD::decode: batch must be 1, got {}", idx.size(0));
  NoGradGuard no_grad;
  Tensor x = trunk_.embed(idx, s.position);
  const int64_t T = idx.size(1), C = trunk_.cfg.n_embd;
  for (size_t i = 0; i < trunk_.blocks.size(); ++i) {
    if (!routers[i]) {
      x = x + trunk_.blocks[i]->forward(x, &s.caches[i]);
      continue;
    }
    Tensor r = routers[i]->logits(x);
    Tensor pred = mcfg_.causal != CausalMethod::aux_loss ? routers[i]->predictor_logits(x) : Tensor();
    std::vector<uint8_t> chosen;
    if (!causal_choice(r, pred, chosen)) continue;
    std::vector<int64_t> rows;
    for (int64_t t = 0; t < T; ++t)
      if (chosen[t]) rows.push_back(t);
    Rows sel(rows, x.device());
    Tensor xf = reshape(x, {T, C});
    Tensor delta = trunk_.blocks[i]->forward(unsqueeze(gather_rows(xf, sel), 0), &s.caches[i]);
    x = reshape(scatter_add_rows(xf, sel, squeeze(delta, 0), route_weight(gather_rows(reshape(r, {T}), sel))),
                {1, T, C});
  }
  s.position += T;
  return trunk_.head(x);
}

}  // namespace dg::models
