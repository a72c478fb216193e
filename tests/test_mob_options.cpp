// Mixture-of-Blocks options and checks beyond the executor (test_mob.cpp):
// a parameter gradcheck of the whole model in f64 (with the routes asserted
// unchanged under the perturbations), the load-balance and depth-budget terms
// on hand-checked cases, Gumbel and epsilon exploration rates, a custom
// policy through set_policy, the bias policy's reported depth, and when an
// untrained MoB equals the dense model (straight-through weight) or scales
// each block's output by q (the default weight).
#include <cmath>
#include <memory>
#include <set>

#include "models/gpt.h"
#include "models/mob.h"
#include "testing.h"

using namespace dg;
using namespace dg::testing;
using namespace dg::models;

namespace {

MoBConfig small(int64_t vocab = 256) {
  MoBConfig c;
  c.gpt = {.n_layer = 0, .n_head = 2, .n_embd = 8, .block_size = 8, .vocab_size = vocab, .dropout = 0.0,
           .tied_head = true, .seed = 5, .dtype = DType::f64};
  c.n_blocks = 3;
  c.max_depth = 4;
  c.gate_init = GateInit::uniform;
  c.eps = 0.2;
  return c;
}


// Every token's route: (step, block) pairs, -1 = return.
std::vector<std::vector<std::pair<int32_t, int32_t>>> routes(const RoutingTrace& tr) {
  std::vector<std::vector<std::pair<int32_t, int32_t>>> out;
  for (auto& path : tr.tokens) {
    out.emplace_back();
    for (const TraceStep& s : path) out.back().emplace_back(s.step, s.block);
  }
  return out;
}

// Gate weights zero: every token sees the same probabilities (softmax of the step bias).
// Gate weights N(0, scale^2) (f64), so the choices vary between tokens.
void randomise_gate_weight(MoB& m, double scale, uint64_t seed) {
  NoGradGuard ng;
  Generator g(seed);
  copy_(m.gate->weight, randn(m.gate->weight.shape(), {DType::f64}, &g) * scale);
}

void zero_gate(MoB& m) {
  NoGradGuard ng;
  fill_(m.gate->weight, 0.0);
}

// The dense GPT of the MoB's first `layers` blocks, embeddings and head.
std::unique_ptr<GPT> dense_twin(MoB& m, int64_t layers) {
  GPTConfig g = m.mob_config().gpt;
  g.n_layer = layers;
  auto dense = std::make_unique<GPT>(g);
  std::map<std::string, Tensor> sd;
  for (auto& [name, t] : m.state_dict())
    if (dense->state_dict().count(name)) sd.emplace(name, t);
  dense->load_state_dict(sd);
  return dense;
}

}  // namespace

TEST(MoBOptions, ParameterGradcheckOfTheWholeModelF64) {
  MoBConfig c = small(16);
  c.gpt.block_size = 4;
  c.n_blocks = 2;
  c.max_depth = 3;
  MoB m(c);
  randomise_gate_weight(m, 2.0, 21);
  m.train();
  Tensor idx = random_tokens(2, 4, 22, 16), tgt = random_tokens(2, 4, 23, 16);
  m.loss(idx, tgt);
  const auto reference = routes(m.last_trace());
  int64_t forwards = 0, flipped = 0;
  auto loss_fn = [&] {
    Tensor l = m.loss(idx, tgt).objective;
    ++forwards, flipped += routes(m.last_trace()) != reference;
    return l;
  };
  int64_t depth = 0;
  for (auto& r : reference) depth += static_cast<int64_t>(r.size());
  EXPECT_GT(depth, 2 * 8) << "routes should go beyond step 0";
  for (auto& [name, p] : m.named_parameters()) EXPECT_TRUE(param_gradcheck(loss_fn, p)) << name;
  EXPECT_GT(forwards, 1000);
  EXPECT_EQ(flipped, 0) << "a perturbation of 1e-6 changed a route: the finite differences crossed a step";
}

TEST(MoBOptions, BalanceTermHasItsDocumentedValue) {
  // Zero gate: q_k = 1/n for every token, so each step with continuing tokens
  // adds n * sum_k f_k * (1/n) = 1, times the weight.
  MoBConfig c = small();
  MoB plain(c);
  c.balance = 0.3;
  MoB balanced(c);
  balanced.load_state_dict(plain.state_dict());
  zero_gate(plain), zero_gate(balanced);
  Tensor idx = random_tokens(2, 8, 1), tgt = random_tokens(2, 8, 2);
  const double a = plain.loss(idx, tgt).objective.item<double>();
  const double b = balanced.loss(idx, tgt).objective.item<double>();
  std::set<int32_t> steps_going_on;
  for (auto& path : balanced.last_trace().tokens)
    for (const TraceStep& s : path)
      if (s.block >= 0) steps_going_on.insert(s.step);
  ASSERT_GE(steps_going_on.size(), 2u);
  EXPECT_NEAR(b - a, 0.3 * static_cast<double>(steps_going_on.size()), 1e-12);
  // With a random gate the term is positive too (f and P are non-negative, some f_k P_k > 0).
  MoB random_gate(c);
  MoBConfig c0 = c;
  c0.balance = 0;
  MoB random_plain(c0);
  random_plain.load_state_dict(random_gate.state_dict());
  EXPECT_GT(random_gate.loss(idx, tgt).objective.item<double>(), random_plain.loss(idx, tgt).objective.item<double>());
}

