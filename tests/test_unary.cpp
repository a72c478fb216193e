// Unary ops: forward values against std:: math (f32 and f64, contiguous and
// strided, runs long enough for the SIMD blocks), integer and bool dtypes,
// the derivative table of every UnaryOp against finite differences, dtype
// errors, gradcheck (contiguous, transposed, expanded), gradgradcheck, and
// the refused third derivative.
#include <cmath>
#include <functional>
#include <limits>

#include "autograd/engine.h"
#include "testing.h"

using namespace dg;
using dg::testing::expect_values;
using dg::testing::rand_input;

namespace {

// One op, described once: the op, its reference in double, and an input range
// where it is smooth (finite differences need that).
struct UnaryCase {
  const char* name;
  std::function<Tensor(const Tensor&)> op;
  std::function<double(double)> ref;
  double lo = -2, hi = 2;
};

double gelu_tanh_ref(double x) { return 0.5 * x * (1 + std::tanh(std::sqrt(2 / M_PI) * (x + 0.044715 * x * x * x))); }
double gelu_erf_ref(double x) { return 0.5 * x * (1 + std::erf(x / std::sqrt(2.0))); }

const std::vector<UnaryCase>& cases() {
  static const std::vector<UnaryCase> c = {
      {"neg", [](const Tensor& x) { return neg(x); }, [](double x) { return -x; }},
      {"exp", [](const Tensor& x) { return exp(x); }, [](double x) { return std::exp(x); }},
      {"log", [](const Tensor& x) { return log(x); }, [](double x) { return std::log(x); }, 0.2, 3},
      {"sqrt", [](const Tensor& x) { return sqrt(x); }, [](double x) { return std::sqrt(x); }, 0.2, 3},
      {"rsqrt", [](const Tensor& x) { return rsqrt(x); }, [](double x) { return 1 / std::sqrt(x); }, 0.2, 3},
      {"abs", [](const Tensor& x) { return abs(x); }, [](double x) { return std::abs(x); }},
      {"tanh", [](const Tensor& x) { return tanh(x); }, [](double x) { return std::tanh(x); }, -3, 3},
      {"sigmoid", [](const Tensor& x) { return sigmoid(x); }, [](double x) { return 1 / (1 + std::exp(-x)); }, -6, 6},
      {"relu", [](const Tensor& x) { return relu(x); }, [](double x) { return x > 0 ? x : 0; }},
      {"gelu_tanh", [](const Tensor& x) { return gelu(x); }, gelu_tanh_ref, -4, 4},
      {"gelu_erf", [](const Tensor& x) { return gelu(x, false); }, gelu_erf_ref, -4, 4},
      {"silu", [](const Tensor& x) { return silu(x); }, [](double x) { return x / (1 + std::exp(-x)); }, -6, 6},
      {"square", [](const Tensor& x) { return square(x); }, [](double x) { return x * x; }},
      {"pow3", [](const Tensor& x) { return pow(x, 3.0); }, [](double x) { return x * x * x; }},
      {"pow2.5", [](const Tensor& x) { return pow(x, 2.5); }, [](double x) { return std::pow(x, 2.5); }, 0.2, 3},
      {"pow2", [](const Tensor& x) { return pow(x, 2.0); }, [](double x) { return x * x; }},
      {"pow0.5", [](const Tensor& x) { return pow(x, 0.5); }, [](double x) { return std::sqrt(x); }, 0.2, 3},
      {"pow-1", [](const Tensor& x) { return pow(x, -1.0); }, [](double x) { return 1 / x; }, 0.2, 3},
      {"clamp", [](const Tensor& x) { return clamp(x, -0.5, 0.7); },
       [](double x) { return std::min(std::max(x, -0.5), 0.7); }},
  };
  return c;
}

// n values spread over [lo, hi] (not a multiple of the kernels' block size).
std::vector<double> spread(double lo, double hi, int n) {
  std::vector<double> v(n);
  for (int i = 0; i < n; ++i) v[i] = lo + (hi - lo) * (i + 0.5) / n;
  return v;
}

void expect_close_rel(const Tensor& t, const std::vector<double>& expected, double rel, const std::string& what) {
  std::vector<double> v = t.to_vector<double>();
  ASSERT_EQ(v.size(), expected.size()) << what;
  int bad = 0;
  for (size_t i = 0; i < v.size() && bad < 5; ++i) {
    double tol = rel * std::max(1.0, std::abs(expected[i]));
    if (!(std::abs(v[i] - expected[i]) <= tol)) {
      ADD_FAILURE() << what << " element " << i << ": " << v[i] << " vs " << expected[i];
      ++bad;
    }
  }
}

}  // namespace

