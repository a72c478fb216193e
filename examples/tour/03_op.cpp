// Tour, chapter 3: one differentiable op (docs/tour/03_op.md).
//
// tanh and mul: what the forward records, what it saves, what the backward
// returns, and how a saved tensor's version catches an in-place change.
#include <cmath>
#include <string>

#include "autograd/engine.h"
#include "autograd/gradcheck.h"
#include "autograd/ops.h"
#include "examples/tour/check.h"

using namespace dg;

int main() try {
  tour::Checks check;
  Tensor x = from_vector<double>({-1.0, 0.25, 2.0}).set_requires_grad();

  // Forward: y = tanh(x) runs the kernel and records one node.
  Tensor y = tanh(x);
  Node& node = *y.grad_fn();  // the tensor holds its node (shared ownership)
  fmt::print("y = tanh(x): node '{}' #{}, created at {}:{}, saved shapes:", node.name(), node.seq(),
             node.site().file_name(), node.site().line());
  for (const Shape& s : node.saved_shapes()) fmt::print(" {}", s);
  fmt::print("\n");
  check.expect(std::string(node.name()) == "tanh" && node.saved_shapes().size() == 2,
               "tanh records a node named 'tanh' that saves two tensors (x and y)");
  check.expect(std::string(node.site().file_name()).ends_with("03_op.cpp"),
               "the node remembers the line of user code that created it");
  check.expect(node.next().size() == 1 && node.next()[0].node->is_accumulate_grad(),
               "its one edge leads to x's AccumulateGrad (x is a leaf)");

  // Backward: the node turns dL/dy into dL/dx = g * (1 - y^2).
  Tensor g = from_vector<double>({1.0, 2.0, 3.0});
  Tensors dx = node.apply(g);  // what the engine calls during backward
  std::vector<double> xv = x.to_vector<double>(), gv = g.to_vector<double>(), dxv = dx[0].to_vector<double>();
  double worst = 0;
  for (size_t i = 0; i < xv.size(); ++i)
    worst = std::max(worst, std::abs(dxv[i] - gv[i] * (1 - std::pow(std::tanh(xv[i]), 2))));
  fmt::print("node.apply(g) = {}; max diff from g * (1 - tanh(x)^2): {:.1e}\n", dx[0], worst);
  check.expect(worst < 1e-15, "tanh's backward is g * (1 - y^2)");

  // mul: d(a*b)/da = b and d(a*b)/db = a. Only what the other side needs is saved.
  Tensor w = from_vector<double>({0.5, -2.0, 1.5}).set_requires_grad();
  Tensor loss = sum(tanh(x * w));
  loss.backward();
  std::vector<double> wv = w.to_vector<double>(), gx = x.grad().to_vector<double>(), gw = w.grad().to_vector<double>();
  worst = 0;
  for (size_t i = 0; i < xv.size(); ++i) {
    const double dh = 1 - std::pow(std::tanh(xv[i] * wv[i]), 2);
    worst = std::max({worst, std::abs(gx[i] - dh * wv[i]), std::abs(gw[i] - dh * xv[i])});
  }
  check.expect(worst < 1e-15, "sum(tanh(x * w)).backward(): x.grad = (1 - y^2) w, w.grad = (1 - y^2) x");
  GradcheckResult r = gradcheck([](const Tensors& in) { return tanh(in[0] * in[1]); }, {x, w});
  check.expect(r.ok, "gradcheck (central differences, f64) agrees: " + (r.ok ? std::string("passed") : r.message));

  // Version counters: c is saved by mul (x's gradient needs it); changing c
  // in place before backward would make that gradient wrong, so backward refuses.
  Tensor c = from_vector<double>({1.0, 2.0, 3.0});  // a constant: requires no grad
  Tensor z = sum(x * c);
  fmt::print("c.version() before mul_: {}\n", c.version());
  mul_(c, 2.0);  // allowed: c requires no grad. Bumps c's version to 1.
  std::string message = tour::error_message([&] { z.backward(); });
  fmt::print("backward after mul_(c, 2): {}\n", message);
  check.expect(message.find("mul: a tensor of shape [3] saved for backward was modified in place") == 0,
               "backward names the op whose saved tensor changed");

  // In-place ops are not recorded, so they are refused on tensors that require grad.
  message = tour::error_message([&] { mul_(x, 2.0); });
  check.expect(message.find("mul_: in-place op on a tensor of shape [3] that requires grad") == 0,
               "an in-place op on x (requires grad) is an error while grad mode is on");
  return check.exit_code();
} catch (const dg::Error& e) {
  fmt::print(stderr, "error: {}\n", e.what());
  return 1;
}
