// Binary ops with NumPy broadcasting: out = a (op) b, out's shape is
// broadcast(a, b). Both operands have one dtype and one device; a double
// operand becomes a 0-dim tensor of the tensor's dtype. Comparisons return
// bool and have no gradient.
//
// Backward returns each gradient at the output's shape; the engine sums it
// back to the operand's shape (sum_to), so broadcasting needs no code here.
// Every backward is written with these same ops, so double backward works.
#include "autograd/ops/common.h"
#include "tensor/functors.h"

namespace dg {

namespace {

void check_binary(const char* name, BinaryOp op, const Tensor& a, const Tensor& b) {
  check_defined(name, a, "first operand");
  check_defined(name, b, "second operand");
  check_same_dtype(name, a, b);
  check_same_device(name, a, b);
  fn::Domain d = fn::binary_domain(op);
  DG_CHECK(d != fn::Domain::floating || is_floating(a.dtype()),
           "{}: expected floating tensors (f32 or f64), got {} {} and {} {}", name, a.dtype(), a.shape(), b.dtype(),
           b.shape());
  DG_CHECK(fn::domain_accepts(d, a.dtype()), "{}: not defined for {} tensors ({} and {})", name, a.dtype(),
           a.shape(), b.shape());
}

// out = a (op) b, broadcast; a new contiguous tensor.
Tensor binary_forward(const char* name, BinaryOp op, const Tensor& a, const Tensor& b) {
  check_binary(name, op, a, b);
  Shape shape = a.shape() == b.shape() ? a.shape() : broadcast_shapes(a.shape(), b.shape(), name);
  Tensor out = empty_as(shape, is_comparison(op) ? DType::b8 : a.dtype(), a);
  backend_of(a).binary(op, broadcast_view(a, shape), broadcast_view(b, shape), out);
  return out;
}

Tensor scalar_like(double v, const Tensor& t) { return scalar_tensor(v, {t.dtype(), t.device()}); }

// A saved operand, only when the other operand's gradient needs it (so an
// in-place change of a constant operand is not reported needlessly).
SavedTensor save_if(bool needed, const Tensor& t) { return needed ? save(t) : SavedTensor(); }

// The share of the gradient that goes to `first` in maximum(first, second):
// 1 where it is larger, 1/2 on ties (like PyTorch), 0 where it is smaller.
Tensor winner_share(const Tensor& first, const Tensor& second) {
  Tensor zero = scalar_like(0.0, first);
  return where(gt(first, second), scalar_like(1.0, first), where(eq(first, second), scalar_like(0.5, first), zero));
}

// d/da a^b = b a^(b-1), exactly 0 where b == 0 (0 · 0^-1 would be NaN).
Tensor pow_grad_base(const Tensor& g, const Tensor& a, const Tensor& b) {
  Tensor zero = scalar_like(0.0, b);
  return where(eq(b, zero), zero, g * b * pow(a, b - 1.0));
}

// d/db a^b = a^b log a, exactly 0 where a == 0 and b >= 0 (the limit; log 0 = -inf).
Tensor pow_grad_exponent(const Tensor& g, const Tensor& a, const Tensor& b) {
  Tensor zero = scalar_like(0.0, a);
  Tensor at_zero = binary_forward("pow", BinaryOp::logical_and, eq(a, zero), ge(b, zero));
  return where(at_zero, zero, g * pow(a, b) * log(a));
}

}  // namespace

Tensor add(const Tensor& a, const Tensor& b, Site site) {
  Tensor out = binary_forward("add", BinaryOp::add, a, b);
  if (should_record({a, b}))
    record("add", site, out, {a, b}, [](const Tensor& g, const Node&) -> Tensors { return {g, g}; });
  return out;
}

Tensor sub(const Tensor& a, const Tensor& b, Site site) {
  Tensor out = binary_forward("sub", BinaryOp::sub, a, b);
  if (should_record({a, b}))
    record("sub", site, out, {a, b}, [](const Tensor& g, const Node& n) -> Tensors {
      return {g, n.needs_grad(1) ? -g : Tensor()};
    });
  return out;
}

Tensor mul(const Tensor& a, const Tensor& b, Site site) {
  Tensor out = binary_forward("mul", BinaryOp::mul, a, b);
  if (should_record({a, b}))
    record("mul", site, out, {a, b},
           [a = save_if(b.requires_grad(), a), b = save_if(a.requires_grad(), b)](const Tensor& g, const Node& n)
               -> Tensors {
             return {n.needs_grad(0) ? g * b.get() : Tensor(), n.needs_grad(1) ? g * a.get() : Tensor()};
           }, {a.shape(), b.shape()});
  return out;
}

// d/da = g / b,  d/db = -g a / b²
Tensor div(const Tensor& a, const Tensor& b, Site site) {
  Tensor out = binary_forward("div", BinaryOp::div, a, b);
  if (should_record({a, b}))
    record("div", site, out, {a, b}, [a = save_if(b.requires_grad(), a), b = save(b)](const Tensor& g, const Node& n)
                                         -> Tensors {
      return {n.needs_grad(0) ? g / b.get() : Tensor(), n.needs_grad(1) ? -(g * a.get()) / square(b.get()) : Tensor()};
    }, {a.shape(), b.shape()});
  return out;
}

Tensor pow(const Tensor& a, const Tensor& b, Site site) {
  Tensor out = binary_forward("pow", BinaryOp::pow, a, b);
  if (should_record({a, b}))
    record("pow", site, out, {a, b}, [a = save(a), b = save(b)](const Tensor& g, const Node& n) -> Tensors {
      return {n.needs_grad(0) ? pow_grad_base(g, a.get(), b.get()) : Tensor(),
              n.needs_grad(1) ? pow_grad_exponent(g, a.get(), b.get()) : Tensor()};
    }, {a.shape(), b.shape()});
  return out;
}

Tensor maximum(const Tensor& a, const Tensor& b, Site site) {
  Tensor out = binary_forward("maximum", BinaryOp::maximum, a, b);
  if (should_record({a, b}))
    record("maximum", site, out, {a, b}, [a = save(a), b = save(b)](const Tensor& g, const Node&) -> Tensors {
      Tensor ga = g * winner_share(a.get(), b.get());
      return {ga, g - ga};
    }, {a.shape(), b.shape()});
  return out;
}

Tensor minimum(const Tensor& a, const Tensor& b, Site site) {
  Tensor out = binary_forward("minimum", BinaryOp::minimum, a, b);
  if (should_record({a, b}))
    record("minimum", site, out, {a, b}, [a = save(a), b = save(b)](const Tensor& g, const Node&) -> Tensors {
      Tensor ga = g * winner_share(b.get(), a.get());  // a gets the gradient where it is the smaller
      return {ga, g - ga};
    }, {a.shape(), b.shape()});
  return out;
}

Tensor add(const Tensor& a, double b, Site site) {
  check_defined("add", a);
  Tensor out = binary_forward("add", BinaryOp::add, a, scalar_like(b, a));
  if (should_record({a})) record("add", site, out, {a}, [](const Tensor& g, const Node&) -> Tensors { return {g}; });
  return out;
}

Tensor mul(const Tensor& a, double b, Site site) {
  check_defined("mul", a);
  Tensor out = binary_forward("mul", BinaryOp::mul, a, scalar_like(b, a));
  if (should_record({a}))
    record("mul", site, out, {a}, [b](const Tensor& g, const Node&) -> Tensors { return {g * b}; });
  return out;
}

// --- comparisons: bool results, nothing recorded.
Tensor eq(const Tensor& a, const Tensor& b, Site) { return binary_forward("eq", BinaryOp::eq, a, b); }
Tensor ne(const Tensor& a, const Tensor& b, Site) { return binary_forward("ne", BinaryOp::ne, a, b); }
Tensor lt(const Tensor& a, const Tensor& b, Site) { return binary_forward("lt", BinaryOp::lt, a, b); }
Tensor le(const Tensor& a, const Tensor& b, Site) { return binary_forward("le", BinaryOp::le, a, b); }
Tensor gt(const Tensor& a, const Tensor& b, Site) { return binary_forward("gt", BinaryOp::gt, a, b); }
Tensor ge(const Tensor& a, const Tensor& b, Site) { return binary_forward("ge", BinaryOp::ge, a, b); }
Tensor gt(const Tensor& a, double b, Site) {
  check_defined("gt", a);
  return binary_forward("gt", BinaryOp::gt, a, scalar_like(b, a));
}
Tensor lt(const Tensor& a, double b, Site) {
  check_defined("lt", a);
  return binary_forward("lt", BinaryOp::lt, a, scalar_like(b, a));
}

// cond ? a : b, all three broadcast together. cond is bool and gets no gradient.
Tensor where(const Tensor& cond, const Tensor& a, const Tensor& b, Site site) {
  check_defined("where", cond, "condition");
  check_defined("where", a, "first operand");
  check_defined("where", b, "second operand");
  DG_CHECK(cond.dtype() == DType::b8, "where: the condition must be bool, got {} of shape {}", cond.dtype(),
           cond.shape());
  check_same_dtype("where", a, b);
  check_same_device("where", a, b);
  check_same_device("where", cond, a);
  Shape shape = broadcast_shapes(broadcast_shapes(cond.shape(), a.shape(), "where"), b.shape(), "where");
  Tensor out = empty_as(shape, a);
  backend_of(a).where(broadcast_view(cond, shape), broadcast_view(a, shape), broadcast_view(b, shape), out);
  if (should_record({a, b}))
    record("where", site, out, {a, b}, [cond = save(cond)](const Tensor& g, const Node& n) -> Tensors {
      Tensor zero = scalar_like(0.0, g);
      return {n.needs_grad(0) ? where(cond.get(), g, zero) : Tensor(),
              n.needs_grad(1) ? where(cond.get(), zero, g) : Tensor()};
    }, {cond.shape()});
  return out;
}

}  // namespace dg
