#include "models/mob_policy.h"

#include <algorithm>
#include <cmath>

namespace dg::models {

namespace {

// Gathers column `col` of p (Na, n + 1) as (Na).
Tensor column(const Tensor& p, int64_t col) { return select(p, 1, col); }

// Truncated geometric prior over steps 0..D: lambda (1 - lambda)^d for d < D,
// and the remaining tail (1 - lambda)^D at D, so it sums to one.
double log_prior(double lambda, int64_t d, int64_t D) {
  return d < D ? std::log(lambda) + static_cast<double>(d) * std::log1p(-lambda)
               : static_cast<double>(D) * std::log1p(-lambda);
}

Tensor add_term(const Tensor& acc, const Tensor& t) { return acc.defined() ? acc + t : t; }

}  // namespace

void BlockChooser::choose(const Tensor& q, bool training, Generator* gen, std::vector<int64_t>& block,
                          Tensor& w) const {
  const int64_t Na = q.size(0), n = q.size(1);
  std::vector<double> qv = q.to_vector<double>();
  std::vector<double> noise;
  if (training && explore == Explore::gumbel && explore_param > 0) noise = rand({Na, n}, {DType::f64}, gen).to_vector<double>();
  std::vector<double> coin;
  if (training && explore == Explore::epsilon && explore_param > 0) coin = rand({Na, 2}, {DType::f64}, gen).to_vector<double>();
  block.assign(Na, 0);
  for (int64_t i = 0; i < Na; ++i) {
    const double* row = qv.data() + i * n;
    int64_t best = 0;
    double best_score = -INFINITY;
    for (int64_t k = 0; k < n; ++k) {
      double s = std::log(std::max(row[k], 1e-30));
      if (!noise.empty()) s += explore_param * -std::log(-std::log(std::clamp(noise[i * n + k], 1e-12, 1 - 1e-12)));
      if (s > best_score) best_score = s, best = k;
    }
    if (!coin.empty() && coin[2 * i] < explore_param)
      best = std::min<int64_t>(n - 1, static_cast<int64_t>(coin[2 * i + 1] * static_cast<double>(n)));
    block[i] = best;
  }
  Tensor qk = squeeze(gather(q, 1, from_vector<int64_t>(block, {Na, 1})), 1);
  // Straight-through: value exactly 1 (qk - qk is exactly 0), gradient of qk.
  w = weight == BlockWeight::q ? qk : (qk - qk.detach()) + 1.0;
}

// ---------------------------------------------------------------- ponder
class PonderPolicy : public RoutingPolicy {
 public:
  PonderPolicy(const PonderOptions& o, BlockChooser c) : opt_(o), chooser_(c) {
    DG_CHECK(o.prior > 0 && o.prior < 1, "MoB ponder policy: prior must be in (0, 1), got {}", o.prior);
    DG_CHECK(o.eps >= 0 && o.eps <= 1, "MoB ponder policy: eps must be in [0, 1], got {}", o.eps);
  }
  std::string name() const override { return "ponder"; }
  bool needs_step_loss(bool training) const override { return training; }

  void begin(int64_t N, DType dtype) override {
    N_ = N;
    dtype_ = dtype;
    survive_ = Tensor();
    kl_ = Tensor();
    depth_ = zeros({N}, {dtype});
    depth_sum_ = 0;
  }

  StepDecision step(const StepContext& ctx, const std::vector<int64_t>& active) override {
    const int64_t Na = ctx.probs.size(0), n = ctx.probs.size(1) - 1, d = ctx.step;
    StepDecision out;
    Tensor lambda = column(ctx.probs, n);
    if (!survive_.defined()) survive_ = ones({Na}, {ctx.probs.dtype()});
    std::vector<double> lam = lambda.to_vector<double>(), s = survive_.to_vector<double>();
    out.halt.assign(Na, 0);
    for (int64_t i = 0; i < Na; ++i) {
      if (d >= ctx.max_depth) out.halt[i] = 1;
      else if (ctx.training) out.halt[i] = s[i] * (1.0 - lam[i]) < opt_.eps;
      else out.halt[i] = lam[i] > 0.5;
    }
    // h = lambda * S, or all of S where the token stops here.
    std::vector<double> stop(Na);
    for (int64_t i = 0; i < Na; ++i) stop[i] = out.halt[i];
    Tensor stop_t = from_doubles(stop, {Na}, {ctx.probs.dtype()});
    Tensor lam_eff = where(gt(stop_t, 0.5), ones({}, {ctx.probs.dtype()}), lambda);
    Tensor h = lam_eff * survive_;
    out.halt_prob = lambda.detach();
    if (ctx.training) {
      Tensor ce_term = sum(h * ctx.ce);
      Tensor logh = log(clamp(h, 1e-12, 1.0));
      Tensor kl = sum(h * (logh - log_prior(opt_.prior, d, ctx.max_depth)));
      kl_ = add_term(kl_, kl);
      out.loss = ce_term;
      if (opt_.depth_weight > 0) depth_ = index_add(depth_, 0, from_vector<int64_t>(active), h * static_cast<double>(d));
    }
    depth_sum_ += static_cast<double>(d) * sum(h.detach()).item<double>();
    // Surviving mass of the continuing tokens, in their order.
    std::vector<int64_t> cont;
    for (int64_t i = 0; i < Na; ++i)
      if (!out.halt[i]) cont.push_back(i);
    if (!cont.empty()) {
      Tensor rows = from_vector<int64_t>(cont);
      Tensor q = index_select(slice(ctx.probs, 1, 0, n), 0, rows) /
                 unsqueeze(index_select(1.0 - lambda, 0, rows), 1);
      std::vector<int64_t> chosen;
      chooser_.choose(q, ctx.training, ctx.gen, chosen, out.weight);
      out.block.assign(Na, -1);
      for (size_t j = 0; j < cont.size(); ++j) out.block[cont[j]] = chosen[j];
      survive_ = index_select(survive_ * (1.0 - lambda), 0, rows);
    } else {
      survive_ = Tensor();
    }
    return out;
  }

