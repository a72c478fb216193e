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

// ---------------------------------------------------------------- shared
// What both policies do alike. Each active token carries its surviving mass
// S (the probability that it has not halted yet; 1 at step 0). At every step
// the policy decides who halts and charges its objective (halts, charge);
// then the tokens that go on choose their blocks (BlockChooser) and carry
// S * (1 - lambda) on, in their order. An optional budget (E[steps] - D*)^2
// on the expected depth each token accumulates is added at the end.
class HaltingPolicy : public RoutingPolicy {
 public:
  HaltingPolicy(BlockChooser chooser, double depth_target, double depth_weight)
      : chooser_(chooser), depth_target_(depth_target), depth_weight_(depth_weight) {}
  bool needs_step_loss(bool training) const override { return training; }

  void begin(int64_t N, DType dtype) final {
    N_ = N;
    survive_ = Tensor();
    depth_ = zeros({N}, {dtype});
    depth_sum_ = 0;
    restart();
  }

  StepDecision step(const StepContext& ctx, const std::vector<int64_t>& active) final {
    const int64_t Na = ctx.probs.size(0), n = ctx.probs.size(1) - 1;
    Tensor lambda = column(ctx.probs, n);
    if (!survive_.defined()) survive_ = ones({Na}, {ctx.probs.dtype()});
    StepDecision out;
    out.halt = halts(ctx, lambda);
    out.halt_prob = lambda.detach();
    charge(ctx, lambda, active, out);
    go_on(ctx, lambda, out);
    return out;
  }

  Tensor finish() final {
    Tensor t = own_terms();
    if (depth_weight_ > 0 && depth_.defined())
      t = add_term(t, sum(square(depth_ - depth_target_)) * depth_weight_);
    return t;
  }
  double expected_depth() const final { return N_ ? depth_sum_ / static_cast<double>(N_) : 0.0; }

 protected:
  virtual void restart() = 0;  // the policy's own state, at a new forward
  // (Na) 1 = halt now; return is forced at d == D_max.
  virtual std::vector<uint8_t> halts(const StepContext& ctx, const Tensor& lambda) const = 0;
  // out.loss, the policy's own terms, and its share of depth_ (when
  // depth_weight_ > 0) and depth_sum_.
  virtual void charge(const StepContext& ctx, const Tensor& lambda, const std::vector<int64_t>& active,
                      StepDecision& out) = 0;
  // The policy's objective terms at the end (may be undefined).
  virtual Tensor own_terms() const = 0;

  // The continuing tokens' blocks and weights (among the n blocks, renormalised
  // q_k = p_k / (1 - p_return)), and their surviving mass, in their order.
  void go_on(const StepContext& ctx, const Tensor& lambda, StepDecision& out) {
    const int64_t Na = ctx.probs.size(0), n = ctx.probs.size(1) - 1;
    std::vector<int64_t> cont;
    for (int64_t i = 0; i < Na; ++i)
      if (!out.halt[i]) cont.push_back(i);
    if (cont.empty()) {
      survive_ = Tensor();
      return;
    }
    Tensor rows = from_vector<int64_t>(cont);
    Tensor q = index_select(slice(ctx.probs, 1, 0, n), 0, rows) / unsqueeze(index_select(1.0 - lambda, 0, rows), 1);
    std::vector<int64_t> chosen;
    chooser_.choose(q, ctx.training, ctx.gen, chosen, out.weight);
    out.block.assign(Na, -1);
    for (size_t j = 0; j < cont.size(); ++j) out.block[cont[j]] = chosen[j];
    survive_ = index_select(survive_ * (1.0 - lambda), 0, rows);
  }

  BlockChooser chooser_;
  double depth_target_, depth_weight_;
  int64_t N_ = 0;
  Tensor survive_;       // (Na) surviving mass of the active tokens
  Tensor depth_;         // (N) expected steps per token, for the budget
  double depth_sum_ = 0; // expected steps summed over tokens (stats)
};

// ---------------------------------------------------------------- ponder
class PonderPolicy : public HaltingPolicy {
 public:
  PonderPolicy(const PonderOptions& o, BlockChooser c) : HaltingPolicy(c, o.depth_target, o.depth_weight), opt_(o) {
    DG_CHECK(o.prior > 0 && o.prior < 1, "MoB ponder policy: prior must be in (0, 1), got {}", o.prior);
    DG_CHECK(o.eps >= 0 && o.eps <= 1, "MoB ponder policy: eps must be in [0, 1], got {}", o.eps);
  }
  std::string name() const override { return "ponder"; }

