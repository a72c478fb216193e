#include "models/moe.h"

#include <cmath>

#include "models/routing.h"
#include "nn/init.h"

namespace dg::models {

// ---------------------------------------------------------------- config
const config::Table<MoEConfig>& moe_fields() {
  using M = MoEConfig;
  static const config::Table<M> t = {
      config::integer<M>("n_experts", "--experts", &M::n_experts, 1, 1024, "experts per MoE layer E"),
      config::integer<M>("top_k", "--experts-per-token", &M::top_k, 1, 2,
                         "experts per token k (1: Switch, raw gate; 2: Mixtral, renormalised)"),
      config::integer<M>("moe_every", "--moe-every", &M::moe_every, 1, 1024,
                         "experts in every N-th block (1: every block)"),
      config::real<M>("capacity_factor", "--capacity-factor", &M::capacity_factor, {0, config::kInf},
                      "0: dropless; > 0: at most ceil(cf N k / E) assignments per expert in training"),
      config::real<M>("balance", "--moe-balance", &M::balance, {0, config::kInf},
                      "weight of the Switch load-balancing loss"),
      config::real<M>("z_loss", "--z-loss", &M::z_loss, {0, config::kInf}, "weight of the router z-loss (ST-MoE)"),
  };
  return t;
}

const config::Table<MoEConfig>& moe_config_table() {
  static const config::Table<MoEConfig> t = config::nested(gpt_config_table(), &MoEConfig::gpt) + moe_fields();
  return t;
}

std::string to_json(const MoEConfig& c) { return config::to_json(moe_config_table(), c).dump(); }

namespace {

int64_t moe_layer_count(const MoEConfig& c) { return c.gpt.n_layer / c.moe_every; }

}  // namespace

double expert_parameters(const MoEConfig& c) {
  const double C = static_cast<double>(c.gpt.n_embd), E = static_cast<double>(c.n_experts);
  return static_cast<double>(moe_layer_count(c)) * (C * E + (E - 1) * (8 * C * C + 5 * C));
}

void validate(const MoEConfig& c, const std::string& where) {
  DG_CHECK(c.top_k <= c.n_experts,
           "{}: top_k (--experts-per-token) {} is larger than n_experts (--experts) {} (allowed: 1..n_experts, at "
           "most 2)", where, c.top_k, c.n_experts);
  DG_CHECK(c.moe_every <= c.gpt.n_layer,
           "{}: moe_every (--moe-every) {} is larger than n_layer (--layers) {}, so no block would have experts "
           "(allowed: 1..n_layer)", where, c.moe_every, c.gpt.n_layer);
  validate(c.gpt, c.gpt.n_layer, where);
  const double p = trunk_parameters(c.gpt, c.gpt.n_layer) + expert_parameters(c);
  DG_CHECK(p <= kMaxParameters, "{}: n_experts {} in {} layers of n_embd {} need {:.3g} parameters, more than the "
           "{:.3g} allowed", where, c.n_experts, moe_layer_count(c), c.gpt.n_embd, p, kMaxParameters);
}

MoEConfig moe_config_from_json(const std::string& text, const std::string& where) {
  MoEConfig c = config::from_json_text(moe_config_table(), text, where);
  validate(c, where);
  return c;
}

// ---------------------------------------------------------------- routing pieces
int64_t MoERoutes::dropped() const {
  int64_t d = 0;
  for (uint8_t k : kept) d += k == 0;
  return d;
}

MoERoutes route_top_k(const std::vector<double>& p, int64_t N, int64_t E, int64_t k, double capacity_factor) {
  DG_CHECK(static_cast<int64_t>(p.size()) == N * E && (k == 1 || k == 2) && k <= E,
           "route_top_k: {} probabilities for N={} E={}, k={}", p.size(), N, E, k);
  MoERoutes r;
  r.N = N, r.E = E, r.k = k;
  if (capacity_factor > 0)
    r.capacity = static_cast<int64_t>(std::ceil(capacity_factor * static_cast<double>(N * k) / static_cast<double>(E)));
  r.choice.resize(N * k);
  r.gate.resize(N * k);
  r.kept.assign(N * k, 1);
  r.chosen.assign(E, 0);
  std::vector<int64_t> taken(E, 0);
  for (int64_t n = 0; n < N; ++n) {
    const double* row = p.data() + n * E;
    for (int64_t j = 0; j < k; ++j) {
      int64_t best = -1;  // strict > over ascending e: ties go to the lower index
      for (int64_t e = 0; e < E; ++e)
        if ((j == 0 || e != r.choice[n * k]) && (best < 0 || row[e] > row[best])) best = e;
      r.choice[n * k + j] = best;
      ++r.chosen[best];
      if (r.capacity >= 0 && taken[best] >= r.capacity) r.kept[n * k + j] = 0;  // first come, first served
      else ++taken[best];
    }
    const double norm = k == 1 ? 1.0 : row[r.choice[n * k]] + row[r.choice[n * k + 1]];
    for (int64_t j = 0; j < k; ++j) r.gate[n * k + j] = row[r.choice[n * k + j]] / norm;
  }
  return r;
}

Tensor gate_weights(const Tensor& p, const Tensor& choice) {
  DG_CHECK(p.dim() == 2 && choice.dim() == 2 && choice.size(0) == p.size(0),
           "gate_weights: p {} and choice {} must be (N, E) and (N, k)", p.shape(), choice.shape());
  Tensor g = gather(p, 1, choice);  // (N, k)
  return choice.size(1) == 1 ? g : g / sum(g, {1}, /*keepdim=*/true);
}

Tensor balance_loss(const Tensor& p, const std::vector<int64_t>& chosen) {
  const int64_t E = p.size(1);
  DG_CHECK(static_cast<int64_t>(chosen.size()) == E, "balance_loss: {} counts for {} experts", chosen.size(), E);
  double total = 0;
  for (int64_t c : chosen) total += static_cast<double>(c);
  std::vector<double> f(E);
  for (int64_t i = 0; i < E; ++i) f[i] = static_cast<double>(E) * static_cast<double>(chosen[i]) / total;
  Tensor fe = to(from_vector<double>(f, {E}, p.device()), p.dtype());  // E f_i, a constant
  return sum(mean(p, {0}) * fe);
}

Tensor router_z_loss(const Tensor& logits) { return mean(square(logsumexp(logits, {1}))); }

// ---------------------------------------------------------------- layer
namespace {

// The experts' MLP layers on expert-ordered rows: expert e on rows
// [offsets[e], offsets[e+1]), each layer one grouped_linear. Only the MLP
// half (nn::mlp_delta) runs here; the norms and attention are the block's.
class GroupedExperts : public nn::BlockLayers {
 public:
  GroupedExperts(const MoELayer& layer, const std::vector<int64_t>& offsets) : layer_(layer), offsets_(offsets) {}
  Tensor norm(nn::BlockNorm, const Tensor&) const override {
    throw Error("MoE: the experts have no norm of their own (ln2 is the block's)");
  }
  Tensor linear(nn::BlockLinear which, const Tensor& x) const override {
    DG_CHECK(which == nn::BlockLinear::mlp_fc || which == nn::BlockLinear::mlp_proj,
             "MoE: the experts are MLPs; attention is the block's");
    Tensors w, b;
    for (const auto& e : layer_.experts) {
      const nn::Linear& l = which == nn::BlockLinear::mlp_fc ? *e->fc : *e->proj;
      w.push_back(l.weight), b.push_back(l.bias);
    }
    return grouped_linear(x, offsets_, w, b);
  }
  Tensor dropout(const Tensor& x) const override { return layer_.drop->forward(x); }

