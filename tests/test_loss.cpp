// cross_entropy (fused) and dropout (composite): values by hand, the fused
// kernel against a composite log-softmax computed with other ops (f64), the
// parallel path against a host loop, gradcheck, dropout statistics and
// determinism, and the error messages.
#include <cmath>
#include <limits>

#include "autograd/engine.h"
#include "testing.h"

using namespace dg;
using dg::testing::expect_values;
using dg::testing::max_abs_diff;
using dg::testing::rand_input;

namespace {

Tensor idx(std::vector<int64_t> v, const Shape& shape = {}) { return from_vector<int64_t>(v, shape); }

// The same loss as the fused kernel, written with separate ops: log-softmax by
// hand (x - logsumexp), the target's log-probability gathered, the smoothing
// term as the mean log-probability, ignored rows zeroed. Per row, shape (...).
Tensor composite_cross_entropy(const Tensor& x, const std::vector<int64_t>& target, const Shape& lead,
                               int64_t ignore_index, double s) {
  std::vector<int64_t> safe(target);
  std::vector<double> keep(target.size(), 1.0);
  for (size_t i = 0; i < target.size(); ++i)
    if (target[i] == ignore_index) safe[i] = 0, keep[i] = 0;
  Shape tshape = lead;
  tshape.push_back(1);
  Tensor logp = x - logsumexp(x, {-1}, /*keepdim=*/true);
  Tensor nll = -squeeze(gather(logp, -1, from_vector<int64_t>(safe, tshape)), -1);
  Tensor smooth = -mean(logp, {-1});
  return ((1 - s) * nll + s * smooth) * from_vector<double>(keep, lead);
}

}  // namespace

TEST(CrossEntropy, HandComputedValues) {
  for (DType dt : {DType::f32, DType::f64}) {
    Tensor x = from_doubles({1, 2, 3, 1, 1, 1}, {2, 3}, {dt});
    Tensor t = idx({2, 0});
    double l0 = std::log(std::exp(1.0) + std::exp(2.0) + std::exp(3.0)) - 3, l1 = std::log(3.0);
    double tol = dt == DType::f32 ? 1e-6 : 1e-14;
    Tensor none = cross_entropy(x, t, -100, 0.0, Reduction::none);
    EXPECT_EQ(none.shape(), (Shape{2}));
    EXPECT_EQ(none.dtype(), dt);
    expect_values(none, {l0, l1}, tol);
    expect_values(cross_entropy(x, t), {(l0 + l1) / 2}, tol);
    expect_values(cross_entropy(x, t, -100, 0.0, Reduction::sum), {l0 + l1}, tol);
    // Label smoothing 0.3: 0.7 * nll + 0.3 * (lse - mean(x)); mean(x) = 2 for row 0.
    double lse0 = l0 + 3;
    expect_values(cross_entropy(x, t, -100, 0.3, Reduction::none), {0.7 * l0 + 0.3 * (lse0 - 2), l1}, tol);
    // Ignoring target 0 drops row 1, and the mean divides by one row.
    expect_values(cross_entropy(x, t, /*ignore_index=*/0, 0.0, Reduction::none), {l0, 0}, tol);
    expect_values(cross_entropy(x, t, /*ignore_index=*/0), {l0}, tol);
  }
}

TEST(CrossEntropy, StableForLargeLogits) {
  // exp(1000) overflows: the max-shift keeps everything finite.
  Tensor x = from_doubles({1000, 1001, -1000, 0}, {2, 2}, {DType::f32});
  Tensor l = cross_entropy(x, idx({0, 1}), -100, 0.0, Reduction::none);
  expect_values(l, {std::log1p(std::exp(1.0)), std::log1p(std::exp(-1000.0))}, 1e-5);
}

TEST(CrossEntropy, MatchesCompositeWithIgnoreAndSmoothing) {
  Tensor x = rand_input({3, 4, 7}, 1, -3, 3);
  std::vector<int64_t> tv = {0, 6, -100, 3, 2, 2, 5, -100, 1, 6, 0, 4};
  Tensor t = from_vector<int64_t>(tv, {3, 4});
  for (double s : {0.0, 0.1, 0.8}) {
    Tensor fused = cross_entropy(x, t, -100, s, Reduction::none);
    Tensor ref = composite_cross_entropy(x, tv, {3, 4}, -100, s);
    EXPECT_LT(max_abs_diff(fused, ref), 1e-13) << "smoothing " << s;
    // Gradients of the two agree too (the fused backward kernel).
    Tensor w = rand_input({3, 4}, 2).detach();
    Tensor gf = grad({fused}, {x}, {w})[0], gr = grad({ref}, {x}, {w})[0];
    EXPECT_LT(max_abs_diff(gf, gr), 1e-13) << "smoothing " << s;
    // mean = sum over the 10 non-ignored rows / 10.
    double total = sum(ref).item<double>();
    EXPECT_NEAR(cross_entropy(x, t, -100, s, Reduction::mean).item<double>(), total / 10, 1e-13);
    EXPECT_NEAR(cross_entropy(x, t, -100, s, Reduction::sum).item<double>(), total, 1e-13);
  }
  // A custom ignore_index that is also a valid class; -100 is then a bad class.
  EXPECT_DG_ERROR(cross_entropy(x, t, 2), "cross_entropy", "target -100 out of range for 7 classes");
  std::vector<int64_t> tv2 = tv;
  for (int64_t& v : tv2) v = v == -100 ? 0 : v;
  Tensor t2 = from_vector<int64_t>(tv2, {3, 4});
  EXPECT_LT(max_abs_diff(cross_entropy(x, t2, 2, 0.1, Reduction::none), composite_cross_entropy(x, tv2, {3, 4}, 2, 0.1)),
            1e-13);
}

