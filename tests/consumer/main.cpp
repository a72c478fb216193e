// Uses an installed dyngrad: d/dx sum(x * x) = 2x.
#include <fmt/core.h>

#include "autograd/engine.h"
#include "autograd/ops.h"

int main() {
  dg::Tensor x = dg::from_vector<double>({1.0, -2.0}).set_requires_grad();
  dg::sum(x * x).backward();
  std::vector<double> g = x.grad().to_vector<double>();
  fmt::print("grad = [{}, {}]\n", g[0], g[1]);
  return g[0] == 2.0 && g[1] == -4.0 ? 0 : 1;
}