TEST(MoBOptions, DepthBudgetAddsWeightTimesSquaredDistance) {
  // Zero gate: every token has the same expected depth E, so the budget adds
  // exactly w (E - D*)^2. Ponder: E = sum_d d h_d (the reported
  // expected_depth). Bias: E = sum over the steps the token was at (the one
  // it returned at included) of prod_{j<=d} (1 - lambda_j), the probability
  // of going on, with lambda_j = e^{beta j} / (e^{beta j} + n) (zero step
  // bias, +beta*j on return), computed here by hand.
  for (Halting h : {Halting::ponder, Halting::bias}) {
    MoBConfig c = small();
    c.halting = h;
    c.return_bias = 0.3;
    MoB plain(c);
    c.depth_target = 0.5, c.depth_weight = 0.7;
    MoB budget(c);
    budget.load_state_dict(plain.state_dict());
    zero_gate(plain), zero_gate(budget);
    {
      NoGradGuard ng;
      fill_(plain.step_bias, 0.0), fill_(budget.step_bias, 0.0);
    }
    Tensor idx = random_tokens(2, 8, 3), tgt = random_tokens(2, 8, 4);
    const double a = plain.loss(idx, tgt).objective.item<double>();
    LossOutput out = budget.loss(idx, tgt);
    double E = out.stats.at("expected_depth");
    if (h == Halting::bias) {
      E = 0;
      double survive = 1;
      const double n = static_cast<double>(c.n_blocks);
      for (const TraceStep& s : budget.last_trace().tokens[0]) {
        const double lam = std::exp(0.3 * s.step) / (std::exp(0.3 * s.step) + n);
        survive *= 1 - lam, E += survive;
      }
    }
    EXPECT_GT(std::abs(E - 0.5), 0.1);
    EXPECT_NEAR(out.objective.item<double>() - a, 0.7 * (E - 0.5) * (E - 0.5), 1e-12) << static_cast<int>(h);
  }
}

TEST(MoBOptions, ExplorationRatesAndNoneInEvalOrAtZero) {
  const int64_t Na = 20000, n = 4;
  Generator g(31);
  Tensor q = softmax(randn({Na, n}, {DType::f64}, &g) * 1.5, -1);
  std::vector<int64_t> argmax, got;
  Tensor w;
  BlockChooser{}.choose(q, true, &g, argmax, w);
  auto differ = [&](const std::vector<int64_t>& b) {
    int64_t k = 0;
    for (int64_t i = 0; i < Na; ++i) k += b[i] != argmax[i];
    return static_cast<double>(k) / static_cast<double>(Na);
  };
  // Epsilon 0.3: a uniform block 30 % of the time, which differs from argmax with probability 3/4.
  BlockChooser eps{BlockWeight::q, Explore::epsilon, 0.3};
  eps.choose(q, true, &g, got, w);
  EXPECT_NEAR(differ(got), 0.3 * 0.75, 0.015);
  // Gumbel at temperature 1 samples from q: differs with probability 1 - max_k q_k.
  BlockChooser gum{BlockWeight::q, Explore::gumbel, 1.0};
  gum.choose(q, true, &g, got, w);
  double expect = 0;
  std::vector<double> qv = q.to_vector<double>();
  for (int64_t i = 0; i < Na; ++i) expect += (1.0 - *std::max_element(qv.begin() + i * n, qv.begin() + (i + 1) * n)) / Na;
  EXPECT_NEAR(differ(got), expect, 0.015);
  EXPECT_GT(expect, 0.2);
  // Evaluation, or parameter 0: argmax.
  for (BlockChooser ch : {eps, gum}) {
    ch.choose(q, false, &g, got, w);
    EXPECT_EQ(got, argmax);
    ch.explore_param = 0;
    ch.choose(q, true, &g, got, w);
    EXPECT_EQ(got, argmax);
  }
  // Through the model: eval forward is the same with and without exploration; training routes differ.
  MoBConfig c = small();
  MoB none(c);
  c.explore = Explore::epsilon, c.explore_param = 0.5;
  MoB explore(c);
  explore.load_state_dict(none.state_dict());
  Tensor idx = random_tokens(2, 8, 5), tgt = random_tokens(2, 8, 6);
  none.eval(), explore.eval();
  EXPECT_EQ(max_abs_diff(none.forward(idx), explore.forward(idx)), 0.0);
  none.train(), explore.train();
  none.loss(idx, tgt), explore.loss(idx, tgt);
  EXPECT_NE(routes(none.last_trace()), routes(explore.last_trace()));
}