// N * V above the parallel threshold, f32, against a host loop in double.
TEST(CrossEntropy, LargeMatchesHostReference) {
  const int64_t N = 64, V = 1000;
  Generator g(3);
  Tensor x = randn({N, V}, {}, &g);
  Tensor t = randint(0, V, {N}, &g);
  std::vector<float> xv = x.to_vector<float>();
  std::vector<int64_t> tv = t.to_vector<int64_t>();
  tv[5] = -1;  // one ignored row
  t = from_vector<int64_t>(tv);
  const double s = 0.1;
  std::vector<double> want(N), gwant(N * V);
  for (int64_t n = 0; n < N; ++n) {
    double m = -INFINITY, z = 0, mean = 0;
    for (int64_t j = 0; j < V; ++j) m = std::max(m, double(xv[n * V + j]));
    for (int64_t j = 0; j < V; ++j) z += std::exp(xv[n * V + j] - m), mean += xv[n * V + j] / V;
    double lse = m + std::log(z);
    want[n] = tv[n] < 0 ? 0 : (1 - s) * (lse - xv[n * V + tv[n]]) + s * (lse - mean);
    for (int64_t j = 0; j < V; ++j)
      gwant[n * V + j] = tv[n] < 0 ? 0 : std::exp(xv[n * V + j] - lse) - s / V - (j == tv[n] ? 1 - s : 0);
  }
  x.set_requires_grad();
  Tensor l = cross_entropy(x, t, -1, s, Reduction::none);
  expect_values(l, want, 2e-5);
  l.backward(ones({N}));
  expect_values(x.grad(), gwant, 1e-6);
}

TEST(CrossEntropy, AllIgnoredMeanIsNaN) {
  Tensor x = zeros({2, 3});
  EXPECT_TRUE(std::isnan(cross_entropy(x, idx({-100, -100})).item<float>()));
  EXPECT_EQ(cross_entropy(x, idx({-100, -100}), -100, 0.0, Reduction::sum).item<float>(), 0.0f);
}

TEST(CrossEntropy, Gradcheck) {
  Tensor x = rand_input({4, 5}, 10, -2, 2);
  Tensor t = idx({1, -100, 4, 0});
  for (Reduction r : {Reduction::none, Reduction::mean, Reduction::sum}) {
    EXPECT_GRADCHECK([&](const Tensors& in) { return cross_entropy(in[0], t, -100, 0.0, r); }, {x});
    EXPECT_GRADCHECK([&](const Tensors& in) { return cross_entropy(in[0], t, -100, 0.25, r); }, {x});
  }
  // Strided logits: (V, N) storage used transposed.
  EXPECT_GRADCHECK([&](const Tensors& in) { return cross_entropy(transpose(in[0], 0, 1), t, -100, 0.1); },
                   {rand_input({5, 4}, 11, -2, 2)});
  // 3-D logits with a 2-D target, and 1-D logits with a 0-D target.
  Tensor t3 = idx({0, 2, 2, 1, -100, 0}, {2, 3});
  EXPECT_GRADCHECK([&](const Tensors& in) { return cross_entropy(in[0], t3, -100, 0.2, Reduction::none); },
                   {rand_input({2, 3, 3}, 12)});
  EXPECT_GRADCHECK([&](const Tensors& in) { return cross_entropy(in[0], full({}, 2.0, {DType::i64})); },
                   {rand_input({4}, 13)});
  // Second order (the backward's composite path).
  EXPECT_GRADGRADCHECK([&](const Tensors& in) { return cross_entropy(in[0], t, -100, 0.3); }, {x});
  EXPECT_GRADGRADCHECK([&](const Tensors& in) { return cross_entropy(in[0], t3, -100, 0.0, Reduction::none); },
                       {rand_input({2, 3, 3}, 14)});
}

