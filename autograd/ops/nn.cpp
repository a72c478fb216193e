// Fused nn ops: softmax, log_softmax, layer_norm, rms_norm,
// scaled_dot_product_attention and attention_varlen. (cross_entropy and
// dropout: ops/loss.cpp.)
//
// Legend: N = rows (leading dims flattened), C = the normalised last dim,
// B = batch, H = heads, Tq/Tk = query/key positions, D = head dim; for
// attention_varlen N = tokens of S sequences packed back to back.
//
// Why fused: each op is one backend kernel forward and one backward instead of
// the 5-10 elementwise and reduction ops of its composite form, every one of
// which would read and write the whole tensor and keep its output alive for
// backward. The price: the backward is a kernel, not differentiable ops, so
// these ops have no double backward. Under create_graph, each gradient they
// return gets a NoDoubleBackward node, so differentiating it again is a clear
// error instead of a silently wrong (zero) second derivative.
#include "autograd/engine.h"
#include "autograd/ops/common.h"

#include <cmath>

namespace dg {

namespace {

// grad_fn of a gradient computed by a fused backward kernel. Its edges are the
// forward node's (the gradient depends on the op's inputs) plus the incoming
// gradient's; applying it throws.
class NoDoubleBackward final : public Node {
 public:
  NoDoubleBackward(const char* op, const char* name, const Node& forward) : Node(name, forward.site()), op_(op) {
    next_ = forward.next();  // attach_node then appends the edge to the incoming gradient
  }
  Tensors apply(const Tensor&) override {
    throw Error(fmt::format("double backward of {} is not supported: its backward is a fused kernel (node created "
                            "at {}:{}); write the op with basic differentiable ops to take higher derivatives",
                            op_, site().file_name(), site().line()));
  }

