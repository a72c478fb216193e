// In-place ops: values (contiguous, strided, broadcast, aliasing operands),
// version bumps, the requires-grad rule, dtype conversion in copy_, and the
// error messages.
#include <cmath>

#include "autograd/engine.h"
#include "testing.h"

using namespace dg;
using dg::testing::expect_values;

namespace {

Tensor mat(int64_t r, int64_t c, DType dt = DType::f64) {
  std::vector<double> v(r * c);
  for (size_t i = 0; i < v.size(); ++i) v[i] = static_cast<double>(i) * 0.5 - 1;
  return from_doubles(v, {r, c}, {dt});
}

std::vector<double> transposed_values(const Tensor& m) {  // m (r, c) -> values of m^T, row-major
  return copy_of(as_strided(m, {m.size(1), m.size(0)}, {m.stride(1), m.stride(0)}, m.offset())).to_vector<double>();
}

}  // namespace

TEST(InPlace, AddMulValues) {
  Tensor x = from_vector<double>({1, 2, 3});
  add_(x, from_vector<double>({10, 20, 30}));
  expect_values(x, {11, 22, 33});
  add_(x, from_vector<double>({1}), 2.5);  // broadcast, alpha
  expect_values(x, {13.5, 24.5, 35.5});
  add_(x, from_vector<double>({0.5, 0.5, 0.5}), -1.0);
  expect_values(x, {13, 24, 35});
  mul_(x, from_vector<double>({2, 0, -1}));
  expect_values(x, {26, 0, -35});
  mul_(x, 0.5);
  expect_values(x, {13, 0, -17.5});
  Tensor i = from_vector<int64_t>({1, 2});
  add_(i, from_vector<int64_t>({5, 5}));
  mul_(i, 3.0);
  EXPECT_EQ(i.to_vector<int64_t>(), (std::vector<int64_t>{18, 21}));
}

TEST(InPlace, LongContiguousRunsUseTheAliasedKernel) {
  Tensor x = full({100000}, 1.0, {DType::f32});
  Tensor y = full({100000}, 0.25, {DType::f32});
  void* before = x.raw_data();
  add_(x, y);
  add_(x, x);
  EXPECT_EQ(x.raw_data(), before);  // written where it is
  std::vector<float> v = x.to_vector<float>();
  for (float e : v) ASSERT_EQ(e, 2.5f);
}

TEST(InPlace, StridedOutputWritesThroughTheView) {
  Tensor base = mat(3, 4);
  Tensor t = as_strided(base, {4, 3}, {1, 4}, 0);  // base^T
  std::vector<double> tv = t.to_vector<double>();
  Tensor y = from_vector<double>({100, 200, 300});  // broadcast over t's rows
  add_(t, y);
  std::vector<double> expected = tv;
  for (size_t k = 0; k < expected.size(); ++k) expected[k] += 100.0 * (k % 3 + 1);
  expect_values(t, expected, 0);
  EXPECT_EQ(base.version(), 1u);  // the storage's version, seen by every view
  // A strided column slice: only those elements change.
  Tensor base2 = mat(2, 3);
  Tensor col = as_strided(base2, {2}, {3}, 1);
  fill_(col, 7);
  expect_values(base2, {-1, 7, 0, 0.5, 7, 1.5});
  mul_(col, 2.0);
  expect_values(base2, {-1, 14, 0, 0.5, 14, 1.5});
  zero_(col);
  expect_values(base2, {-1, 0, 0, 0.5, 0, 1.5});
}

TEST(InPlace, AliasingOperands) {
  // add_(x, x) on contiguous and strided x.
  Tensor x = mat(3, 3);
  std::vector<double> xv = x.to_vector<double>();
  add_(x, x);
  for (double& v : xv) v *= 2;
  expect_values(x, xv, 0);
  Tensor base = mat(3, 4);
  Tensor t = as_strided(base, {4, 3}, {1, 4}, 0);
  std::vector<double> tv = t.to_vector<double>();
  add_(t, t);
  for (double& v : tv) v *= 2;
  expect_values(t, tv, 0);
  // y shares x's memory in another layout: x += x^T must read the old x.
  Tensor m = mat(4, 4);
  std::vector<double> mv = m.to_vector<double>(), mt = transposed_values(m), expected(16);
  for (int k = 0; k < 16; ++k) expected[k] = mv[k] + mt[k];
  add_(m, as_strided(m, {4, 4}, {1, 4}, 0));
  expect_values(m, expected, 0);
  // Overlapping shifted views: x[1:] *= x[:-1] reads the old values.
  Tensor s = from_vector<double>({1, 2, 3, 4, 5});
  Tensor hi = as_strided(s, {4}, {1}, 1), lo = as_strided(s, {4}, {1}, 0);
  mul_(hi, lo);
  expect_values(s, {1, 2, 6, 12, 20});
  // copy_ from an overlapping view: x = reversed x.
  Tensor r = from_vector<double>({1, 2, 3, 4});
  copy_(r, as_strided(r, {4}, {-1}, 3));
  expect_values(r, {4, 3, 2, 1});
}

