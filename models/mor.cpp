#include "models/mor.h"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "nn/loss.h"

namespace dg::models {

// ---------------------------------------------------------------- config
const config::Table<MoRConfig>& mor_fields() {
  using M = MoRConfig;
  static const config::Table<M> t = {
      config::integer<M>("cycle", "--cycle", &M::cycle, 1, 1024, "blocks of the shared cycle"),
      config::integer<M>("n_recursions", "--recursions", &M::n_recursions, 1, 64,
                         "N_r: most recursions of the cycle per token"),
      config::choice<M>("router", "--mor-router", &M::router,
                        config::EnumNames<MoRRouter>{{{MoRRouter::expert, "expert"}, {MoRRouter::token, "token"}}},
                        "expert-choice (top-k per recursion) or token-choice (depth up front)"),
      config::real<M>("capacity", "--mor-capacity", &M::capacity, {0, 1, true, false},
                      "expert: share of the previous recursion's tokens kept"),
      config::real<M>("aux_weight", "--mor-aux-weight", &M::aux_weight, {0, config::kInf},
                      "expert: weight of the router's BCE against the top-k selection"),
      config::real<M>("balance", "--mor-balance", &M::balance, {0, config::kInf},
                      "token: weight of the balancing loss over depths"),
  };
  return t;
}

const config::Table<MoRConfig>& mor_config_table() {
  static const config::Table<MoRConfig> t = config::nested(gpt_config_table(), &MoRConfig::gpt) + mor_fields();
  return t;
}

std::string to_json(const MoRConfig& c) {
  MoRConfig w = c;
  w.gpt.n_layer = c.cycle;  // the trunk's blocks, as load_model's size check reads them
  return config::to_json(mor_config_table(), w).dump();
}

void validate(const MoRConfig& c, const std::string& where) {
  config::check_ranges(mor_fields(), c, where);
  validate(c.gpt, c.cycle, where);
}

MoRConfig mor_config_from_json(const std::string& text, const std::string& where) {
  MoRConfig c = config::from_json_text(mor_config_table(), text, where);
  validate(c, where);
  return c;
}

// ---------------------------------------------------------------- routing pieces
ExpertChoice expert_choice(const Tensor& scores, int64_t k) {
  ExpertChoice e;
  e.idx = topk_positions(scores, k);  // (B, k), ascending
  e.weight = sigmoid(gather(scores, 1, e.idx));
  e.aux = nn::bce_with_logits(scores, membership(e.idx, scores.size(1), scores.dtype()));
  return e;
}

TokenChoice token_choice(const Tensor& logits) {
  DG_CHECK(logits.defined() && logits.dim() == 2, "token_choice: router logits must be (N, N_r), got {}",
           logits.defined() ? logits.shape() : Shape{});
  const int64_t N = logits.size(0), R = logits.size(1);
  Tensor p = softmax(logits, -1);
  const std::vector<double> pv = p.to_vector<double>();  // the one host read of the routing
  TokenChoice c;
  c.depth.resize(N);
  c.weight_value.resize(N);
  std::vector<int64_t> choice(N);
  std::vector<double> share(R, 0.0);
  for (int64_t i = 0; i < N; ++i) {
    const double* row = pv.data() + i * R;
    const int64_t d = std::max_element(row, row + R) - row;  // first maximum
    choice[i] = d, c.depth[i] = d + 1, c.weight_value[i] = row[d];
    share[d] += 1.0 / static_cast<double>(N);
  }
  Tensor ids = from_vector<int64_t>(choice, {N, 1}, logits.device());
  c.weight = reshape(gather(p, 1, ids), {N});
  // Switch-style: N_r · sum_d f_d · P_d (f_d a constant, P_d on the gradient path).
  c.balance = sum(mean(p, {0}) * from_doubles(share, {R}, {p.dtype(), p.device()})) * static_cast<double>(R);
  return c;
}

// ---------------------------------------------------------------- model
MoR::MoR(const MoRConfig& cfg) : mcfg_(cfg), trunk_(cfg.gpt, cfg.cycle) {
  for (auto& [name, m] : trunk_.modules()) register_module(name, m);
  validate(cfg);
  Generator gen(cfg.gpt.seed + 1);
  nn::LayerOptions opt{cfg.gpt.dtype, &gen};
  const int64_t C = cfg.gpt.n_embd;
  routers.resize(cfg.n_recursions);
  if (cfg.router == MoRRouter::expert) {
    for (int64_t r = 1; r < cfg.n_recursions; ++r)
      routers[r] = register_module(fmt::format("routers.{}", r), std::make_shared<nn::Linear>(C, 1, false, opt));
  } else {
    depth_router = register_module("depth_router", std::make_shared<nn::Linear>(C, cfg.n_recursions, true, opt));
  }
}

int64_t MoR::capacity_k(int64_t T, int64_t r) const {
  int64_t k = T;
  for (int64_t i = 1; i <= r; ++i)
    k = std::clamp<int64_t>(static_cast<int64_t>(std::ceil(mcfg_.capacity * static_cast<double>(k) - 1e-9)), 1, k);
  return k;
}

void MoR::count_cycle(const std::vector<int64_t>& counts) {
  const double C = static_cast<double>(trunk_.cfg.n_embd), cycle = static_cast<double>(mcfg_.cycle);
  for (int64_t c : counts) {
    // per token 24C^2; causal attention of L tokens: L(L+1)/2 pairs at 4C
    const double L = static_cast<double>(c);
    last_flops_ += cycle * (24.0 * C * C * L + 2.0 * C * L * (L + 1.0));
  }
}

// Equal counts (recursion 0, every top-k recursion, often token-choice's
// first): one static (B, k, C) batch through Block::forward, which measured
// ~1.4x faster than packed sequences of equal length (B = 16, T = 128,
// C = 128, forward + backward). Otherwise packed variable-length sequences.
Tensor MoR::apply_cycle(Tensor x, const Rows& rows, const std::vector<int64_t>& counts, const Tensor& w) {
  count_cycle(counts);
  const int64_t B = static_cast<int64_t>(counts.size()), C = trunk_.cfg.n_embd, k = counts.front();
  const bool equal = std::all_of(counts.begin(), counts.end(), [&](int64_t c) { return c == k; });
  Tensor cu_seqlens;
  if (!equal) {
    std::vector<int64_t> cu{0};
    for (int64_t c : counts) cu.push_back(cu.back() + c);
    cu_seqlens = from_vector<int64_t>(cu, {B + 1}, x.device());
  }
  for (const auto& block : trunk_.blocks) {
    Tensor xs = gather_rows(x, rows);  // (n, C), sequence after sequence
    Tensor delta = equal ? reshape(block->forward(reshape(xs, {B, k, C})), {B * k, C})
                         : block->forward_packed(xs, cu_seqlens);
    x = scatter_add_rows(x, rows, delta, w);
  }
  return x;
}

namespace {

Tensor plus(const Tensor& a, const Tensor& b) { return a.defined() ? a + b : b; }

double sigmoid_of(double s) { return 1.0 / (1.0 + std::exp(-s)); }

}  // namespace

// Top-k routing: k_r tokens in every sequence; every selection stays on the
// device, and the trace is read from the records when someone asks.
Tensor MoR::run_topk(Tensor x, int64_t B, int64_t T, Terms& terms) {
  const int64_t C = trunk_.cfg.n_embd, cycle = mcfg_.cycle;
  std::vector<int64_t> all(B * T);
  std::iota(all.begin(), all.end(), 0);
  Rows rows(all, x.device());
  x = apply_cycle(x, rows, std::vector<int64_t>(B, T), Tensor());  // recursion 0: every token, g = 1
  terms.applications += static_cast<double>(B * T * cycle);
  Tensor prev;  // (B, kp) positions active at r; undefined: all
  int64_t kp = T;
  for (int64_t r = 1; r < mcfg_.n_recursions; ++r) {
    const int64_t k = capacity_k(T, r);
    Tensor s = reshape(routers[r]->forward(gather_rows(x, rows)), {B, kp});
    last_flops_ += 2.0 * static_cast<double>(C * B * kp);
    ExpertChoice e = expert_choice(s, k);
    Tensor pos;
    {
      NoGradGuard no_grad;
      pos = prev.defined() ? gather(prev, 1, e.idx) : e.idx;  // (B, k) ascending positions
    }
    rows = Rows();
    rows.ids = flat_rows(pos, T);
    x = apply_cycle(x, rows, std::vector<int64_t>(B, k), reshape(e.weight, {B * k}));
    terms.aux = plus(terms.aux, e.aux);
    terms.router_accuracy.push_back(agreement(s, membership(e.idx, kp, s.dtype())));
    terms.applications += static_cast<double>(B * k * cycle);
    pending_.push_back({prev, s.detach(), e.idx});
    prev = pos, kp = k;
  }
  trace_pending_ = true;
  return x;
}

MoR::Step MoR::causal_step(int64_t r, const Tensor& x, const std::vector<int64_t>& active, const TokenChoice* tc) {
  const int64_t n = static_cast<int64_t>(active.size());
  Step st;
  st.on.assign(n, 1);
  st.w_value.assign(n, 1.0);
  st.lambda.assign(n, 0.0);
  const Device dev = x.device();
  if (tc) {  // token-choice: depth decided up front
    for (int64_t i = 0; i < n; ++i) {
      st.on[i] = tc->depth[active[i]] > r;
      st.w_value[i] = st.lambda[i] = tc->weight_value[active[i]];
    }
  } else if (r >= 1) {  // expert-choice: go on while sigmoid(s) > 0.5
    Tensor s = reshape(routers[r]->forward(gather_rows(x, Rows(active, dev))), {n});
    last_flops_ += 2.0 * static_cast<double>(trunk_.cfg.n_embd * n);
    const std::vector<double> sv = s.to_vector<double>();
    std::vector<int64_t> kept;
    for (int64_t i = 0; i < n; ++i) {
      st.on[i] = sv[i] > 0.0;
      st.w_value[i] = sigmoid_of(sv[i]);
      st.lambda[i] = 1.0 - st.w_value[i];
      if (st.on[i]) kept.push_back(i);
    }
    if (!kept.empty()) st.w = gather_rows(sigmoid(s), Rows(kept, dev));
  }
  for (int64_t i = 0; i < n; ++i)
    if (st.on[i]) st.rows.push_back(active[i]);
  if (tc && !st.rows.empty()) st.w = gather_rows(tc->weight, Rows(st.rows, dev));
  return st;
}

// Causal expert-choice or token-choice: decisions on the host, a variable
// number of tokens per sequence, packed.
Tensor MoR::run_causal(Tensor x, int64_t B, int64_t T, Terms& terms) {
  const int64_t N = B * T, cycle = mcfg_.cycle;
  TokenChoice tc;
  const bool token = mcfg_.router == MoRRouter::token;
  if (token) {
    tc = token_choice(depth_router->forward(x));
    last_flops_ += 2.0 * static_cast<double>(trunk_.cfg.n_embd * mcfg_.n_recursions * N);
    terms.balance = tc.balance;
  }
  std::vector<int64_t> active(N);
  std::iota(active.begin(), active.end(), 0);
  for (int64_t r = 0; r < mcfg_.n_recursions && !active.empty(); ++r) {
    Step st = causal_step(r, x, active, token ? &tc : nullptr);
    for (size_t i = 0; i < active.size(); ++i) {
      auto& path = trace_.tokens[active[i]];
      const float w = static_cast<float>(st.w_value[i]), lam = static_cast<float>(st.lambda[i]);
      if (!st.on[i]) path.push_back({static_cast<int32_t>(r), -1, 0.0f, lam});
      else
        for (int64_t j = 0; j < cycle; ++j) path.push_back({static_cast<int32_t>(r), static_cast<int32_t>(j), w, lam});
    }
    if (st.rows.empty()) break;
    std::vector<int64_t> counts(B, 0);
    for (int64_t row : st.rows) ++counts[row / T];
    x = apply_cycle(x, Rows(st.rows, x.device()), counts, st.w);
    terms.applications += static_cast<double>(st.rows.size()) * static_cast<double>(cycle);
    active = st.rows;
  }
  return x;
}

Tensor MoR::run(const Tensor& idx, Terms& terms) {
  check_tokens("MoR", idx, trunk_.cfg.block_size, trunk_.cfg.vocab_size);
  const int64_t B = idx.size(0), T = idx.size(1), C = trunk_.cfg.n_embd;
  last_flops_ = 0;
  trace_.reset(B, T, mcfg_.cycle, mcfg_.n_recursions * mcfg_.cycle);
  pending_.clear();
  trace_pending_ = false;
  Tensor x = reshape(trunk_.embed(idx), {B * T, C});
  x = mcfg_.router == MoRRouter::expert && routing_ == MoRRouting::topk ? run_topk(x, B, T, terms)
                                                                       : run_causal(x, B, T, terms);
  last_flops_ = last_flops_ / static_cast<double>(B * T) +
                2.0 * static_cast<double>(C) * static_cast<double>(trunk_.cfg.vocab_size);
  return reshape(x, {B, T, C});
}

// The top-k records on the host, once: per token its recursions in order.
const RoutingTrace* MoR::last_routing_trace() const {
  if (!trace_pending_) return &trace_;
  trace_pending_ = false;
  const int64_t B = trace_.B, T = trace_.T, cycle = mcfg_.cycle;
  for (auto& path : trace_.tokens)
    for (int64_t j = 0; j < cycle; ++j) path.push_back({0, static_cast<int32_t>(j), 1.0f, 0.0f});
  for (size_t i = 0; i < pending_.size(); ++i) {
    const auto r = static_cast<int32_t>(i + 1);
    const TopkRecord& rec = pending_[i];
    const int64_t kp = rec.scores.size(1), k = rec.sel.size(1);
    const std::vector<double> s = rec.scores.to_vector<double>();
    const std::vector<int64_t> sel = rec.sel.to_vector<int64_t>();
    const std::vector<int64_t> prev = rec.prev.defined() ? rec.prev.to_vector<int64_t>() : std::vector<int64_t>();
    for (int64_t b = 0; b < B; ++b) {
      std::vector<uint8_t> kept(kp, 0);
      for (int64_t j = 0; j < k; ++j) kept[sel[b * k + j]] = 1;
      for (int64_t p = 0; p < kp; ++p) {
        auto& path = trace_.tokens[b * T + (prev.empty() ? p : prev[b * kp + p])];
        const auto g = static_cast<float>(sigmoid_of(s[b * kp + p]));
        if (!kept[p]) path.push_back({r, -1, 0.0f, 1.0f - g});
        else
          for (int64_t j = 0; j < cycle; ++j) path.push_back({r, static_cast<int32_t>(j), g, 1.0f - g});
      }
    }
  }
  pending_.clear();
  return &trace_;
}

Tensor MoR::forward(const Tensor& idx) {
  Terms terms;
  return trunk_.head(run(idx, terms));
}

LossOutput MoR::loss(const Tensor& idx, const Tensor& targets) {
  Terms terms;
  Tensor lm = lm_loss(trunk_.head(run(idx, terms)), targets);
  LossOutput out{lm, lm, {}, {}};
  if (terms.aux.defined()) {
    Tensor a = terms.aux * mcfg_.aux_weight;
    out.objective = out.objective + a;
    out.device_stats["aux"] = a.detach();
    out.device_stats["router_acc"] = mean(stack(terms.router_accuracy));
  }
  if (terms.balance.defined()) {
    Tensor b = terms.balance * mcfg_.balance;
    out.objective = out.objective + b;
    out.device_stats["balance"] = b.detach();
  }
  out.stats["depth"] = terms.applications / static_cast<double>(idx.numel());
  return out;
}

std::unique_ptr<DecodeState> MoR::start_decoding(int64_t batch) {
  DG_CHECK(batch == 1, "MoR::decode: incremental decoding runs one sequence at a time (batch 1), got {}", batch);
  return trunk_.start_decoding(*this, batch, mcfg_.n_recursions * mcfg_.cycle);
}

// The new tokens route as in the causal forward; at recursion r the ones that
// run it attend through the caches of recursion r, and only they are stored.
Tensor MoR::decode(DecodeState& state, const Tensor& idx) {
  KVDecodeState& s = Trunk::decode_state(state, *this, "MoR::decode");
  check_tokens("MoR::decode", idx, trunk_.cfg.block_size - s.position, trunk_.cfg.vocab_size);
  DG_CHECK(idx.size(0) == 1, "MoR::decode: batch must be 1, got {}", idx.size(0));
  NoGradGuard no_grad;
  const int64_t t = idx.size(1), C = trunk_.cfg.n_embd, cycle = mcfg_.cycle;
  Tensor x = reshape(trunk_.embed(idx, s.position), {t, C});
  TokenChoice tc;
  const bool token = mcfg_.router == MoRRouter::token;
  if (token) tc = token_choice(depth_router->forward(x));
  std::vector<int64_t> active(t);
  std::iota(active.begin(), active.end(), 0);
  for (int64_t r = 0; r < mcfg_.n_recursions && !active.empty(); ++r) {
    Step st = causal_step(r, x, active, token ? &tc : nullptr);
    if (st.rows.empty()) break;
    const Rows rows(st.rows, x.device());
    for (int64_t j = 0; j < cycle; ++j) {
      Tensor xs = unsqueeze(gather_rows(x, rows), 0);  // (1, n, C)
      Tensor delta = squeeze(trunk_.blocks[j]->forward(xs, &s.caches[r * cycle + j]), 0);
      x = scatter_add_rows(x, rows, delta, st.w);
    }
    active = st.rows;
  }
  s.position += t;
  return trunk_.head(reshape(x, {1, t, C}));
}

}  // namespace dg::models
