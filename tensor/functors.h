#pragma once
// The scalar math of every elementwise op, written once and shared by the CPU
// loops (tensor/cpu/elementwise.cpp) and the CUDA kernels: a table of
// derivatives.
//
// Unary functor F (T is the compute type, float or double, or an integer type
// where the op's domain allows it):
//   f(x)        the value y = f(x)
//   df(x, y)    f'(x), given y = f(x) too (tanh' = 1 - y², cheaper than from x)
//   d2f(x, y)   f''(x)  (the double backward of unary_grad needs it)
//   kDomain     dtypes the op accepts; kBoolOut: the result is bool
//   kD2         f'' is zero, constant, or a general function (then f''' would
//               be needed for a third derivative, which autograd refuses)
//   kCore       a transcendental "core" t = core(arg(x)) (exp, tanh, ...) on
//               which f, df and d2f are plain arithmetic: f_core(x, t) ... The
//               CPU computes the core with SIMD Eigen calls over a block and
//               the arithmetic in auto-vectorised loops; f(x) itself is
//               f_core(x, core(arg(x))), so the formula exists once.
//
//   fn::visit_unary(UnaryOp::tanh, {}, [&](auto f) { y = f.f(x); });
//
// Binary functor: f(a, b); comparisons and logical ops return bool.
#include <cmath>
#include <cstdint>
#include <string_view>
#include <type_traits>

#include "tensor/backend.h"
#include "tensor/host_device.h"

