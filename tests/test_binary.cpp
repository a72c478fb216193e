// Binary ops and where: forward values (f32, f64, integers, bool results),
// broadcasting, NaN rules, the in-place kernel, gradcheck on contiguous,
// transposed and broadcast operands, gradgradcheck, tie splitting, and the
// error messages.
#include <cmath>
#include <functional>

#include "autograd/engine.h"
#include "testing.h"

using namespace dg;
using dg::testing::expect_values;
using dg::testing::rand_input;

namespace {

using BinFn = std::function<Tensor(const Tensor&, const Tensor&)>;

// One op, described once: the op, its reference in double, operand ranges.
struct BinaryCase {
  const char* name;
  BinFn op;
  std::function<double(double, double)> ref;
  double alo = -2, ahi = 2, blo = -2, bhi = 2;
};

const std::vector<BinaryCase>& cases() {
  static const std::vector<BinaryCase> c = {
      {"add", [](const Tensor& a, const Tensor& b) { return a + b; }, [](double a, double b) { return a + b; }},
      {"sub", [](const Tensor& a, const Tensor& b) { return a - b; }, [](double a, double b) { return a - b; }},
      {"mul", [](const Tensor& a, const Tensor& b) { return a * b; }, [](double a, double b) { return a * b; }},
      {"div", [](const Tensor& a, const Tensor& b) { return a / b; }, [](double a, double b) { return a / b; }, -2, 2,
       0.5, 2},
      {"pow", [](const Tensor& a, const Tensor& b) { return pow(a, b); },
       [](double a, double b) { return std::pow(a, b); }, 0.5, 2, -1.5, 2},
      {"maximum", [](const Tensor& a, const Tensor& b) { return maximum(a, b); },
       [](double a, double b) { return std::max(a, b); }},
      {"minimum", [](const Tensor& a, const Tensor& b) { return minimum(a, b); },
       [](double a, double b) { return std::min(a, b); }},
      {"where", [](const Tensor& a, const Tensor& b) { return where(gt(a, b), a * b, a - b); },
       [](double a, double b) { return a > b ? a * b : a - b; }},
  };
  return c;
}

Tensor values(DType dt, const Shape& shape, double lo, double hi, uint64_t seed) {
  Generator g(seed);
  Tensor u = rand(shape, {DType::f64}, &g);
  std::vector<double> v = u.to_vector<double>();
  for (double& x : v) x = lo + (hi - lo) * x;
  return from_doubles(v, shape, {dt});
}

// Reference of op over a and b broadcast to `shape` (row-major).
std::vector<double> reference(const BinaryCase& c, const Tensor& a, const Tensor& b, const Shape& shape) {
  std::vector<double> av = expand(a, shape).to_vector<double>(), bv = expand(b, shape).to_vector<double>();
  std::vector<double> r(av.size());
  for (size_t i = 0; i < r.size(); ++i) r[i] = c.ref(av[i], bv[i]);
  return r;
}

}  // namespace

TEST(Binary, ForwardMatchesReferenceWithBroadcasting) {
  struct Shapes {
    Shape a, b, out;
  };
  const std::vector<Shapes> shapes = {
      {{2, 3}, {2, 3}, {2, 3}}, {{2, 3}, {3}, {2, 3}},       {{3, 1}, {1, 4}, {3, 4}},
      {{4}, {}, {4}},           {{}, {2, 5}, {2, 5}},         {{2, 1, 3}, {4, 1}, {2, 4, 3}},
      {{700}, {700}, {700}},    {{40000}, {1}, {40000}},  // long runs: vectorised and OpenMP paths
  };
  for (const BinaryCase& c : cases()) {
    for (DType dt : {DType::f64, DType::f32}) {
      for (const Shapes& s : shapes) {
        Tensor a = values(dt, s.a, c.alo, c.ahi, 1), b = values(dt, s.b, c.blo, c.bhi, 2);
        Tensor out = c.op(a, b);
        EXPECT_EQ(out.shape(), s.out) << c.name;
        EXPECT_EQ(out.dtype(), dt) << c.name;
        std::vector<double> ref = reference(c, a, b, s.out), got = out.to_vector<double>();
        double tol = dt == DType::f64 ? 1e-14 : 1e-6;
        for (size_t i = 0; i < ref.size(); ++i)
          ASSERT_NEAR(got[i], ref[i], tol * std::max(1.0, std::abs(ref[i]))) << fmt::format("{} {} {} {} element {}", c.name, dt, s.a, s.b, i);
      }
    }
  }
}

