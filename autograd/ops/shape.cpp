// Shape ops: views (reshape, view, flatten, permute, transpose, slice, narrow,
// select, expand, squeeze, unsqueeze), copies (contiguous, clone, to, cat,
// stack), split, and sum_to (the engine's broadcast reduction).
//
// Memory rules: a view is a new TensorImpl on x's Storage (as_strided), so a
// write through either is seen by the other and bumps the shared version
// counter. Only reshape (when the strides do not allow a view), contiguous,
// clone, to, cat and stack allocate. The derivative pairs are
//   reshape <-> reshape            permute  <-> inverse permute
//   slice   <-> slice_backward     expand   <-> sum_to
//   cat     <-> slices of g        stack    <-> select
// and every backward is one of these ops, so each is differentiable again.
// Backwards read the input's shape and dtype from the node's edge
// (n.next()[0]) instead of capturing them.
#include <numeric>

#include "autograd/ops/common.h"

namespace dg {

namespace {

// Gives a freshly made, contiguous tensor (not yet shared) a new shape of the
// same numel, without a second TensorImpl.
Tensor& reshape_fresh(Tensor& t, const Shape& shape) {
  t.impl()->shape = shape;
  t.impl()->strides = contiguous_strides(shape);
  return t;
}

// The shape `shape` with one -1 inferred from numel; errors name op and shapes.
Shape infer_shape(const char* op, const Shape& from, const Shape& shape) {
  Shape out = shape;
  int64_t infer = -1, known = 1;
  for (int64_t i = 0; i < shape.size(); ++i) {
    if (shape[i] == -1) {
      DG_CHECK(infer < 0, "{}: only one dim can be -1, got shape {}", op, shape);
      infer = i;
    } else {
      DG_CHECK(shape[i] >= 0, "{}: invalid size {} in shape {}", op, shape[i], shape);
      known *= shape[i];
    }
  }
  const int64_t numel = from.numel();
  if (infer >= 0) {
    DG_CHECK(known != 0 && numel % known == 0, "{}: cannot reshape a tensor of shape {} ({} elements) into shape {}",
             op, from, numel, shape);
    out[infer] = numel / known;
  } else {
    DG_CHECK(known == numel, "{}: cannot reshape a tensor of shape {} ({} elements) into shape {}", op, from, numel,
             shape);
  }
  return out;
}

// A view of x with a new shape and strides (same offset), recorded under
// `name` with the backward of every reshape-like view: g reshaped back.
Tensor reshape_view(const char* name, const Tensor& x, const Shape& shape, const Strides& strides, const Site& site) {
  Tensor y = as_strided(x, shape, strides, x.offset());
  if (should_record({x}))
    record(name, site, y, {x}, [](const Tensor& g, const Node& n) -> Tensors {
      return {reshape(g, n.next()[0].shape, n.site())};
    });
  return y;
}

// One strided pick along a dim: x[..., start : start + len*step : step, ...],
// or with `drop` the single index `start` with the dim removed (select).
struct SliceSpec {
  int64_t dim, start, len, step;
  bool drop;
};

// The view of t (any strides) that `s` describes.
Tensor apply_slice(const Tensor& t, const SliceSpec& s) {
  Shape shape = t.shape();
  Strides st = t.strides();
  int64_t offset = t.offset() + s.start * st[s.dim];
  if (s.drop) {
    shape.erase(s.dim);
    st.erase(s.dim);
  } else {
    shape[s.dim] = s.len;
    st[s.dim] *= s.step;
  }
  return as_strided(t, shape, st, offset);
}

Tensor slice_backward(const Tensor& g, const Shape& base, const SliceSpec& s, const Site& site);

// The slice view, recorded; backward writes g back into zeros of x's shape.
Tensor slice_view(const char* name, const Tensor& x, const SliceSpec& s, const Site& site) {
  Tensor y = apply_slice(x, s);
  if (should_record({x}))
    record(name, site, y, {x}, [s](const Tensor& g, const Node& n) -> Tensors {
      return {slice_backward(g, n.next()[0].shape, s, n.site())};
    });
  return y;
}

// zeros(base) with g written into the slice `s`: the gradient of a slice.
// Backward: the same slice of its gradient.
Tensor slice_backward(const Tensor& g, const Shape& base, const SliceSpec& s, const Site& site) {
  Tensor out = zeros(base, {g.dtype(), g.device()});
  backend_of(g).copy(g, apply_slice(out, s));
  if (should_record({g}))
    record("slice_backward", site, out, {g}, [s](const Tensor& gg, const Node& n) -> Tensors {
      return {slice_view("slice", gg, s, n.site())};
    });
  return out;
}

// Python-style bounds: negative counts from the end, then clamped to [0, size].
int64_t clamp_index(int64_t i, int64_t size) {
  if (i < 0) i += size;
  return std::clamp<int64_t>(i, 0, size);
}

// Checks shared by cat and stack: a non-empty list of defined tensors of one
// dtype and device.
void check_list(const char* op, const Tensors& xs) {
  DG_CHECK(!xs.empty(), "{}: expected a non-empty list of tensors", op);
  for (size_t i = 0; i < xs.size(); ++i) {
    DG_CHECK(xs[i].defined(), "{}: tensor {} is undefined", op, i);
    check_same_dtype(op, xs[0], xs[i]);
    check_same_device(op, xs[0], xs[i]);
  }
}

}  // namespace

// --- reshape: x (any) -> shape with the same numel; a view when the strides
// allow (view_strides), otherwise a contiguous copy. Backward: reshape back.
Tensor reshape(const Tensor& x, const Shape& shape, Site site) {
  check_defined("reshape", x);
  Shape s = infer_shape("reshape", x.shape(), shape);
  Strides st;
  if (view_strides(x, s, st)) return reshape_view("reshape", x, s, st, site);
  Tensor y = copy_of(x);
  reshape_fresh(y, s);
  if (should_record({x}))
    record("reshape", site, y, {x}, [](const Tensor& g, const Node& n) -> Tensors {
      return {reshape(g, n.next()[0].shape, n.site())};
    });
  return y;
}

// --- view: like reshape, but never copies.
Tensor view(const Tensor& x, const Shape& shape, Site site) {
  check_defined("view", x);
  Shape s = infer_shape("view", x.shape(), shape);
  Strides st;
  DG_CHECK(view_strides(x, s, st), "view: cannot view a tensor of shape {} with strides {} as shape {} without a "
           "copy (use reshape, or contiguous first)", x.shape(), x.strides(), s);
  return reshape_view("view", x, s, st, site);
}

// --- flatten: dims start..end merged into one (a view when possible).
Tensor flatten(const Tensor& x, int64_t start_dim, int64_t end_dim, Site site) {
  check_defined("flatten", x);
  if (x.dim() == 0) return reshape(x, {1}, site);
  int64_t s = wrap_dim(start_dim, x.dim(), "flatten"), e = wrap_dim(end_dim, x.dim(), "flatten");
  DG_CHECK(s <= e, "flatten: start_dim {} comes after end_dim {} (shape {})", start_dim, end_dim, x.shape());
  Shape shape;
  for (int64_t d = 0; d < s; ++d) shape.push_back(x.shape()[d]);
  int64_t merged = 1;
  for (int64_t d = s; d <= e; ++d) merged *= x.shape()[d];
  shape.push_back(merged);
  for (int64_t d = e + 1; d < x.dim(); ++d) shape.push_back(x.shape()[d]);
  return reshape(x, shape, site);
}

// --- permute: y.shape[i] = x.shape[dims[i]] (a view). Backward: the inverse permutation.
Tensor permute(const Tensor& x, const Dims& dims, Site site) {
  check_defined("permute", x);
  DG_CHECK(static_cast<int64_t>(dims.size()) == x.dim(), "permute: expected {} dims for a tensor of shape {}, got {}",
           x.dim(), x.shape(), Shape(dims));
  Shape shape, inverse;
  Strides st;
  inverse.resize(x.dim(), -1);
  for (size_t i = 0; i < dims.size(); ++i) {
    int64_t d = wrap_dim(dims[i], x.dim(), "permute");
    DG_CHECK(inverse[d] < 0, "permute: dim {} repeated in {}", d, Shape(dims));
    inverse[d] = static_cast<int64_t>(i);
    shape.push_back(x.shape()[d]);
    st.push_back(x.strides()[d]);
  }
  Tensor y = as_strided(x, shape, st, x.offset());
  if (should_record({x}))
    record("permute", site, y, {x}, [inverse](const Tensor& g, const Node& n) -> Tensors {
      return {permute(g, inverse.vec(), n.site())};
    });
  return y;
}

// --- transpose: swaps dims d0 and d1 (a view). Backward: the same swap.
Tensor transpose(const Tensor& x, int64_t d0, int64_t d1, Site site) {
  check_defined("transpose", x);
  int64_t a = wrap_dim(d0, x.dim(), "transpose"), b = wrap_dim(d1, x.dim(), "transpose");
  Shape shape = x.shape();
  Strides st = x.strides();
  if (x.dim() > 0) {
    std::swap(shape[a], shape[b]);
    std::swap(st[a], st[b]);
  }
  Tensor y = as_strided(x, shape, st, x.offset());
  if (should_record({x}))
    record("transpose", site, y, {x}, [a, b](const Tensor& g, const Node& n) -> Tensors {
      return {transpose(g, a, b, n.site())};
    });
  return y;
}

// --- slice: x[..., start:end:step, ...] along dim (a view); Python bounds.
// Backward: zeros of x's shape with g written into the slice.
Tensor slice(const Tensor& x, int64_t dim, int64_t start, int64_t end, int64_t step, Site site) {
  check_defined("slice", x);
  DG_CHECK(x.dim() > 0, "slice: cannot slice a 0-dim tensor");
  int64_t d = wrap_dim(dim, x.dim(), "slice");
  DG_CHECK(step > 0, "slice: step must be positive, got {}", step);
  const int64_t size = x.shape()[d];
  int64_t b = clamp_index(start, size), e = std::max(b, clamp_index(end, size));
  return slice_view("slice", x, {d, b, (e - b + step - 1) / step, step, false}, site);
}

// --- narrow: x[..., start : start+length, ...] along dim; start may be negative.
Tensor narrow(const Tensor& x, int64_t dim, int64_t start, int64_t length, Site site) {
  check_defined("narrow", x);
  DG_CHECK(x.dim() > 0, "narrow: cannot narrow a 0-dim tensor");
  int64_t d = wrap_dim(dim, x.dim(), "narrow");
  const int64_t size = x.shape()[d];
  DG_CHECK(start >= -size && start <= size, "narrow: start {} out of range for dim {} of size {} (shape {})", start,
           d, size, x.shape());
  if (start < 0) start += size;
  DG_CHECK(length >= 0 && start + length <= size, "narrow: start {} + length {} exceeds dim {} of size {} (shape {})",
           start, length, d, size, x.shape());
  return slice_view("narrow", x, {d, start, length, 1, false}, site);
}

// --- select: x[..., index, ...] along dim, which is dropped (a view).
Tensor select(const Tensor& x, int64_t dim, int64_t index, Site site) {
  check_defined("select", x);
  DG_CHECK(x.dim() > 0, "select: cannot select from a 0-dim tensor");
  int64_t d = wrap_dim(dim, x.dim(), "select");
  const int64_t size = x.shape()[d];
  DG_CHECK(index >= -size && index < size, "select: index {} out of range for dim {} of size {} (shape {})", index, d,
           size, x.shape());
  if (index < 0) index += size;
  return slice_view("select", x, {d, index, 1, 1, true}, site);
}

// --- expand: size-1 dims (and new leading dims) repeated by stride 0; -1
// keeps a dim. Backward: sum_to x's shape.
Tensor expand(const Tensor& x, const Shape& shape, Site site) {
  check_defined("expand", x);
  const int64_t lead = shape.size() - x.dim();
  DG_CHECK(lead >= 0, "expand: cannot expand shape {} to {} (fewer dims)", x.shape(), shape);
  Shape out = shape;
  Strides st;
  st.resize(shape.size());
  for (int64_t i = 0; i < shape.size(); ++i) {
    if (i < lead) {
      DG_CHECK(shape[i] >= 0, "expand: cannot expand shape {} to {} (-1 or negative size in a new leading dim)",
               x.shape(), shape);
      st[i] = 0;
      continue;
    }
    int64_t have = x.shape()[i - lead];
    if (shape[i] == -1) out[i] = have;
    DG_CHECK(out[i] == have || have == 1, "expand: cannot expand shape {} to {} (dim {}: {} to {}; only size-1 dims "
             "can be expanded)", x.shape(), shape, i, have, out[i]);
    DG_CHECK(out[i] >= 0, "expand: invalid size {} in shape {}", out[i], shape);
    st[i] = out[i] == have ? x.strides()[i - lead] : 0;
  }
  Tensor y = as_strided(x, out, st, x.offset());
  if (should_record({x}))
    record("expand", site, y, {x}, [](const Tensor& g, const Node& n) -> Tensors {
      return {sum_to(g, n.next()[0].shape, n.site())};
    });
  return y;
}

// --- squeeze: drops dim when its size is 1 (otherwise an alias of x).
Tensor squeeze(const Tensor& x, int64_t dim, Site site) {
  check_defined("squeeze", x);
  int64_t d = wrap_dim(dim, x.dim(), "squeeze");
  Shape shape = x.shape();
  Strides st = x.strides();
  if (x.dim() > 0 && shape[d] == 1) {
    shape.erase(d);
    st.erase(d);
  }
  return reshape_view("squeeze", x, shape, st, site);
}

// --- unsqueeze: a new size-1 dim at position dim in [-(ndim+1), ndim].
Tensor unsqueeze(const Tensor& x, int64_t dim, Site site) {
  check_defined("unsqueeze", x);
  int64_t d = wrap_dim(dim, x.dim() + 1, "unsqueeze");
  Shape shape = x.shape();
  Strides st = x.strides();
  shape.insert(d, 1);
  st.insert(d, d < x.dim() ? x.strides()[d] * x.shape()[d] : 1);
  return reshape_view("unsqueeze", x, shape, st, site);
}

// --- contiguous: x itself when already contiguous, else a copy. Backward: g.
Tensor contiguous(const Tensor& x, Site site) {
  check_defined("contiguous", x);
  if (x.is_contiguous()) return x;
  Tensor y = copy_of(x);
  if (should_record({x})) record("contiguous", site, y, {x}, [](const Tensor& g, const Node&) -> Tensors { return {g}; });
  return y;
}

// --- clone: always a fresh contiguous copy. Backward: g.
Tensor clone(const Tensor& x, Site site) {
  check_defined("clone", x);
  Tensor y = copy_of(x);
  if (should_record({x})) record("clone", site, y, {x}, [](const Tensor& g, const Node&) -> Tensors { return {g}; });
  return y;
}

// --- to: dtype conversion (x itself if already that dtype). Gradients flow
// between floating dtypes only: backward converts g back.
Tensor to(const Tensor& x, DType dtype, Site site) {
  check_defined("to", x);
  if (x.dtype() == dtype) return x;
  Tensor y = to_dtype(x, dtype);
  if (is_floating(x.dtype()) && is_floating(dtype) && should_record({x}))
    record("to", site, y, {x}, [](const Tensor& g, const Node& n) -> Tensors {
      return {to(g, n.next()[0].dtype, n.site())};
    });
  return y;
}

// --- to(device): a copy of x on `device` (x itself when it already is there).
// d x = g copied back to x's device.
Tensor to(const Tensor& x, Device device, Site site) {
  check_defined("to", x);
  if (x.device() == device) return x;
  Tensor y = to_device(x, device);
  if (should_record({x}))
    record("to", site, y, {x}, [from = x.device()](const Tensor& g, const Node& n) -> Tensors {
      return {to(g, from, n.site())};
    });
  return y;
}

// --- cat: xs[i] (..., n_i, ...) -> (..., sum n_i, ...) along dim; every other
// dim must match. Each input is copied into its slice of the output.
// Backward: input i gets its slice of g (a view).
Tensor cat(const Tensors& xs, int64_t dim, Site site) {
  check_list("cat", xs);
  const Tensor& x0 = xs[0];
  DG_CHECK(x0.dim() > 0, "cat: a 0-dim tensor (position 0) cannot be concatenated");
  int64_t d = wrap_dim(dim, x0.dim(), "cat");
  Shape shape = x0.shape();
  shape[d] = 0;
  for (size_t i = 0; i < xs.size(); ++i) {
    const Shape& s = xs[i].shape();
    bool match = s.size() == x0.dim();
    for (int64_t k = 0; match && k < s.size(); ++k) match = k == d || s[k] == x0.shape()[k];
    DG_CHECK(match, "cat: shapes must match except in dim {}: tensor 0 has shape {}, tensor {} has shape {}", d,
             x0.shape(), i, s);
    shape[d] += s[d];
  }
  Tensor y = empty_as(shape, x0);
  Backend& be = backend_of(x0);
  int64_t offset = 0;
  for (const Tensor& x : xs) {
    be.copy(x, apply_slice(y, {d, offset, x.shape()[d], 1, false}));
    offset += x.shape()[d];
  }
  if (should_record(xs)) {
    record("cat", site, y, xs, [d](const Tensor& g, const Node& n) -> Tensors {
      Tensors grads(n.next().size());
      int64_t at = 0;
      for (size_t i = 0; i < grads.size(); ++i) {
        int64_t len = n.next()[i].shape[d];
        if (n.needs_grad(i)) grads[i] = slice_view("slice", g, {d, at, len, 1, false}, n.site());
        at += len;
      }
      return grads;
    });
  }
  return y;
}

// --- stack: k tensors of one shape -> a new dim of size k at position dim.
// Backward: input i gets select(g, dim, i) (a view).
Tensor stack(const Tensors& xs, int64_t dim, Site site) {
  check_list("stack", xs);
  const Shape& s0 = xs[0].shape();
  int64_t d = wrap_dim(dim, s0.size() + 1, "stack");
  for (size_t i = 1; i < xs.size(); ++i)
    DG_CHECK(xs[i].shape() == s0, "stack: all tensors must have one shape: tensor 0 has shape {}, tensor {} has "
             "shape {}", s0, i, xs[i].shape());
  Shape shape = s0;
  shape.insert(d, static_cast<int64_t>(xs.size()));
  Tensor y = empty_as(shape, xs[0]);
  Backend& be = backend_of(y);
  for (size_t i = 0; i < xs.size(); ++i) be.copy(xs[i], apply_slice(y, {d, static_cast<int64_t>(i), 1, 1, true}));
  if (should_record(xs)) {
    record("stack", site, y, xs, [d](const Tensor& g, const Node& n) -> Tensors {
      Tensors grads(n.next().size());
      for (size_t i = 0; i < grads.size(); ++i)
        if (n.needs_grad(i)) grads[i] = slice_view("select", g, {d, static_cast<int64_t>(i), 1, 1, true}, n.site());
      return grads;
    });
  }
  return y;
}

// --- split: consecutive narrow views of split_size along dim (the last may
// be shorter). Each piece is its own node (a narrow).
Tensors split(const Tensor& x, int64_t split_size, int64_t dim, Site site) {
  check_defined("split", x);
  DG_CHECK(x.dim() > 0, "split: cannot split a 0-dim tensor");
  int64_t d = wrap_dim(dim, x.dim(), "split");
  DG_CHECK(split_size > 0, "split: split_size must be positive, got {} (shape {})", split_size, x.shape());
  const int64_t size = x.shape()[d];
  Tensors pieces;
  for (int64_t at = 0; at < size || (size == 0 && pieces.empty()); at += split_size)
    pieces.push_back(narrow(x, d, at, std::min(split_size, size - at), site));
  return pieces;
}

// --- split by sizes: narrow views of the given lengths, which must add up
// to the size of dim.
Tensors split(const Tensor& x, const Dims& sizes, int64_t dim, Site site) {
  check_defined("split", x);
  DG_CHECK(x.dim() > 0, "split: cannot split a 0-dim tensor");
  int64_t d = wrap_dim(dim, x.dim(), "split");
  int64_t total = std::accumulate(sizes.begin(), sizes.end(), int64_t{0});
  bool nonneg = std::all_of(sizes.begin(), sizes.end(), [](int64_t s) { return s >= 0; });
  DG_CHECK(nonneg && total == x.shape()[d], "split: sizes {} must be non-negative and add up to {} (dim {} of shape "
           "{})", Shape(sizes), x.shape()[d], d, x.shape());
  Tensors pieces;
  int64_t at = 0;
  for (int64_t s : sizes) {
    pieces.push_back(narrow(x, d, at, s, site));
    at += s;
  }
  return pieces;
}

// --- sum_to: g (broadcast shape) summed over its extra leading dims and over
// the dims where `shape` has size 1: one reduce kernel, the result already in
// `shape`. A pure reshape when nothing needs summing. Backward: expand.
Tensor sum_to(const Tensor& g, const Shape& shape, Site site) {
  check_defined("sum_to", g);
  if (g.shape() == shape) return g;
  const int64_t lead = g.dim() - shape.size();
  DG_CHECK(lead >= 0, "sum_to: cannot sum shape {} to shape {} (more dims)", g.shape(), shape);
  Shape keep = g.shape();
  bool any = false;
  for (int64_t i = 0; i < g.dim(); ++i) {
    if (i >= lead && shape[i - lead] == g.shape()[i]) continue;
    DG_CHECK(i < lead || shape[i - lead] == 1, "sum_to: cannot sum shape {} to shape {} (dim {}: {} vs {})",
             g.shape(), shape, i, g.shape()[i], shape[i - lead]);
    any = any || g.shape()[i] != 1;
    keep[i] = 1;
  }
  if (!any) return reshape(g, shape, site);
  Tensor y = empty_as(keep, g);
  backend_of(g).reduce(ReduceOp::sum, g, y);
  reshape_fresh(y, shape);
  if (should_record({g}))
    record("sum_to", site, y, {g}, [](const Tensor& gg, const Node& n) -> Tensors {
      return {expand(gg, n.next()[0].shape, n.site())};
    });
  return y;
}

}  // namespace dg
