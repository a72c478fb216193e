// Gradients of the reductions (autograd/ops/reduce.cpp): sum, mean, var,
// logsumexp, max/min along a dim and over all elements. One table of cases
// feeds three checks, each by f64 central differences:
//   - gradcheck:            d out / d x against finite differences of out;
//   - gradgradcheck:        the first gradient J^T w (built with create_graph)
//                           against finite differences of itself, in x;
//   - double backward in w: the same first gradient as a function of x and of
//                           the output gradient w, so the backward is
//                           differentiable in its incoming gradient too.
// Then the rules that finite differences cannot see: max/min ties (the first
// index along a dim; shared evenly over all elements, like PyTorch) and
// logsumexp at large magnitudes.
//
// Inputs are uniform in [-1, 1] from fixed seeds: no two elements are within
// 2 eps of each other, so max/min are differentiable where they are checked.
#include <functional>
#include <string>
#include <vector>

#include "testing.h"

using namespace dg;
using dg::testing::expect_values;
using dg::testing::max_abs_diff;
using dg::testing::rand_input;

namespace {

struct ReduceCase {
  std::string name;
  Shape shape;
  std::function<Tensor(const Tensor&)> fn;
};

const std::vector<ReduceCase>& cases() {
  static const std::vector<ReduceCase> table = {
      {"sum_all", {3, 4, 5}, [](const Tensor& x) { return sum(x); }},
      {"sum_dim1", {3, 4, 5}, [](const Tensor& x) { return sum(x, {1}); }},
      {"sum_dims0_2_keep", {3, 4, 5}, [](const Tensor& x) { return sum(x, {0, 2}, true); }},
      {"sum_0dim", {}, [](const Tensor& x) { return sum(x); }},
      {"mean_all", {3, 4, 5}, [](const Tensor& x) { return mean(x); }},
      {"mean_dim-1_keep", {3, 4, 5}, [](const Tensor& x) { return mean(x, {-1}, true); }},
      {"mean_dims0_1", {3, 4, 5}, [](const Tensor& x) { return mean(x, {0, 1}); }},
      {"var_all", {3, 4, 5}, [](const Tensor& x) { return var(x); }},
      {"var_dim1", {3, 4, 5}, [](const Tensor& x) { return var(x, {1}); }},
      {"var_dim2_keep_biased", {3, 4, 5}, [](const Tensor& x) { return var(x, {2}, true, 0); }},
      {"var_dims0_2_correction2", {3, 4, 5}, [](const Tensor& x) { return var(x, {0, 2}, false, 2); }},
      {"logsumexp_dim2", {3, 4, 5}, [](const Tensor& x) { return logsumexp(x, {2}); }},
      {"logsumexp_dims0_1_keep", {3, 4, 5}, [](const Tensor& x) { return logsumexp(x, {0, 1}, true); }},
      {"logsumexp_all", {3, 4, 5}, [](const Tensor& x) { return logsumexp(x, {}); }},
      {"max_dim0", {3, 4, 5}, [](const Tensor& x) { return max(x, 0).values; }},
      {"max_dim1_keep", {3, 4, 5}, [](const Tensor& x) { return max(x, 1, true).values; }},
      {"min_dim2", {3, 4, 5}, [](const Tensor& x) { return min(x, 2).values; }},
      {"min_dim-1_keep", {3, 4, 5}, [](const Tensor& x) { return min(x, -1, true).values; }},
      {"max_dim_0dim", {}, [](const Tensor& x) { return max(x, 0).values; }},
      {"max_all", {3, 4, 5}, [](const Tensor& x) { return max(x); }},
      {"min_all", {3, 4, 5}, [](const Tensor& x) { return min(x); }},
      // strided (transposed) inputs take the kernels' strided paths
      {"sum_dim0_transposed", {4, 6}, [](const Tensor& x) { return sum(transpose(x, 0, 1), {0}); }},
      {"var_dim1_transposed", {4, 6}, [](const Tensor& x) { return var(transpose(x, 0, 1), {1}); }},
      {"logsumexp_dim0_transposed", {4, 6}, [](const Tensor& x) { return logsumexp(transpose(x, 0, 1), {0}); }},
      {"max_dim1_transposed", {4, 6}, [](const Tensor& x) { return max(transpose(x, 0, 1), 1).values; }},
      {"min_all_transposed", {4, 6}, [](const Tensor& x) { return min(transpose(x, 0, 1)); }},
      // a reduction inside a larger expression: its gradient is not all ones
      {"logsumexp_of_square", {3, 5}, [](const Tensor& x) { return logsumexp(x * x, {1}); }},
      {"max_of_product", {3, 5}, [](const Tensor& x) { return max(x * x + x, 1).values; }},
  };
  return table;
}

uint64_t seed_of(const std::string& name) { return std::hash<std::string>{}(name) % 100000; }

}  // namespace