  Tensor finish() override {
    Tensor t = kl_.defined() ? kl_ * opt_.kl : Tensor();
    if (opt_.depth_weight > 0 && depth_.defined())
      t = add_term(t, sum(square(depth_ - opt_.depth_target)) * opt_.depth_weight);
    return t;
  }
  double expected_depth() const override { return N_ ? depth_sum_ / static_cast<double>(N_) : 0.0; }

 private:
  PonderOptions opt_;
  BlockChooser chooser_;
  int64_t N_ = 0;
  DType dtype_ = DType::f32;
  Tensor survive_, kl_, depth_;
  double depth_sum_ = 0;
};

// ---------------------------------------------------------------- bias (literal)
class BiasPolicy : public RoutingPolicy {
 public:
  BiasPolicy(const BiasOptions& o, BlockChooser c) : opt_(o), chooser_(c) {}
  std::string name() const override { return "bias"; }
  bool needs_step_loss(bool training) const override { return training; }

  void begin(int64_t N, DType dtype) override {
    N_ = N;
    survive_ = Tensor();
    cost_ = Tensor();
    depth_ = zeros({N}, {dtype});
    depth_sum_ = 0;
  }

  StepDecision step(const StepContext& ctx, const std::vector<int64_t>& active) override {
    const int64_t Na = ctx.probs.size(0), n = ctx.probs.size(1) - 1, d = ctx.step;
    StepDecision out;
    Tensor lambda = column(ctx.probs, n);
    std::vector<double> p = ctx.probs.to_vector<double>();
    out.halt.assign(Na, 0);
    std::vector<double> stop(Na);
    for (int64_t i = 0; i < Na; ++i) {
      const double* row = p.data() + i * (n + 1);
      out.halt[i] = d >= ctx.max_depth || std::max_element(row, row + n + 1) - row == n;  // return wins
      stop[i] = out.halt[i];
    }
    out.halt_prob = lambda.detach();
    if (!survive_.defined()) survive_ = ones({Na}, {ctx.probs.dtype()});
    if (ctx.training) {
      // The LM loss where the token outputs; the ponder cost charges the
      // probability of going on (the only gradient the return choice gets).
      Tensor stop_t = from_doubles(stop, {Na}, {ctx.probs.dtype()});
      out.loss = sum(stop_t * ctx.ce);
      cost_ = add_term(cost_, sum((1.0 - lambda) * (1.0 - stop_t)) * opt_.ponder_cost);
      if (opt_.depth_weight > 0) depth_ = index_add(depth_, 0, from_vector<int64_t>(active), survive_ * (1.0 - lambda));
    }
    std::vector<int64_t> cont;
    for (int64_t i = 0; i < Na; ++i)
      if (!out.halt[i]) cont.push_back(i);
    depth_sum_ += static_cast<double>(cont.size());
    if (!cont.empty()) {
      Tensor rows = from_vector<int64_t>(cont);
      Tensor q = index_select(slice(ctx.probs, 1, 0, n), 0, rows) /
                 unsqueeze(index_select(1.0 - lambda, 0, rows), 1);
      std::vector<int64_t> chosen;
      chooser_.choose(q, ctx.training, ctx.gen, chosen, out.weight);
      out.block.assign(Na, -1);
      for (size_t j = 0; j < cont.size(); ++j) out.block[cont[j]] = chosen[j];
      survive_ = index_select(survive_ * (1.0 - lambda), 0, rows);
    } else {
      survive_ = Tensor();
    }
    return out;
  }

  Tensor finish() override {
    Tensor t = cost_;
    if (opt_.depth_weight > 0 && depth_.defined())
      t = add_term(t, sum(square(depth_ - opt_.depth_target)) * opt_.depth_weight);
    return t;
  }
  double expected_depth() const override { return N_ ? depth_sum_ / static_cast<double>(N_) : 0.0; }

 private:
  BiasOptions opt_;
  BlockChooser chooser_;
  int64_t N_ = 0;
  Tensor survive_, cost_, depth_;
  double depth_sum_ = 0;
};

std::unique_ptr<RoutingPolicy> make_ponder_policy(const PonderOptions& opt, BlockChooser chooser) {
  return std::make_unique<PonderPolicy>(opt, chooser);
}

std::unique_ptr<RoutingPolicy> make_bias_policy(const BiasOptions& opt, BlockChooser chooser) {
  return std::make_unique<BiasPolicy>(opt, chooser);
}

}  // namespace dg::models
