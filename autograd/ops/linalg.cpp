// matmul, with torch.matmul's semantics:
//   (K) @ (K)            -> ()          dot product
//   (K) @ (..., K, N)    -> (..., N)    a gets a leading 1, removed after
//   (..., M, K) @ (K)    -> (..., M)    b gets a trailing 1, removed after
//   (..., M, K) @ (..., K, N) -> (..., M, N), batch dims broadcast (NumPy rules)
//
// The 1-D cases are unsqueeze / matmul / squeeze, so they need no backward of
// their own. The core (both operands >= 2-D) saves a and b and has
//   da = g @ b^T,   db = a^T @ g
// (summed back to each operand's batch shape by the engine), written with
// matmul itself, so double backward works.
//
// linear(x, W, b) is x @ W^T + b as one op (below), which nn::Linear uses.
//
// Speed: the hot case is a Linear layer, x (B, T, K) @ W^T (K, N). Its batch
// is folded into the rows, (B*T, K) @ (K, N), one large GEMM instead of B
// small ones; its weight gradient is likewise one GEMM, x_flat^T @ g_flat,
// not B products summed afterwards.
#include "autograd/engine.h"
#include "autograd/ops/common.h"

namespace dg {

namespace {

void check_matmul(const Tensor& a, const Tensor& b) {
  check_defined("matmul", a, "first operand");
  check_defined("matmul", b, "second operand");
  check_same_dtype("matmul", a, b);
  check_same_device("matmul", a, b);
  DG_CHECK(is_floating(a.dtype()), "matmul: expected floating tensors (f32 or f64), got {} {} and {} {}", a.dtype(),
           a.shape(), b.dtype(), b.shape());
  DG_CHECK(a.dim() >= 1 && b.dim() >= 1, "matmul: both operands need at least 1 dim, got shapes {} and {}", a.shape(),
           b.shape());
  const int64_t ka = a.size(-1), kb = b.dim() == 1 ? b.size(0) : b.size(-2);
  DG_CHECK(ka == kb, "matmul: inner dims do not match: {} @ {} ({} vs {})", a.shape(), b.shape(), ka, kb);
}

// A matrix the GEMM kernel can read in place: one of its two inner strides
// is 1 (row- or column-major); anything else is copied.
bool gemm_readable(const Tensor& t) {
  const int64_t n = t.dim();
  return t.stride(n - 1) == 1 || t.stride(n - 2) == 1 || t.size(n - 1) == 1 || t.size(n - 2) == 1;
}

// t (..., R, C) expanded to batch + (R, C) and viewed as (prod(batch), R, C)
// with one batch stride; copied when its batch dims cannot share one stride.
Tensor as_batch3(const Tensor& t, const Shape& batch) {
  Shape full = batch;
  full.push_back(t.size(-2));
  full.push_back(t.size(-1));
  Tensor e = broadcast_view(t, full);
  if (!gemm_readable(e)) e = copy_of(e);
  const int64_t nb = batch.size(), bn = batch.numel();
  // The batch dims collapse to one stride when each is (size 1 or) stride-
  // consistent with the next; all-stride-0 (a broadcast operand) collapses too.
  int64_t stride = 0;
  bool ok = true;
  for (int64_t i = nb - 1, inner = -1; i >= 0; --i) {
    if (e.size(i) == 1) continue;
    if (inner < 0) stride = e.stride(i);
    else ok = ok && e.stride(i) == stride * inner;
    inner = inner < 0 ? e.size(i) : inner * e.size(i);
  }
  if (!ok) {
    e = copy_of(e);
    stride = e.size(-1) * e.size(-2);
  }
  return as_strided(e, {bn, e.size(-2), e.size(-1)}, {stride, e.stride(-2), e.stride(-1)}, e.offset());
}

// a (..., M, K) @ b (..., K, N), both >= 2-D, no autograd.
Tensor matmul_kernel(const Tensor& a, const Tensor& b) {
  const int64_t M = a.size(-2), K = a.size(-1), N = b.size(-1);
  Backend& be = backend_of(a);
  if (b.dim() == 2 && a.dim() > 2) {
    // Fold a's batch into its rows: (prod, K) @ (K, N).
    Tensor a2 = a.is_contiguous() ? a : copy_of(a);
    const int64_t rows = a.numel() / std::max<int64_t>(K, 1);
    Shape out_shape = a.shape();
    out_shape[out_shape.size() - 1] = N;
    Tensor out = empty_as(out_shape, a);
    Tensor b3 = gemm_readable(b) ? b : copy_of(b);
    be.matmul(as_strided(a2, {1, rows, K}, {0, K, 1}, a2.offset()),
              as_strided(b3, {1, K, N}, {0, b3.stride(0), b3.stride(1)}, b3.offset()),
              as_strided(out, {1, rows, N}, {rows * N, N, 1}, 0), false, false);
    return out;
  }
  Shape ba(std::span<const int64_t>(a.shape().begin(), a.dim() - 2));
  Shape bb(std::span<const int64_t>(b.shape().begin(), b.dim() - 2));
  Shape batch = ba == bb ? ba : broadcast_shapes(ba, bb, "matmul");
  Shape out_shape = batch;
  out_shape.push_back(M);
  out_shape.push_back(N);
  Tensor out = empty_as(out_shape, a);
  be.matmul(as_batch3(a, batch), as_batch3(b, batch), as_strided(out, {batch.numel(), M, N}, {M * N, N, 1}, 0),
            false, false);
  return out;
}

Tensor mT(const Tensor& t) { return transpose(t, -1, -2); }

// d a for out = a @ b: g @ b^T (the engine sums it to a's batch shape).
Tensor matmul_grad_a(const Tensor& g, const Tensor& b) { return matmul(g, mT(b)); }

// d b for out = a @ b: a^T @ g; with b 2-D and a batched, one folded GEMM
// (K, rows) @ (rows, N) instead of a batch of products summed afterwards.
Tensor matmul_grad_b(const Tensor& g, const Tensor& a, const Tensor& b) {
  if (b.dim() == 2 && a.dim() > 2)
    return matmul(mT(reshape(a, {-1, a.size(-1)})), reshape(g, {-1, g.size(-1)}));
  return matmul(mT(a), g);
}

// Rows [r0, r1) of out (rows, N) = rows [r0, r1) of x (rows, K) @ W^T + b,
// x and out contiguous: out's rows start as b's (then beta = 1) and the GEMM
// reads x, W in place (a W with neither inner stride 1 is copied).
void linear_rows(const Tensor& x, int64_t r0, int64_t r1, const Tensor& weight, const Tensor& bias, const Tensor& out) {
  const int64_t N = weight.size(0), K = weight.size(1), n = r1 - r0;
  if (n <= 0 || N == 0) return;
  Backend& be = backend_of(x);
  Tensor out2 = as_strided(out, {1, n, N}, {n * N, N, 1}, out.offset() + r0 * N);
  double beta = 0.0;
  if (bias.defined()) {
    be.copy(broadcast_view(reshape(bias, {1, 1, N}), {1, n, N}), out2);
    beta = 1.0;
  }
  Tensor w = gemm_readable(weight) ? weight : copy_of(weight);
  be.matmul(as_strided(x, {1, n, K}, {0, K, 1}, x.offset() + r0 * K),
            as_strided(w, {1, K, N}, {0, w.stride(1), w.stride(0)}, w.offset()), out2, false, false, 1.0, beta);
}

// In a backward (not recorded): a (M, K) @ b (K, N) added into the gradient
// already accumulated for the node's input `input` (M, N), by the GEMM itself
// (beta = 1), when the engine lets the backward write it in place
// (accumulated_grad); false if not, and nothing is done. A weight used at
// several steps (MoB's blocks, a gate, a tied head) gets its gradient summed
// this way with no temporary per use and no separate add.
bool matmul_into_accumulated(size_t input, const Tensor& a, const Tensor& b) {
  const Tensor acc = accumulated_grad(input);
  if (!acc.defined()) return false;
  const int64_t M = a.size(0), K = a.size(1), N = b.size(1);
  const Tensor a2 = gemm_readable(a) ? a : copy_of(a), b2 = gemm_readable(b) ? b : copy_of(b);
  backend_of(a).matmul(as_strided(a2, {1, M, K}, {0, a2.stride(0), a2.stride(1)}, a2.offset()),
                       as_strided(b2, {1, K, N}, {0, b2.stride(0), b2.stride(1)}, b2.offset()),
                       as_strided(acc, {1, M, N}, {M * N, N, 1}, acc.offset()), false, false, 1.0, 1.0);
  return true;
}

// Rows [r0, r1) of a 2-D tensor, a view (recorded: differentiable).
Tensor row_range(const Tensor& t, int64_t r0, int64_t r1) { return slice(t, 0, r0, r1); }

}  // namespace

// linear: y = x W^T + b for x (..., K), W (N, K), b (N) or undefined, as one
// GEMM over the folded rows (prod(...), K) whose output starts as b's rows
// and is accumulated into (beta = 1). That replaces the GEMM's zeroing pass
// and a separate broadcast add (one read and one write of y) by one write of
// b's rows. Backward, with differentiable ops (double backward works):
//   dx = g W,  dW = g_flat^T x_flat (one folded GEMM),  db = g summed to (N).
Tensor linear(const Tensor& x, const Tensor& weight, const Tensor& bias, Site site) {
  check_defined("linear", x);
  check_defined("linear", weight, "weight");
  check_same_dtype("linear", x, weight);
  check_same_device("linear", x, weight);
  DG_CHECK(is_floating(x.dtype()), "linear: expected floating tensors (f32 or f64), got input {} {}", x.dtype(),
           x.shape());
  DG_CHECK(weight.dim() == 2, "linear: weight must be 2-D (out_features, in_features), got {}", weight.shape());
  DG_CHECK(x.dim() >= 1 && x.size(-1) == weight.size(1),
           "linear: input of shape {} does not end in in_features = {} (weight {})", x.shape(), weight.size(1),
           weight.shape());
  const int64_t N = weight.size(0), K = weight.size(1);
  if (bias.defined()) {
    check_same_dtype("linear", x, bias);
    check_same_device("linear", x, bias);
    DG_CHECK(bias.dim() == 1 && bias.size(0) == N, "linear: bias of shape {} does not match out_features = {} (weight {})",
             bias.shape(), N, weight.shape());
  }
  Shape out_shape = x.shape();
  out_shape[out_shape.size() - 1] = N;
  Tensor out = empty_as(out_shape, x);
  const int64_t rows = Shape(std::span<const int64_t>(x.shape().begin(), x.dim() - 1)).numel();
  linear_rows(x.is_contiguous() ? x : copy_of(x), 0, rows, weight, bias, out);
  if (should_record({x, weight, bias}))
    record("linear", site, out, {x, weight, bias},
           [x = save(x), w = save(weight), N, K](const Tensor& g, const Node& n) -> Tensors {
             const Tensor xs = x.get(), ws = w.get();
             Tensor gw;
             if (n.needs_grad(1)) {
               const Tensor gt = mT(reshape(g, {-1, N})), xf = reshape(xs, {-1, K});
               if (!matmul_into_accumulated(1, gt, xf)) gw = matmul(gt, xf);
             }
             return {n.needs_grad(0) ? matmul(g, ws) : Tensor(), gw, n.needs_grad(2) ? sum_to(g, {N}) : Tensor()};
           }, {x.shape(), weight.shape()});
  return out;
}

// grouped_linear: rows [offsets[k], offsets[k+1]) of x (N, K) through
// weights[k] (Nout, K) and biases[k] (Nout, or undefined; biases may be
// empty): one linear per non-empty group, each writing its own rows of one
// (N, Nout) output, so nothing is gathered, sliced or concatenated. Backward,
// with differentiable ops: dx = grouped_linear(g, offsets, W_k^T) (no bias),
// dW_k = g_k^T x_k, db_k = g_k summed over rows (g_k, x_k: row views).
Tensor grouped_linear(const Tensor& x, const std::vector<int64_t>& offsets, const Tensors& weights,
                      const Tensors& biases, Site site) {
  const char* op = "grouped_linear";
  check_defined(op, x);
  DG_CHECK(is_floating(x.dtype()) && x.dim() == 2, "{}: expected a 2-D floating input (N, K), got {} {}", op,
           x.dtype(), x.shape());
  const size_t n = weights.size();
  check_group_offsets(op, offsets, n, x.size(0));
  DG_CHECK(biases.empty() || biases.size() == n, "{}: {} biases for {} weights (give one per weight, or none)", op,
           biases.size(), n);
  const Shape wshape = weights[0].defined() ? weights[0].shape() : Shape{};
  for (size_t k = 0; k < n; ++k) {
    check_defined(op, weights[k], "weight");
    check_same_dtype(op, x, weights[k]);
    check_same_device(op, x, weights[k]);
    DG_CHECK(weights[k].dim() == 2 && weights[k].size(1) == x.size(1) && weights[k].shape() == wshape,
             "{}: weight {} of shape {} for input {} (every weight must be (out_features, {}), like weight 0 {})", op,
             k, weights[k].shape(), x.shape(), x.size(1), wshape);
    if (!biases.empty() && biases[k].defined()) {
      check_same_dtype(op, x, biases[k]);
      check_same_device(op, x, biases[k]);
      DG_CHECK(biases[k].dim() == 1 && biases[k].size(0) == wshape[0],
               "{}: bias {} of shape {} does not match out_features = {}", op, k, biases[k].shape(), wshape[0]);
    }
  }
  const int64_t Nout = wshape[0];
  Tensor xc = x.is_contiguous() ? x : copy_of(x);
  Tensor out = empty_as({x.size(0), Nout}, x);
  for (size_t k = 0; k < n; ++k)
    linear_rows(xc, offsets[k], offsets[k + 1], weights[k], biases.empty() ? Tensor() : biases[k], out);
  const Tensors inputs = grouped_inputs(x, weights, biases);
  if (should_record(inputs)) {
    record(op, site, out, inputs,
           [xs = save(xc), ws = save_all(weights), offsets, n, nb = biases.size()](const Tensor& g,
                                                                                        const Node& node) -> Tensors {
             Tensors grads(1 + n + nb);
             const Tensor xv = xs.get();
             if (node.needs_grad(0)) {
               Tensors wt;
               for (const SavedTensor& w : ws) wt.push_back(transpose(w.get(), 0, 1));
               grads[0] = grouped_linear(g, offsets, wt, {});
             }
             for (size_t k = 0; k < n; ++k) {
               if (offsets[k] == offsets[k + 1]) continue;  // an empty group: no gradient
               const Tensor gk = row_range(g, offsets[k], offsets[k + 1]);
               if (node.needs_grad(1 + k)) {
                 const Tensor gt = mT(gk), xk = row_range(xv, offsets[k], offsets[k + 1]);
                 if (!matmul_into_accumulated(1 + k, gt, xk)) grads[1 + k] = matmul(gt, xk);
               }
               if (nb > 0 && node.needs_grad(1 + n + k)) grads[1 + n + k] = sum(gk, {0});
             }
             return grads;
           }, {x.shape(), wshape});
  }
  return out;
}

Tensor matmul(const Tensor& a, const Tensor& b, Site site) {
  check_matmul(a, b);
  if (a.dim() == 1 && b.dim() == 1) return reshape(matmul(reshape(a, {1, -1}, site), reshape(b, {-1, 1}, site), site), {}, site);
  if (a.dim() == 1) return squeeze(matmul(unsqueeze(a, 0, site), b, site), -2, site);
  if (b.dim() == 1) return squeeze(matmul(a, unsqueeze(b, 1, site), site), -1, site);
  Tensor out = matmul_kernel(a, b);
  if (should_record({a, b}))
    record("matmul", site, out, {a, b},
           [a = save(a), b = save(b)](const Tensor& g, const Node& n) -> Tensors {
             return {n.needs_grad(0) ? matmul_grad_a(g, b.get()) : Tensor(),
                     n.needs_grad(1) ? matmul_grad_b(g, a.get(), b.get()) : Tensor()};
           }, {a.shape(), b.shape()});
  return out;
}

}  // namespace dg