// f32 sums accumulate in double, on rows (contiguous runs, the SIMD path),
// columns and everything: each result is the double sum rounded to f32,
// within one f32 ulp (the double sums themselves differ in order only).
TEST(Reduce, F32SumsAreTheirDoubleSumsRoundedOnce) {
  Generator g(5);
  const int64_t R = 40, C = 4096;
  Tensor x = rand({R, C}, {DType::f32}, &g) * 2.0 - 1.0;
  const std::vector<float> v = x.to_vector<float>();
  auto within_an_ulp = [](float got, double want) {
    const float w = static_cast<float>(want);
    return std::abs(got - w) <= std::nextafter(std::abs(w), INFINITY) - std::abs(w);
  };
  const std::vector<float> rows = sum(x, {1}).to_vector<float>(), cols = sum(x, {0}).to_vector<float>();
  double all = 0;
  for (int64_t r = 0; r < R; ++r) {
    double want = 0;
    for (int64_t c = 0; c < C; ++c) want += v[r * C + c];
    all += want;
    EXPECT_TRUE(within_an_ulp(rows[r], want)) << "row " << r << ": " << rows[r] << " vs " << want;
  }
  for (int64_t c = 0; c < C; c += 97) {
    double want = 0;
    for (int64_t r = 0; r < R; ++r) want += v[r * C + c];
    EXPECT_TRUE(within_an_ulp(cols[c], want)) << "column " << c;
  }
  EXPECT_TRUE(within_an_ulp(sum(x).item<float>(), all));
}

TEST(ReduceGrad, Gradcheck) {
  for (const ReduceCase& c : cases()) {
    SCOPED_TRACE(c.name);
    Tensor x = rand_input(c.shape, seed_of(c.name));
    EXPECT_GRADCHECK([&](const Tensors& in) { return c.fn(in[0]); }, {x});
  }
}

TEST(ReduceGrad, DoubleBackward) {
  for (const ReduceCase& c : cases()) {
    SCOPED_TRACE(c.name);
    Tensor x = rand_input(c.shape, seed_of(c.name));
    EXPECT_GRADGRADCHECK([&](const Tensors& in) { return c.fn(in[0]); }, {x});
  }
}

// (x, w) -> J(x)^T w with create_graph, gradchecked in both: the backward must
// be differentiable in the gradient it receives as well as in x.
TEST(ReduceGrad, DoubleBackwardInTheOutputGradient) {
  for (const ReduceCase& c : cases()) {
    SCOPED_TRACE(c.name);
    Tensor x = rand_input(c.shape, seed_of(c.name));
    Tensor w;
    {
      NoGradGuard no_grad;
      w = rand_input(c.fn(x).shape(), seed_of(c.name) + 1);
    }
    w.set_requires_grad();
    auto first = [&](const Tensors& in) {
      Tensor g = grad({c.fn(in[0])}, {in[0]}, {in[1]}, /*retain_graph=*/true, /*create_graph=*/true)[0];
      return reshape(g, {-1});
    };
    EXPECT_GRADCHECK(first, {x, w});
  }
}

