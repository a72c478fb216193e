// Tour, chapter 4: the Engine's backward walk (docs/tour/04_engine.md).
//
// A node used twice runs its backward once, after both consumers (dependency
// counting); nodes run in reverse sequence order; a 10^5-op chain needs no
// recursion; saved tensors are freed after backward unless retain_graph.
#include <cmath>
#include <string>
#include <vector>

#include "autograd/engine.h"
#include "autograd/ops.h"
#include "examples/tour/check.h"

using namespace dg;

int main() try {
  tour::Checks check;
  // loss = sum(tanh(a) + 2a) with a = x * x: `a` has two consumers.
  Tensor x = from_vector<double>({0.5, -1.5}).set_requires_grad();
  Tensor a = x * x;
  Tensor t = tanh(a);
  Tensor s = t + a * 2.0;
  Tensor loss = sum(s);

  // Hooks on the intermediates record the order the engine runs their nodes.
  std::vector<std::pair<std::string, uint64_t>> order;
  std::vector<Tensor> seen_by_a;
  auto watch = [&](const Tensor& v, const char* name) {
    const uint64_t seq = v.grad_fn()->seq();
    register_hook(v, [&, name, seq](const Tensor& g) {
      order.emplace_back(name, seq);
      if (std::string(name) == "a") seen_by_a.push_back(g);
      return Tensor();
    });
  };
  watch(a, "a");
  watch(t, "t");
  watch(s, "s");
  loss.backward(Tensor(), /*retain_graph=*/true);
  fmt::print("backward ran:");
  for (auto& [name, seq] : order) fmt::print(" {} (#{})", name, seq);
  fmt::print("\n");
  bool decreasing = order.size() == 3;
  for (size_t i = 1; i < order.size(); ++i) decreasing &= order[i].second < order[i - 1].second;
  check.expect(decreasing, "nodes ran in reverse sequence order (the tape read backwards)");
  check.expect(seen_by_a.size() == 1, "a's node ran once, although two nodes feed it a gradient");
  // By hand: d loss/d a = (1 - tanh(a)^2) + 2, summed from the two consumers.
  std::vector<double> xv = x.to_vector<double>(), gx = x.grad().to_vector<double>();
  std::vector<double> ga = seen_by_a.empty() ? std::vector<double>{} : seen_by_a[0].to_vector<double>();
  bool summed = ga.size() == 2;
  for (size_t i = 0; i < ga.size(); ++i) {
    const double want = 1 - std::pow(std::tanh(xv[i] * xv[i]), 2) + 2.0;
    summed &= std::abs(ga[i] - want) < 1e-15 && std::abs(gx[i] - want * 2 * xv[i]) < 1e-15;
  }
  check.expect(summed, "it saw the sum of both contributions, (1 - tanh(a)^2) + 2, and x.grad = that sum * 2x");

  // retain_graph kept the saved tensors: a second backward adds the same again.
  loss.backward();
  check.expect(std::abs(x.grad().to_vector<double>()[0] - 2 * gx[0]) < 1e-15,
               "a second backward (the graph was retained) accumulates: x.grad doubled");
  // That one did not retain: the saved tensors are gone.
  std::string message = tour::error_message([&] { loss.backward(); });
  fmt::print("third backward: {}\n", message);
  check.expect(message.find("a second time, but its saved tensors were freed") != std::string::npos,
               "a backward through a released graph is an error that says so");

  // A chain of 10^5 ops: no recursion in backward, nor when the graph is freed.
  const int kOps = 100000;
  Tensor u = from_vector<double>({1.0}).set_requires_grad();
  Tensor v = u;
  for (int i = 0; i < kOps; ++i) v = v * 1.00001;
  v.backward();
  const double want = std::pow(1.00001, kOps);
  fmt::print("chain of {} muls: du = {:.12f} (1.00001^{} = {:.12f})\n", kOps, u.grad().item<double>(), kOps, want);
  check.expect(std::abs(u.grad().item<double>() - want) < 1e-9 * want, "a 10^5-op chain backwards without recursion");
  v = Tensor();  // frees the 10^5 nodes, iteratively (release_node); recursion would overflow the stack here
  fmt::print("freed the chain's nodes\n");
  return check.exit_code();
} catch (const dg::Error& e) {
  fmt::print(stderr, "error: {}\n", e.what());
  return 1;
}
