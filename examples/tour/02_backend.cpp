// Tour, chapter 2: the Backend interface and one CPU kernel (docs/tour/02_backend.md).
//
// Calls the CPU backend's kernels directly, the way autograd/ops/*.cpp does:
// the caller allocates a contiguous output; inputs may be strided views.
#include <cmath>

#include "autograd/ops.h"
#include "examples/tour/check.h"
#include "tensor/functors.h"

using namespace dg;

namespace {

double max_abs_diff(const std::vector<double>& a, const std::vector<double>& b) {
  double m = 0;
  for (size_t i = 0; i < a.size(); ++i) m = std::max(m, std::abs(a[i] - b[i]));
  return a.size() == b.size() ? m : INFINITY;
}

}  // namespace

int main() try {
  tour::Checks check;
  Backend& cpu = backend_for(Device::cpu());

  // x: a strided input, the transpose of a (700, 3) tensor -> (3, 700) with strides (1, 3).
  Generator gen(7);
  Tensor base = randn({700, 3}, {DType::f64}, &gen);
  Tensor x = transpose(base, 0, 1);
  Tensor y = empty(x.shape(), {DType::f64});  // outputs: allocated by the caller, contiguous
  cpu.unary(UnaryOp::tanh, x, y, {});
  std::vector<double> xv = x.to_vector<double>(), yv = y.to_vector<double>(), want(xv.size());
  for (size_t i = 0; i < xv.size(); ++i) want[i] = std::tanh(xv[i]);
  fmt::print("tanh on a strided (3, 700) input: max |kernel - std::tanh| = {:.2e}\n", max_abs_diff(yv, want));
  check.expect(max_abs_diff(yv, want) < 1e-14, "Backend::unary(tanh) on a strided input equals std::tanh");

  // The backward kernel: out = g * f'(x), with f' = 1 - y^2 read from the functor table.
  Tensor g = ones(x.shape(), {DType::f64});
  Tensor gx = empty(x.shape(), {DType::f64});
  cpu.unary_grad(UnaryOp::tanh, g, x, y, gx, {});
  std::vector<double> gxv = gx.to_vector<double>(), fd(xv.size());
  const double h = 1e-6;
  for (size_t i = 0; i < xv.size(); ++i) fd[i] = (std::tanh(xv[i] + h) - std::tanh(xv[i] - h)) / (2 * h);
  fmt::print("tanh' from unary_grad vs central differences: max diff {:.2e}\n", max_abs_diff(gxv, fd));
  check.expect(max_abs_diff(gxv, fd) < 1e-9, "unary_grad(tanh) = 1 - tanh^2 matches finite differences");

  // The scalar formulas themselves: one functor per op, f, f' and f''.
  fn::Tanh tanh_fn;
  const double x0 = 0.3, y0 = tanh_fn.f(x0);
  const double d2_fd = (tanh_fn.df(x0 + h, std::tanh(x0 + h)) - tanh_fn.df(x0 - h, std::tanh(x0 - h))) / (2 * h);
  check.expect(std::abs(tanh_fn.d2f(x0, y0) - d2_fd) < 1e-8, "fn::Tanh::d2f = -2y(1 - y^2) matches d/dx of df");

  // Broadcasting is a view: b (3) seen as (4, 3) with stride 0 on dim 0.
  Tensor a = from_vector<double>({0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11}, {4, 3});
  Tensor b = from_vector<double>({100, 200, 300});
  Tensor b_rows = as_strided(b, {4, 3}, {0, 1}, 0);
  Tensor sum_ab = empty({4, 3}, {DType::f64});
  cpu.binary(BinaryOp::add, a, b_rows, sum_ab);
  std::vector<double> s = sum_ab.to_vector<double>();
  bool ok = true;
  for (int i = 0; i < 4; ++i)
    for (int j = 0; j < 3; ++j) ok &= s[3 * i + j] == 3 * i + j + 100.0 * (j + 1);
  check.expect(ok, "Backend::binary(add) with a stride-0 operand adds b to every row");

  // The same kernels are what the differentiable ops call.
  check.expect(tanh(x).to_vector<double>() == yv, "dg::tanh(x) gives bit for bit what Backend::unary gave");
  return check.exit_code();
} catch (const dg::Error& e) {
  fmt::print(stderr, "error: {}\n", e.what());
  return 1;
}