 private:
  void restart() override { kl_ = Tensor(); }

  // Training: once the surviving mass would fall under eps; evaluation: at
  // the first lambda > 0.5.
  std::vector<uint8_t> halts(const StepContext& ctx, const Tensor& lambda) const override {
    std::vector<double> lam = lambda.to_vector<double>(), s = survive_.to_vector<double>();
    std::vector<uint8_t> halt(lam.size(), 0);
    for (size_t i = 0; i < lam.size(); ++i) {
      if (ctx.step >= ctx.max_depth) halt[i] = 1;
      else if (ctx.training) halt[i] = s[i] * (1.0 - lam[i]) < opt_.eps;
      else halt[i] = lam[i] > 0.5;
    }
    return halt;
  }

  // h = lambda * S, or all of S where the token stops here; loss sum h CE,
  // and h's share of the KL to the geometric prior.
  void charge(const StepContext& ctx, const Tensor& lambda, const std::vector<int64_t>& active,
              StepDecision& out) override {
    const int64_t Na = lambda.size(0), d = ctx.step;
    std::vector<double> stop(out.halt.begin(), out.halt.end());
    Tensor stop_t = from_doubles(stop, {Na}, {ctx.probs.dtype()});
    Tensor lam_eff = where(gt(stop_t, 0.5), ones({}, {ctx.probs.dtype()}), lambda);
    Tensor h = lam_eff * survive_;
    if (ctx.training) {
      out.loss = sum(h * ctx.ce);
      Tensor logh = log(clamp(h, 1e-12, 1.0));
      kl_ = add_term(kl_, sum(h * (logh - log_prior(opt_.prior, d, ctx.max_depth))));
      if (depth_weight_ > 0) depth_ = index_add(depth_, 0, from_vector<int64_t>(active), h * static_cast<double>(d));
    }
    depth_sum_ += static_cast<double>(d) * sum(h.detach()).item<double>();
  }

  Tensor own_terms() const override { return kl_.defined() ? kl_ * opt_.kl : Tensor(); }

  PonderOptions opt_;
  Tensor kl_;
};

// ---------------------------------------------------------------- bias (literal)
class BiasPolicy : public HaltingPolicy {
 public:
  BiasPolicy(const BiasOptions& o, BlockChooser c) : HaltingPolicy(c, o.depth_target, o.depth_weight), opt_(o) {}
  std::string name() const override { return "bias"; }

 private:
  void restart() override { cost_ = Tensor(); }

  // Argmax over all n + 1 choices: halt when return wins.
  std::vector<uint8_t> halts(const StepContext& ctx, const Tensor& lambda) const override {
    const int64_t Na = ctx.probs.size(0), n = ctx.probs.size(1) - 1;
    std::vector<double> p = ctx.probs.to_vector<double>();
    std::vector<uint8_t> halt(Na, 0);
    for (int64_t i = 0; i < Na; ++i) {
      const double* row = p.data() + i * (n + 1);
      halt[i] = ctx.step >= ctx.max_depth || std::max_element(row, row + n + 1) - row == n;
    }
    return halt;
  }

  // The LM loss where the token outputs; the ponder cost charges the
  // probability of going on (the only gradient the return choice gets).
  void charge(const StepContext& ctx, const Tensor& lambda, const std::vector<int64_t>& active,
              StepDecision& out) override {
    const int64_t Na = lambda.size(0);
    if (ctx.training) {
      std::vector<double> stop(out.halt.begin(), out.halt.end());
      Tensor stop_t = from_doubles(stop, {Na}, {ctx.probs.dtype()});
      out.loss = sum(stop_t * ctx.ce);
      cost_ = add_term(cost_, sum((1.0 - lambda) * (1.0 - stop_t)) * opt_.ponder_cost);
      if (depth_weight_ > 0) depth_ = index_add(depth_, 0, from_vector<int64_t>(active), survive_ * (1.0 - lambda));
    }
    depth_sum_ += static_cast<double>(std::count(out.halt.begin(), out.halt.end(), 0));  // blocks applied
  }

  Tensor own_terms() const override { return cost_; }

  BiasOptions opt_;
  Tensor cost_;
};

std::unique_ptr<RoutingPolicy> make_ponder_policy(const PonderOptions& opt, BlockChooser chooser) {
  return std::make_unique<PonderPolicy>(opt, chooser);
}

std::unique_ptr<RoutingPolicy> make_bias_policy(const BiasOptions& opt, BlockChooser chooser) {
  return std::make_unique<BiasPolicy>(opt, chooser);
}

}  // namespace dg::models
