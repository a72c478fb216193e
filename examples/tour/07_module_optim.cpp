// Tour, chapter 7: a Module and an optimizer step (docs/tour/07_module_optim.md).
//
// A two-layer module, one backward, two AdamW steps checked against the
// formula computed here by hand in plain doubles.
#include <cmath>
#include <memory>

#include "autograd/ops.h"
#include "examples/tour/check.h"
#include "nn/layers.h"
#include "nn/optim.h"

using namespace dg;

// x (N, 3) -> fc1 (3 -> 4) -> tanh -> fc2 (4 -> 1) -> (N, 1)
struct TinyNet : nn::Module {
  std::shared_ptr<nn::Linear> fc1, fc2;
  TinyNet() {
    nn::LayerOptions f64{DType::f64};
    fc1 = register_module("fc1", std::make_shared<nn::Linear>(3, 4, true, f64));
    fc2 = register_module("fc2", std::make_shared<nn::Linear>(4, 1, true, f64));
  }
  Tensor forward(const Tensor& x) const { return fc2->forward(tanh(fc1->forward(x))); }
};

namespace {

struct AdamWState {
  std::vector<double> m, v;
};

// One AdamW update of p (host copy) by the formula of torch.optim.AdamW.
std::vector<double> adamw_by_hand(std::vector<double> p, const std::vector<double>& g, AdamWState& s, int64_t t,
                                  double lr, double b1, double b2, double eps, double wd) {
  if (s.m.empty()) s.m.assign(p.size(), 0.0), s.v.assign(p.size(), 0.0);
  const double bc1 = 1 - std::pow(b1, static_cast<double>(t)), bc2 = 1 - std::pow(b2, static_cast<double>(t));
  for (size_t i = 0; i < p.size(); ++i) {
    p[i] *= 1 - lr * wd;                            // decoupled weight decay
    s.m[i] = b1 * s.m[i] + (1 - b1) * g[i];         // first moment
    s.v[i] = b2 * s.v[i] + (1 - b2) * g[i] * g[i];  // second moment
    p[i] -= lr / bc1 * s.m[i] / (std::sqrt(s.v[i]) / std::sqrt(bc2) + eps);
  }
  return p;
}

double max_rel_diff(const std::vector<double>& a, const std::vector<double>& b) {
  double m = 0;
  for (size_t i = 0; i < a.size(); ++i) m = std::max(m, std::abs(a[i] - b[i]) / std::max(1.0, std::abs(b[i])));
  return m;
}

}  // namespace

int main() try {
  tour::Checks check;
  manual_seed(3);
  TinyNet net;
  std::vector<std::string> names;
  for (auto& [name, p] : net.named_parameters()) names.push_back(name);
  fmt::print("parameters:");
  for (auto& n : names) fmt::print(" {}", n);
  fmt::print(" ({} numbers)\n", net.num_parameters());
  check.expect(names == std::vector<std::string>{"fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias"},
               "named_parameters() lists dotted names, depth first, in registration order");
  check.expect(net.named_parameters()[0].second.is_same(net.fc1->weight),
               "the entry and the member are the same tensor (one handle, shared)");

  const double lr = 0.05, b1 = 0.9, b2 = 0.999, eps = 1e-8, wd = 0.1;
  nn::AdamW opt(net.parameters(), lr, b1, b2, eps, wd);
  Tensor x = randn({8, 3}, {DType::f64}), target = randn({8, 1}, {DType::f64});
  Tensor& w = net.fc1->weight;
  AdamWState by_hand;
  for (int64_t t = 1; t <= 2; ++t) {
    opt.zero_grad();
    Tensor loss = mean(square(net.forward(x) - target));
    loss.backward();
    std::vector<double> before = w.to_vector<double>(), g = w.grad().to_vector<double>();
    const uint32_t version = w.version();
    opt.step();
    std::vector<double> want = adamw_by_hand(before, g, by_hand, t, lr, b1, b2, eps, wd);
    const double diff = max_rel_diff(w.to_vector<double>(), want);
    fmt::print("step {}: loss {:.6f}, fc1.weight max relative difference from the formula {:.1e}\n", t,
               loss.item<double>(), diff);
    check.expect(diff < 1e-14, fmt::format("AdamW step {} moved fc1.weight exactly as the formula says", t));
    check.expect(w.version() == version + 1,
                 fmt::format("step {} wrote the weight in place: its version went up by 1", t));
    if (t == 1) {
      // At t = 1, m/bc1 = g and sqrt(v/bc2) = |g|: every weight moves by lr (after the decay).
      double off = 0;
      std::vector<double> now = w.to_vector<double>();
      for (size_t i = 0; i < now.size(); ++i)
        off = std::max(off, std::abs(std::abs(now[i] - before[i] * (1 - lr * wd)) - lr));
      check.expect(off < 1e-6, "the first step moves every weight by lr (up to eps), whatever its gradient's size");
    }
  }
  auto state = opt.state_dict();
  check.expect(state.count("param.0.exp_avg") && state.at("param.0.step").item<int64_t>() == 2,
               "the optimizer's state: exp_avg, exp_avg_sq and a step count per parameter");
  return check.exit_code();
} catch (const dg::Error& e) {
  fmt::print(stderr, "error: {}\n", e.what());
  return 1;
}
