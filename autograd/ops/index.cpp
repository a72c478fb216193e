// Indexing ops: index_select, index_add, gather, scatter_add, embedding,
// masked_fill, topk. Each section: checks, forward, backward.
//
// Legend: x is the indexed tensor and `dim` the indexed dim, of size D; an
// index tensor (i64) holds positions in [0, D). The derivative pairs are
//   index_select <-> index_add      (pick rows  /  add rows back)
//   gather       <-> scatter_add    (pick elements / add elements back)
// so every backward below is one of these ops, hence differentiable again.
#include <vector>

#include "autograd/engine.h"
#include "autograd/ops/common.h"

namespace dg {

namespace {

// Every index value in [0, size); a dg::Error naming op, the first offending
// value, the dim and the input shape otherwise. Checked on the index's device
// (no copy to the host; on CUDA the error comes at the next synchronisation).
void check_index_range(const char* op, const Tensor& index, int64_t dim, const Shape& x_shape,
                       const char* what = "input") {
  const int64_t size = x_shape[dim];
  backend_of(index).check_indices(index, size,
                                  fmt::format("{}: index {{}} out of range for dim {} of size {} ({} shape {}, index "
                                              "shape {})", op, dim, size, what, x_shape, index.shape()),
                                  std::nullopt);
}

// The checks every indexing op starts with; returns the wrapped dim.
int64_t check_indexing(const char* op, const Tensor& x, int64_t dim, const Tensor& index) {
  check_defined(op, x);
  check_index_tensor(op, index);
  check_same_device(op, x, index);
  DG_CHECK(x.dim() >= 1, "{}: expected an input with at least one dim, got a 0-dim tensor", op);
  return wrap_dim(dim, x.dim(), op);
}

// A 0-D or 1-D index as a 1-D tensor (a view; strides are kept).
Tensor as_1d(const Tensor& index) {
  return index.dim() == 1 ? index : as_strided(index, {1}, {1}, index.offset());
}

// The index_select/index_add pair needs a 0-D or 1-D index.
void check_index_1d(const char* op, const Tensor& index, const Tensor& x) {
  DG_CHECK(index.dim() <= 1, "{}: index must be 0-D or 1-D, got index shape {} (input shape {})", op, index.shape(),
           x.shape());
}

// gather/scatter_add: index has x's number of dims and fits inside x off `dim`.
void check_gather_shapes(const char* op, const Tensor& x, int64_t dim, const Tensor& index) {
  DG_CHECK(index.dim() == x.dim(), "{}: index must have as many dims as the input ({}), got index shape {} "
           "(input shape {})", op, x.dim(), index.shape(), x.shape());
  for (int64_t d = 0; d < x.dim(); ++d) {
    DG_CHECK(d == dim || index.shape()[d] <= x.shape()[d], "{}: index shape {} is larger than the input shape {} "
             "at dim {}", op, index.shape(), x.shape(), d);
  }
}

// The inverse of `index` (1-D, values already checked to lie in [0, size))
// when it is a permutation of 0 .. size-1; undefined otherwise.
// Only for an index in host memory: finding out costs a pass over the values
// on the host, which a device index would first have to be copied to.
Tensor inverse_permutation(const Tensor& index, int64_t size) {
  if (index.numel() != size || size == 0 || !index.device().is_cpu()) return Tensor();
  HostIndex h(index);
  std::vector<int64_t> inv(static_cast<size_t>(size), -1);
  for (int64_t k = 0; k < size; ++k) {
    int64_t& slot = inv[static_cast<size_t>(h.values()[static_cast<size_t>(k)])];
    if (slot >= 0) return Tensor();  // a repeated row
    slot = k;
  }
  return from_vector<int64_t>(inv, {size}, index.device());
}

// zeros(shape) with src's rows added at `index` along dim: the backward of
// index_select and embedding. The same as index_add(zeros(shape), ...), minus
// the copy of the zeros. Backward: d src = g picked at the same rows.
Tensor index_add_into_zeros(const Shape& shape, int64_t dim, const Tensor& index, const Tensor& src, Site site) {
  Tensor out = zeros(shape, {src.dtype(), src.device()});
  backend_of(src).index_add(out, dim, index, src, 1.0);
  if (should_record({src}))
    record("index_add", site, out, {src}, [dim, index = save(index)](const Tensor& g, const Node& n) -> Tensors {
      return {index_select(g, dim, index.get(), n.site())};
    }, {index.shape()});
  return out;
}

// In a backward (not recorded): src's rows added at `index` along dim into the
// gradient already accumulated for the node's input `input`, when the engine
// lets the backward write it in place (accumulated_grad); false if not, and
// nothing is done.
bool add_rows_into_accumulated(size_t input, int64_t dim, const Tensor& index, const Tensor& src) {
  const Tensor acc = accumulated_grad(input);
  if (!acc.defined()) return false;
  backend_of(src).index_add(acc, dim, index, src, 1.0);
  return true;
}

// zeros(shape) with src scattered-added at `index` along dim: the backward of
// gather and topk. Backward: d src = g gathered at the same places.
Tensor scatter_add_into_zeros(const Shape& shape, int64_t dim, const Tensor& index, const Tensor& src, Site site) {
  Tensor out = zeros(shape, {src.dtype(), src.device()});
  backend_of(src).scatter_add(out, dim, index, src);
  if (should_record({src}))
    record("scatter_add", site, out, {src}, [dim, index = save(index)](const Tensor& g, const Node& n) -> Tensors {
      return {gather(g, dim, index.get(), n.site())};
    }, {index.shape()});
  return out;
}

}  // namespace

// --- index_select: x (..., D, ...), index (K) -> (..., K, ...); out[.., k, ..] = x[.., index[k], ..].
// Saves the index; backward adds g's rows back at the same places.
Tensor index_select(const Tensor& x, int64_t dim, const Tensor& index, Site site) {
  int64_t d = check_indexing("index_select", x, dim, index);
  check_index_1d("index_select", index, x);
  check_index_range("index_select", index, d, x.shape());
  Tensor idx = as_1d(index);
  Shape shape = x.shape();
  shape[d] = idx.numel();
  Tensor out = empty_as(shape, x);
  backend_of(x).index_select(x, d, idx, out);
  if (should_record({x})) {
    // A permutation of the rows (each picked exactly once, e.g. tokens put
    // in group order and back): the gradient is g picked by the inverse
    // permutation, with no zero fill and no scatter-add.
    // Either way, where x's gradient already holds its other consumers' sum
    // (accumulated_grad), g's rows are added into it in place.
    if (Tensor inv = inverse_permutation(idx, x.size(d)); inv.defined()) {
      record("index_select", site, out, {x}, [d, idx = save(idx), inv = save(inv)](const Tensor& g, const Node& n) -> Tensors {
        if (add_rows_into_accumulated(0, d, idx.get(), g)) return {};
        return {index_select(g, d, inv.get(), n.site())};
      }, {idx.shape()});
    } else {
      record("index_select", site, out, {x}, [xs = x.shape(), d, idx = save(idx)](const Tensor& g, const Node& n) -> Tensors {
        if (add_rows_into_accumulated(0, d, idx.get(), g)) return {};
        return {index_add_into_zeros(xs, d, idx.get(), g, n.site())};
      }, {idx.shape()});
    }
  }
  return out;
}

// --- index_add: x (..., D, ...), src (..., K, ...), index (K) -> x with
// alpha * src[.., k, ..] added into row index[k] (repeated rows accumulate).
// d x = g; d src = alpha * g picked at the rows.
Tensor index_add(const Tensor& x, int64_t dim, const Tensor& index, const Tensor& src, double alpha, Site site) {
  int64_t d = check_indexing("index_add", x, dim, index);
  check_index_1d("index_add", index, x);
  check_defined("index_add", src, "source");
  check_same_dtype("index_add", x, src);
  check_same_device("index_add", x, src);
  Shape want = x.shape();
  want[d] = index.numel();
  DG_CHECK(src.shape() == want, "index_add: source shape {} does not match {} (input shape {} with dim {} of the "
           "index's length {})", src.shape(), want, x.shape(), d, index.numel());
  check_index_range("index_add", index, d, x.shape());
  Tensor idx = as_1d(index);
  Tensor out = copy_of(x);
  backend_of(x).index_add(out, d, idx, src, alpha);
  if (should_record({x, src}))
    record("index_add", site, out, {x, src}, [d, alpha, idx = save(idx)](const Tensor& g, const Node& n) -> Tensors {
      Tensor gsrc = index_select(g, d, idx.get(), n.site());
      return {g, alpha == 1.0 ? gsrc : mul(gsrc, alpha, n.site())};
    }, {idx.shape()});
  return out;
}

// --- index_add_rows: x (N, C), index (K), src (K, C), w (K) -> x with
// w[k] * src[k] added into row index[k] (repeated rows accumulate): the same
// as index_add(x, 0, index, src * unsqueeze(w, 1)) without the scaled copy.
// With gi = g's row index[k]: d x = g; d src[k] = w[k] gi; d w[k] = <gi, src[k]>
// — one fused pass, or (double backward, or a backend without the kernels)
// index_select, mul and sum, differentiable again. Such a backend adds
// src * w with its index_add.
Tensor index_add_rows(const Tensor& x, const Tensor& index, const Tensor& src, const Tensor& w, Site site) {
  const char* op = "index_add_rows";
  check_indexing(op, x, 0, index);
  check_index_1d(op, index, x);
  check_defined(op, src, "source");
  check_defined(op, w, "weight");
  check_same_dtype(op, x, src);
  check_same_dtype(op, x, w);
  check_same_device(op, x, src);
  check_same_device(op, x, w);
  DG_CHECK(x.dim() == 2 && src.dim() == 2 && src.size(1) == x.size(1) && src.size(0) == index.numel() &&
               w.dim() == 1 && w.numel() == index.numel(),
           "{}: expected x (N, C), index (K), src (K, C) and w (K); got x {}, index {}, src {}, w {}", op, x.shape(),
           index.shape(), src.shape(), w.shape());
  check_index_range(op, index, 0, x.shape());
  const Tensor idx = to_contiguous(as_1d(index)), sc = to_contiguous(src), wc = to_contiguous(w);
  Tensor out = copy_of(x);
  if (!backend_of(x).index_add_rows(out, idx, sc, wc)) {
    NoGradGuard no_grad;
    backend_of(x).index_add(out, 0, idx, to_contiguous(mul(sc, unsqueeze(wc, 1))), 1.0);
  }
  if (should_record({x, src, w}))
    record(op, site, out, {x, src, w}, [is = save(idx), s = save(sc), ws = save(wc)](const Tensor& g, const Node& n) -> Tensors {
      const Tensor iv = is.get(), sv = s.get(), wv = ws.get();
      if (!is_grad_enabled()) {  // not building a graph: the fused pass
        const Tensor gc = to_contiguous(g);
        Tensor gsrc = n.needs_grad(1) ? empty_as(sv.shape(), sv) : Tensor();
        Tensor gw = n.needs_grad(2) ? empty_as(wv.shape(), wv) : Tensor();
        if (backend_of(gc).index_add_rows_backward(gc, iv, sv, wv, gsrc, gw)) return {g, gsrc, gw};
      }
      const Tensor gi = index_select(g, 0, iv, n.site());
      return {g, n.needs_grad(1) ? mul(gi, unsqueeze(wv, 1, n.site()), n.site()) : Tensor(),
              n.needs_grad(2) ? sum(mul(gi, sv, n.site()), {1}, false, n.site()) : Tensor()};
    }, {index.shape(), src.shape()});
  return out;
}

// --- gather: x (..., D, ...), index of x's rank (index.size(e) <= x.size(e) off dim)
// -> out of index's shape, out[.., j, ..] = x[.., index[.., j, ..], ..] along dim.
// d x = g scatter-added back at the same places (repeats accumulate).
Tensor gather(const Tensor& x, int64_t dim, const Tensor& index, Site site) {
  int64_t d = check_indexing("gather", x, dim, index);
  check_gather_shapes("gather", x, d, index);
  check_index_range("gather", index, d, x.shape());
  Tensor out = empty_as(index.shape(), x);
  backend_of(x).gather(x, d, index, out);
  if (should_record({x}))
    record("gather", site, out, {x}, [xs = x.shape(), d, idx = save(index)](const Tensor& g, const Node& n) -> Tensors {
      return {scatter_add_into_zeros(xs, d, idx.get(), g, n.site())};
    }, {index.shape()});
  return out;
}

// --- scatter_add: x (..., D, ...), index and src of one shape (x's rank, fitting in
// x off dim) -> x with src[.., j, ..] added at x[.., index[.., j, ..], ..] along dim.
// d x = g; d src = g gathered at the same places.
Tensor scatter_add(const Tensor& x, int64_t dim, const Tensor& index, const Tensor& src, Site site) {
  int64_t d = check_indexing("scatter_add", x, dim, index);
  check_defined("scatter_add", src, "source");
  check_same_dtype("scatter_add", x, src);
  check_same_device("scatter_add", x, src);
  DG_CHECK(src.shape() == index.shape(), "scatter_add: source shape {} must equal the index shape {} (input shape {})",
           src.shape(), index.shape(), x.shape());
  check_gather_shapes("scatter_add", x, d, index);
  check_index_range("scatter_add", index, d, x.shape());
  Tensor out = copy_of(x);
  backend_of(x).scatter_add(out, d, index, src);
  if (should_record({x, src}))
    record("scatter_add", site, out, {x, src}, [d, idx = save(index)](const Tensor& g, const Node& n) -> Tensors {
      return {g, gather(g, d, idx.get(), n.site())};
    }, {index.shape()});
  return out;
}

// --- embedding: weight (V, C), index of any shape (...) -> (..., C): row index[...] of weight.
// An index_select of dim 0 written straight into the (..., C) output.
// d weight = g's rows added back at the index (index_add into zeros).
Tensor embedding(const Tensor& weight, const Tensor& index, Site site) {
  check_defined("embedding", weight, "weight");
  check_index_tensor("embedding", index);
  check_same_device("embedding", weight, index);
  DG_CHECK(weight.dim() == 2, "embedding: weight must be 2-D (V, C), got shape {}", weight.shape());
  check_index_range("embedding", index, 0, weight.shape(), "weight");
  const int64_t K = index.numel(), C = weight.shape()[1];
  Tensor flat = to_contiguous(index);
  flat = as_strided(flat, {K}, {1}, flat.offset());
  Shape shape = index.shape();
  shape.push_back(C);
  Tensor out = empty_as(shape, weight);
  backend_of(weight).index_select(weight, 0, flat, as_strided(out, {K, C}, {C, 1}, 0));
  if (should_record({weight}))
    record("embedding", site, out, {weight}, [ws = weight.shape(), flat = save(flat)](const Tensor& g, const Node& n) -> Tensors {
      const Tensor rows = reshape(g, {flat.get().numel(), ws[1]}, n.site());
      if (add_rows_into_accumulated(0, 0, flat.get(), rows)) return {};
      return {index_add_into_zeros(ws, 0, flat.get(), rows, n.site())};
    }, {index.shape()});
  return out;
}

// --- masked_fill: x and bool mask broadcast together -> value where mask, x elsewhere.
// d x = g with the masked places zeroed (masked_fill of g itself; the engine
// sums it back to x's shape).
Tensor masked_fill(const Tensor& x, const Tensor& mask, double value, Site site) {
  check_defined("masked_fill", x);
  check_defined("masked_fill", mask, "mask");
  check_same_device("masked_fill", x, mask);
  DG_CHECK(mask.dtype() == DType::b8, "masked_fill: mask must be bool, got {} of shape {} (input shape {})",
           mask.dtype(), mask.shape(), x.shape());
  Shape shape = broadcast_shapes(x.shape(), mask.shape(), "masked_fill");
  Tensor fill = full({}, value, {x.dtype(), x.device()});
  Tensor out = empty_as(shape, x);
  backend_of(x).where(broadcast_view(mask, shape), broadcast_view(fill, shape), broadcast_view(x, shape), out);
  if (should_record({x}))
    record("masked_fill", site, out, {x}, [mask = save(mask)](const Tensor& g, const Node& n) -> Tensors {
      return {masked_fill(g, mask.get(), 0.0, n.site())};
    }, {mask.shape()});
  return out;
}

// --- topk: x (..., D, ...) -> values and i64 indices (..., k, ...) along dim,
// the k largest (smallest), best first when sorted (else in index order);
// ties go to the lower index. Only values are differentiable:
// d x = g scattered to the chosen places (indices are distinct per row).
ValuesIndices topk(const Tensor& x, int64_t k, int64_t dim, bool largest, bool sorted, Site site) {
  check_defined("topk", x);
  DG_CHECK(x.dim() >= 1, "topk: expected an input with at least one dim, got a 0-dim tensor");
  DG_CHECK(x.dtype() != DType::b8, "topk: bool inputs are not supported (input shape {})", x.shape());
  int64_t d = wrap_dim(dim, x.dim(), "topk");
  DG_CHECK(k >= 0 && k <= x.shape()[d], "topk: k = {} out of range for dim {} of size {} (input shape {})", k, d,
           x.shape()[d], x.shape());
  Shape shape = x.shape();
  shape[d] = k;
  ValuesIndices r{empty_as(shape, x), empty_as(shape, DType::i64, x)};
  backend_of(x).topk(x, k, d, largest, sorted, r.values, r.indices);
  if (should_record({x}))
    record("topk", site, r.values, {x}, [xs = x.shape(), d, idx = save(r.indices)](const Tensor& g, const Node& n) -> Tensors {
      return {scatter_add_into_zeros(xs, d, idx.get(), g, n.site())};
    }, {shape});
  return r;
}

}  // namespace dg