// --- what finite differences cannot check -----------------------------------

TEST(ReduceGrad, MaxMinAlongADimSendTheGradientToTheFirstTiedIndex) {
  Tensor x = from_vector<double>({1, 3, 3, 2, 2, 0, -1, -1, -1}, {3, 3}).set_requires_grad();
  ValuesIndices mx = max(x, 1);
  expect_values(mx.indices, {1, 0, 0}, 0);
  sum(mx.values * from_vector<double>({1, 2, 3}, {3})).backward();
  expect_values(x.grad(), {0, 1, 0, 2, 0, 0, 3, 0, 0}, 0);

  x.zero_grad();
  ValuesIndices mn = min(x, 0, true);  // columns: (1,2,-1) (3,2,-1) (3,0,-1)
  expect_values(mn.indices, {2, 2, 2}, 0);
  sum(mn.values).backward();
  expect_values(x.grad(), {0, 0, 0, 0, 0, 0, 1, 1, 1}, 0);
}

TEST(ReduceGrad, MaxMinOverAllShareTheGradientAmongTies) {
  Tensor x = from_vector<double>({1, 3, 3, 0, 3, -2}, {2, 3}).set_requires_grad();
  (max(x) * 6.0).backward();
  expect_values(x.grad(), {0, 2, 2, 0, 2, 0}, 1e-15);

  Tensor y = from_vector<double>({-2, 5, -2, -2}, {4}).set_requires_grad();
  min(y).backward();
  expect_values(y.grad(), {1.0 / 3, 0, 1.0 / 3, 1.0 / 3}, 1e-15);
}

// The ties rule holds under double backward too: the first gradient is a
// constant mask times g, so d/dx of it is zero and d/dg is the mask.
TEST(ReduceGrad, TiedMaxFirstGradientIsLinearInTheOutputGradient) {
  Tensor x = from_vector<double>({2, 2, 1}, {3}).set_requires_grad();
  Tensor g = scalar_tensor(1.5, {DType::f64}).set_requires_grad();
  Tensor dx = grad({max(x)}, {x}, {g}, true, true)[0];
  expect_values(dx, {0.75, 0.75, 0}, 1e-15);
  Tensors second = grad({sum(dx)}, {x, g}, {}, false, false, /*allow_unused=*/true);
  EXPECT_TRUE(!second[0].defined() || max_abs_diff(second[0], zeros({3}, {DType::f64})) == 0.0);
  EXPECT_DOUBLE_EQ(second[1].item<double>(), 1.0);
}

TEST(ReduceGrad, LogsumexpGradientIsSoftmaxAtLargeMagnitudes) {
  Tensor x = from_vector<double>({1000, 1001, -1000, 999}, {2, 2}).set_requires_grad();
  Tensor y = logsumexp(x, {1});
  expect_values(y, {1001 + std::log1p(std::exp(-1.0)), 999 + std::log1p(std::exp(-1999.0))}, 1e-9);
  sum(y).backward();
  const double p = 1 / (1 + std::exp(1.0));  // softmax of (1000, 1001): (p, 1 - p)
  expect_values(x.grad(), {p, 1 - p, 0, 1}, 1e-12);
}

TEST(ReduceGrad, VarianceGradientKnownValues) {
  // d var / d x_i = 2 (x_i - mean) / (n - correction)
  Tensor x = from_vector<double>({1, 2, 6}, {3}).set_requires_grad();  // mean 3
  var(x).backward();
  expect_values(x.grad(), {-2, -1, 3}, 1e-15);
  x.zero_grad();
  var(x, {}, false, 0).backward();
  expect_values(x.grad(), {-4.0 / 3, -2.0 / 3, 2}, 1e-15);
}