TEST(Binary, StridedOperands) {
  Tensor base = values(DType::f32, {5, 7}, -1, 1, 3);
  Tensor t = as_strided(base, {7, 5}, {1, 7}, 0);     // transposed
  Tensor s = as_strided(base, {7, 2}, {5, 2}, 1);     // strided slice
  Tensor b = values(DType::f32, {7, 5}, -1, 1, 4);
  expect_values(t * b, (copy_of(t) * b).to_vector<double>(), 0);
  expect_values(b - t, (b - copy_of(t)).to_vector<double>(), 0);
  expect_values(s + s, (copy_of(s) * 2.0).to_vector<double>(), 0);
}

TEST(Binary, ScalarOperandsAndOperators) {
  Tensor a = from_vector<double>({1, -2, 4});
  expect_values(a + 1.5, {2.5, -0.5, 5.5});
  expect_values(a - 1.0, {0, -3, 3});
  expect_values(2.0 * a, {2, -4, 8});
  expect_values(a / 4.0, {0.25, -0.5, 1});
  expect_values(1.0 - a, {0, 3, -3});
  expect_values(3.0 + a, {4, 1, 7});
  expect_values(-a, {-1, 2, -4});
  EXPECT_EQ((a + 1.0).dtype(), DType::f64);
  Tensor f = from_vector<float>({1, 2});
  EXPECT_EQ((f * 0.5).dtype(), DType::f32);  // a double operand takes the tensor's dtype
  EXPECT_EQ(gt(a, 0.0).to_vector<bool>(), (std::vector<bool>{true, false, true}));
  EXPECT_EQ(lt(a, 1.0).to_vector<bool>(), (std::vector<bool>{false, true, false}));
}

TEST(Binary, IntegerArithmeticAndComparisons) {
  Tensor a = from_vector<int64_t>({5, -3, 7}), b = from_vector<int64_t>({2, 4, 7});
  EXPECT_EQ((a + b).to_vector<int64_t>(), (std::vector<int64_t>{7, 1, 14}));
  EXPECT_EQ((a - b).to_vector<int64_t>(), (std::vector<int64_t>{3, -7, 0}));
  EXPECT_EQ((a * b).to_vector<int64_t>(), (std::vector<int64_t>{10, -12, 49}));
  EXPECT_EQ(maximum(a, b).to_vector<int64_t>(), (std::vector<int64_t>{5, 4, 7}));
  EXPECT_EQ(minimum(a, b).to_vector<int64_t>(), (std::vector<int64_t>{2, -3, 7}));
  EXPECT_EQ((a + 2.0).to_vector<int64_t>(), (std::vector<int64_t>{7, -1, 9}));
  Tensor i32 = from_vector<int32_t>({1, 2});
  EXPECT_EQ((i32 * i32).dtype(), DType::i32);
  EXPECT_EQ(eq(a, b).to_vector<bool>(), (std::vector<bool>{false, false, true}));
  EXPECT_EQ(ne(a, b).to_vector<bool>(), (std::vector<bool>{true, true, false}));
  EXPECT_EQ(lt(a, b).to_vector<bool>(), (std::vector<bool>{false, true, false}));
  EXPECT_EQ(le(a, b).to_vector<bool>(), (std::vector<bool>{false, true, true}));
  EXPECT_EQ(gt(a, b).to_vector<bool>(), (std::vector<bool>{true, false, false}));
  EXPECT_EQ(ge(a, b).to_vector<bool>(), (std::vector<bool>{true, false, true}));
  Tensor x = from_vector<float>({1, 2, 3}), y = from_vector<float>({3});
  EXPECT_EQ(eq(x, y).to_vector<bool>(), (std::vector<bool>{false, false, true}));  // broadcast
  EXPECT_EQ(eq(x, y).dtype(), DType::b8);
  Tensor p = from_vector<bool>({true, true, false}), q = from_vector<bool>({true, false, false});
  EXPECT_EQ(eq(p, q).to_vector<bool>(), (std::vector<bool>{true, false, true}));
}

TEST(Binary, LogicalKernels) {
  Backend& be = backend_for(Device::cpu());
  Tensor p = from_vector<bool>({true, true, false, false}), q = from_vector<bool>({true, false, true, false});
  Tensor out = empty({4}, {DType::b8});
  be.binary(BinaryOp::logical_and, p, q, out);
  EXPECT_EQ(out.to_vector<bool>(), (std::vector<bool>{true, false, false, false}));
  be.binary(BinaryOp::logical_or, p, q, out);
  EXPECT_EQ(out.to_vector<bool>(), (std::vector<bool>{true, true, true, false}));
  Tensor x = from_vector<double>({0, 2, 0, -1}), y = from_vector<double>({0, 0, 3, 1});
  be.binary(BinaryOp::logical_or, x, y, out);
  EXPECT_EQ(out.to_vector<bool>(), (std::vector<bool>{false, true, true, true}));
}