 private:
  const char* op_;
};

// Under create_graph (grad mode on inside backward), gives each defined
// gradient in `grads` a NoDoubleBackward grad_fn; `g` is the incoming gradient.
void forbid_double_backward(const char* op, const char* name, const Node& forward, const Tensor& g,
                            std::initializer_list<Tensor> grads) {
  if (!is_grad_enabled()) return;
  for (const Tensor& gi : grads)
    if (gi.defined()) attach_node(gi, std::make_shared<NoDoubleBackward>(op, name, forward), {g});
}

// --- views used to run a last-dim kernel over another dim (metadata only)

// t with dim `dim` moved to the end.
Tensor move_dim_last(const Tensor& t, int64_t dim) {
  Shape s = t.shape();
  Strides st = t.strides();
  s.erase(dim), st.erase(dim);
  s.push_back(t.shape()[dim]), st.push_back(t.strides()[dim]);
  return as_strided(t, s, st, t.offset());
}

// The inverse: t's last dim put back at `dim`.
Tensor move_last_dim_to(const Tensor& t, int64_t dim) {
  Shape s = t.shape();
  Strides st = t.strides();
  const int64_t n = s.back(), sn = st.back();
  s.erase(s.size() - 1), st.erase(st.size() - 1);
  s.insert(dim, n), st.insert(dim, sn);
  return as_strided(t, s, st, t.offset());
}

// Contiguous t seen as (N, C) rows, as the norm kernels expect.
Tensor as_rows(const Tensor& t, int64_t N, int64_t C) {
  return t.dim() == 2 ? t : as_strided(t, {N, C}, {C, 1}, t.offset());
}

// ---------------------------------------------------------------- softmax
// Softmax over a dim that is not the last: the input is copied once with that
// dim moved last (contiguous), the last-dim kernel runs, and the result is
// returned as a view in the input's dim order (no copy back). A strided kernel
// would save the one copy, but every backend would then need it; a non-last
// softmax is rare in this library's models.

// dx for y = (log_)softmax(x) over `dim`; yc is the saved (contiguous,
// dim-last) output.
Tensor softmax_grad(const char* op, const Node& node, const Tensor& yc, const Tensor& g, int64_t dim, bool last,
                    bool log) {
  Tensor gc = to_contiguous(last ? g : move_dim_last(g, dim));
  Tensor gxc = empty_as(yc.shape(), yc);
  if (gxc.numel() > 0) backend_of(yc).softmax_backward(yc, gc, gxc, log);
  Tensor gx = last ? gxc : move_last_dim_to(gxc, dim);
  forbid_double_backward(op, log ? "log_softmax_backward" : "softmax_backward", node, g, {gx});
  return gx;
}

// y = exp(x - logsumexp(x)) over `dim` (log: y = x - logsumexp(x)). Saves y.
Tensor softmax_op(const char* op, const Tensor& x, int64_t dim, bool log, const Site& site) {
  check_defined(op, x);
  check_floating(op, x);
  dim = wrap_dim(dim, x.dim(), op);
  const bool last = x.dim() == 0 || dim == x.dim() - 1;
  Tensor xc = to_contiguous(last ? x : move_dim_last(x, dim));
  Tensor yc = empty_as(xc.shape(), x);
  if (yc.numel() > 0) backend_of(x).softmax(xc, yc, log);
  Tensor y = last ? yc : move_last_dim_to(yc, dim);
  if (should_record({x}))
    record(op, site, y, {x}, [yc = save_output(yc), dim, last, log, op](const Tensor& g, const Node& node) -> Tensors {
      return {softmax_grad(op, node, yc.get(), g, dim, last, log)};
    }, {yc.shape()});
  return y;
}

// ---------------------------------------------------------------- norms

void check_norm_input(const char* op, const Tensor& x) {
  check_defined(op, x);
  check_floating(op, x);
  DG_CHECK(x.dim() >= 1, "{}: expected an input with at least one dim (it normalises the last), got shape {}", op,
           x.shape());
}

void check_norm_param(const char* op, const char* what, const Tensor& p, const Tensor& x) {
  if (!p.defined()) return;
  DG_CHECK(p.dim() == 1 && p.shape()[0] == x.shape().back(), "{}: {} of shape {} for input of shape {} (expected [{}])",
           op, what, p.shape(), x.shape(), x.shape().back());
  check_same_dtype(op, x, p);
  check_same_device(op, x, p);
}

Tensor contiguous_or_undefined(const Tensor& t) { return t.defined() ? to_contiguous(t) : Tensor(); }

// Rows (N) and row length (C) of a norm input.
struct RowsCols {
  int64_t N, C;
};
RowsCols rows_cols(const Tensor& x) {
  const int64_t C = x.shape().back();
  return {C ? x.numel() / C : 0, C};
}

// dx, dw, db of layer_norm from the saved contiguous x, weight, mean, rstd.
// Where x's gradient already holds other consumers' sum and the engine lets
// the backward add into it (accumulated_grad: a residual stream's norm, MoB's
// gate and per-step head reading the same rows), dx is added there by the
// kernel and returned undefined: no temporary and no separate add.
Tensors layer_norm_grad(const Node& node, const Tensor& g, const Tensor& x, const Tensor& w, const Tensor& mean,
                        const Tensor& rstd) {
  const auto [N, C] = rows_cols(x);
  const Tensor acc = node.needs_grad(0) ? accumulated_grad(0) : Tensor();
  Tensor gx = acc.defined() ? acc : empty_as(x.shape(), x);
  Tensor gw = node.needs_grad(1) ? zeros({C}, {x.dtype(), x.device()}) : Tensor();
  Tensor gb = node.needs_grad(2) ? zeros({C}, {x.dtype(), x.device()}) : Tensor();
  if (x.numel() > 0)
    backend_of(x).layer_norm_backward(as_rows(to_contiguous(g), N, C), as_rows(x, N, C), w, mean, rstd,
                                      as_rows(gx, N, C), gw, gb, acc.defined());
  if (acc.defined()) gx = Tensor();
  forbid_double_backward("layer_norm", "layer_norm_backward", node, g, {gx, gw, gb});
  return {gx, gw, gb};
}

Tensors rms_norm_grad(const Node& node, const Tensor& g, const Tensor& x, const Tensor& w, const Tensor& rstd) {
  const auto [N, C] = rows_cols(x);
  Tensor gx = empty_as(x.shape(), x);
  Tensor gw = node.needs_grad(1) ? zeros({C}, {x.dtype(), x.device()}) : Tensor();
  if (x.numel() > 0)
    backend_of(x).rms_norm_backward(as_rows(to_contiguous(g), N, C), as_rows(x, N, C), w, rstd, as_rows(gx, N, C),
                                    gw);
  forbid_double_backward("rms_norm", "rms_norm_backward", node, g, {gx, gw});
  return {gx, gw};
}

// ---------------------------------------------------------------- attention

void check_attention_args(const char* op, const Tensor& q, const Tensor& k, const Tensor& v, bool causal) {
  check_defined(op, q, "q");
  check_defined(op, k, "k");
  check_defined(op, v, "v");
  for (const auto& [t, name] : {std::pair{&q, "q"}, {&k, "k"}, {&v, "v"}})
    DG_CHECK(t->dim() == 4, "{}: q, k, v must be 4-D (B, H, T, D), got {} for {}", op, t->shape(), name);
  check_floating(op, q);
  check_same_dtype(op, q, k);
  check_same_dtype(op, q, v);
  check_same_device(op, q, k);
  check_same_device(op, q, v);
  DG_CHECK(k.shape() == v.shape(), "{}: k and v must have the same shape (B, H, Tk, D), got k {} and v {}", op,
           k.shape(), v.shape());
  DG_CHECK(q.size(0) == k.size(0) && q.size(1) == k.size(1) && q.size(3) == k.size(3),
           "{}: q {} and k {} must agree in batch, heads and head dim (B, H, T, D)", op, q.shape(), k.shape());
  DG_CHECK(q.size(3) > 0, "{}: head dim D must be positive, got q {}", op, q.shape());
  DG_CHECK(q.size(2) == 0 || k.size(2) > 0, "{}: {} queries but no keys (k {})", op, q.size(2), k.shape());
  DG_CHECK(!causal || q.size(2) <= k.size(2),
           "{}: causal attention needs at least as many keys as queries (query i sees keys up to i + Tk - Tq), got "
           "q {} and k {}", op, q.shape(), k.shape());
}

Tensors attention_grad(const Node& node, const Tensor& g, const Tensor& q, const Tensor& k, const Tensor& v,
                       const Tensor& out, const Tensor& lse, double scale, bool causal) {
  Tensor gq = empty_as(q.shape(), q), gk = empty_as(k.shape(), k), gv = empty_as(v.shape(), v);
  backend_of(q).attention_backward(q, k, v, out, lse, to_contiguous(g), scale, causal, gq, gk, gv);
  forbid_double_backward("scaled_dot_product_attention", "attention_backward", node, g, {gq, gk, gv});
  return {gq, gk, gv};
}

// The value checks of check_cu_seqlens on a device, where the values stay:
// cu[0] - 0, every step cu[s+1] - cu[s] and cu[S] - N go through
// Backend::check_indices (on CUDA the error comes at the next synchronisation).
void check_cu_seqlens_on_device(const char* op, const Tensor& cu, const Tensor& x, int64_t N) {
  NoGradGuard no_grad;
  const int64_t S = cu.numel() - 1;
  Backend& b = backend_of(cu);
  b.check_indices(narrow(cu, 0, 0, 1), 1, fmt::format("{}: cu_seqlens[0] must be 0, got {{}}", op), std::nullopt);
  if (S > 0)
    b.check_indices(sub(narrow(cu, 0, 1, S), narrow(cu, 0, 0, S)), N + 1,
                    fmt::format("{}: cu_seqlens must be non-decreasing, got a step of {{}} (N = {} tokens)", op, N),
                    std::nullopt);
  b.check_indices(add(narrow(cu, 0, S, 1), static_cast<double>(-N)), 1,
                  fmt::format("{}: cu_seqlens[{}] must equal the token count N = {} of {}, got N + {{}}", op, S, N,
                              x.shape()),
                  std::nullopt);
}

// cu_seqlens (S + 1) of a packed batch of N tokens (those of `x`): i64, 1-D,
// cu[0] = 0, non-decreasing, cu[S] = N. Read on the host when it is there;
// checked on its device otherwise (no copy).
void check_cu_seqlens(const char* op, const Tensor& cu_seqlens, const Tensor& x, int64_t N) {
  check_defined(op, cu_seqlens, "cu_seqlens");
  DG_CHECK(cu_seqlens.dtype() == DType::i64, "{}: cu_seqlens must be i64, got {} of shape {}", op, cu_seqlens.dtype(),
           cu_seqlens.shape());
  DG_CHECK(cu_seqlens.dim() == 1 && cu_seqlens.numel() >= 1,
           "{}: cu_seqlens must be 1-D of length S + 1 >= 1 (S sequences), got shape {}", op, cu_seqlens.shape());
  check_same_device(op, x, cu_seqlens);
  if (!cu_seqlens.device().is_cpu()) return check_cu_seqlens_on_device(op, cu_seqlens, x, N);
  const std::vector<int64_t> cu = cu_seqlens.to_vector<int64_t>();  // host memory: no transfer
  const int64_t S = static_cast<int64_t>(cu.size()) - 1;
  DG_CHECK(cu[0] == 0, "{}: cu_seqlens[0] must be 0, got {}", op, cu[0]);
  for (int64_t s = 0; s < S; ++s)
    DG_CHECK(cu[s] <= cu[s + 1], "{}: cu_seqlens must be non-decreasing, got cu_seqlens[{}] = {} > cu_seqlens[{}] = {}",
             op, s, cu[s], s + 1, cu[s + 1]);
  DG_CHECK(cu[S] == N, "{}: cu_seqlens[{}] = {} must equal the token count N = {} of {}", op, S, cu[S], N,
           x.shape());
}

// q, k, v (H, N, D) and cu_seqlens (S + 1) describing a packed batch: i64,
// cu[0] = 0, non-decreasing, cu[S] = N.
void check_attention_varlen_args(const char* op, const Tensor& q, const Tensor& k, const Tensor& v,
                                 const Tensor& cu_seqlens) {
  check_defined(op, q, "q");
  check_defined(op, k, "k");
  check_defined(op, v, "v");
  for (const auto& [t, name] : {std::pair{&q, "q"}, {&k, "k"}, {&v, "v"}})
    DG_CHECK(t->dim() == 3, "{}: q, k, v must be 3-D (H, N, D), got {} for {}", op, t->shape(), name);
  check_floating(op, q);
  check_same_dtype(op, q, k);
  check_same_dtype(op, q, v);
  check_same_device(op, q, k);
  check_same_device(op, q, v);
  DG_CHECK(q.shape() == k.shape() && q.shape() == v.shape(),
           "{}: q, k, v must have the same shape (H, N, D), got q {} k {} v {}", op, q.shape(), k.shape(), v.shape());
  DG_CHECK(q.size(2) > 0, "{}: head dim D must be positive, got q {}", op, q.shape());
  check_cu_seqlens(op, cu_seqlens, q, q.size(1));
}

Tensors attention_varlen_grad(const Node& node, const Tensor& g, const Tensor& q, const Tensor& k, const Tensor& v,
                              const Tensor& cu_seqlens, const Tensor& out, const Tensor& lse, double scale) {
  Tensor gq = empty_as(q.shape(), q), gk = empty_as(k.shape(), k), gv = empty_as(v.shape(), v);
  if (q.numel() > 0)
    backend_of(q).attention_varlen_backward(q, k, v, cu_seqlens, out, lse, to_contiguous(g), scale, gq, gk, gv);
  forbid_double_backward("attention_varlen", "attention_varlen_backward", node, g, {gq, gk, gv});
  return {gq, gk, gv};
}

Tensors attention_qkv_grad(const Node& node, const Tensor& g, const Tensor& qkv, const Tensor& cu_seqlens,
                           int64_t H, const Tensor& out, const Tensor& lse, double scale) {
  const int64_t C3 = qkv.size(qkv.dim() - 1), N = qkv.numel() / std::max<int64_t>(C3, 1);
  Tensor gqkv = empty_as(qkv.shape(), qkv);
  if (N > 0)
    backend_of(qkv).attention_qkv_backward(as_rows(qkv, N, C3), cu_seqlens, H, as_rows(out, N, C3 / 3), lse,
                                           as_rows(to_contiguous(g), N, C3 / 3), scale, as_rows(gqkv, N, C3));
  forbid_double_backward("attention_qkv", "attention_qkv_backward", node, g, {gqkv});
  return {gqkv};
}

Tensors attention_qkv_rows_grad(const Node& node, const Tensor& g, const Tensor& qkv, const Tensor& cu_seqlens,
                                const Tensor& rows, int64_t H, const Tensor& out, const Tensor& lse, double scale) {
  Tensor gqkv = empty_as(qkv.shape(), qkv);
  if (qkv.size(0) > 0) {
    const bool fused = backend_of(qkv).attention_qkv_rows_backward(qkv, cu_seqlens, rows, H, out, lse,
                                                                   to_contiguous(g), scale, gqkv);
    DG_ASSERT(fused, "attention_qkv_rows: the backend fused forward but not backward");
  }
  forbid_double_backward("attention_qkv_rows", "attention_qkv_rows_backward", node, g, {gqkv});
  return {gqkv};
}

// rows (i64 (N)) is a permutation of 0..N-1: every value in range and every
// row counted once. Checked where rows lives (no copy to the host; on CUDA
// the error comes at the next synchronisation).
void check_permutation(const char* op, const Tensor& rows, int64_t N) {
  NoGradGuard no_grad;
  Backend& b = backend_of(rows);
  b.check_indices(rows, N, fmt::format("{}: rows must be a permutation of 0..{}, got a row {{}}", op, N - 1),
                  std::nullopt);
  const Options i64{DType::i64, rows.device()};
  Tensor extra = index_add(full({N}, -1.0, i64), 0, rows, ones({N}, i64));  // times listed - 1
  b.check_indices(extra, 1,
                  fmt::format("{}: rows must be a permutation of 0..{} (every row of qkv once); a row is listed {{}} "
                              "extra time(s) (-1: not listed)", op, N - 1),
                  std::nullopt);
}

}  // namespace

// Fused (see the top of the file): one kernel, saves only y.
Tensor softmax(const Tensor& x, int64_t dim, Site site) { return softmax_op("softmax", x, dim, false, site); }
Tensor log_softmax(const Tensor& x, int64_t dim, Site site) { return softmax_op("log_softmax", x, dim, true, site); }

// y = (x - mean) / sqrt(var + eps) * weight + bias over the last dim, x (..., C).
// Fused: statistics and output in one pass; saves x, weight, mean and rstd (N).
Tensor layer_norm(const Tensor& x, const Tensor& weight, const Tensor& bias, double eps, Site site) {
  const char* op = "layer_norm";
  check_norm_input(op, x);
  check_norm_param(op, "weight", weight, x);
  check_norm_param(op, "bias", bias, x);
  const auto [N, C] = rows_cols(x);
  Tensor xc = to_contiguous(x), wc = contiguous_or_undefined(weight), bc = contiguous_or_undefined(bias);
  Tensor y = empty_as(x.shape(), x), mean = empty_as({N}, x), rstd = empty_as({N}, x);
  if (x.numel() > 0) backend_of(x).layer_norm(as_rows(xc, N, C), wc, bc, eps, as_rows(y, N, C), mean, rstd);
  if (should_record({x, weight, bias}))
    record(op, site, y, {x, weight, bias}, [xc = save(xc), wc = save(wc), mean, rstd](const Tensor& g, const Node& node) {
      return layer_norm_grad(node, g, xc.get(), wc.get(), mean, rstd);
    }, {x.shape(), mean.shape(), rstd.shape()});
  return y;
}

// grouped_layer_norm: rows [offsets[k], offsets[k+1]) of x (N, C) normalised
// with weights[k], biases[k]; one op writing one (N, C) output, so groups of
// rows through different blocks' norms need no gather, slice or cat. Saves x,
// mean and rstd (N) like layer_norm; backward runs the fused kernel on each
// group's rows (no double backward, like layer_norm).
Tensor grouped_layer_norm(const Tensor& x, const std::vector<int64_t>& offsets, const Tensors& weights,
                          const Tensors& biases, double eps, Site site) {
  const char* op = "grouped_layer_norm";
  check_norm_input(op, x);
  DG_CHECK(x.dim() == 2, "{}: expected a 2-D input (N, C), got {}", op, x.shape());
  const size_t n = weights.size();
  check_group_offsets(op, offsets, n, x.size(0));
  DG_CHECK(biases.size() == n, "{}: {} biases for {} weights (one per weight, each may be undefined)", op,
           biases.size(), n);
  for (size_t k = 0; k < n; ++k) {
    check_norm_param(op, "weight", weights[k], x);
    check_norm_param(op, "bias", biases[k], x);
  }
  const int64_t N = x.size(0), C = x.size(1);
  Tensor xc = to_contiguous(x), y = empty_as(x.shape(), x), mean = empty_as({N}, x), rstd = empty_as({N}, x);
  Tensors wc(n), bc(n);
  for (size_t k = 0; k < n; ++k) wc[k] = contiguous_or_undefined(weights[k]), bc[k] = contiguous_or_undefined(biases[k]);
  auto rows = [C](const Tensor& t, int64_t r0, int64_t r1) { return as_strided(t, {r1 - r0, C}, {C, 1}, t.offset() + r0 * C); };
  auto stats = [](const Tensor& t, int64_t r0, int64_t r1) { return as_strided(t, {r1 - r0}, {1}, t.offset() + r0); };
  Backend& be = backend_of(x);
  for (size_t k = 0; k < n; ++k) {
    const int64_t r0 = offsets[k], r1 = offsets[k + 1];
    if (r1 > r0 && C > 0)
      be.layer_norm(rows(xc, r0, r1), wc[k], bc[k], eps, rows(y, r0, r1), stats(mean, r0, r1), stats(rstd, r0, r1));
  }
  const Tensors inputs = grouped_inputs(x, weights, biases);
  if (should_record(inputs)) {
    record(op, site, y, inputs,
           [op_name = op, xs = save(xc), ws = save_all(wc), mean, rstd, offsets, n, C, rows, stats](const Tensor& g,
                                                                                    const Node& node) -> Tensors {
             const Tensor xv = xs.get(), gc = to_contiguous(g);
             // Into x's gradient sum where the engine allows it, as layer_norm_grad.
             const Tensor acc = node.needs_grad(0) ? accumulated_grad(0) : Tensor();
             Tensor gx = acc.defined() ? acc : empty_as(xv.shape(), xv);
             Tensors grads(1 + 2 * n);
             Backend& b = backend_of(xv);
             for (size_t k = 0; k < n; ++k) {
               const int64_t r0 = offsets[k], r1 = offsets[k + 1];
               if (r1 == r0) continue;  // an empty group: no parameter gradient
               Tensor gw = node.needs_grad(1 + k) ? zeros({C}, {xv.dtype(), xv.device()}) : Tensor();
               Tensor gb = node.needs_grad(1 + n + k) ? zeros({C}, {xv.dtype(), xv.device()}) : Tensor();
               if (C > 0)
                 b.layer_norm_backward(rows(gc, r0, r1), rows(xv, r0, r1), ws[k].get(), stats(mean, r0, r1),
                                       stats(rstd, r0, r1), rows(gx, r0, r1), gw, gb, acc.defined());
               grads[1 + k] = gw;
               grads[1 + n + k] = gb;
             }
             grads[0] = node.needs_grad(0) && !acc.defined() ? gx : Tensor();
             for (const Tensor& gi : grads) forbid_double_backward(op_name, "grouped_layer_norm_backward", node, g, {gi});
             return grads;
           }, {x.shape(), mean.shape(), rstd.shape()});
  }
  return y;
}

// y = x / sqrt(mean(x^2) + eps) * weight over the last dim, x (..., C).
// Fused like layer_norm; saves x, weight and rstd (N).
Tensor rms_norm(const Tensor& x, const Tensor& weight, double eps, Site site) {
  const char* op = "rms_norm";
  check_norm_input(op, x);
  check_norm_param(op, "weight", weight, x);
  const auto [N, C] = rows_cols(x);
  Tensor xc = to_contiguous(x), wc = contiguous_or_undefined(weight);
  Tensor y = empty_as(x.shape(), x), rstd = empty_as({N}, x);
  if (x.numel() > 0) backend_of(x).rms_norm(as_rows(xc, N, C), wc, eps, as_rows(y, N, C), rstd);
  if (should_record({x, weight}))
    record(op, site, y, {x, weight}, [xc = save(xc), wc = save(wc), rstd](const Tensor& g, const Node& node) {
      return rms_norm_grad(node, g, xc.get(), wc.get(), rstd);
    }, {x.shape(), rstd.shape()});
  return y;
}

// out = softmax(q k^T * scale + causal mask) v; q (B, H, Tq, D), k and v
// (B, H, Tk, D), out (B, H, Tq, D). Fused: the composite stores the (Tq, Tk)
// scores and probabilities per head for backward; the kernel saves only the
// row log-sum-exp (B, H, Tq), recomputes probabilities in backward, and skips
// the masked key blocks. Saves q, k, v, out and lse.
Tensor scaled_dot_product_attention(const Tensor& q, const Tensor& k, const Tensor& v, bool causal, double scale,
                                    Site site) {
  const char* op = "scaled_dot_product_attention";
  check_attention_args(op, q, k, v, causal);
  if (scale == 0.0) scale = 1.0 / std::sqrt(static_cast<double>(q.size(3)));
  Tensor qc = to_contiguous(q), kc = to_contiguous(k), vc = to_contiguous(v);
  Tensor out = empty_as(q.shape(), q), lse = empty_as({q.size(0), q.size(1), q.size(2)}, q);
  if (out.numel() > 0) backend_of(q).attention(qc, kc, vc, scale, causal, out, lse);
  if (should_record({q, k, v}))
    record(op, site, out, {q, k, v},
           [qc = save(qc), kc = save(kc), vc = save(vc), o = save_output(out), lse, scale, causal](
               const Tensor& g, const Node& node) {
             return attention_grad(node, g, qc.get(), kc.get(), vc.get(), o.get(), lse, scale, causal);
           },
           {q.shape(), k.shape(), v.shape(), out.shape(), lse.shape()});
  return out;
}

// Causal attention within each of S sequences packed back to back: q, k, v
// (H, N, D), sequence s owning rows [cu_seqlens[s], cu_seqlens[s+1]); out
// (H, N, D). Fused like scaled_dot_product_attention (no double backward);
// one (h, s) tile per sequence, so no work or memory goes to padding. Saves
// q, k, v, cu_seqlens, out and lse (H, N).
Tensor attention_varlen(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& cu_seqlens, double scale,
                        Site site) {
  const char* op = "attention_varlen";
  check_attention_varlen_args(op, q, k, v, cu_seqlens);
  if (scale == 0.0) scale = 1.0 / std::sqrt(static_cast<double>(q.size(2)));
  Tensor qc = to_contiguous(q), kc = to_contiguous(k), vc = to_contiguous(v), cu = to_contiguous(cu_seqlens);
  Tensor out = empty_as(q.shape(), q), lse = empty_as({q.size(0), q.size(1)}, q);
  if (out.numel() > 0) backend_of(q).attention_varlen(qc, kc, vc, cu, scale, out, lse);
  if (should_record({q, k, v}))
    record(op, site, out, {q, k, v},
           [qc = save(qc), kc = save(kc), vc = save(vc), cu = save(cu), o = save_output(out), lse, scale](
               const Tensor& g, const Node& node) {
             return attention_varlen_grad(node, g, qc.get(), kc.get(), vc.get(), cu.get(), o.get(), lse, scale);
           },
           {q.shape(), k.shape(), v.shape(), cu.shape(), out.shape(), lse.shape()});
  return out;
}

// Causal attention straight from the fused projection x·W_qkv: qkv (B, T, 3C)
// (sequences = batch rows) or packed (N, 3C) with cu_seqlens (S + 1); per
// token [q | k | v], head h at columns h*D of each. Returns (B, T, C) or
// (N, C), heads side by side — what the output projection takes. The same
// values as splitting into heads, attending and merging, without the four
// head copies each way. Saves qkv, out and lse.
Tensor attention_qkv(const Tensor& qkv, int64_t n_head, const Tensor& cu_seqlens, double scale, Site site) {
  const char* op = "attention_qkv";
  check_defined(op, qkv, "qkv");
  check_floating(op, qkv);
  DG_CHECK(qkv.dim() == 3 || qkv.dim() == 2, "{}: qkv must be (B, T, 3C) or packed (N, 3C), got {}", op,
           qkv.shape());
  DG_CHECK(cu_seqlens.defined() == (qkv.dim() == 2),
           "{}: cu_seqlens goes with packed (N, 3C) qkv and only with it; got qkv {} and {} cu_seqlens", op,
           qkv.shape(), cu_seqlens.defined() ? "a" : "no");
  const int64_t C3 = qkv.size(qkv.dim() - 1), H = n_head;
  DG_CHECK(H > 0 && C3 > 0 && C3 % (3 * H) == 0,
           "{}: the last dim of qkv {} must be 3 * n_head * head_dim (n_head {})", op, qkv.shape(), H);
  const int64_t C = C3 / 3, N = qkv.numel() / C3;
  Tensor cu;
  if (qkv.dim() == 3) {
    // B sequences of T tokens: cu = 0, T, 2T, ..., BT, made on qkv's device.
    const int64_t B = qkv.size(0), T = qkv.size(1);
    cu = T == 0 ? zeros({B + 1}, {DType::i64, qkv.device()})
                : arange(0.0, static_cast<double>((B + 1) * T), static_cast<double>(T), {DType::i64, qkv.device()});
  } else {
    check_cu_seqlens(op, cu_seqlens, qkv, N);
    cu = to_contiguous(cu_seqlens);
  }
  if (scale == 0.0) scale = 1.0 / std::sqrt(static_cast<double>(C / H));
  Shape out_shape = qkv.shape();
  out_shape[out_shape.size() - 1] = C;
  Tensor qc = to_contiguous(qkv), out = empty_as(out_shape, qkv), lse = empty_as({H, N}, qkv);
  if (N > 0) backend_of(qkv).attention_qkv(as_rows(qc, N, C3), cu, H, scale, as_rows(out, N, C), lse);
  if (should_record({qkv}))
    record(op, site, out, {qkv},
           [qc = save(qc), cu, o = save_output(out), lse, H, scale](const Tensor& g, const Node& node) {
             return attention_qkv_grad(node, g, qc.get(), cu, H, o.get(), lse, scale);
           },
           {qkv.shape(), cu.shape(), out.shape(), lse.shape()});
  return out;
}

// attention_qkv on packed sequences whose tokens sit in any row order:
// packed position j (the order cu_seqlens counts in) is row rows[j] of qkv
// (N, 3C) and of the output (N, C), so rows grouped by expert or block attend
// by sequence and position without being put in sequence order and back.
// Equal to index_select(attention_qkv(index_select(qkv, 0, rows), H, cu),
// 0, inverse of rows); a backend with a fused kernel gathers per sequence
// instead. rows must be a permutation of 0..N-1 (checked on its device).
Tensor attention_qkv_rows(const Tensor& qkv, int64_t n_head, const Tensor& cu_seqlens, const Tensor& rows,
                          double scale, Site site) {
  const char* op = "attention_qkv_rows";
  check_defined(op, qkv, "qkv");
  check_floating(op, qkv);
  DG_CHECK(qkv.dim() == 2, "{}: qkv must be packed (N, 3C), got {}", op, qkv.shape());
  DG_CHECK(cu_seqlens.defined(), "{}: cu_seqlens is required (the packed sequences of qkv {})", op, qkv.shape());
  const int64_t C3 = qkv.size(1), H = n_head, N = qkv.size(0);
  DG_CHECK(H > 0 && C3 > 0 && C3 % (3 * H) == 0,
           "{}: the last dim of qkv {} must be 3 * n_head * head_dim (n_head {})", op, qkv.shape(), H);
  check_cu_seqlens(op, cu_seqlens, qkv, N);
  DG_CHECK(rows.defined() && rows.dtype() == DType::i64 && rows.dim() == 1 && rows.numel() == N,
           "{}: rows must be i64 (N) with N = {} rows of qkv {}, got {}", op, N, qkv.shape(),
           rows.defined() ? fmt::format("{} {}", rows.dtype(), rows.shape()) : std::string("none"));
  check_same_device(op, qkv, rows);
  if (N > 0) check_permutation(op, rows, N);
  const int64_t C = C3 / 3;
  if (scale == 0.0) scale = 1.0 / std::sqrt(static_cast<double>(C / H));
  const Tensor cu = to_contiguous(cu_seqlens), rc = to_contiguous(rows), qc = to_contiguous(qkv);
  Tensor out = empty_as({N, C}, qkv), lse = empty_as({H, N}, qkv);
  if (N > 0 && !backend_of(qkv).attention_qkv_rows(qc, cu, rc, H, scale, out, lse)) {
    Tensor to_rows;  // the inverse permutation: to_rows[rows[j]] = j
    {
      NoGradGuard no_grad;
      to_rows = index_add(zeros({N}, {DType::i64, rows.device()}), 0, rc, arange(N, {DType::i64, rows.device()}));
    }
    return index_select(attention_qkv(index_select(qkv, 0, rc, site), H, cu, scale, site), 0, to_rows, site);
  }
  if (should_record({qkv}))
    record(op, site, out, {qkv},
           [qc = save(qc), cu, rc, o = save_output(out), lse, H, scale](const Tensor& g, const Node& node) {
             return attention_qkv_rows_grad(node, g, qc.get(), cu, rc, H, o.get(), lse, scale);
           },
           {qkv.shape(), rows.shape(), out.shape(), lse.shape()});
  return out;
}

}  // namespace dg