namespace dg::fn {

// Which dtypes an op accepts.
enum class Domain : uint8_t {
  floating,  // f32, f64 (transcendental ops)
  numeric,   // f32, f64, i64, i32 (not bool)
  any,       // every dtype, bool included
};
// f'' identically zero, a nonzero constant, or a function of x.
enum class D2 : uint8_t { zero, constant, general };
// The transcendental at the heart of an op (none: plain arithmetic).
enum class Core : uint8_t { none, exp, log, sqrt, rsqrt, tanh, sigmoid };

template <class T>
inline constexpr bool is_float_v = std::is_floating_point_v<T>;

template <class T>
constexpr bool domain_accepts(Domain d) {
  if (d == Domain::floating) return is_float_v<T>;
  if (d == Domain::numeric) return !std::is_same_v<T, bool>;
  return true;
}
constexpr bool domain_accepts(Domain d, DType t) {
  if (d == Domain::floating) return is_floating(t);
  if (d == Domain::numeric) return t != DType::b8;
  return true;
}

// The core transcendental on one scalar (the CPU's SIMD path computes the same
// function with Eigen over a block).
template <class T>
DG_HOST_DEVICE T core(Core c, T v) {
  switch (c) {
    case Core::exp: return std::exp(v);
    case Core::log: return std::log(v);
    case Core::sqrt: return std::sqrt(v);
    case Core::rsqrt: return T(1) / std::sqrt(v);
    case Core::tanh: return std::tanh(v);
    case Core::sigmoid: return T(1) / (T(1) + std::exp(-v));
    case Core::none: break;
  }
  return v;
}

// Base for an op that is its own core: t = core(x), f = t.
template <Core C>
struct CoreIsValue {
  static constexpr Core kCore = C;
  template <class T> DG_HOST_DEVICE T arg(T x) const { return x; }
  template <class T> DG_HOST_DEVICE T f_core(T, T t) const { return t; }
  template <class T> DG_HOST_DEVICE T f(T x) const { return core(C, x); }
};
struct NoCore {
  static constexpr Core kCore = Core::none;
};

// ---------------------------------------------------------------- unary

struct Neg : NoCore {  // -x
  static constexpr Domain kDomain = Domain::numeric;
  static constexpr bool kBoolOut = false;
  static constexpr D2 kD2 = D2::zero;
  template <class T> DG_HOST_DEVICE T f(T x) const { return -x; }
  template <class T> DG_HOST_DEVICE T df(T, T) const { return T(-1); }
  template <class T> DG_HOST_DEVICE T d2f(T, T) const { return T(0); }
};

struct Exp : CoreIsValue<Core::exp> {  // e^x: every derivative is y
  static constexpr Domain kDomain = Domain::floating;
  static constexpr bool kBoolOut = false;
  static constexpr D2 kD2 = D2::general;
  template <class T> DG_HOST_DEVICE T df(T, T y) const { return y; }
  template <class T> DG_HOST_DEVICE T d2f(T, T y) const { return y; }
};

struct Log : CoreIsValue<Core::log> {  // log x: 1/x, -1/x²
  static constexpr Domain kDomain = Domain::floating;
  static constexpr bool kBoolOut = false;
  static constexpr D2 kD2 = D2::general;
  template <class T> DG_HOST_DEVICE T df(T x, T) const { return T(1) / x; }
  template <class T> DG_HOST_DEVICE T d2f(T x, T) const { return T(-1) / (x * x); }
};

struct Sqrt : CoreIsValue<Core::sqrt> {  // y = √x: 1/(2y), -1/(4y³)
  static constexpr Domain kDomain = Domain::floating;
  static constexpr bool kBoolOut = false;
  static constexpr D2 kD2 = D2::general;
  template <class T> DG_HOST_DEVICE T df(T, T y) const { return T(0.5) / y; }
  template <class T> DG_HOST_DEVICE T d2f(T, T y) const { return T(-0.25) / (y * y * y); }
};

struct Rsqrt : CoreIsValue<Core::rsqrt> {  // y = x^(-1/2): -y³/2, 3y⁵/4
  static constexpr Domain kDomain = Domain::floating;
  static constexpr bool kBoolOut = false;
  static constexpr D2 kD2 = D2::general;
  template <class T> DG_HOST_DEVICE T df(T, T y) const { return T(-0.5) * y * y * y; }
  template <class T> DG_HOST_DEVICE T d2f(T, T y) const { return T(0.75) * y * y * y * y * y; }
};

struct Sign : NoCore {  // -1, 0 or 1 (0 for NaN)
  static constexpr Domain kDomain = Domain::numeric;
  static constexpr bool kBoolOut = false;
  static constexpr D2 kD2 = D2::zero;
  template <class T> DG_HOST_DEVICE T f(T x) const { return T((T(0) < x) - (x < T(0))); }
  template <class T> DG_HOST_DEVICE T df(T, T) const { return T(0); }
  template <class T> DG_HOST_DEVICE T d2f(T, T) const { return T(0); }
};

struct Abs : NoCore {  // |x|: sign(x) (0 at 0, like PyTorch)
  static constexpr Domain kDomain = Domain::numeric;
  static constexpr bool kBoolOut = false;
  static constexpr D2 kD2 = D2::zero;
  template <class T> DG_HOST_DEVICE T f(T x) const { return x < T(0) ? T(-x) : x; }
  template <class T> DG_HOST_DEVICE T df(T x, T) const { return Sign{}.f(x); }
  template <class T> DG_HOST_DEVICE T d2f(T, T) const { return T(0); }
};

struct Tanh : CoreIsValue<Core::tanh> {  // y = tanh x: 1 - y², -2y(1 - y²)
  static constexpr Domain kDomain = Domain::floating;
  static constexpr bool kBoolOut = false;
  static constexpr D2 kD2 = D2::general;
  template <class T> DG_HOST_DEVICE T df(T, T y) const { return T(1) - y * y; }
  template <class T> DG_HOST_DEVICE T d2f(T, T y) const { return T(-2) * y * (T(1) - y * y); }
};

struct Sigmoid : CoreIsValue<Core::sigmoid> {  // y = 1/(1+e^-x): y(1-y), y(1-y)(1-2y)
  static constexpr Domain kDomain = Domain::floating;
  static constexpr bool kBoolOut = false;
  static constexpr D2 kD2 = D2::general;
  template <class T> DG_HOST_DEVICE T df(T, T y) const { return y * (T(1) - y); }
  template <class T> DG_HOST_DEVICE T d2f(T, T y) const { return y * (T(1) - y) * (T(1) - T(2) * y); }
};

struct Relu : NoCore {  // max(x, 0) (NaN stays NaN): 1 where x > 0
  static constexpr Domain kDomain = Domain::numeric;
  static constexpr bool kBoolOut = false;
  static constexpr D2 kD2 = D2::zero;
  template <class T> DG_HOST_DEVICE T f(T x) const { return x < T(0) ? T(0) : x; }
  template <class T> DG_HOST_DEVICE T df(T x, T) const { return x > T(0) ? T(1) : T(0); }
  template <class T> DG_HOST_DEVICE T d2f(T, T) const { return T(0); }
};

// GELU, tanh approximation: f = x/2 (1 + t), t = tanh(u), u = k (x + c x³).
//   f'  = (1 + t)/2 + x/2 (1 - t²) u'                     u'  = k (1 + 3c x²)
//   f'' = (1 - t²) u' + x/2 (1 - t²) (u'' - 2 t u'²)      u'' = 6 k c x
struct GeluTanh {
  static constexpr Domain kDomain = Domain::floating;
  static constexpr bool kBoolOut = false;
  static constexpr D2 kD2 = D2::general;
  static constexpr Core kCore = Core::tanh;
  static constexpr double kK = 0.7978845608028654;  // sqrt(2/pi)
  static constexpr double kC = 0.044715;
  template <class T> DG_HOST_DEVICE T arg(T x) const { return T(kK) * (x + T(kC) * x * x * x); }
  template <class T> DG_HOST_DEVICE T f_core(T x, T t) const { return T(0.5) * x * (T(1) + t); }
  template <class T> DG_HOST_DEVICE T df_core(T x, T t) const {
    T du = T(kK) * (T(1) + T(3 * kC) * x * x);
    return T(0.5) * (T(1) + t) + T(0.5) * x * (T(1) - t * t) * du;
  }
  template <class T> DG_HOST_DEVICE T d2f_core(T x, T t) const {
    T du = T(kK) * (T(1) + T(3 * kC) * x * x), d2u = T(6 * kK * kC) * x, s = T(1) - t * t;
    return s * du + T(0.5) * x * s * (d2u - T(2) * t * du * du);
  }
  template <class T> DG_HOST_DEVICE T f(T x) const { return f_core(x, core(kCore, arg(x))); }
  template <class T> DG_HOST_DEVICE T df(T x, T) const { return df_core(x, core(kCore, arg(x))); }
  template <class T> DG_HOST_DEVICE T d2f(T x, T) const { return d2f_core(x, core(kCore, arg(x))); }
};

// GELU, exact: f = x Φ(x), Φ(x) = (1 + erf(x/√2))/2, φ = e^(-x²/2)/√(2π).
//   f' = Φ + x φ,   f'' = φ (2 - x²)
struct GeluErf : NoCore {
  static constexpr Domain kDomain = Domain::floating;
  static constexpr bool kBoolOut = false;
  static constexpr D2 kD2 = D2::general;
  static constexpr double kInvSqrt2 = 0.7071067811865476;
  static constexpr double kInvSqrt2Pi = 0.3989422804014327;
  template <class T> DG_HOST_DEVICE static T cdf(T x) { return T(0.5) * (T(1) + std::erf(x * T(kInvSqrt2))); }
  template <class T> DG_HOST_DEVICE static T pdf(T x) { return T(kInvSqrt2Pi) * std::exp(T(-0.5) * x * x); }
  template <class T> DG_HOST_DEVICE T f(T x) const { return x * cdf(x); }
  template <class T> DG_HOST_DEVICE T df(T x, T) const { return cdf(x) + x * pdf(x); }
  template <class T> DG_HOST_DEVICE T d2f(T x, T) const { return pdf(x) * (T(2) - x * x); }
};

// SiLU: f = x s, s = sigmoid(x).  f' = s (1 + x (1 - s)),  f'' = s (1 - s) (2 + x (1 - 2s))
struct Silu {
  static constexpr Domain kDomain = Domain::floating;
  static constexpr bool kBoolOut = false;
  static constexpr D2 kD2 = D2::general;
  static constexpr Core kCore = Core::sigmoid;
  template <class T> DG_HOST_DEVICE T arg(T x) const { return x; }
  template <class T> DG_HOST_DEVICE T f_core(T x, T s) const { return x * s; }
  template <class T> DG_HOST_DEVICE T df_core(T x, T s) const { return s * (T(1) + x * (T(1) - s)); }
  template <class T> DG_HOST_DEVICE T d2f_core(T x, T s) const {
    return s * (T(1) - s) * (T(2) + x * (T(1) - T(2) * s));
  }
  template <class T> DG_HOST_DEVICE T f(T x) const { return f_core(x, core(kCore, x)); }
  template <class T> DG_HOST_DEVICE T df(T x, T) const { return df_core(x, core(kCore, x)); }
  template <class T> DG_HOST_DEVICE T d2f(T x, T) const { return d2f_core(x, core(kCore, x)); }
};

// x^a: a x^(a-1), a (a-1) x^(a-2); the zero coefficients are exact zeros
// (0 · 0^(-1) would be NaN), like PyTorch.
struct PowScalar : NoCore {
  static constexpr Domain kDomain = Domain::floating;
  static constexpr bool kBoolOut = false;
  static constexpr D2 kD2 = D2::general;
  double a;
  template <class T> DG_HOST_DEVICE T f(T x) const { return std::pow(x, T(a)); }
  template <class T> DG_HOST_DEVICE T df(T x, T) const { return a == 0 ? T(0) : T(a) * std::pow(x, T(a - 1)); }
  template <class T> DG_HOST_DEVICE T d2f(T x, T) const {
    return a == 0 || a == 1 ? T(0) : T(a * (a - 1)) * std::pow(x, T(a - 2));
  }
};

// min(max(x, lo), hi) (NaN stays NaN): the gradient passes where lo <= x <= hi.
struct Clamp : NoCore {
  static constexpr Domain kDomain = Domain::numeric;
  static constexpr bool kBoolOut = false;
  static constexpr D2 kD2 = D2::zero;
  double lo, hi;
  template <class T> DG_HOST_DEVICE T f(T x) const {
    T m = x < T(lo) ? T(lo) : x;
    return m > T(hi) ? T(hi) : m;
  }
  template <class T> DG_HOST_DEVICE T df(T x, T) const { return x >= T(lo) && x <= T(hi) ? T(1) : T(0); }
  template <class T> DG_HOST_DEVICE T d2f(T, T) const { return T(0); }
};

struct LogicalNot : NoCore {  // !x, bool result, no gradient
  static constexpr Domain kDomain = Domain::any;
  static constexpr bool kBoolOut = true;
  static constexpr D2 kD2 = D2::zero;
  template <class T> DG_HOST_DEVICE bool f(T x) const { return !(x != T(0)); }
  template <class T> DG_HOST_DEVICE T df(T, T) const { return T(0); }
  template <class T> DG_HOST_DEVICE T d2f(T, T) const { return T(0); }
};

struct IsFinite : NoCore {  // bool result (integers are always finite), no gradient
  static constexpr Domain kDomain = Domain::any;
  static constexpr bool kBoolOut = true;
  static constexpr D2 kD2 = D2::zero;
  template <class T> DG_HOST_DEVICE bool f(T x) const {
    if constexpr (is_float_v<T>) return x - x == T(0);  // inf - inf and NaN - NaN are NaN
    else return true;
  }
  template <class T> DG_HOST_DEVICE T df(T, T) const { return T(0); }
  template <class T> DG_HOST_DEVICE T d2f(T, T) const { return T(0); }
};

struct Square : NoCore {  // x²: 2x, 2
  static constexpr Domain kDomain = Domain::numeric;
  static constexpr bool kBoolOut = false;
  static constexpr D2 kD2 = D2::constant;
  template <class T> DG_HOST_DEVICE T f(T x) const { return x * x; }
  template <class T> DG_HOST_DEVICE T df(T x, T) const { return T(2) * x; }
  template <class T> DG_HOST_DEVICE T d2f(T, T) const { return T(2); }
};

struct Reciprocal : NoCore {  // y = 1/x: -y², 2y³
  static constexpr Domain kDomain = Domain::floating;
  static constexpr bool kBoolOut = false;
  static constexpr D2 kD2 = D2::general;
  template <class T> DG_HOST_DEVICE T f(T x) const { return T(1) / x; }
  template <class T> DG_HOST_DEVICE T df(T, T y) const { return -y * y; }
  template <class T> DG_HOST_DEVICE T d2f(T, T y) const { return T(2) * y * y * y; }
};

// Calls f with the functor of `op` (parameters from p) and returns its result.
template <class F>
DG_HOST_DEVICE decltype(auto) visit_unary(UnaryOp op, UnaryParams p, F&& f) {
  switch (op) {
    case UnaryOp::neg: return f(Neg{});
    case UnaryOp::exp: return f(Exp{});
    case UnaryOp::log: return f(Log{});
    case UnaryOp::sqrt: return f(Sqrt{});
    case UnaryOp::rsqrt: return f(Rsqrt{});
    case UnaryOp::abs: return f(Abs{});
    case UnaryOp::tanh: return f(Tanh{});
    case UnaryOp::sigmoid: return f(Sigmoid{});
    case UnaryOp::relu: return f(Relu{});
    case UnaryOp::gelu_tanh: return f(GeluTanh{});
    case UnaryOp::gelu_erf: return f(GeluErf{});
    case UnaryOp::silu: return f(Silu{});
    case UnaryOp::pow_scalar: return f(PowScalar{{}, p.a});
    case UnaryOp::clamp: return f(Clamp{{}, p.a, p.b});
    case UnaryOp::sign: return f(Sign{});
    case UnaryOp::logical_not: return f(LogicalNot{});
    case UnaryOp::isfinite: return f(IsFinite{});
    case UnaryOp::square: return f(Square{});
    case UnaryOp::reciprocal: return f(Reciprocal{});
  }
  return f(Neg{});
}

// Calls body(functor, T{}) with the functor of `op` and the type of dtype dt,
// when the op accepts dt; another dtype reaching a kernel is a bug (the
// autograd ops check it and name the op), reported naming `kernel`.
template <class Body>
void visit_unary_dtype(std::string_view kernel, UnaryOp op, UnaryParams p, DType dt, Body&& body) {
  visit_unary(op, p, [&](auto f) {
    using F = decltype(f);
    visit_dtype(dt, [&](auto tag) {
      using T = decltype(tag);
      if constexpr (domain_accepts<T>(F::kDomain)) body(f, tag);
      else DG_ASSERT(false, "{}: {} does not accept {}", kernel, unary_op_name(op), dtype_name(dt));
    });
  });
}

// The static traits of a unary op, at run time.
struct UnaryTraits {
  Domain domain;
  bool bool_out;
  D2 d2;
};
inline UnaryTraits unary_traits(UnaryOp op) {
  return visit_unary(op, {}, [](auto fn) {
    using F = decltype(fn);
    return UnaryTraits{F::kDomain, F::kBoolOut, F::kD2};
  });
}

// ---------------------------------------------------------------- fills

// Element i of Backend::arange: an explicit fma, so every compiler rounds it alike.
DG_HOST_DEVICE inline double arange_at(int64_t i, double start, double step) {
  return std::fma(static_cast<double>(i), step, start);
}

// ---------------------------------------------------------------- binary

struct Add {
  static constexpr Domain kDomain = Domain::numeric;
  template <class T> DG_HOST_DEVICE T f(T a, T b) const { return a + b; }
};
struct Sub {
  static constexpr Domain kDomain = Domain::numeric;
  template <class T> DG_HOST_DEVICE T f(T a, T b) const { return a - b; }
};
struct Mul {
  static constexpr Domain kDomain = Domain::numeric;
  template <class T> DG_HOST_DEVICE T f(T a, T b) const { return a * b; }
};
struct Div {  // floating only: integer division by zero would trap
  static constexpr Domain kDomain = Domain::floating;
  template <class T> DG_HOST_DEVICE T f(T a, T b) const { return a / b; }
};
struct Pow {
  static constexpr Domain kDomain = Domain::floating;
  template <class T> DG_HOST_DEVICE T f(T a, T b) const { return std::pow(a, b); }
};
struct Maximum {  // NaN propagates (from either side)
  static constexpr Domain kDomain = Domain::numeric;
  template <class T> DG_HOST_DEVICE T f(T a, T b) const { return a > b || a != a ? a : b; }
};
struct Minimum {
  static constexpr Domain kDomain = Domain::numeric;
  template <class T> DG_HOST_DEVICE T f(T a, T b) const { return a < b || a != a ? a : b; }
};
struct Eq {
  static constexpr Domain kDomain = Domain::any;
  template <class T> DG_HOST_DEVICE bool f(T a, T b) const { return a == b; }
};
struct Ne {
  static constexpr Domain kDomain = Domain::any;
  template <class T> DG_HOST_DEVICE bool f(T a, T b) const { return a != b; }
};
struct Lt {
  static constexpr Domain kDomain = Domain::any;
  template <class T> DG_HOST_DEVICE bool f(T a, T b) const { return a < b; }
};
struct Le {
  static constexpr Domain kDomain = Domain::any;
  template <class T> DG_HOST_DEVICE bool f(T a, T b) const { return a <= b; }
};
struct Gt {
  static constexpr Domain kDomain = Domain::any;
  template <class T> DG_HOST_DEVICE bool f(T a, T b) const { return a > b; }
};
struct Ge {
  static constexpr Domain kDomain = Domain::any;
  template <class T> DG_HOST_DEVICE bool f(T a, T b) const { return a >= b; }
};
struct LogicalAnd {
  static constexpr Domain kDomain = Domain::any;
  template <class T> DG_HOST_DEVICE bool f(T a, T b) const { return a != T(0) && b != T(0); }
};
struct LogicalOr {
  static constexpr Domain kDomain = Domain::any;
  template <class T> DG_HOST_DEVICE bool f(T a, T b) const { return a != T(0) || b != T(0); }
};

template <class F>
DG_HOST_DEVICE decltype(auto) visit_binary(BinaryOp op, F&& f) {
  switch (op) {
    case BinaryOp::add: return f(Add{});
    case BinaryOp::sub: return f(Sub{});
    case BinaryOp::mul: return f(Mul{});
    case BinaryOp::div: return f(Div{});
    case BinaryOp::pow: return f(Pow{});
    case BinaryOp::maximum: return f(Maximum{});
    case BinaryOp::minimum: return f(Minimum{});
    case BinaryOp::eq: return f(Eq{});
    case BinaryOp::ne: return f(Ne{});
    case BinaryOp::lt: return f(Lt{});
    case BinaryOp::le: return f(Le{});
    case BinaryOp::gt: return f(Gt{});
    case BinaryOp::ge: return f(Ge{});
    case BinaryOp::logical_and: return f(LogicalAnd{});
    case BinaryOp::logical_or: return f(LogicalOr{});
  }
  return f(Add{});
}

// Calls body(functor, T{}) for `op` on dtype dt, like visit_unary_dtype.
template <class Body>
void visit_binary_dtype(std::string_view kernel, BinaryOp op, DType dt, Body&& body) {
  visit_binary(op, [&](auto f) {
    using F = decltype(f);
    visit_dtype(dt, [&](auto tag) {
      using T = decltype(tag);
      if constexpr (domain_accepts<T>(F::kDomain)) body(f, tag);
      else DG_ASSERT(false, "{}: {} does not accept {}", kernel, binary_op_name(op), dtype_name(dt));
    });
  });
}

inline Domain binary_domain(BinaryOp op) {
  return visit_binary(op, [](auto fn) { return decltype(fn)::kDomain; });
}

}  // namespace dg::fn
