#include "models/mob_policy.h"

#include <algorithm>
#include <cmath>

#include "models/routing.h"

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
  std::vector<double> w_value;
  choose(q, q.to_vector<double>(), training, gen, block, w, w_value);
}

void BlockChooser::choose(const Tensor& q, const std::vector<double>& qv, bool training, Generator* gen,
                          std::vector<int64_t>& block, Tensor& w, std::vector<double>& w_value) const {
  const int64_t Na = q.size(0), n = q.size(1);
  std::vector<double> noise;  // drawn on the host: the generator lives there
  if (training && explore == Explore::gumbel && explore_param > 0) noise = rand({Na, n}, {DType::f64}, gen).to_vector<double>();
  std::vector<double> coin;
  if (training && explore == Explore::epsilon && explore_param > 0) coin = rand({Na, 2}, {DType::f64}, gen).to_vector<double>();
  block.assign(Na, 0);
  for (int64_t i = 0; i < Na; ++i) {
    const double* row = qv.data() + i * n;
    int64_t best = 0;
    double best_score = -INFINITY;
    for (int64_t k = 0; k < n; ++k) {
      // Without noise the argmax of q itself (log is monotone: the same choice, ties included).
      double s = std::max(row[k], 1e-30);
      if (!noise.empty())
        s = std::log(s) + explore_param * -std::log(-std::log(std::clamp(noise[i * n + k], 1e-12, 1 - 1e-12)));
      if (s > best_score) best_score = s, best = k;
    }
    if (!coin.empty() && coin[2 * i] < explore_param)
      best = std::min<int64_t>(n - 1, static_cast<int64_t>(coin[2 * i + 1] * static_cast<double>(n)));
    block[i] = best;
  }
  Tensor qk = squeeze(gather(q, 1, from_vector<int64_t>(block, {Na, 1}, q.device())), 1);
  // Straight-through: value exactly 1 (qk - qk is exactly 0), gradient of qk.
  w = weight == BlockWeight::q ? qk : (qk - qk.detach()) + 1.0;
  w_value.resize(Na);
  for (int64_t i = 0; i < Na; ++i) w_value[i] = weight == BlockWeight::q ? qv[i * n + block[i]] : 1.0;
}

