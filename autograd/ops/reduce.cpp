// Reductions: sum, mean, max/min (along a dim with indices, or over all
// elements), argmax/argmin, logsumexp, var.
//
// Legend: x (any shape), a set of reduced dims given as a bit mask over x's
// dims; `keep` is x's shape with the reduced dims set to 1 (keepdim). The
// kernel always writes the keepdim result; without keepdim its metadata is
// then reshaped in place (it is fresh and contiguous, so no copy).
//
//   sum        d x = expand(g reshaped to keep, x.shape)     (a view, no copy)
//   mean       sum(x) * (1/n)                                 (composite)
//   max(dim)   d x = g at the returned index, 0 elsewhere     (one-hot mask)
//   max()      d x = g * (x == max) / #ties                   (PyTorch's rule)
//   logsumexp  d x = g * exp(x - lse)
//   var        sum((x - mean)^2) / (n - correction)           (composite)
#include <bit>
#include <cmath>
#include <limits>

#include "autograd/ops/common.h"

namespace dg {

namespace {

using DimMask = uint32_t;  // bit d set: dim d is reduced

// The reduced dims as a mask; empty dims = all. Errors name the op.
DimMask reduced_mask(const char* op, const Tensor& x, const Dims& dims) {
  if (dims.empty()) return x.dim() == 0 ? 0 : (DimMask{1} << x.dim()) - 1;
  DimMask m = 0;
  for (int64_t d : dims) {
    int64_t w = wrap_dim(d, x.dim(), op);
    DG_CHECK(x.dim() == 0 || !(m >> w & 1), "{}: dim {} appears twice in {} (shape {})", op, w, Shape(dims),
             x.shape());
    if (x.dim() > 0) m |= DimMask{1} << w;
  }
  return m;
}

Dims mask_dims(DimMask m) {
  Dims d;
  for (int i = 0; m >> i; ++i)
    if (m >> i & 1) d.push_back(i);
  return d;
}

Shape keep_shape(const Shape& s, DimMask m) {
  Shape k = s;
  for (int64_t d = 0; d < s.size(); ++d)
    if (m >> d & 1) k[d] = 1;
  return k;
}

Shape drop_shape(const Shape& s, DimMask m) {
  Shape k;
  for (int64_t d = 0; d < s.size(); ++d)
    if (!(m >> d & 1)) k.push_back(s[d]);
  return k;
}

// Number of elements folded into each output.
int64_t reduced_count(const Shape& s, DimMask m) {
  int64_t n = 1;
  for (int64_t d = 0; d < s.size(); ++d)
    if (m >> d & 1) n *= s[d];
  return n;
}

// Drops the reduced dims of a fresh keepdim result (metadata only).
void drop_dims_fresh(Tensor& t, const Shape& shape) {
  t.impl()->shape = shape;
  t.impl()->strides = contiguous_strides(shape);
}

// The kernel's keepdim result, reshaped to drop the reduced dims unless keepdim.
Tensor reduce_forward(ReduceOp op, const Tensor& x, DimMask m, bool keepdim) {
  Tensor y = empty_as(keep_shape(x.shape(), m), x);
  backend_of(x).reduce(op, x, y);
  if (!keepdim) drop_dims_fresh(y, drop_shape(x.shape(), m));
  return y;
}

// g (the output's shape) viewed with keepdim shape, so it broadcasts against x.
Tensor as_keepdim(const Tensor& g, const Shape& x_shape, DimMask m, const Site& site) {
  Shape k = keep_shape(x_shape, m);
  return g.shape() == k ? g : reshape(g, k, site);
}

// Backward of sum: g broadcast back over the reduced dims (a stride-0 view).
Tensor sum_backward(const Tensor& g, const Shape& x_shape, DimMask m, const Site& site) {
  return expand(as_keepdim(g, x_shape, m, site), x_shape, site);
}

// Backward of max/min along dim: g routed to the selected indices. The mask
// is built by a raw scatter of ones (it does not depend on g); g * mask keeps
// the gradient differentiable in g.
Tensor arg_backward(const Tensor& g, const Tensor& indices, const Shape& x_shape, int64_t dim, bool keepdim,
                    const Site& site) {
  Tensor idx = keepdim ? indices : unsqueeze(indices, dim, site);
  Tensor onehot = zeros(x_shape, {g.dtype(), g.device()});
  backend_of(g).scatter_add(onehot, dim, idx, ones(idx.shape(), {g.dtype(), g.device()}));
  return mul(keepdim ? g : unsqueeze(g, dim, site), onehot, site);
}

// Backward of max/min over all elements: g shared evenly among the ties.
Tensor all_backward(const Tensor& g, const Tensor& x, const Tensor& y, const Site& site) {
  Tensor tie = to(eq(x, y, site), x.dtype(), site);
  return mul(g, div(tie, sum(tie, {}, false, site), site), site);
}

ValuesIndices max_min_dim(const char* op, ReduceOp rop, const Tensor& x, int64_t dim, bool keepdim,
                          const Site& site) {
  check_defined(op, x);
  int64_t d = wrap_dim(dim, x.dim(), op);
  if (x.dim() == 0) {  // a 0-dim tensor is its own max, at index 0
    ValuesIndices r = max_min_dim(op, rop, reshape(x, {1}, site), 0, keepdim, site);
    if (!keepdim) return r;
    return {reshape(r.values, {}, site), reshape(r.indices, {}, site)};
  }
  DG_CHECK(x.shape()[d] > 0, "{}: cannot reduce over dim {} of size 0 (shape {})", op, d, x.shape());
  const DimMask m = DimMask{1} << d;
  Tensor values = empty_as(keep_shape(x.shape(), m), x);
  Tensor indices = empty_as(values.shape(), DType::i64, x);
  backend_of(x).reduce_arg(rop, x, d, values, indices);
  if (!keepdim) {
    Shape s = drop_shape(x.shape(), m);
    drop_dims_fresh(values, s);
    drop_dims_fresh(indices, s);
  }
  if (should_record({x}))
    record(op, site, values, {x}, [d, keepdim, idx = save(indices)](const Tensor& g, const Node& n) -> Tensors {
      return {arg_backward(g, idx.get(), n.next()[0].shape, d, keepdim, n.site())};
    }, {indices.shape()});
  return {values, indices};
}

Tensor max_min_all(const char* op, ReduceOp rop, const Tensor& x, const Site& site) {
  check_defined(op, x);
  DG_CHECK(x.numel() > 0, "{}: cannot reduce an empty tensor (shape {})", op, x.shape());
  Tensor y = reduce_forward(rop, x, reduced_mask(op, x, {}), false);
  if (should_record({x}))
    record(op, site, y, {x}, [x = save(x), y = save_output(y)](const Tensor& g, const Node& n) -> Tensors {
      return {all_backward(g, x.get(), y.get(), n.site())};
    }, {x.shape()});
  return y;
}

Tensor arg_only(const char* op, ReduceOp rop, const Tensor& x, int64_t dim, bool keepdim, const Site& site) {
  NoGradGuard no_grad;  // indices carry no gradient
  return max_min_dim(op, rop, x, dim, keepdim, site).indices;
}

// Backward of logsumexp. Under create_graph the lse is recomputed from x so
// that its own dependence on x is recorded (second derivatives); otherwise
// the saved output is used.
Tensor logsumexp_backward(const Tensor& g, const Tensor& x, const Tensor& lse, DimMask m, const Site& site) {
  Tensor l = is_grad_enabled() ? logsumexp(x, mask_dims(m), true, site) : as_keepdim(lse, x.shape(), m, site);
  return mul(as_keepdim(g, x.shape(), m, site), exp(sub(x, l, site), site), site);
}

}  // namespace

// --- sum: integers and bool sum in i64 (like PyTorch). Saves nothing.
Tensor sum(const Tensor& x, const Dims& dims, bool keepdim, Site site) {
  check_defined("sum", x);
  DimMask m = reduced_mask("sum", x, dims);
  Tensor xin = is_floating(x.dtype()) ? x : to_dtype(x, DType::i64);
  Tensor y = reduce_forward(ReduceOp::sum, xin, m, keepdim);
  if (should_record({x}))
    record("sum", site, y, {x}, [m](const Tensor& g, const Node& n) -> Tensors {
      return {sum_backward(g, n.next()[0].shape, m, n.site())};
    });
  return y;
}

// --- mean = sum / n (n = 0 gives NaN, like PyTorch). Composite.
Tensor mean(const Tensor& x, const Dims& dims, bool keepdim, Site site) {
  check_defined("mean", x);
  check_floating("mean", x);
  int64_t n = reduced_count(x.shape(), reduced_mask("mean", x, dims));
  return mul(sum(x, dims, keepdim, site), 1.0 / static_cast<double>(n), site);
}

// --- max / min along dim: values and i64 indices (first index on ties, NaN
// wins). Saves the indices.
ValuesIndices max(const Tensor& x, int64_t dim, bool keepdim, Site site) {
  return max_min_dim("max", ReduceOp::max, x, dim, keepdim, site);
}
ValuesIndices min(const Tensor& x, int64_t dim, bool keepdim, Site site) {
  return max_min_dim("min", ReduceOp::min, x, dim, keepdim, site);
}

// --- max / min over all elements (0-dim). Saves x and the result.
Tensor max(const Tensor& x, Site site) { return max_min_all("max", ReduceOp::max, x, site); }
Tensor min(const Tensor& x, Site site) { return max_min_all("min", ReduceOp::min, x, site); }

// --- argmax / argmin: the indices of max / min along dim (no gradient).
Tensor argmax(const Tensor& x, int64_t dim, bool keepdim, Site site) {
  return arg_only("argmax", ReduceOp::max, x, dim, keepdim, site);
}
Tensor argmin(const Tensor& x, int64_t dim, bool keepdim, Site site) {
  return arg_only("argmin", ReduceOp::min, x, dim, keepdim, site);
}

// --- logsumexp = m + log(sum(exp(x - m))) with m the (detached) max over
// dims, replaced by 0 where it is infinite so that all -inf rows give -inf
// and never NaN. Saves x and the result.
Tensor logsumexp(const Tensor& x, const Dims& dims, bool keepdim, Site site) {
  check_defined("logsumexp", x);
  check_floating("logsumexp", x);
  DimMask m = reduced_mask("logsumexp", x, dims);
  Tensor y;
  {
    NoGradGuard no_grad;
    Tensor shift = reduce_forward(ReduceOp::max, x, m, true);
    shift = where(lt(abs(shift), std::numeric_limits<double>::infinity()), shift, zeros({}, {x.dtype(), x.device()}));
    y = add(log(sum(exp(sub(x, shift)), mask_dims(m), true)), shift);
    if (!keepdim) y = reshape(y, drop_shape(x.shape(), m));
  }
  if (should_record({x}))
    record("logsumexp", site, y, {x}, [m, x = save(x), y = save_output(y)](const Tensor& g, const Node& n) -> Tensors {
      return {logsumexp_backward(g, x.get(), y.get(), m, n.site())};
    }, {x.shape(), y.shape()});
  return y;
}

// --- var = sum((x - mean)^2) / (n - correction). Composite.
Tensor var(const Tensor& x, const Dims& dims, bool keepdim, int64_t correction, Site site) {
  check_defined("var", x);
  check_floating("var", x);
  int64_t n = reduced_count(x.shape(), reduced_mask("var", x, dims));
  Tensor d = sub(x, mean(x, dims, true, site), site);
  return mul(sum(mul(d, d, site), dims, keepdim, site), 1.0 / static_cast<double>(std::max<int64_t>(n - correction, 0)),
             site);
}

}  // namespace dg