TEST(Unary, ForwardMatchesStdMathF64AndF32) {
  for (const UnaryCase& c : cases()) {
    std::vector<double> xs = spread(c.lo, c.hi, 1001);
    for (DType dt : {DType::f64, DType::f32}) {
      Tensor x = from_doubles(xs, {1001}, {dt});
      std::vector<double> xin = x.to_vector<double>(), expected(xs.size());
      for (size_t i = 0; i < xs.size(); ++i) expected[i] = c.ref(xin[i]);
      Tensor y = c.op(x);
      EXPECT_EQ(y.dtype(), dt) << c.name;
      expect_close_rel(y, expected, dt == DType::f64 ? 1e-13 : 2e-6, fmt::format("{} {}", c.name, dt));
    }
  }
}

TEST(Unary, StridedAndBroadcastInputsGiveTheSameValues) {
  for (const UnaryCase& c : cases()) {
    for (DType dt : {DType::f64, DType::f32}) {
      Tensor base = from_doubles(spread(c.lo, c.hi, 40 * 30), {40, 30}, {dt});
      Tensor tr = as_strided(base, {30, 40}, {1, 30}, 0);  // transposed view
      Tensor y = c.op(tr);
      EXPECT_TRUE(y.is_contiguous());
      expect_close_rel(y, c.op(copy_of(tr)).to_vector<double>(), dt == DType::f64 ? 1e-15 : 1e-6, c.name);
      Tensor row = as_strided(base, {300, 30}, {0, 1}, 30);  // row 1 repeated (stride 0)
      std::vector<double> ref = c.op(copy_of(row)).to_vector<double>();
      expect_close_rel(c.op(row), ref, dt == DType::f64 ? 1e-15 : 1e-6, c.name);
    }
  }
}

TEST(Unary, HandComputedValues) {
  Tensor x = from_vector<double>({-2, -0.5, 0, 0.5, 2});
  expect_values(relu(x), {0, 0, 0, 0.5, 2});
  expect_values(abs(x), {2, 0.5, 0, 0.5, 2});
  expect_values(clamp(x, -1, 1), {-1, -0.5, 0, 0.5, 1});
  expect_values(square(x), {4, 0.25, 0, 0.25, 4});
  expect_values(sigmoid(x), {0.11920292202211755, 0.3775406687981454, 0.5, 0.6224593312018546, 0.8807970779778823},
                1e-15);
  expect_values(gelu(x, false), {-0.04550026389635842, -0.15426876936299344, 0, 0.34573123063700656,
                                 1.9544997361036416}, 1e-15);
  expect_values(gelu(x), {-0.04540230591222494, -0.15428599017485606, 0, 0.34571400982514394,
                          1.954597694087775}, 1e-15);
  // Saturation and special values.
  Tensor big = from_vector<float>({-100, 100, 0});
  expect_values(sigmoid(big), {0, 1, 0.5});
  expect_values(tanh(big), {-1, 1, 0});
  EXPECT_TRUE(std::isnan(relu(from_vector<double>({NAN})).item<double>()));
  EXPECT_TRUE(std::isnan(clamp(from_vector<double>({NAN}), 0, 1).item<double>()));
}

TEST(Unary, IntegerDtypes) {
  Tensor i64 = from_vector<int64_t>({-3, 0, 5});
  EXPECT_EQ(neg(i64).to_vector<int64_t>(), (std::vector<int64_t>{3, 0, -5}));
  EXPECT_EQ(abs(i64).to_vector<int64_t>(), (std::vector<int64_t>{3, 0, 5}));
  EXPECT_EQ(relu(i64).to_vector<int64_t>(), (std::vector<int64_t>{0, 0, 5}));
  EXPECT_EQ(square(i64).to_vector<int64_t>(), (std::vector<int64_t>{9, 0, 25}));
  EXPECT_EQ(clamp(i64, -1, 2).to_vector<int64_t>(), (std::vector<int64_t>{-1, 0, 2}));
  Tensor i32 = from_vector<int32_t>({-3, 7});
  EXPECT_EQ(neg(i32).dtype(), DType::i32);
  EXPECT_EQ(abs(i32).to_vector<int32_t>(), (std::vector<int32_t>{3, 7}));
}