TEST(Binary, InPlaceKernelAliasingItsFirstInput) {
  // out == a with the same layout, contiguous and strided (add_ relies on it).
  Backend& be = backend_for(Device::cpu());
  Tensor x = values(DType::f64, {1000}, -1, 1, 5), y = values(DType::f64, {1000}, -1, 1, 6);
  std::vector<double> expected = (x + y).to_vector<double>();
  be.binary(BinaryOp::add, x, y, x);
  expect_values(x, expected, 0);
  be.binary(BinaryOp::add, x, x, x);  // all three the same
  for (double& e : expected) e *= 2;
  expect_values(x, expected, 0);
  Tensor m = values(DType::f32, {6, 4}, -1, 1, 7);
  Tensor mt = as_strided(m, {4, 6}, {1, 4}, 0);
  Tensor r = values(DType::f32, {4, 6}, -1, 1, 8);
  std::vector<double> ref = (copy_of(mt) * r).to_vector<double>();
  be.binary(BinaryOp::mul, mt, r, mt);
  expect_values(mt, ref, 0);
}

TEST(Binary, NaNPropagatesThroughMaximumAndMinimum) {
  Tensor a = from_vector<double>({NAN, 1, 2}), b = from_vector<double>({0, NAN, 1});
  for (const Tensor& r : {maximum(a, b), minimum(a, b), maximum(b, a), minimum(b, a)}) {
    std::vector<double> v = r.to_vector<double>();
    EXPECT_TRUE(std::isnan(v[0]) && std::isnan(v[1]));
  }
  EXPECT_EQ(maximum(a, b).to_vector<double>()[2], 2);
  EXPECT_EQ(minimum(a, b).to_vector<double>()[2], 1);
}

TEST(Binary, WhereBroadcastsAllThree) {
  Tensor cond = from_vector<bool>({true, false, true});
  Tensor a = from_vector<double>({1, 2}, {2, 1}), b = scalar_tensor(-1, {DType::f64});
  Tensor r = where(cond, a, b);
  EXPECT_EQ(r.shape(), (Shape{2, 3}));
  expect_values(r, {1, -1, 1, 2, -1, 2});
  Tensor i = where(cond, from_vector<int64_t>({1, 2, 3}), from_vector<int64_t>({0}));
  EXPECT_EQ(i.to_vector<int64_t>(), (std::vector<int64_t>{1, 0, 3}));
}

TEST(Binary, Gradcheck) {
  for (const BinaryCase& c : cases()) {
    SCOPED_TRACE(c.name);
    BinFn op = c.op;
    auto in = [&](const Shape& sa, const Shape& sb, uint64_t seed) {
      return Tensors{rand_input(sa, seed, c.alo, c.ahi), rand_input(sb, seed + 100, c.blo, c.bhi)};
    };
    auto plain = [op](const Tensors& x) { return op(x[0], x[1]); };
    EXPECT_GRADCHECK(plain, in({2, 3}, {2, 3}, 1));
    EXPECT_GRADCHECK([op](const Tensors& x) { return op(transpose(x[0], 0, 1), x[1]); }, in({3, 2}, {2, 3}, 2));
    EXPECT_GRADCHECK([op](const Tensors& x) { return op(x[0], transpose(x[1], 0, 1)); }, in({2, 3}, {3, 2}, 3));
    EXPECT_GRADCHECK(plain, in({2, 3}, {3}, 4));
    EXPECT_GRADCHECK(plain, in({3, 1}, {1, 4}, 5));
    EXPECT_GRADCHECK(plain, in({}, {2, 2}, 6));
    // Only one operand requires grad.
    Tensors one = in({2, 3}, {3}, 7);
    one[1] = one[1].detach();
    EXPECT_GRADCHECK(plain, one);
  }
}

TEST(Binary, Gradgradcheck) {
  // Composed with tanh so that the gradient reaching the op depends on the
  // inputs (for linear ops like add the first derivative alone is constant):
  // this exercises both the op's second derivative and its backward's own
  // backward w.r.t. the incoming gradient.
  for (const BinaryCase& c : cases()) {
    SCOPED_TRACE(c.name);
    BinFn op = c.op;
    Tensors in{rand_input({2, 3}, 11, c.alo, c.ahi), rand_input({3}, 12, c.blo, c.bhi)};
    EXPECT_GRADGRADCHECK([op](const Tensors& x) { return tanh(op(x[0], x[1])); }, in);
    Tensors tr{rand_input({3, 2}, 13, c.alo, c.ahi), rand_input({2, 3}, 14, c.blo, c.bhi)};
    EXPECT_GRADGRADCHECK([op](const Tensors& x) { return tanh(op(transpose(x[0], 0, 1), x[1])); }, tr);
  }
}