namespace {

// A test policy: every token runs block 0 at step 0 with weight 1, then returns.
class BlockZeroOnce : public RoutingPolicy {
 public:
  std::string name() const override { return "block-zero-once"; }
  bool needs_step_loss(bool) const override { return false; }
  void begin(int64_t, DType dtype) override { dtype_ = dtype; }
  StepDecision step(const StepContext& ctx, const std::vector<int64_t>& active) override {
    const int64_t Na = static_cast<int64_t>(active.size());
    StepDecision d;
    d.halt.assign(Na, ctx.step >= 1 ? 1 : 0);
    d.block.assign(Na, 0);
    d.weight = ones({Na}, {dtype_});
    d.halt_prob.assign(Na, 0.0);
    return d;
  }
  Tensor finish() override { return Tensor(); }
  double expected_depth() const override { return 1.0; }

 private:
  DType dtype_ = DType::f64;
};

}  // namespace

TEST(MoBOptions, CustomPolicyThroughSetPolicy) {
  MoB m(small());
  m.set_policy(std::make_unique<BlockZeroOnce>());
  m.eval();
  Tensor idx = random_tokens(2, 8, 7);
  Tensor logits = m.forward(idx);
  for (auto& path : m.last_trace().tokens) {
    ASSERT_EQ(path.size(), 2u);
    EXPECT_EQ(path[0].block, 0);
    EXPECT_EQ(path[1].block, -1);
  }
  EXPECT_EQ(m.last_trace().summary().mean_depth, 1.0);
  EXPECT_EQ(m.loss(idx, random_tokens(2, 8, 8)).stats.at("depth"), 1.0);
  // One application of block 0 with weight 1: the dense one-layer model.
  EXPECT_LT(max_abs_diff(logits, dense_twin(m, 1)->forward(idx)), 1e-12);
}

TEST(MoBOptions, BiasPolicyReportsTheTraceDepth) {
  MoBConfig c = small();
  c.halting = Halting::bias;
  c.return_bias = 0.4;
  MoB m(c);
  randomise_gate_weight(m, 3.0, 41);
  m.train();
  LossOutput out = m.loss(random_tokens(4, 8, 9), random_tokens(4, 8, 10));
  const TraceSummary s = m.last_trace().summary();
  int64_t depths_seen = 0;
  for (int64_t count : s.depth_histogram) depths_seen += count > 0;
  EXPECT_GE(depths_seen, 2) << "tokens should halt at different depths";
  EXPECT_DOUBLE_EQ(out.stats.at("expected_depth"), s.mean_depth);
  EXPECT_DOUBLE_EQ(out.stats.at("depth"), s.mean_depth);
}

TEST(MoBOptions, UntrainedMoBIsDenseOnlyWithStraightThroughWeight) {
  // Dense-path init: block d at step d < n, then return. Straight-through
  // weight: w = 1 in value, so the dense model. Default weight q: each block's
  // output is scaled by q = e^3 / (e^3 + n - 1) (the bias +3 on block d, 0 on the others).
  MoBConfig c = small();
  c.gate_init = GateInit::dense_path;
  c.max_depth = 5;
  c.weight = BlockWeight::straight_through;
  MoB st(c);
  c.weight = BlockWeight::q;
  MoB qw(c);
  qw.load_state_dict(st.state_dict());
  st.eval(), qw.eval();
  auto dense = dense_twin(st, c.n_blocks);
  Tensor idx = random_tokens(2, 8, 11);
  EXPECT_LT(max_abs_diff(st.forward(idx), dense->forward(idx)), 1e-12);
  Tensor q_logits = qw.forward(idx);
  EXPECT_GT(max_abs_diff(q_logits, dense->forward(idx)), 1e-3);
  const double n = static_cast<double>(c.n_blocks), q = std::exp(3.0) / (std::exp(3.0) + n - 1);
  for (auto& path : qw.last_trace().tokens) {
    for (const TraceStep& s : path) {
      if (s.block >= 0) {
        EXPECT_NEAR(s.w, q, 1e-6);
      }
    }
  }
  // The dense computation with each block's output scaled by q.
  const Trunk& t = qw.trunk();
  Tensor R = t.embed(idx);
  for (int64_t k = 0; k < c.n_blocks; ++k) R = R + t.blocks[k]->forward(R) * q;
  EXPECT_LT(max_abs_diff(q_logits, t.head(R)), 1e-12);
}
