// A first lesson in how dyngrad's autograd works.
//
//   autodiff_tour [graph.dot]
//
// 1. Runs a small expression, loss = sum(tanh(x * w + x)), recording a node
//    for every op on the tape.
// 2. Prints the tape in sequence order: op, output shape, what it saved.
// 3. Runs backward with a hook on every intermediate tensor, so you see each
//    gradient as the engine produces it (in reverse tape order).
// 4. Writes the graph as Graphviz DOT (render: dot -Tsvg graph.dot -o graph.svg).
// 5. Checks the gradients against finite differences (gradcheck, f64).
#include <fmt/core.h>

#include <cmath>
#include <fstream>

#include "autograd/engine.h"
#include "autograd/gradcheck.h"
#include "autograd/graphviz.h"
#include "autograd/ops.h"

using namespace dg;

int main(int argc, char** argv) try {
  const char* dot_path = argc > 1 ? argv[1] : "autodiff_tour.dot";

  fmt::print("== 1. forward: loss = sum(tanh(x * w + x))\n");
  Tensor x = from_vector<double>({0.5, -1.0, 2.0}).set_requires_grad();
  Tensor w = from_vector<double>({1.5, 0.25, -0.5}).set_requires_grad();
  Tensor xw = x * w;       // records 'mul', saves x and w
  Tensor h = xw + x;       // records 'add', saves nothing (d(a+b) = da + db)
  Tensor y = tanh(h);      // records 'tanh', saves its input and output
  Tensor loss = sum(y);    // records 'sum', saves only the input shape
  fmt::print("x    = {}\nw    = {}\nloss = {}\n\n", x, w, loss);

  fmt::print("== 2. the tape, in sequence order (what ran, in the order it ran)\n");
  for (const Node* n : tape({loss})) {
    std::string inputs;
    for (const Edge& e : n->next())
      inputs += e.node ? fmt::format(" #{}", e.node->seq()) : std::string(" (no grad)");
    std::string saved;
    for (const Shape& s : n->saved_shapes()) saved += fmt::format(" {}", s);
    if (n->is_accumulate_grad())
      fmt::print("  #{:<3} {:<15} a leaf: gradients arriving here are added into .grad\n", n->seq(), n->name());
    else
      fmt::print("  #{:<3} {:<15} out {:<6} inputs from:{:<10} saved:{}\n", n->seq(), n->name(),
                 fmt::format("{}", n->out_shape()), inputs, saved.empty() ? " nothing" : saved);
  }

  fmt::print("\n== 3. backward, one gradient at a time (hooks print them as they arrive)\n");
  auto watch = [](const Tensor& t, const char* name) {
    register_hook(t, [name](const Tensor& g) {
      fmt::print("  d loss / d {:<4} = {}\n", name, g);
      return Tensor();
    });
  };
  watch(y, "y");
  watch(h, "h");
  watch(xw, "xw");
  watch(x, "x");
  watch(w, "w");
  loss.backward();
  // By hand: dloss/dh = 1 - tanh(h)^2; dx = dh * (w + 1); dw = dh * x.
  std::vector<double> xv = x.to_vector<double>(), wv = w.to_vector<double>();
  std::vector<double> gx = x.grad().to_vector<double>(), gw = w.grad().to_vector<double>();
  double worst = 0;
  for (size_t i = 0; i < xv.size(); ++i) {
    double dh = 1 - std::pow(std::tanh(xv[i] * wv[i] + xv[i]), 2);
    worst = std::max({worst, std::abs(gx[i] - dh * (wv[i] + 1)), std::abs(gw[i] - dh * xv[i])});
  }
  fmt::print("x.grad = {}\nw.grad = {}\nmax |difference| from the hand-derived formulas: {:.2e}\n", x.grad(),
             w.grad(), worst);

  fmt::print("\n== 4. the graph as DOT\n");
  std::ofstream(dot_path) << to_dot({loss});
  fmt::print("wrote {} (render with: dot -Tsvg {} -o tour.svg)\n", dot_path, dot_path);

  fmt::print("\n== 5. gradcheck: analytic gradients vs central finite differences (f64)\n");
  auto fn = [](const Tensors& in) { return sum(tanh(in[0] * in[1] + in[0])); };
  Tensor x2 = x.detach().set_requires_grad(), w2 = w.detach().set_requires_grad();
  GradcheckResult r = gradcheck(fn, {x2, w2});
  fmt::print("gradcheck: {}\n", r.ok ? "passed" : r.message);
  GradcheckResult r2 = gradgradcheck(fn, {x2, w2});
  fmt::print("gradgradcheck (second derivatives): {}\n", r2.ok ? "passed" : r2.message);
  return r.ok && r2.ok && worst < 1e-12 ? 0 : 1;
} catch (const dg::Error& e) {
  fmt::print(stderr, "error: {}\n", e.what());
  return 1;
}
