// Tour, chapter 5: higher-order gradients (docs/tour/05_higher_order.md).
//
// With create_graph, backward records its own ops, so its result can be
// differentiated again. tanh's table has f, f' and f''; a third derivative is
// refused with an error.
#include <cmath>
#include <string>

#include "autograd/engine.h"
#include "autograd/gradcheck.h"
#include "autograd/ops.h"
#include "examples/tour/check.h"

using namespace dg;

namespace {

// grad of f(x) = sum(tanh(x * w)) with respect to x, without a graph.
std::vector<double> grad_f(const std::vector<double>& x, const Tensor& w) {
  Tensor xt = from_vector<double>(x).set_requires_grad();
  return grad({sum(tanh(xt * w))}, {xt})[0].to_vector<double>();
}

}  // namespace

int main() try {
  tour::Checks check;
  Tensor x = from_vector<double>({-0.7, 0.2, 1.1}).set_requires_grad();
  const std::vector<double> xv = x.to_vector<double>();

  // First derivative, recorded: g = 1 - tanh(x)^2 is a tensor with a grad_fn.
  Tensors g = grad({sum(tanh(x))}, {x}, {}, /*retain_graph=*/false, /*create_graph=*/true);
  fmt::print("g = d sum(tanh x)/dx = {}, made by node '{}'\n", g[0], g[0].grad_fn()->name());
  check.expect(g[0].requires_grad() && std::string(g[0].grad_fn()->name()) == "tanh_grad",
               "with create_graph the gradient was recorded: its node is 'tanh_grad'");

  // Second derivative: d/dx (1 - tanh^2) = -2 tanh (1 - tanh^2).
  Tensors gg = grad({sum(g[0])}, {x}, {}, false, /*create_graph=*/true);
  std::vector<double> ggv = gg[0].to_vector<double>();
  double worst = 0;
  for (size_t i = 0; i < xv.size(); ++i) {
    const double t = std::tanh(xv[i]);
    worst = std::max(worst, std::abs(ggv[i] - (-2 * t * (1 - t * t))));
  }
  fmt::print("d2 = {} (max diff from -2 tanh (1 - tanh^2): {:.1e})\n", gg[0], worst);
  check.expect(worst < 1e-15, "the second derivative is -2 tanh(x) (1 - tanh(x)^2)");

  // Third: the derivative table (tensor/functors.h) stops at f''.
  std::string message = tour::error_message([&] { grad({sum(gg[0])}, {x}); });
  fmt::print("third derivative: {}\n", message);
  check.expect(message.find("third derivative of tanh is not supported") != std::string::npos,
               "a third derivative of tanh is refused with an error naming the op");

  // A Hessian-vector product of f(x) = sum(tanh(x * w)): H v = d/dx (grad f . v).
  Tensor w = from_vector<double>({1.5, -0.5, 0.8});
  Tensor v = from_vector<double>({1.0, 2.0, -1.0});
  Tensor gx = grad({sum(tanh(x * w))}, {x}, {}, false, /*create_graph=*/true)[0];
  std::vector<double> hv = grad({sum(gx * v)}, {x})[0].to_vector<double>();
  const double eps = 1e-6;
  std::vector<double> vv = v.to_vector<double>(), xp = xv, xm = xv;
  for (size_t i = 0; i < xv.size(); ++i) xp[i] += eps * vv[i], xm[i] -= eps * vv[i];
  std::vector<double> gp = grad_f(xp, w), gm = grad_f(xm, w);
  worst = 0;
  for (size_t i = 0; i < xv.size(); ++i) worst = std::max(worst, std::abs(hv[i] - (gp[i] - gm[i]) / (2 * eps)));
  fmt::print("H v by double backward vs differences of gradients: max diff {:.1e}\n", worst);
  check.expect(worst < 1e-8, "double backward gives the Hessian-vector product");

  GradcheckResult r = gradgradcheck([](const Tensors& in) { return tanh(in[0] * in[1]); },
                                    {x.detach().set_requires_grad(), w.detach().set_requires_grad()});
  check.expect(r.ok, "gradgradcheck of tanh(x * w): " + (r.ok ? std::string("passed") : r.message));
  return check.exit_code();
} catch (const dg::Error& e) {
  fmt::print(stderr, "error: {}\n", e.what());
  return 1;
}