TEST(Unary, BoolResultKernels) {
  // logical_not and isfinite have no autograd op: the backend kernels directly.
  Backend& be = backend_for(Device::cpu());
  Tensor x = from_vector<double>({0, 1.5, INFINITY, -INFINITY, NAN});
  Tensor out = empty({5}, {DType::b8});
  be.unary(UnaryOp::isfinite, x, out, {});
  EXPECT_EQ(out.to_vector<bool>(), (std::vector<bool>{true, true, false, false, false}));
  be.unary(UnaryOp::logical_not, x, out, {});
  EXPECT_EQ(out.to_vector<bool>(), (std::vector<bool>{true, false, false, false, false}));
  Tensor b = from_vector<bool>({true, false});
  Tensor nb = empty({2}, {DType::b8});
  be.unary(UnaryOp::logical_not, b, nb, {});
  EXPECT_EQ(nb.to_vector<bool>(), (std::vector<bool>{false, true}));
  Tensor i = from_vector<int64_t>({0, 4});
  be.unary(UnaryOp::isfinite, i, nb, {});
  EXPECT_EQ(nb.to_vector<bool>(), (std::vector<bool>{true, true}));
  Tensor s = empty({5}, {DType::f64});
  be.unary(UnaryOp::sign, from_vector<double>({-2, 0, 3, -0.0, 1e-300}), s, {});
  EXPECT_EQ(s.to_vector<double>(), (std::vector<double>{-1, 0, 1, 0, 1}));
}

// Every entry of the derivative table (f' and f'' of every UnaryOp, in f32 and
// f64) against central differences of the entry above it.
TEST(Unary, DerivativeTableMatchesFiniteDifferences) {
  Backend& be = backend_for(Device::cpu());
  for (int k = 0; k < kNumUnaryOps; ++k) {
    UnaryOp op = static_cast<UnaryOp>(k);
    if (op == UnaryOp::logical_not || op == UnaryOp::isfinite) continue;
    UnaryParams p = op == UnaryOp::pow_scalar ? UnaryParams{2.7, 0} : UnaryParams{-0.4, 0.6};
    bool positive = op == UnaryOp::log || op == UnaryOp::sqrt || op == UnaryOp::rsqrt ||
                    op == UnaryOp::pow_scalar || op == UnaryOp::reciprocal;
    std::vector<double> xs = spread(positive ? 0.3 : -3, 3, 301);
    const double h = 1e-5;
    auto f = [&](const std::vector<double>& v, int order, DType dt) {
      Tensor x = from_doubles(v, {static_cast<int64_t>(v.size())}, {dt});
      Tensor y = empty_like(x), out = empty_like(x);
      be.unary(op, x, y, p);
      if (order == 0) return y;
      if (order == 1) be.unary_grad(op, ones_like(x), x, y, out, p);
      else be.unary_grad2(op, x, y, out, p);
      return out;
    };
    std::vector<double> xp = xs, xm = xs;
    for (size_t i = 0; i < xs.size(); ++i) xp[i] += h, xm[i] -= h;
    for (int order = 1; order <= 2; ++order) {
      std::vector<double> fp = f(xp, order - 1, DType::f64).to_vector<double>();
      std::vector<double> fm = f(xm, order - 1, DType::f64).to_vector<double>();
      std::vector<double> analytic = f(xs, order, DType::f64).to_vector<double>();
      std::vector<double> analytic32 = f(xs, order, DType::f32).to_vector<double>();
      for (size_t i = 0; i < xs.size(); ++i) {
        // Skip the kinks of the piecewise ops (abs, relu, clamp, sign at 0, -0.4, 0.6).
        if (std::abs(xs[i]) < 2 * h || std::abs(xs[i] + 0.4) < 2 * h || std::abs(xs[i] - 0.6) < 2 * h) continue;
        double numeric = (fp[i] - fm[i]) / (2 * h);
        EXPECT_NEAR(analytic[i], numeric, 1e-6 * std::max(1.0, std::abs(numeric)))
            << unary_op_name(op) << " f" << std::string(order, '\'') << " at x = " << xs[i];
        EXPECT_NEAR(analytic32[i], analytic[i], 1e-5 * std::max(1.0, std::abs(analytic[i])))
            << unary_op_name(op) << " f32 f" << std::string(order, '\'') << " at x = " << xs[i];
      }
    }
  }
}

TEST(Unary, Gradcheck) {
  for (const UnaryCase& c : cases()) {
    SCOPED_TRACE(c.name);
    auto op = c.op;
    EXPECT_GRADCHECK([op](const Tensors& in) { return op(in[0]); }, {rand_input({3, 4}, 1, c.lo, c.hi)});
    EXPECT_GRADCHECK([op](const Tensors& in) { return op(transpose(in[0], 0, 1)); },
                     {rand_input({4, 3}, 2, c.lo, c.hi)});
    EXPECT_GRADCHECK([op](const Tensors& in) { return op(expand(in[0], {3, 4})); },
                     {rand_input({1, 4}, 3, c.lo, c.hi)});
  }
}