TEST(InPlace, CopyBroadcastsAndConverts) {
  Tensor dst = zeros({2, 3}, {DType::f32});
  copy_(dst, from_vector<double>({1.5, -2.25, 3}));  // f64 -> f32, broadcast over rows
  expect_values(dst, {1.5, -2.25, 3, 1.5, -2.25, 3});
  EXPECT_EQ(dst.dtype(), DType::f32);
  Tensor idst = zeros({3}, {DType::i64});
  copy_(idst, from_vector<float>({1.9f, -2.9f, 0}));  // truncation toward zero, like a C cast
  EXPECT_EQ(idst.to_vector<int64_t>(), (std::vector<int64_t>{1, -2, 0}));
  Tensor base = zeros({3, 2});
  Tensor t = as_strided(base, {2, 3}, {1, 2}, 0);
  copy_(t, from_vector<float>({1, 2, 3, 4, 5, 6}, {2, 3}));
  expect_values(base, {1, 4, 2, 5, 3, 6});
  Tensor b = zeros({2}, {DType::b8});
  copy_(b, from_vector<double>({0, 0.5}));
  EXPECT_EQ(b.to_vector<bool>(), (std::vector<bool>{false, true}));
}

TEST(InPlace, EveryOpBumpsTheVersionOnce) {
  Tensor x = zeros({2});
  uint32_t v = x.version();
  add_(x, ones({2}));
  EXPECT_EQ(x.version(), v + 1);
  add_(x, ones({2}), 3.0);
  EXPECT_EQ(x.version(), v + 2);
  mul_(x, ones({2}));
  EXPECT_EQ(x.version(), v + 3);
  mul_(x, 2.0);
  EXPECT_EQ(x.version(), v + 4);
  zero_(x);
  EXPECT_EQ(x.version(), v + 5);
  fill_(x, 1);
  EXPECT_EQ(x.version(), v + 6);
  copy_(x, zeros({2}));
  EXPECT_EQ(x.version(), v + 7);
  Tensor view = as_strided(x, {1}, {1}, 1);
  add_(view, ones({1}));
  EXPECT_EQ(x.version(), v + 8);  // a view shares the storage's counter
}

TEST(InPlace, RequiresGradTensorsAreRefusedUnderGradMode) {
  Tensor w = from_vector<double>({1, 2}).set_requires_grad();
  EXPECT_DG_ERROR(add_(w, ones({2}, {DType::f64})), "add_", "requires grad", "[2]", "NoGradGuard");
  EXPECT_DG_ERROR(mul_(w, 2.0), "mul_", "requires grad");
  EXPECT_DG_ERROR(zero_(w), "fill_", "requires grad");
  EXPECT_DG_ERROR(copy_(w, zeros({2}, {DType::f64})), "copy_", "requires grad");
  Tensor y = exp(w);  // a non-leaf requiring grad is refused too
  EXPECT_DG_ERROR(mul_(y, 2.0), "mul_", "requires grad");
  expect_values(w, {1, 2});  // nothing was written
  {
    NoGradGuard guard;  // what an optimizer does
    add_(w, from_vector<double>({0.5, 0.5}), -2.0);
  }
  expect_values(w, {0, 1});
  EXPECT_TRUE(w.requires_grad());
}

TEST(InPlace, ModifyingASavedInputBreaksBackwardWithAClearError) {
  Tensor w = from_vector<double>({1, 2}).set_requires_grad();
  Tensor x = from_vector<double>({3, 4});
  Tensor loss = tanh(w * x);
  add_(x, ones({2}, {DType::f64}));
  EXPECT_DG_ERROR(loss.backward(ones({2}, {DType::f64})), "mul", "modified in place");
}

TEST(InPlace, Errors) {
  Tensor x = zeros({2, 2});
  EXPECT_DG_ERROR(add_(x, zeros({3})), "add_", "[2, 2]", "[3]");
  EXPECT_DG_ERROR(add_(x, zeros({3, 2, 2})), "add_", "[3, 2, 2]", "cannot be broadcast to", "[2, 2]");
  EXPECT_DG_ERROR(mul_(x, zeros({2}, {DType::f64})), "mul_", "dtype mismatch", "f32 [2, 2] vs f64 [2]");
  EXPECT_DG_ERROR(copy_(x, zeros({3})), "copy_", "[3]", "[2, 2]");
  Tensor expanded = as_strided(zeros({2}), {3, 2}, {0, 1}, 0);
  EXPECT_DG_ERROR(add_(expanded, ones({3, 2})), "add_", "overlapping", "[3, 2]");
  EXPECT_DG_ERROR(fill_(expanded, 1), "fill_", "overlapping");
  Tensor b = zeros({2}, {DType::b8});
  EXPECT_DG_ERROR(add_(b, b, 1.0), "add_", "bool");
  Tensor undefined;
  EXPECT_DG_ERROR(zero_(undefined), "fill_", "undefined");
}