namespace {

// What a halting policy reads of one step, in one copy to the host: the
// gate's probabilities p (Na, n + 1; column n is lambda), the renormalised
// block probabilities q (Na, n) and the surviving mass S (Na).
struct HostStep {
  int64_t n = 0;
  std::vector<double> p, q, survive;
  double lambda(int64_t i) const { return p[i * (n + 1) + n]; }
};

HostStep read_step(const Tensor& probs, const Tensor& q, const Tensor& survive) {
  NoGradGuard no_grad;
  const int64_t Na = probs.size(0), n = q.size(1);
  auto flat = [](const Tensor& t) { return reshape(to_dtype(t.detach(), DType::f64), {-1}); };
  const std::vector<double> all = cat({flat(probs), flat(q), flat(survive)}).to_vector<double>();  // the one read
  HostStep h;
  h.n = n;
  h.p.assign(all.begin(), all.begin() + Na * (n + 1));
  h.q.assign(all.begin() + Na * (n + 1), all.begin() + Na * (2 * n + 1));
  h.survive.assign(all.begin() + Na * (2 * n + 1), all.end());
  return h;
}

}  // namespace

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
    depth_ = Tensor();  // made at the first step, on the gate's device
    dtype_ = dtype;
    depth_sum_ = 0;
    restart();
  }

  StepDecision step(const StepContext& ctx, const std::vector<int64_t>& active) final {
    const int64_t Na = ctx.probs.size(0), n = ctx.probs.size(1) - 1;
    Tensor lambda = column(ctx.probs, n);
    if (!survive_.defined()) survive_ = ones({Na}, {ctx.probs.dtype(), ctx.probs.device()});
    if (!depth_.defined()) depth_ = zeros({N_}, {dtype_, ctx.probs.device()});
    Tensor q = slice(ctx.probs, 1, 0, n) / unsqueeze(1.0 - lambda, 1);  // (Na, n), renormalised over the blocks
    const HostStep host = read_step(ctx.probs, q, survive_);  // the step's one host read
    StepDecision out;
    out.halt = halts(ctx, host);
    out.halt_prob.resize(Na);
    for (int64_t i = 0; i < Na; ++i) out.halt_prob[i] = host.lambda(i);
    charge(ctx, lambda, active, host, out);
    go_on(ctx, lambda, q, host, out);
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
  virtual std::vector<uint8_t> halts(const StepContext& ctx, const HostStep& host) const = 0;
  // out.loss, the policy's own terms, and its share of depth_ (when
  // depth_weight_ > 0) and depth_sum_.
  virtual void charge(const StepContext& ctx, const Tensor& lambda, const std::vector<int64_t>& active,
                      const HostStep& host, StepDecision& out) = 0;
  // The policy's objective terms at the end (may be undefined).
  virtual Tensor own_terms() const = 0;

  // The continuing tokens' blocks and weights (among the n blocks, renormalised
  // q_k = p_k / (1 - p_return)), and their surviving mass, in their order.
  void go_on(const StepContext& ctx, const Tensor& lambda, const Tensor& q, const HostStep& host,
             StepDecision& out) {
    const int64_t Na = ctx.probs.size(0), n = host.n;
    std::vector<int64_t> cont;
    std::vector<double> qv;  // q of the continuing tokens
    for (int64_t i = 0; i < Na; ++i)
      if (!out.halt[i]) {
        cont.push_back(i);
        qv.insert(qv.end(), host.q.begin() + i * n, host.q.begin() + (i + 1) * n);
      }
    if (cont.empty()) {
      survive_ = Tensor();
      return;
    }
    Tensor rows = Rows(cont, ctx.probs.device()).ids;
    std::vector<int64_t> chosen;
    chooser_.choose(index_select(q, 0, rows), qv, ctx.training, ctx.gen, chosen, out.weight, out.weight_value);
    out.block.assign(Na, -1);
    for (size_t j = 0; j < cont.size(); ++j) out.block[cont[j]] = chosen[j];
    survive_ = index_select(survive_ * (1.0 - lambda), 0, rows);
  }

  BlockChooser chooser_;
  double depth_target_, depth_weight_;
  int64_t N_ = 0;
  DType dtype_ = DType::f32;
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
  std::vector<uint8_t> halts(const StepContext& ctx, const HostStep& host) const override {
    const std::vector<double>& s = host.survive;
    std::vector<uint8_t> halt(s.size(), 0);
    for (size_t i = 0; i < s.size(); ++i) {
      const double lam = host.lambda(static_cast<int64_t>(i));
      if (ctx.step >= ctx.max_depth) halt[i] = 1;
      else if (ctx.training) halt[i] = s[i] * (1.0 - lam) < opt_.eps;
      else halt[i] = lam > 0.5;
    }
    return halt;
  }

  // h = lambda * S, or all of S where the token stops here; loss sum h CE,
  // and h's share of the KL to the geometric prior.
  void charge(const StepContext& ctx, const Tensor& lambda, const std::vector<int64_t>& active,
              const HostStep& host, StepDecision& out) override {
    const int64_t Na = lambda.size(0), d = ctx.step;
    std::vector<double> stop(out.halt.begin(), out.halt.end());
    Tensor stop_t = from_doubles(stop, {Na}, {ctx.probs.dtype(), ctx.probs.device()});
    Tensor lam_eff = where(gt(stop_t, 0.5), ones({}, {ctx.probs.dtype(), ctx.probs.device()}), lambda);
    Tensor h = lam_eff * survive_;
    if (ctx.training) {
      out.loss = sum(h * ctx.ce);
      Tensor logh = log(clamp(h, 1e-12, 1.0));
      kl_ = add_term(kl_, sum(h * (logh - log_prior(opt_.prior, d, ctx.max_depth))));
      if (depth_weight_ > 0) depth_ = index_add(depth_, 0, Rows(active, ctx.probs.device()).ids, h * static_cast<double>(d));
    }
    double h_sum = 0;  // sum h, from the host values (no read)
    for (int64_t i = 0; i < Na; ++i) h_sum += (out.halt[i] ? 1.0 : host.lambda(i)) * host.survive[i];
    depth_sum_ += static_cast<double>(d) * h_sum;
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
  std::vector<uint8_t> halts(const StepContext& ctx, const HostStep& host) const override {
    const int64_t Na = ctx.probs.size(0), n = host.n;
    const std::vector<double>& p = host.p;
    std::vector<uint8_t> halt(Na, 0);
    for (int64_t i = 0; i < Na; ++i) {
      const double* row = p.data() + i * (n + 1);
      halt[i] = ctx.step >= ctx.max_depth || std::max_element(row, row + n + 1) - row == n;
    }
    return halt;
  }

  // The LM loss where the token outputs; the ponder cost charges the
  // probability of going on (the only gradient the return choice gets).
  void charge(const StepContext& ctx, const Tensor& lambda, const std::vector<int64_t>& active, const HostStep&,
              StepDecision& out) override {
    const int64_t Na = lambda.size(0);
    if (ctx.training) {
      std::vector<double> stop(out.halt.begin(), out.halt.end());
      Tensor stop_t = from_doubles(stop, {Na}, {ctx.probs.dtype(), ctx.probs.device()});
      out.loss = sum(stop_t * ctx.ce);
      cost_ = add_term(cost_, sum((1.0 - lambda) * (1.0 - stop_t)) * opt_.ponder_cost);
      if (depth_weight_ > 0) depth_ = index_add(depth_, 0, Rows(active, ctx.probs.device()).ids, survive_ * (1.0 - lambda));
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
