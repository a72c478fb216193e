#pragma once
// Every differentiable op. Each records a node on the tape when grad mode is
// on and an input requires grad; the implementation (shape check, forward,
// backward side by side) is in autograd/ops/<family>.cpp.
//
//   Tensor x = dg::randn({3}, {.dtype = DType::f64}).set_requires_grad();
//   Tensor loss = dg::sum(dg::tanh(x * x + x));
//   loss.backward();            // x.grad() now holds d loss / d x
//
// Every op takes a defaulted last argument `site`: the caller's source
// location, kept in the node for anomaly mode and the DOT export.
#include <cstdint>
#include <vector>

#include "autograd/grad_mode.h"
#include "autograd/site.h"
#include "tensor/backend.h"
#include "tensor/creation.h"

namespace dg {

using Dims = std::vector<int64_t>;
#define DG_SITE Site site = Site::current()

// --- unary (ops/unary.cpp)
Tensor neg(const Tensor& x, DG_SITE);
Tensor exp(const Tensor& x, DG_SITE);
Tensor log(const Tensor& x, DG_SITE);
Tensor sqrt(const Tensor& x, DG_SITE);
Tensor rsqrt(const Tensor& x, DG_SITE);
Tensor abs(const Tensor& x, DG_SITE);
Tensor tanh(const Tensor& x, DG_SITE);
Tensor sigmoid(const Tensor& x, DG_SITE);
Tensor relu(const Tensor& x, DG_SITE);
Tensor gelu(const Tensor& x, bool tanh_approx = true, DG_SITE);
Tensor silu(const Tensor& x, DG_SITE);
Tensor square(const Tensor& x, DG_SITE);
Tensor pow(const Tensor& x, double exponent, DG_SITE);
Tensor clamp(const Tensor& x, double lo, double hi, DG_SITE);
// g * f'(x) for the unary op `op` (its backward); differentiable once more.
Tensor unary_grad(UnaryOp op, const Tensor& g, const Tensor& x, const Tensor& y, double a, double b, DG_SITE);

// --- binary with NumPy broadcasting (ops/binary.cpp). Both operands must have
// the same dtype and device; a double operand takes the tensor's dtype.
Tensor add(const Tensor& a, const Tensor& b, DG_SITE);
Tensor sub(const Tensor& a, const Tensor& b, DG_SITE);
Tensor mul(const Tensor& a, const Tensor& b, DG_SITE);
Tensor div(const Tensor& a, const Tensor& b, DG_SITE);
Tensor pow(const Tensor& a, const Tensor& b, DG_SITE);
Tensor maximum(const Tensor& a, const Tensor& b, DG_SITE);
Tensor minimum(const Tensor& a, const Tensor& b, DG_SITE);
Tensor add(const Tensor& a, double b, DG_SITE);
Tensor mul(const Tensor& a, double b, DG_SITE);
// Comparisons (bool result, no gradient).
Tensor eq(const Tensor& a, const Tensor& b, DG_SITE);
Tensor ne(const Tensor& a, const Tensor& b, DG_SITE);
Tensor lt(const Tensor& a, const Tensor& b, DG_SITE);
Tensor le(const Tensor& a, const Tensor& b, DG_SITE);
Tensor gt(const Tensor& a, const Tensor& b, DG_SITE);
Tensor ge(const Tensor& a, const Tensor& b, DG_SITE);
Tensor gt(const Tensor& a, double b, DG_SITE);
Tensor lt(const Tensor& a, double b, DG_SITE);
// cond ? a : b (broadcast); gradients flow to a and b, never through cond.
Tensor where(const Tensor& cond, const Tensor& a, const Tensor& b, DG_SITE);

// --- reductions (ops/reduce.cpp). Empty dims = all dims.
Tensor sum(const Tensor& x, const Dims& dims = {}, bool keepdim = false, DG_SITE);
Tensor mean(const Tensor& x, const Dims& dims = {}, bool keepdim = false, DG_SITE);
struct ValuesIndices {
  Tensor values;
  Tensor indices;  // i64
};
ValuesIndices max(const Tensor& x, int64_t dim, bool keepdim = false, DG_SITE);
ValuesIndices min(const Tensor& x, int64_t dim, bool keepdim = false, DG_SITE);
Tensor max(const Tensor& x, DG_SITE);  // over all elements
Tensor min(const Tensor& x, DG_SITE);
Tensor argmax(const Tensor& x, int64_t dim, bool keepdim = false, DG_SITE);
Tensor argmin(const Tensor& x, int64_t dim, bool keepdim = false, DG_SITE);
Tensor logsumexp(const Tensor& x, const Dims& dims, bool keepdim = false, DG_SITE);
// Variance with Bessel's correction by default (correction = 1), like torch.var.
Tensor var(const Tensor& x, const Dims& dims = {}, bool keepdim = false, int64_t correction = 1, DG_SITE);

// --- shape (ops/shape.cpp). Views share storage with x when possible.
Tensor reshape(const Tensor& x, const Shape& shape, DG_SITE);  // one dim may be -1
Tensor view(const Tensor& x, const Shape& shape, DG_SITE);     // like reshape, but never copies (error instead)
Tensor flatten(const Tensor& x, int64_t start_dim = 0, int64_t end_dim = -1, DG_SITE);
Tensor permute(const Tensor& x, const Dims& dims, DG_SITE);
Tensor transpose(const Tensor& x, int64_t d0, int64_t d1, DG_SITE);
Tensor slice(const Tensor& x, int64_t dim, int64_t start, int64_t end, int64_t step = 1, DG_SITE);
Tensor narrow(const Tensor& x, int64_t dim, int64_t start, int64_t length, DG_SITE);
Tensor select(const Tensor& x, int64_t dim, int64_t index, DG_SITE);  // drops dim
Tensor expand(const Tensor& x, const Shape& shape, DG_SITE);         // -1 keeps a dim
Tensor squeeze(const Tensor& x, int64_t dim, DG_SITE);
Tensor unsqueeze(const Tensor& x, int64_t dim, DG_SITE);
Tensor contiguous(const Tensor& x, DG_SITE);
Tensor clone(const Tensor& x, DG_SITE);
Tensor to(const Tensor& x, DType dtype, DG_SITE);  // differentiable between float types
// A copy on `device` (x itself when already there); the gradient goes back to
// x's device. Same as x.to(device).
//   Tensor w = dg::to(dg::randn({4, 4}), dg::Device::guarded());
Tensor to(const Tensor& x, Device device, DG_SITE);
Tensor cat(const Tensors& xs, int64_t dim = 0, DG_SITE);
Tensor stack(const Tensors& xs, int64_t dim = 0, DG_SITE);
Tensors split(const Tensor& x, int64_t split_size, int64_t dim = 0, DG_SITE);
Tensors split(const Tensor& x, const Dims& sizes, int64_t dim, DG_SITE);
// Sums g over broadcast dims so it has `shape` (the inverse of expand).
Tensor sum_to(const Tensor& g, const Shape& shape, DG_SITE);

// --- linalg (ops/linalg.cpp). 1-D/2-D/batched with broadcast batch dims, like torch.matmul.
Tensor matmul(const Tensor& a, const Tensor& b, DG_SITE);
// x (..., K) @ weight^T + bias, weight (N, K), bias (N) or undefined -> (..., N); torch.nn.functional.linear.
Tensor linear(const Tensor& x, const Tensor& weight, const Tensor& bias = {}, DG_SITE);
// Rows [offsets[k], offsets[k+1]) of x (N, K) through linear(·, weights[k], biases[k]) -> (N, Nout), one op:
// groups of rows through different layers (MoB's blocks) without gathering, slicing or concatenating.
// biases: one per weight (each may be undefined) or empty.
Tensor grouped_linear(const Tensor& x, const std::vector<int64_t>& offsets, const Tensors& weights,
                      const Tensors& biases = {}, DG_SITE);

// --- indexing (ops/index.cpp). Indices are i64 tensors.
Tensor index_select(const Tensor& x, int64_t dim, const Tensor& index, DG_SITE);
// x with alpha * src added into the rows `index` along dim (out of place).
Tensor index_add(const Tensor& x, int64_t dim, const Tensor& index, const Tensor& src, double alpha = 1.0, DG_SITE);
// x (N, C) with w[k] * src[k] added into row index[k] (src (K, C), w (K)): index_add of
// src * unsqueeze(w, 1) along dim 0 in one pass, the weighted residual update of routed tokens.
Tensor index_add_rows(const Tensor& x, const Tensor& index, const Tensor& src, const Tensor& w, DG_SITE);
Tensor gather(const Tensor& x, int64_t dim, const Tensor& index, DG_SITE);
Tensor scatter_add(const Tensor& x, int64_t dim, const Tensor& index, const Tensor& src, DG_SITE);
Tensor embedding(const Tensor& weight, const Tensor& index, DG_SITE);  // weight (V, C), index any shape
Tensor masked_fill(const Tensor& x, const Tensor& mask, double value, DG_SITE);
ValuesIndices topk(const Tensor& x, int64_t k, int64_t dim = -1, bool largest = true, bool sorted = true, DG_SITE);

// --- fused nn kernels (ops/nn.cpp)
Tensor softmax(const Tensor& x, int64_t dim = -1, DG_SITE);
Tensor log_softmax(const Tensor& x, int64_t dim = -1, DG_SITE);
// Normalise over the last dim; weight/bias (C) may be undefined.
Tensor layer_norm(const Tensor& x, const Tensor& weight, const Tensor& bias, double eps = 1e-5, DG_SITE);
// Rows [offsets[k], offsets[k+1]) of x (N, C) through layer_norm(·, weights[k], biases[k], eps), one op (MoB's blocks).
Tensor grouped_layer_norm(const Tensor& x, const std::vector<int64_t>& offsets, const Tensors& weights,
                          const Tensors& biases, double eps = 1e-5, DG_SITE);
Tensor rms_norm(const Tensor& x, const Tensor& weight, double eps = 1e-6, DG_SITE);
enum class Reduction { none, mean, sum };
// logits (N, V) or (..., V) with target of the leading shape (i64).
Tensor cross_entropy(const Tensor& logits, const Tensor& target, int64_t ignore_index = -100,
                     double label_smoothing = 0.0, Reduction reduction = Reduction::mean, DG_SITE);
Tensor dropout(const Tensor& x, double p, bool training, Generator* gen = nullptr, DG_SITE);
// q, k, v (B, H, T, D); scale defaults to 1/sqrt(D).
Tensor scaled_dot_product_attention(const Tensor& q, const Tensor& k, const Tensor& v, bool causal = true,
                                    double scale = 0.0, DG_SITE);
// Causal attention over S sequences packed back to back: q, k, v (H, N, D);
// cu_seqlens i64 (S + 1), cu[0] = 0, non-decreasing, cu[S] = N; sequence s
// owns rows [cu[s], cu[s+1]) and attends only within itself. scale defaults
// to 1/sqrt(D).
//   Tensor cu = dg::from_vector<int64_t>({0, 3, 3, 10}, {4});  // lengths 3, 0, 7
//   Tensor out = dg::attention_varlen(q, k, v, cu);             // q (H, 10, D)
Tensor attention_varlen(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& cu_seqlens,
                        double scale = 0.0, DG_SITE);

// Causal attention on fused projections: qkv (B, T, 3C), or packed (N, 3C)
// with cu_seqlens as above; per token [q | k | v], head h at columns
// h*D..(h+1)*D of each third. Returns (B, T, C) or (N, C), heads side by side.
// Equal to splitting into (B, H, T, D) heads, scaled_dot_product_attention
// and merging, without the copies. scale defaults to 1/sqrt(D).
//   Tensor y = dg::attention_qkv(x_qkv, /*n_head=*/4);   // (B, T, 3C) -> (B, T, C)
Tensor attention_qkv(const Tensor& qkv, int64_t n_head, const Tensor& cu_seqlens = {}, double scale = 0.0, DG_SITE);

// attention_qkv on packed (N, 3C) qkv whose tokens sit in any row order:
// packed position j (the order cu_seqlens counts in) is row rows[j] of qkv
// and of the (N, C) output. rows: i64 (N), a permutation of 0..N-1. Tokens
// grouped by expert or block attend by sequence and position, without being
// put in sequence order and back.
//   Tensor y = dg::attention_qkv_rows(qkv, 4, cu, rows);  // y[rows[j]] = attention of position j
Tensor attention_qkv_rows(const Tensor& qkv, int64_t n_head, const Tensor& cu_seqlens, const Tensor& rows,
                          double scale = 0.0, DG_SITE);

// --- in place (ops/inplace.cpp): bump the storage version. Not allowed on a
// leaf that requires grad while grad mode is on.
Tensor& add_(Tensor& x, const Tensor& y, double alpha = 1.0);
Tensor& mul_(Tensor& x, const Tensor& y);
Tensor& mul_(Tensor& x, double y);
Tensor& zero_(Tensor& x);
Tensor& fill_(Tensor& x, double value);
Tensor& copy_(Tensor& dst, const Tensor& src);
// The fused AdamW update of one parameter (torch.optim.AdamW, amsgrad off),
// in place on param, exp_avg and exp_avg_sq (contiguous, one shape and dtype;
// grad may be strided). `step` is the update's count t for bias correction.
struct AdamWHyper {
  double lr, beta1, beta2, eps, weight_decay;
};
void adamw_step_(Tensor& param, const Tensor& grad, Tensor& exp_avg, Tensor& exp_avg_sq, const AdamWHyper& h,
                 int64_t step);

#undef DG_SITE

// --- operators. The left operand carries the caller's site (a conversion
// with a defaulted Site argument), so `a + b` records the line it
// was written on.
struct SiteTensor {
  const Tensor& t;
  Site site;
  SiteTensor(const Tensor& t, Site site = Site::current()) : t(t), site(site) {}  // NOLINT: implicit on purpose
};
inline Tensor operator+(SiteTensor a, const Tensor& b) { return add(a.t, b, a.site); }
inline Tensor operator-(SiteTensor a, const Tensor& b) { return sub(a.t, b, a.site); }
inline Tensor operator*(SiteTensor a, const Tensor& b) { return mul(a.t, b, a.site); }
inline Tensor operator/(SiteTensor a, const Tensor& b) { return div(a.t, b, a.site); }
inline Tensor operator-(SiteTensor a) { return neg(a.t, a.site); }
inline Tensor operator+(SiteTensor a, double b) { return add(a.t, b, a.site); }
inline Tensor operator-(SiteTensor a, double b) { return add(a.t, -b, a.site); }
inline Tensor operator*(SiteTensor a, double b) { return mul(a.t, b, a.site); }
inline Tensor operator/(SiteTensor a, double b) { return mul(a.t, 1.0 / b, a.site); }
inline Tensor operator+(double a, SiteTensor b) { return add(b.t, a, b.site); }
inline Tensor operator*(double a, SiteTensor b) { return mul(b.t, a, b.site); }
inline Tensor operator-(double a, SiteTensor b) { return add(neg(b.t, b.site), a, b.site); }

}  // namespace dg