TEST(CrossEntropy, Errors) {
  Tensor x = zeros({4, 5});
  EXPECT_DG_ERROR(cross_entropy(x, from_vector<int32_t>({0, 1, 2, 3})), "cross_entropy", "target must be i64",
                  "i32", "[4, 5]");
  EXPECT_DG_ERROR(cross_entropy(x, idx({0, 1, 2})), "cross_entropy", "target shape [3]",
                  "leading shape [4]", "[4, 5]");
  EXPECT_DG_ERROR(cross_entropy(x, idx({0, 1}, {1, 2})), "cross_entropy", "target shape [1, 2]");
  EXPECT_DG_ERROR(cross_entropy(x, idx({0, 5, 1, 1})), "cross_entropy", "target 5 out of range for 5 classes",
                  "[4, 5]");
  EXPECT_DG_ERROR(cross_entropy(x, idx({0, -2, 1, 1})), "cross_entropy", "target -2 out of range");
  EXPECT_DG_ERROR(cross_entropy(x, idx({0, 0, 0, 0}), -100, 1.5), "cross_entropy", "label_smoothing", "1.5");
  EXPECT_DG_ERROR(cross_entropy(zeros({4, 5}, {DType::i64}), idx({0, 0, 0, 0})), "cross_entropy", "floating");
}

// --- dropout

TEST(Dropout, IdentityWhenEvaluatingOrPZero) {
  Tensor x = rand_input({3, 4}, 20);
  EXPECT_TRUE(dropout(x, 0.5, /*training=*/false).is_same(x));
  EXPECT_TRUE(dropout(x, 0.0, /*training=*/true).is_same(x));
}

TEST(Dropout, StatisticsAndScaling) {
  // n = 200000 Bernoulli draws with keep probability q = 1 - p. The zero
  // fraction has standard deviation sqrt(p q / n) ~ 0.001; the output mean
  // (kept fraction / q) has sqrt(p q / n) / q ~ 0.0015. Tolerances are 5
  // standard deviations: a correct kernel fails with probability < 1e-6.
  const int64_t n = 200000;
  const double p = 0.3, q = 1 - p, sd = std::sqrt(p * q / n);
  Generator g(5);
  Tensor y = dropout(ones({n}, {DType::f64}), p, true, &g);
  std::vector<double> v = y.to_vector<double>();
  int64_t zeros_seen = 0;
  double total = 0;
  for (double e : v) {
    if (e == 0) ++zeros_seen;
    else EXPECT_DOUBLE_EQ(e, 1 / q);  // kept values are scaled by 1/(1-p)
    total += e;
  }
  EXPECT_NEAR(static_cast<double>(zeros_seen) / n, p, 5 * sd);
  EXPECT_NEAR(total / n, 1.0, 5 * sd / q);
  // f32 works the same way.
  Tensor y32 = dropout(ones({1000}), 0.5, true, &g);
  for (float e : y32.to_vector<float>()) EXPECT_TRUE(e == 0.0f || e == 2.0f);
}

TEST(Dropout, SeededGeneratorIsDeterministic) {
  Tensor x = rand_input({64}, 21);
  Generator a(42), b(42), c(43);
  Tensor ya = dropout(x, 0.5, true, &a), yb = dropout(x, 0.5, true, &b), yc = dropout(x, 0.5, true, &c);
  EXPECT_EQ(ya.to_vector<double>(), yb.to_vector<double>());
  EXPECT_NE(ya.to_vector<double>(), yc.to_vector<double>());
  // The generator advances: a second draw is a different mask.
  EXPECT_NE(dropout(x, 0.5, true, &a).to_vector<double>(), ya.to_vector<double>());
  // The default generator follows manual_seed.
  manual_seed(7);
  Tensor d1 = dropout(x, 0.5, true);
  manual_seed(7);
  EXPECT_EQ(dropout(x, 0.5, true).to_vector<double>(), d1.to_vector<double>());
}

TEST(Dropout, GradientIsTheMask) {
  Tensor x = rand_input({50}, 22, 0.5, 1.0);  // nonzero entries: the mask is y / x
  Generator g(9);
  Tensor y = dropout(x, 0.25, true, &g);
  sum(y).backward();
  std::vector<double> xv = x.to_vector<double>(), yv = y.to_vector<double>(), gv = x.grad().to_vector<double>();
  for (size_t i = 0; i < xv.size(); ++i) EXPECT_NEAR(gv[i], yv[i] / xv[i], 1e-15);
  // gradcheck with the same mask in every evaluation (a fresh seeded generator).
  EXPECT_GRADCHECK([](const Tensors& in) { Generator gen(3); return dropout(in[0], 0.4, true, &gen); },
                   {rand_input({3, 4}, 23)});
  EXPECT_GRADCHECK([](const Tensors& in) { Generator gen(3); return dropout(transpose(in[0], 0, 1), 0.4, true, &gen); },
                   {rand_input({3, 4}, 24)});
}

TEST(Dropout, Errors) {
  Tensor x = zeros({2, 3});
  EXPECT_DG_ERROR(dropout(x, 1.0, true), "dropout", "p must be in [0, 1), got 1 ", "[2, 3]");
  EXPECT_DG_ERROR(dropout(x, -0.1, true), "dropout", "p must be in [0, 1)", "-0.1");
  EXPECT_DG_ERROR(dropout(zeros({2}, {DType::i64}), 0.5, true), "dropout", "floating");
}