TEST(Unary, Gradgradcheck) {
  for (const UnaryCase& c : cases()) {
    SCOPED_TRACE(c.name);
    auto op = c.op;
    EXPECT_GRADGRADCHECK([op](const Tensors& in) { return op(in[0]); }, {rand_input({2, 3}, 4, c.lo, c.hi)});
    EXPECT_GRADGRADCHECK([op](const Tensors& in) { return op(transpose(in[0], 0, 1)); },
                         {rand_input({3, 2}, 5, c.lo, c.hi)});
  }
}

TEST(Unary, UnaryGradIsDifferentiableInBothInputs) {
  // unary_grad(op, g, x, y) = g f'(x): check its own gradient w.r.t. g and x.
  Tensor g = rand_input({5}, 6), x = rand_input({5}, 7, -2, 2);
  EXPECT_GRADCHECK([](const Tensors& in) { return unary_grad(UnaryOp::tanh, in[0], in[1], Tensor(), 0, 0); },
                   {g, x});
  EXPECT_GRADCHECK([](const Tensors& in) { return unary_grad(UnaryOp::gelu_tanh, in[0], in[1], Tensor(), 0, 0); },
                   {g, x});
  // Its value, with y left out (recomputed).
  Tensor v = unary_grad(UnaryOp::tanh, from_vector<double>({2}), from_vector<double>({0.5}), Tensor(), 0, 0);
  EXPECT_NEAR(v.item<double>(), 2 * (1 - std::pow(std::tanh(0.5), 2)), 1e-15);
}

TEST(Unary, SecondDerivativeValues) {
  // d²/dx² tanh = -2 tanh (1 - tanh²), through two dg::grad calls.
  Tensor x = from_vector<double>({-1, 0.3, 2}).set_requires_grad();
  Tensor y = tanh(x);
  Tensor g1 = grad({y}, {x}, {ones_like(y)}, true, true)[0];
  Tensor g2 = grad({g1}, {x}, {ones_like(g1)})[0];
  std::vector<double> expected;
  for (double v : {-1.0, 0.3, 2.0}) {
    double t = std::tanh(v);
    expected.push_back(-2 * t * (1 - t * t));
  }
  expect_values(g2, expected, 1e-14);
}

TEST(Unary, ThirdDerivativeIsRefused) {
  for (auto op : {+[](const Tensor& x) { return tanh(x); }, +[](const Tensor& x) { return exp(x); }}) {
    Tensor x = from_vector<double>({0.5, -1}).set_requires_grad();
    Tensor y = op(x);
    Tensor g1 = grad({y}, {x}, {ones_like(y)}, true, true)[0];
    Tensor g2 = grad({g1}, {x}, {ones_like(g1)}, true, true)[0];
    EXPECT_DG_ERROR(grad({g2}, {x}, {ones_like(g2)}), "third derivative of", "is not supported");
  }
  // Where f'' is constant or zero, every order is exact: x³ via square has f''' = 0 here.
  Tensor x = from_vector<double>({1.5}).set_requires_grad();
  Tensor y = square(x);
  Tensor g1 = grad({y}, {x}, {ones_like(y)}, true, true)[0];
  Tensor g2 = grad({g1}, {x}, {ones_like(g1)}, true, true)[0];
  EXPECT_DOUBLE_EQ(g2.item<double>(), 2.0);
  EXPECT_FALSE(g2.requires_grad());  // a constant: no third-derivative node at all
}

TEST(Unary, Errors) {
  Tensor i = from_vector<int64_t>({1, 2});
  EXPECT_DG_ERROR(exp(i), "exp", "floating", "i64", "[2]");
  EXPECT_DG_ERROR(gelu(i), "gelu", "floating", "i64");
  EXPECT_DG_ERROR(pow(i, 2.0), "pow", "floating", "i64");
  EXPECT_DG_ERROR(neg(from_vector<bool>({true})), "neg", "bool");
  EXPECT_DG_ERROR(tanh(Tensor()), "tanh", "undefined");
  Tensor x = from_vector<double>({1, 2});
  EXPECT_DG_ERROR(unary_grad(UnaryOp::tanh, from_vector<float>({1, 1}), x, Tensor(), 0, 0), "tanh_grad",
                  "dtype mismatch");
  EXPECT_DG_ERROR(unary_grad(UnaryOp::tanh, from_vector<double>({1, 1, 1}), x, Tensor(), 0, 0), "tanh_grad",
                  "[3]", "[2]");
}

TEST(Unary, RecordsOnlyWhenNeeded) {
  Tensor x = rand_input({3}, 8);
  EXPECT_TRUE(exp(x).requires_grad());
  EXPECT_STREQ(exp(x).grad_fn()->name(), "exp");
  EXPECT_FALSE(exp(x.detach()).requires_grad());
  NoGradGuard guard;
  EXPECT_FALSE(exp(x).requires_grad());
}
