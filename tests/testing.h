#pragma once
// Helpers shared by the unit tests.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include <cmath>
#include <functional>
#include <limits>

#include "autograd/engine.h"
#include "autograd/gradcheck.h"
#include "autograd/ops.h"

namespace dg::testing {

// f64 inputs that require grad, with values from a fixed seed (shape {}: a 0-dim tensor).
inline Tensor rand_input(const Shape& shape, uint64_t seed, double lo = -1.0, double hi = 1.0) {
  Generator g(seed);
  Tensor u = rand(shape, {DType::f64}, &g);
  std::vector<double> v = u.to_vector<double>();
  for (double& x : v) x = lo + (hi - lo) * x;
  if (shape.empty()) return scalar_tensor(v.at(0), {DType::f64}).set_requires_grad();
  return from_vector<double>(v, shape).set_requires_grad();
}

// Token ids (B, T) i64, uniform over [0, vocab) from a fixed seed: a batch for the language models.
inline Tensor random_tokens(int64_t B, int64_t T, uint64_t seed, int64_t vocab = 256) {
  Generator g(seed);
  return randint(0, vocab, {B, T}, &g);
}

// idx (B, T) with every token from position t0 on moved by `shift` (mod
// vocab): the same past, another future (causality checks).
inline Tensor change_tokens_from(const Tensor& idx, int64_t t0, int64_t shift, int64_t vocab = 256) {
  const int64_t B = idx.size(0), T = idx.size(1);
  std::vector<int64_t> v = idx.to_vector<int64_t>();
  for (int64_t b = 0; b < B; ++b)
    for (int64_t t = t0; t < T; ++t) v[b * T + t] = (v[b * T + t] + shift) % vocab;
  return from_vector<int64_t>(v, {B, T});
}

// Max |a - b| / (1 + |b|) over elements (sizes must match); NaN, e.g. an
// element a kernel never wrote, counts as infinite.
inline double max_rel_diff(const std::vector<double>& a, const std::vector<double>& b) {
  EXPECT_EQ(a.size(), b.size());
  double m = 0;
  for (size_t i = 0; i < a.size() && i < b.size(); ++i) {
    const double d = std::abs(a[i] - b[i]) / (1 + std::abs(b[i]));
    if (!(d <= m)) m = std::isnan(d) ? std::numeric_limits<double>::infinity() : d;
  }
  return m;
}
inline double max_rel_diff(const std::vector<double>& a, const Tensor& b) {
  return max_rel_diff(a, b.to_vector<double>());
}
inline double max_rel_diff(const Tensor& a, const Tensor& b) {
  return max_rel_diff(a.to_vector<double>(), b.to_vector<double>());
}

// Max |a - b| over elements (shapes must match).
inline double max_abs_diff(const Tensor& a, const Tensor& b) {
  if (!a.defined() || !b.defined()) {
    ADD_FAILURE() << "max_abs_diff: undefined tensor";
    return std::numeric_limits<double>::infinity();
  }
  EXPECT_EQ(a.shape(), b.shape());
  std::vector<double> x = a.to_vector<double>(), y = b.to_vector<double>();
  double m = 0;
  for (size_t i = 0; i < x.size() && i < y.size(); ++i) m = std::max(m, std::abs(x[i] - y[i]));
  return m;
}

inline void expect_values(const Tensor& t, const std::vector<double>& expected, double tol = 1e-6) {
  std::vector<double> v = t.to_vector<double>();
  ASSERT_EQ(v.size(), expected.size());
  for (size_t i = 0; i < v.size(); ++i) EXPECT_NEAR(v[i], expected[i], tol) << "element " << i;
}


// Central-difference check of d loss / d p for a parameter p (f64) that
// loss_fn uses internally (a module's weight): the analytic gradient from
// dg::grad, the numeric one by perturbing p in place element by element.
inline ::testing::AssertionResult param_gradcheck(const std::function<Tensor()>& loss_fn, Tensor p, double eps = 1e-6,
                                                  double atol = 1e-5, double rtol = 1e-3) {
  if (p.dtype() != DType::f64) return ::testing::AssertionFailure() << "param_gradcheck needs an f64 parameter";
  std::vector<double> analytic = grad({loss_fn()}, {p})[0].to_vector<double>();
  std::vector<double> v = p.to_vector<double>();
  auto eval = [&](size_t j, double delta) {
    NoGradGuard ng;
    std::vector<double> w = v;
    w[j] += delta;
    copy_(p, from_vector<double>(w, p.shape()));
    return loss_fn().item<double>();
  };
  for (size_t j = 0; j < v.size(); ++j) {
    const double numeric = (eval(j, eps) - eval(j, -eps)) / (2 * eps);
    if (std::abs(numeric - analytic[j]) > atol + rtol * std::abs(numeric)) {
      NoGradGuard ng;
      copy_(p, from_vector<double>(v, p.shape()));
      return ::testing::AssertionFailure() << "element " << j << ": analytic " << analytic[j] << " vs numeric "
                                           << numeric;
    }
  }
  NoGradGuard ng;
  copy_(p, from_vector<double>(v, p.shape()));
  return ::testing::AssertionSuccess();
}

}  // namespace dg::testing

#define EXPECT_GRADCHECK(fn, ...)                          \
  do {                                                     \
    auto dg_r_ = ::dg::gradcheck(fn, __VA_ARGS__);          \
    EXPECT_TRUE(dg_r_.ok) << dg_r_.message;                \
  } while (0)

#define EXPECT_GRADGRADCHECK(fn, ...)                      \
  do {                                                     \
    auto dg_r_ = ::dg::gradgradcheck(fn, __VA_ARGS__);      \
    EXPECT_TRUE(dg_r_.ok) << dg_r_.message;                \
  } while (0)

// Expects `stmt` to throw dg::Error whose message contains every given piece.
#define EXPECT_DG_ERROR(stmt, ...)                                                        \
  do {                                                                                    \
    try {                                                                                 \
      stmt;                                                                               \
      ADD_FAILURE() << "expected dg::Error from " #stmt;                                  \
    } catch (const ::dg::Error& e_) {                                                     \
      for (const char* piece_ : {__VA_ARGS__})                                            \
        EXPECT_NE(std::string(e_.what()).find(piece_), std::string::npos)                 \
            << "message: " << e_.what() << "\n  missing: " << piece_;                     \
    }                                                                                     \
  } while (0)
