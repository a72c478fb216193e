// In-place ops: write into x's own memory and bump its storage version, so a
// tensor saved for backward that is changed here is reported when backward
// reads it. They are not recorded on the tape, hence refused on a tensor that
// requires grad while grad mode is on (optimizers run them under NoGradGuard).
//
// Memory rules: a contiguous x is written directly (the binary kernel runs
// with out aliasing its first input, same layout). A strided x, or a y that
// shares x's memory in another layout (add_(x, x.transpose)), goes through a
// contiguous temporary that is copied back, so no element is read after it
// was overwritten. x must not have overlapping elements (an expanded view).
#include "autograd/ops/common.h"
#include "tensor/functors.h"

namespace dg {

namespace {

void check_writable(const char* name, const Tensor& x) {
  check_defined(name, x, "output");
  DG_CHECK(!(is_grad_enabled() && x.requires_grad()),
           "{}: in-place op on a tensor of shape {} that requires grad; in-place ops are not recorded on the tape "
           "(use the out-of-place op, or run it under dg::NoGradGuard)", name, x.shape());
  for (int64_t d = 0; d < x.dim(); ++d)
    DG_CHECK(x.shape()[d] == 1 || x.strides()[d] != 0,
             "{}: the output of shape {} has overlapping elements (stride 0 in dim {}: an expanded view); write "
             "into a clone instead", name, x.shape(), d);
}

// y viewed at x's shape; an error unless y broadcasts to exactly x's shape.
Tensor broadcast_into(const char* name, const Tensor& x, const Tensor& y) {
  DG_CHECK(broadcast_shapes(x.shape(), y.shape(), name) == x.shape(),
           "{}: shape {} cannot be broadcast to the in-place output's shape {}", name, y.shape(), x.shape());
  return broadcast_view(y, x.shape());
}

// Whether reading y while writing x element by element could read an element
// already written: y shares x's memory in a different layout.
bool overlaps_differently(const Tensor& x, const Tensor& y) {
  return x.storage_ptr() == y.storage_ptr() && !(x.offset() == y.offset() && x.strides() == y.strides());
}

// x = x (op) y.
Tensor& binary_inplace(const char* name, BinaryOp op, Tensor& x, const Tensor& y) {
  check_writable(name, x);
  check_defined(name, y, "second operand");
  check_same_dtype(name, x, y);
  check_same_device(name, x, y);
  DG_CHECK(fn::domain_accepts(fn::binary_domain(op), x.dtype()), "{}: not defined for {} tensors (shape {})", name,
           x.dtype(), x.shape());
  Tensor yb = broadcast_into(name, x, y);
  Backend& be = backend_of(x);
  if (x.is_contiguous() && !overlaps_differently(x, yb)) {
    be.binary(op, x, yb, x);
  } else {
    Tensor tmp = empty_as(x.shape(), x);
    be.binary(op, x, yb, tmp);
    be.copy(tmp, x);
  }
  x.bump_version();
  return x;
}

}  // namespace

// x += alpha * y
Tensor& add_(Tensor& x, const Tensor& y, double alpha) {
  if (alpha == 1.0) return binary_inplace("add_", BinaryOp::add, x, y);
  if (alpha == -1.0) return binary_inplace("add_", BinaryOp::sub, x, y);
  check_defined("add_", y, "second operand");
  Tensor scaled;
  {
    NoGradGuard no_grad;  // a temporary, never part of a graph
    scaled = mul(y, alpha);
  }
  return binary_inplace("add_", BinaryOp::add, x, scaled);
}

Tensor& mul_(Tensor& x, const Tensor& y) { return binary_inplace("mul_", BinaryOp::mul, x, y); }

Tensor& mul_(Tensor& x, double y) {
  check_defined("mul_", x, "output");
  return binary_inplace("mul_", BinaryOp::mul, x, scalar_tensor(y, {x.dtype(), x.device()}));
}

Tensor& zero_(Tensor& x) { return fill_(x, 0.0); }

Tensor& fill_(Tensor& x, double value) {
  check_writable("fill_", x);
  backend_of(x).fill(x, value);  // any layout
  x.bump_version();
  return x;
}

// dst = src, broadcast to dst's shape and converted to dst's dtype (and device).
Tensor& copy_(Tensor& dst, const Tensor& src) {
  check_writable("copy_", dst);
  check_defined("copy_", src, "source");
  Tensor s = src.device() == dst.device() ? src : to_device(src, dst.device());
  if (overlaps_differently(dst, s)) s = copy_of(s);
  Tensor sb = broadcast_into("copy_", dst, s);
  if (!sb.is_same(dst)) backend_of(dst).copy(sb, dst);
  dst.bump_version();
  return dst;
}

// One pass over memory for p, m and v (Backend::adamw_step): fused because
// the same update from elementwise ops costs about ten kernels and as many
// temporaries per parameter (bench_optim measures both).
void adamw_step_(Tensor& param, const Tensor& grad, Tensor& exp_avg, Tensor& exp_avg_sq, const AdamWHyper& h,
                 int64_t step) {
  for (const Tensor* t : {&param, &exp_avg, &exp_avg_sq}) check_writable("adamw_step_", *t);
  check_defined("adamw_step_", grad, "gradient");
  DG_CHECK(grad.shape() == param.shape() && exp_avg.shape() == param.shape() && exp_avg_sq.shape() == param.shape(),
           "adamw_step_: param {}, grad {}, exp_avg {}, exp_avg_sq {} must have one shape", param.shape(), grad.shape(),
           exp_avg.shape(), exp_avg_sq.shape());
  check_floating("adamw_step_", param);
  check_same_dtype("adamw_step_", param, grad);
  check_same_dtype("adamw_step_", param, exp_avg);
  check_same_dtype("adamw_step_", param, exp_avg_sq);
  DG_CHECK(param.is_contiguous() && exp_avg.is_contiguous() && exp_avg_sq.is_contiguous(),
           "adamw_step_: param and state must be contiguous (param strides {})", param.strides());
  DG_CHECK(step >= 1, "adamw_step_: step must be >= 1, got {}", step);
  backend_of(param).adamw_step(param, to_contiguous(grad), exp_avg, exp_avg_sq, h.lr, h.beta1, h.beta2, h.eps,
                               h.weight_decay, step);
  param.bump_version();
  exp_avg.bump_version();
  exp_avg_sq.bump_version();
}

}  // namespace dg