TEST(Binary, ScalarOperandGradients) {
  Tensor x = rand_input({2, 3}, 15);
  EXPECT_GRADCHECK([](const Tensors& in) { return in[0] * 2.5 + 1.0; }, {x});
  EXPECT_GRADCHECK([](const Tensors& in) { return 1.0 - in[0] / 3.0; }, {x});
  EXPECT_GRADGRADCHECK([](const Tensors& in) { return (in[0] * 2.5 + 1.0) * in[0]; }, {x});
}

TEST(Binary, TiesSplitTheGradientEvenly) {
  Tensor a = from_vector<double>({1, 2, 3}).set_requires_grad();
  Tensor b = from_vector<double>({1, 5, 0}).set_requires_grad();
  Tensor g = from_vector<double>({1, 1, 1});
  Tensors gmax = grad({maximum(a, b)}, {a, b}, {g});
  expect_values(gmax[0], {0.5, 0, 1});
  expect_values(gmax[1], {0.5, 1, 0});
  Tensors gmin = grad({minimum(a, b)}, {a, b}, {g});
  expect_values(gmin[0], {0.5, 1, 0});
  expect_values(gmin[1], {0.5, 0, 1});
}

TEST(Binary, BroadcastGradientsSumBack) {
  Tensor a = from_vector<double>({1, 2, 3, 4, 5, 6}, {2, 3}).set_requires_grad();
  Tensor b = from_vector<double>({10, 20, 30}).set_requires_grad();
  Tensors g = grad({a * b}, {a, b}, {ones({2, 3}, {DType::f64})});
  expect_values(g[0], {10, 20, 30, 10, 20, 30});
  expect_values(g[1], {5, 7, 9});
}

TEST(Binary, WhereSendsNoGradientThroughTheCondition) {
  Tensor a = from_vector<double>({1, 2, 3}).set_requires_grad();
  Tensor b = from_vector<double>({-1}).set_requires_grad();
  Tensor cond = from_vector<bool>({true, false, true});
  Tensors g = grad({where(cond, a, b)}, {a, b}, {from_vector<double>({1, 2, 3})});
  expect_values(g[0], {1, 0, 3});
  expect_values(g[1], {2});
}

TEST(Binary, PowGradientAtZeroBaseIsFinite) {
  // d/db 0^b = 0 for b > 0 (not 0 · log 0 = NaN), like PyTorch.
  Tensor a = from_vector<double>({0, 2}).set_requires_grad();
  Tensor b = from_vector<double>({2, 3}).set_requires_grad();
  Tensors g = grad({pow(a, b)}, {a, b}, {ones({2}, {DType::f64})});
  expect_values(g[0], {0, 12});
  expect_values(g[1], {0, 8 * std::log(2.0)}, 1e-14);
}

TEST(Binary, ConstantOperandIsNotSaved) {
  // y = x * c saves only c; changing x in place afterwards does not break backward.
  Tensor x = from_vector<double>({1, 2}).set_requires_grad();
  Tensor c = from_vector<double>({3, 4});
  Tensor y = c * x;
  {
    NoGradGuard guard;
    mul_(x, 10.0);
  }
  Tensor gx = grad({y}, {x}, {ones({2}, {DType::f64})})[0];
  expect_values(gx, {3, 4});
  // But c is saved: changing it is reported, naming the op.
  Tensor y2 = c * x;
  mul_(c, 2.0);
  EXPECT_DG_ERROR(grad({y2}, {x}, {ones({2}, {DType::f64})}), "mul", "modified in place");
}

TEST(Binary, Errors) {
  Tensor a = zeros({2, 3}), b = zeros({4});
  EXPECT_DG_ERROR(a + b, "add", "[2, 3]", "[4]", "cannot be broadcast");
  EXPECT_DG_ERROR(a * zeros({3, 3}), "mul", "[2, 3]", "[3, 3]");
  EXPECT_DG_ERROR(a + zeros({3}, {DType::f64}), "add: dtype mismatch: f32 [2, 3] vs f64 [3]");
  EXPECT_DG_ERROR(maximum(a, zeros({3}, {DType::i64})), "maximum", "dtype mismatch");
  Tensor i = from_vector<int64_t>({1, 2});
  EXPECT_DG_ERROR(i / i, "div", "floating", "i64");
  EXPECT_DG_ERROR(pow(i, i), "pow", "floating");
  Tensor p = from_vector<bool>({true});
  EXPECT_DG_ERROR(p - p, "sub", "bool");
  EXPECT_DG_ERROR(where(zeros({2}), a, a), "where", "condition must be bool", "f32");
  EXPECT_DG_ERROR(where(from_vector<bool>({true, false, true, false}), a, a), "where", "[4]", "[2, 3]");
  EXPECT_DG_ERROR(a + Tensor(), "add", "undefined");
}