 private:
  const MoELayer& layer_;
  const std::vector<int64_t>& offsets_;
};

}  // namespace

MoELayer::MoELayer(const nn::Block& block, int64_t E, int64_t k, nn::LayerOptions opt, double resid_std)
    : drop(block.drop), k_(k) {
  const int64_t C = block.mlp->fc->weight.size(1);
  router = register_module("router", std::make_shared<nn::Linear>(C, E, false, opt));
  experts.push_back(block.mlp);
  for (int64_t e = 1; e < E; ++e) {
    auto m = register_module(fmt::format("experts.{}", e), std::make_shared<nn::MLP>(C, 4 * C, opt));
    nn::init::normal_(m->proj->weight, 0.0, resid_std, opt.gen);
    experts.push_back(m);
  }
}

MoELayer::Output MoELayer::forward(const Tensor& x1, const Tensor& h, double capacity_factor) const {
  DG_CHECK(x1.dim() == 2 && h.shape() == x1.shape(), "MoELayer: x1 {} and h {} must both be (N, C)", x1.shape(),
           h.shape());
  const int64_t N = x1.size(0), E = n_experts(), k = k_;
  const Device dev = x1.device();
  Output o;
  Tensor logits = router->forward(h);  // (N, E)
  o.p = softmax(logits, -1);
  o.routes = route_top_k(o.p.detach().to_vector<double>(), N, E, k, capacity_factor);  // the one host read
  const MoERoutes& r = o.routes;
  o.gates = gate_weights(o.p, from_vector<int64_t>(r.choice, {N, k}, dev));
  o.balance = balance_loss(o.p, r.chosen);
  o.z = router_z_loss(logits);
  // Kept assignments in token order, then grouped by expert (stable).
  std::vector<int64_t> kept, expert;
  for (int64_t a = 0; a < N * k; ++a)
    if (r.kept[a]) kept.push_back(a), expert.push_back(r.choice[a]);
  const Groups g = group_by_choice(expert, E);
  std::vector<int64_t> token_rows(kept.size()), assignment_rows(kept.size());
  for (size_t i = 0; i < kept.size(); ++i) {
    assignment_rows[i] = kept[g.perm[i]];
    token_rows[i] = assignment_rows[i] / k;
  }
  const Rows tokens(token_rows, dev), assignments(assignment_rows, dev);
  Tensor y = nn::mlp_delta(GroupedExperts(*this, g.offsets), gather_rows(h, tokens));  // (M, C)
  Tensor w = gather_rows(reshape(o.gates, {N * k, 1}), assignments);                    // (M, 1)
  o.out = scatter_add_rows(x1, tokens, y, squeeze(w, 1));
  return o;
}

// ---------------------------------------------------------------- model
MoE::MoE(const MoEConfig& cfg) : mcfg_(cfg), trunk_(cfg.gpt, cfg.gpt.n_layer) {
  for (auto& [name, m] : trunk_.modules()) register_module(name, m);
  config::check_ranges(moe_fields(), cfg, "MoE config");
  validate(cfg);
  Generator gen(cfg.gpt.seed + 1);
  nn::LayerOptions opt{cfg.gpt.dtype, &gen};
  const double resid_std = 0.02 / std::sqrt(2.0 * static_cast<double>(cfg.gpt.n_layer));
  layers.resize(cfg.gpt.n_layer);
  for (int64_t i = 0; i < cfg.gpt.n_layer; ++i)
    if (has_experts(i))
      layers[i] = register_module(
          fmt::format("moe.{}", i),
          std::make_shared<MoELayer>(*trunk_.blocks[i], cfg.n_experts, cfg.top_k, opt, resid_std));
}

Tensor MoE::run_blocks(const Tensor& x0, std::vector<nn::KVCache>* caches, Aux* aux, bool record) {
  const int64_t B = x0.size(0), T = x0.size(1), C = x0.size(2), N = B * T;
  const double c = static_cast<double>(C), E = static_cast<double>(mcfg_.n_experts);
  const double cf = is_training() && !caches ? mcfg_.capacity_factor : 0.0;  // evaluation and decoding never drop
  double flops = 0;
  if (record) {
    routes_.clear();
    trace_.reset(B, T, mcfg_.n_experts, moe_layer_count(mcfg_) * mcfg_.top_k);
  }
  Tensor x = x0;
  for (size_t i = 0; i < trunk_.blocks.size(); ++i) {
    const nn::Block& block = *trunk_.blocks[i];
    nn::KVCache* cache = caches ? &(*caches)[i] : nullptr;
    if (!layers[i]) {
      x = x + block.forward(x, cache);
      flops += static_cast<double>(N) * block_flops_per_token(C, T);
      continue;
    }
    Tensor x1 = reshape(x + nn::attention_delta(block, x, block.attn->kernel(cache)), {N, C});
    MoELayer::Output o = layers[i]->forward(x1, block.ln2->forward(x1), cf);
    x = reshape(o.out, {B, T, C});
    const int64_t kept = N * mcfg_.top_k - o.routes.dropped();
    // the block without its MLP (16C^2), the router 2CE, an MLP per kept assignment
    flops += static_cast<double>(N) * (block_flops_per_token(C, T) - 16 * c * c + 2 * c * E) +
             static_cast<double>(kept) * 16 * c * c;
    if (aux) aux->balance.push_back(o.balance), aux->z.push_back(o.z);
    if (record) {
      const int32_t step = static_cast<int32_t>(routes_.size());
      for (int64_t a = 0; a < N * mcfg_.top_k; ++a)
        if (o.routes.kept[a])
          trace_.tokens[a / mcfg_.top_k].push_back(
              {step, static_cast<int32_t>(o.routes.choice[a]), static_cast<float>(o.routes.gate[a]), 0.0f});
      routes_.push_back(std::move(o.routes));
    }
  }
  if (record) last_flops_ = flops / static_cast<double>(N) + 2.0 * c * static_cast<double>(trunk_.cfg.vocab_size);
  return x;
}

Tensor MoE::forward(const Tensor& idx) {
  check_tokens("MoE", idx, trunk_.cfg.block_size, trunk_.cfg.vocab_size);
  return trunk_.head(run_blocks(trunk_.embed(idx), nullptr, nullptr, true));
}

LossOutput MoE::loss(const Tensor& idx, const Tensor& targets) {
  check_tokens("MoE", idx, trunk_.cfg.block_size, trunk_.cfg.vocab_size);
  Aux aux;
  Tensor lm = lm_loss(trunk_.head(run_blocks(trunk_.embed(idx), nullptr, &aux, true)), targets);
  Tensor balance = mean(stack(aux.balance)), z = mean(stack(aux.z));
  LossOutput out{lm + balance * mcfg_.balance + z * mcfg_.z_loss, lm, {}, {}};
  out.device_stats["balance"] = balance.detach();
  out.device_stats["z"] = z.detach();
  int64_t dropped = 0, assignments = 0;
  std::vector<int64_t> chosen(mcfg_.n_experts, 0);
  for (const MoERoutes& r : routes_) {
    dropped += r.dropped();
    assignments += r.N * r.k;
    for (int64_t e = 0; e < r.E; ++e) chosen[e] += r.chosen[e];
  }
  out.stats["dropped"] = static_cast<double>(dropped) / static_cast<double>(assignments);
  for (int64_t e = 0; e < mcfg_.n_experts; ++e)
    out.stats[fmt::format("expert{}_share", e)] = static_cast<double>(chosen[e]) / static_cast<double>(assignments);
  return out;
}

std::unique_ptr<DecodeState> MoE::start_decoding(int64_t batch) {
  return trunk_.start_decoding(*this, batch, trunk_.cfg.n_layer);
}

// Routing is per token, so the new tokens route exactly as in the full
// forward (never dropping); each block attends through its own KV cache.
Tensor MoE::decode(DecodeState& state, const Tensor& idx) {
  KVDecodeState& s = Trunk::decode_state(state, *this, "MoE::decode");
  check_tokens("MoE::decode", idx, trunk_.cfg.block_size - s.position, trunk_.cfg.vocab_size);
  NoGradGuard no_grad;
  Tensor x = run_blocks(trunk_.embed(idx, s.position), &s.caches, nullptr, false);
  s.position += idx.size(1);
  return trunk_.head(x);
}

}  // namespace dg::models
