// Unary ops: y = f(x) elementwise, any shape and layout. The math of every op
// (f, f', f'') is the table in tensor/functors.h; each op here only names its
// UnaryOp, so forward and backward are shared:
//
//   forward    y  = f(x)                          saves x and y (detached)
//   backward   dx = unary_grad(op, g, x, y) = g * f'(x)      (itself an op)
//   its backward (double backward), given gg:
//              dg = unary_grad(op, gg, x, y)  = gg * f'(x)
//              dx = gg * g * f''(x)           (nothing where f'' = 0)
//   f''(x) comes from unary_grad2, recorded as a node whose backward (f''')
//   refuses with an error: the table stops at f''. Where f'' is constant
//   (square) f''' = 0 and nothing is recorded, so every order is exact.
#include <array>
#include <string>

#include "autograd/ops/common.h"
#include "tensor/functors.h"

namespace dg {

namespace {

using fn::D2;

// Node names "<op>_grad" and "<op>_grad2" (static: nodes keep the pointer).
const char* node_name(UnaryOp op, int order) {
  static const auto names = [] {
    std::array<std::array<std::string, 2>, kNumUnaryOps> n;
    for (int i = 0; i < kNumUnaryOps; ++i) {
      n[i][0] = fmt::format("{}_grad", unary_op_name(static_cast<UnaryOp>(i)));
      n[i][1] = fmt::format("{}_grad2", unary_op_name(static_cast<UnaryOp>(i)));
    }
    return n;
  }();
  return names[static_cast<int>(op)][order - 1].c_str();
}

void check_unary_input(const char* name, UnaryOp op, const Tensor& x) {
  check_defined(name, x);
  fn::Domain d = fn::unary_traits(op).domain;
  if (d == fn::Domain::floating) check_floating(name, x);
  DG_CHECK(fn::domain_accepts(d, x.dtype()), "{}: not defined for {} tensors (shape {})", name, x.dtype(), x.shape());
}

// y = f(x), a new contiguous tensor (bool for logical_not and isfinite).
Tensor unary_forward(UnaryOp op, const Tensor& x, UnaryParams p) {
  Tensor y = empty_as(x.shape(), fn::unary_traits(op).bool_out ? DType::b8 : x.dtype(), x);
  backend_of(x).unary(op, x, y, p);
  return y;
}

// The shared op: y = f(x), backward g * f'(x).
Tensor unary_op(const char* name, UnaryOp op, const Tensor& x, UnaryParams p, const Site& site) {
  check_unary_input(name, op, x);
  Tensor y = unary_forward(op, x, p);
  if (should_record({x}))
    record(name, site, y, {x}, [op, p, x = save(x), y = save_output(y)](const Tensor& g, const Node&) -> Tensors {
      return {unary_grad(op, g, x.get(), y.get(), p.a, p.b)};
    }, {x.shape(), y.shape()});
  return y;
}

// f''(x). With f'' general, a node on x whose backward refuses (f''' is not in
// the table); constant f'' needs no node (f''' = 0).
Tensor unary_grad2(UnaryOp op, const Tensor& x, const Tensor& y, UnaryParams p, const Site& site) {
  Tensor out = empty_as(x.shape(), x);
  backend_of(x).unary_grad2(op, x, y, out, p);
  if (fn::unary_traits(op).d2 == D2::general && should_record({x}))
    record(node_name(op, 2), site, out, {x}, [op](const Tensor&, const Node&) -> Tensors {
      throw Error(fmt::format("{}: third derivative of {} is not supported (the derivative table in "
                              "tensor/functors.h stops at f'')", node_name(op, 2), unary_op_name(op)));
    });
  return out;
}

// d/dx [g f'(x)] = gg * g * f''(x); undefined (zero) where f'' is.
Tensor unary_grad_wrt_x(UnaryOp op, UnaryParams p, const Tensor& gg, const Tensor& g, const Tensor& x,
                        const Tensor& y, const Site& site) {
  if (fn::unary_traits(op).d2 == D2::zero) return Tensor();
  return gg * g * unary_grad2(op, x, y, p, site);
}

}  // namespace

Tensor neg(const Tensor& x, Site site) { return unary_op("neg", UnaryOp::neg, x, {}, site); }
Tensor exp(const Tensor& x, Site site) { return unary_op("exp", UnaryOp::exp, x, {}, site); }
Tensor log(const Tensor& x, Site site) { return unary_op("log", UnaryOp::log, x, {}, site); }
Tensor sqrt(const Tensor& x, Site site) { return unary_op("sqrt", UnaryOp::sqrt, x, {}, site); }
Tensor rsqrt(const Tensor& x, Site site) { return unary_op("rsqrt", UnaryOp::rsqrt, x, {}, site); }
Tensor abs(const Tensor& x, Site site) { return unary_op("abs", UnaryOp::abs, x, {}, site); }
Tensor tanh(const Tensor& x, Site site) { return unary_op("tanh", UnaryOp::tanh, x, {}, site); }
Tensor sigmoid(const Tensor& x, Site site) { return unary_op("sigmoid", UnaryOp::sigmoid, x, {}, site); }
Tensor relu(const Tensor& x, Site site) { return unary_op("relu", UnaryOp::relu, x, {}, site); }
Tensor silu(const Tensor& x, Site site) { return unary_op("silu", UnaryOp::silu, x, {}, site); }
Tensor square(const Tensor& x, Site site) { return unary_op("square", UnaryOp::square, x, {}, site); }

Tensor gelu(const Tensor& x, bool tanh_approx, Site site) {
  return unary_op("gelu", tanh_approx ? UnaryOp::gelu_tanh : UnaryOp::gelu_erf, x, {}, site);
}

// x^e. The common exponents run as their cheaper ops (std::pow is slow).
Tensor pow(const Tensor& x, double exponent, Site site) {
  check_defined("pow", x);
  check_floating("pow", x);
  UnaryOp op = exponent == 2.0    ? UnaryOp::square
               : exponent == 0.5  ? UnaryOp::sqrt
               : exponent == -1.0 ? UnaryOp::reciprocal
                                  : UnaryOp::pow_scalar;
  return unary_op("pow", op, x, {exponent, 0}, site);
}

// min(max(x, lo), hi) like torch.clamp (lo > hi gives hi everywhere).
Tensor clamp(const Tensor& x, double lo, double hi, Site site) {
  return unary_op("clamp", UnaryOp::clamp, x, {lo, hi}, site);
}

// g * f'(x); y = f(x) may be passed undefined (it is recomputed then).
Tensor unary_grad(UnaryOp op, const Tensor& g, const Tensor& x, const Tensor& y, double a, double b, Site site) {
  const char* name = node_name(op, 1);
  check_unary_input(name, op, x);
  check_defined(name, g, "gradient");
  DG_CHECK(!fn::unary_traits(op).bool_out, "{}: {} has no gradient", name, unary_op_name(op));
  check_same_dtype(name, g, x);
  check_same_device(name, g, x);
  DG_CHECK(g.shape() == x.shape() && (!y.defined() || y.shape() == x.shape()),
           "{}: gradient {}, input {} and output {} must have one shape", name, g.shape(), x.shape(),
           y.defined() ? y.shape() : x.shape());
  UnaryParams p{a, b};
  Tensor yv = y.defined() ? y : unary_forward(op, x, p);
  Tensor out = empty_as(x.shape(), x);
  backend_of(x).unary_grad(op, g, x, yv, out, p);
  if (should_record({g, x}))
    record(name, site, out, {g, x},
           [op, p, site, g = save(g), x = save(x), y = save_output(yv)](const Tensor& gg, const Node& n) -> Tensors {
             return {n.needs_grad(0) ? unary_grad(op, gg, x.get(), y.get(), p.a, p.b, site) : Tensor(),
                     n.needs_grad(1) ? unary_grad_wrt_x(op, p, gg, g.get(), x.get(), y.get(), site) : Tensor()};
           }, {g.shape(), x.shape(), yv.shape()});
  return out;
}

}  // namespace dg
