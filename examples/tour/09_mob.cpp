// Tour, chapter 9: Mixture-of-Blocks (docs/tour/09_mob.md), part 1.
//
// One MoB forward: every token takes its own path (blocks in any order,
// repeated, different depths), recorded in the routing trace. Then the ponder
// policy on its own: how the halting probabilities become a loss, checked
// against the PonderNet formula computed here by hand.
#include <cmath>
#include <set>

#include "autograd/engine.h"
#include "examples/tour/check.h"
#include "examples/tour/tiny_mob.h"

using namespace dg;
using namespace dg::models;

namespace {

// Probabilities (rows, n + 1) from host values; a leaf that requires grad.
Tensor probs(const std::vector<double>& v, int64_t rows) {
  return from_vector<double>(v, {rows, static_cast<int64_t>(v.size()) / rows}).set_requires_grad();
}

}  // namespace

int main() try {
  tour::Checks check;
  auto model = tour::tiny_mob();
  model->eval();  // halting at the first step with lambda > 0.5
  model->forward(tour::tiny_tokens(1));
  const RoutingTrace& trace = model->last_trace();
  std::set<int64_t> depths;
  bool halts_ok = true, repeats = false;
  for (int64_t tok = 0; tok < trace.B * trace.T; ++tok) {
    const auto& path = trace.tokens[tok];
    std::string text;
    std::set<int32_t> used;
    for (const TraceStep& s : path) {
      text += s.block < 0 ? fmt::format("return(λ={:.2f})", s.lambda) : fmt::format("B{}(w={:.2f}) ", s.block, s.w);
      repeats |= s.block >= 0 && !used.insert(s.block).second;
    }
    fmt::print("token {:2}: depth {}  {}\n", tok, trace.depth(tok), text);
    depths.insert(trace.depth(tok));
    // Eval halting: the last entry is the return, at the first step with lambda > 0.5 (or at D_max).
    const TraceStep& last = path.back();
    halts_ok &= last.block == -1 && last.step == trace.depth(tok) && (last.lambda > 0.5f || last.step == 4);
    for (size_t i = 0; i + 1 < path.size(); ++i) halts_ok &= path[i].lambda <= 0.5f;
  }
  check.expect(depths.size() >= 3, fmt::format("tokens halt at {} different depths in one forward", depths.size()));
  check.expect(repeats, "some token runs the same block twice");
  check.expect(halts_ok, "each token returns at its first step with lambda > 0.5, or at D_max = 4");

  // The ponder policy alone, two tokens, n = 2 blocks, D_max = 1, training.
  // Step 0: token A has lambda 0.4 and goes on (surviving mass 0.6 >= eps);
  // token B has lambda 0.95, its surviving mass 0.05 < eps = 0.1: it stops
  // and is charged all of its mass. Step 1 = D_max: A is forced to return.
  const double prior = 0.3, kappa = 0.01;
  auto policy = make_ponder_policy({.prior = prior, .kl = kappa, .eps = 0.1}, BlockChooser{});
  policy->begin(2, DType::f64);
  Tensor p0 = probs({0.5, 0.1, 0.4, /*B*/ 0.03, 0.02, 0.95}, 2);
  Tensor ce0 = from_vector<double>({1.0, 2.0});  // CE of the LM head at step 0, per token
  StepContext ctx0{.step = 0, .max_depth = 1, .training = true, .probs = p0, .ce = ce0};
  StepDecision d0 = policy->step(ctx0, {0, 1});
  Tensor p1 = probs({0.3, 0.3, 0.4}, 1);
  Tensor ce1 = from_vector<double>({3.0});  // A's CE after one more block
  StepContext ctx1{.step = 1, .max_depth = 1, .training = true, .probs = p1, .ce = ce1};
  StepDecision d1 = policy->step(ctx1, {0});
  Tensor objective = d0.loss + d1.loss + policy->finish();
  check.expect(d0.halt == std::vector<uint8_t>{0, 1} && d1.halt == std::vector<uint8_t>{1},
               "A goes on at step 0, B stops (its surviving mass is under eps), A returns at D_max");
  // By hand: h_A = (0.4, 0.6), h_B = (1); prior over steps 0..1 = (0.3, 0.7).
  auto kl = [](double h, double p) { return h * std::log(h / p); };
  const double want = 0.4 * 1.0 + 1.0 * 2.0 + 0.6 * 3.0 +
                      kappa * (kl(0.4, prior) + kl(0.6, 1 - prior) + kl(1.0, prior));
  fmt::print("ponder objective {:.15f}, by hand {:.15f}\n", objective.item<double>(), want);
  check.expect(std::abs(objective.item<double>() - want) < 1e-14,
               "objective = sum_d h_d CE_d + kappa KL(h || geometric prior)");
  // d/d lambda_A0 = CE_0 - CE_1 + kappa log(h_0 pi_1 / (h_1 pi_0)), pi the prior:
  // halting earlier pays when CE_0 < CE_1.
  const double dlam = grad({objective}, {p0})[0].to_vector<double>()[2];
  const double dlam_want = 1.0 - 3.0 + kappa * std::log(0.4 * (1 - prior) / (0.6 * prior));
  fmt::print("d objective / d lambda_A0 = {:.12f} (by hand {:.12f})\n", dlam, dlam_want);
  check.expect(std::abs(dlam - dlam_want) < 1e-12 && dlam < 0,
               "the return probability gets a gradient: here negative, so training raises lambda (halt earlier)");

  // In the model: the training objective reaches the gate's return column.
  model->train();
  Tensor tokens = tour::tiny_tokens(1), targets = tour::tiny_tokens(2);
  model->loss(tokens, targets).objective.backward();
  const int64_t n = model->mob_config().n_blocks;
  const double g_return = select(model->step_bias.grad(), 1, n).to_vector<double>()[0];
  fmt::print("d objective / d step_bias[0, return] = {:.3e}\n", g_return);
  check.expect(g_return != 0.0, "the ponder objective gives the gate's return logit a gradient");
  return check.exit_code();
} catch (const dg::Error& e) {
  fmt::print(stderr, "error: {}\n", e.what());
  return 1;
}
