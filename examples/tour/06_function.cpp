// Tour, chapter 6: a custom Function (docs/tour/06_function.md).
//
// Swish with a learnable slope, y = x * sigmoid(beta * x), written as a
// dg::Function with its own backward; gradcheck compares that backward with
// finite differences, and catches a wrong one.
#include <string>

#include "autograd/function.h"
#include "autograd/gradcheck.h"
#include "autograd/graphviz.h"
#include "examples/tour/check.h"

using namespace dg;

// x (N), beta (1) -> y (N).  With s = sigmoid(beta x) and s' = s (1 - s):
//   dy/dx    = s + beta x s'
//   dy/dbeta = x^2 s'        (per element; the engine sums it back to beta's shape (1))
struct BetaSwish : Function<BetaSwish> {
  static constexpr const char* name = "BetaSwish";
  static Tensor forward(FunctionCtx& ctx, const Tensor& x, const Tensor& beta) {
    ctx.save_for_backward({x, beta});  // inputs only: backward recomputes s with recorded ops
    return x * sigmoid(x * beta);      // runs under NoGradGuard: records nothing
  }
  static Tensors backward(FunctionCtx& ctx, const Tensor& g) {
    Tensors saved = ctx.saved();  // a dg::Error if x or beta changed in place since forward
    const Tensor &x = saved[0], &beta = saved[1];
    Tensor s = sigmoid(x * beta);
    Tensor ds = s * (1.0 - s);
    return {ctx.needs_input_grad(0) ? g * (s + x * beta * ds) : Tensor(),
            ctx.needs_input_grad(1) ? g * x * x * ds : Tensor()};
  }
};

// The same forward with a mistake in backward: the beta x s' term is missing.
struct BrokenSwish : Function<BrokenSwish> {
  static Tensor forward(FunctionCtx& ctx, const Tensor& x, const Tensor& beta) {
    ctx.save_for_backward({x, beta});
    return x * sigmoid(x * beta);
  }
  static Tensors backward(FunctionCtx& ctx, const Tensor& g) {
    Tensors saved = ctx.saved();
    Tensor s = sigmoid(saved[0] * saved[1]);
    return {g * s, g * saved[0] * saved[0] * s * (1.0 - s)};
  }
};

int main() try {
  tour::Checks check;
  Tensor x = from_vector<double>({-2.0, -0.5, 0.3, 1.7}).set_requires_grad();
  Tensor beta = from_vector<double>({1.3}).set_requires_grad();

  Tensor y = BetaSwish::apply(x, beta);
  std::vector<std::string> names;
  for (const Node* n : tape({y})) names.push_back(n->name());
  fmt::print("tape of y:");
  for (const std::string& n : names) fmt::print(" {}", n);
  fmt::print("\n");
  check.expect(names == std::vector<std::string>{"AccumulateGrad", "AccumulateGrad", "BetaSwish"},
               "apply records one node, 'BetaSwish', on the two leaves; forward's own ops are not on the tape");

  sum(y).backward();
  check.expect(beta.grad().shape() == Shape{1},
               "beta.grad has beta's shape (1): the engine summed the per-element gradient");

  auto f = [](const Tensors& in) { return BetaSwish::apply(in[0], in[1]); };
  GradcheckResult r = gradcheck(f, {x, beta});
  check.expect(r.ok,
               "gradcheck: the hand-written backward matches finite differences" + (r.ok ? "" : ": " + r.message));
  GradcheckResult r2 = gradgradcheck(f, {x, beta});
  check.expect(r2.ok, "gradgradcheck: backward is written with differentiable ops, so create_graph works" +
                          (r2.ok ? "" : ": " + r2.message));

  GradcheckResult bad = gradcheck([](const Tensors& in) { return BrokenSwish::apply(in[0], in[1]); }, {x, beta});
  fmt::print("gradcheck of BrokenSwish: {}\n", bad.message);
  check.expect(!bad.ok, "gradcheck catches the backward with the missing term");
  return check.exit_code();
} catch (const dg::Error& e) {
  fmt::print(stderr, "error: {}\n", e.what());
  return 1;
}
