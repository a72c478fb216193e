#pragma once
// The Backend interface: the short list of primitive kernels a device must
// implement. Everything above tensor/ computes only through these calls, on
// the backend of its inputs' device (backend_for(t.device())).
//
// Conventions for every kernel:
//  - Outputs are allocated by the caller, contiguous, with the right shape and
//    dtype; kernels never allocate user-visible tensors.
//  - Inputs may be strided views (transposed, sliced, expanded with stride 0)
//    unless a kernel says "contiguous"; callers make them contiguous first then.
//  - Shapes and dtypes are checked by the caller (autograd/ops/*.cpp), which
//    names the user-facing op in its errors; kernels only DG_ASSERT.
//  - An output never aliases an input, except where a kernel says "in place".
#include <cstdint>
#include <optional>
#include <string_view>

#include "tensor/tensor.h"

namespace dg {

// Elementwise ops of one input. The scalar math lives in tensor/functors.h.
enum class UnaryOp : uint8_t {
  neg, exp, log, sqrt, rsqrt, abs, tanh, sigmoid, relu, gelu_tanh, gelu_erf, silu,
  pow_scalar,  // x^a
  clamp,       // min(max(x, a), b)
  sign, logical_not, isfinite, square, reciprocal,
};
inline constexpr int kNumUnaryOps = static_cast<int>(UnaryOp::reciprocal) + 1;
constexpr std::string_view unary_op_name(UnaryOp op) {
  switch (op) {
    case UnaryOp::neg: return "neg";
    case UnaryOp::exp: return "exp";
    case UnaryOp::log: return "log";
    case UnaryOp::sqrt: return "sqrt";
    case UnaryOp::rsqrt: return "rsqrt";
    case UnaryOp::abs: return "abs";
    case UnaryOp::tanh: return "tanh";
    case UnaryOp::sigmoid: return "sigmoid";
    case UnaryOp::relu: return "relu";
    case UnaryOp::gelu_tanh: return "gelu_tanh";
    case UnaryOp::gelu_erf: return "gelu_erf";
    case UnaryOp::silu: return "silu";
    case UnaryOp::pow_scalar: return "pow";
    case UnaryOp::clamp: return "clamp";
    case UnaryOp::sign: return "sign";
    case UnaryOp::logical_not: return "logical_not";
    case UnaryOp::isfinite: return "isfinite";
    case UnaryOp::square: return "square";
    case UnaryOp::reciprocal: return "reciprocal";
  }
  return "?";
}

// Scalar parameters of the parameterised unary ops (pow_scalar, clamp).
struct UnaryParams {
  double a = 0;
  double b = 0;
};

// Elementwise ops of two inputs; comparisons and logical ops produce bool.
enum class BinaryOp : uint8_t {
  add, sub, mul, div, pow, maximum, minimum,
  eq, ne, lt, le, gt, ge, logical_and, logical_or,
};
constexpr std::string_view binary_op_name(BinaryOp op) {
  switch (op) {
    case BinaryOp::add: return "add";
    case BinaryOp::sub: return "sub";
    case BinaryOp::mul: return "mul";
    case BinaryOp::div: return "div";
    case BinaryOp::pow: return "pow";
    case BinaryOp::maximum: return "maximum";
    case BinaryOp::minimum: return "minimum";
    case BinaryOp::eq: return "eq";
    case BinaryOp::ne: return "ne";
    case BinaryOp::lt: return "lt";
    case BinaryOp::le: return "le";
    case BinaryOp::gt: return "gt";
    case BinaryOp::ge: return "ge";
    case BinaryOp::logical_and: return "logical_and";
    case BinaryOp::logical_or: return "logical_or";
  }
  return "?";
}
constexpr bool is_comparison(BinaryOp op) { return op >= BinaryOp::eq; }

enum class ReduceOp : uint8_t { sum, max, min, prod };

class Backend {
 public:
  virtual ~Backend() = default;
  virtual Device device() const = 0;

  // --- memory
  virtual void* allocate(size_t nbytes) = 0;
  virtual void deallocate(void* ptr, size_t nbytes) = 0;
  virtual void empty_cache() = 0;                 // returns cached blocks to the system
  virtual size_t bytes_in_use() const = 0;        // live allocations
  virtual void copy_from_host(const void* src, const Tensor& dst) = 0;  // dst contiguous
  virtual void copy_to_host(const Tensor& src, void* dst) = 0;          // src contiguous
  virtual void synchronize() = 0;

  // --- fill / copy
  virtual void fill(const Tensor& out, double value) = 0;                  // out may be strided
  virtual void arange(const Tensor& out, double start, double step) = 0;   // out[i] = start + i*step
  // dst = src converted to dst's dtype; same shape; both may be strided.
  virtual void copy(const Tensor& src, const Tensor& dst) = 0;

  // --- elementwise. Inputs are already broadcast to out's shape (stride-0 views).
  virtual void unary(UnaryOp op, const Tensor& x, const Tensor& out, UnaryParams p) = 0;
  // out = g * f'(x), where y = f(x) is passed too (some derivatives are cheaper from y).
  virtual void unary_grad(UnaryOp op, const Tensor& g, const Tensor& x, const Tensor& y, const Tensor& out,
                          UnaryParams p) = 0;
  // out = f''(x) (used by the double backward of unary_grad).
  virtual void unary_grad2(UnaryOp op, const Tensor& x, const Tensor& y, const Tensor& out, UnaryParams p) = 0;
  virtual void binary(BinaryOp op, const Tensor& a, const Tensor& b, const Tensor& out) = 0;
  virtual void where(const Tensor& cond, const Tensor& a, const Tensor& b, const Tensor& out) = 0;

  // --- reductions. out has x's rank with reduced dims of size 1 (keepdim);
  // a dim is reduced where out.shape[d] == 1 and x.shape[d] != 1.
  virtual void reduce(ReduceOp op, const Tensor& x, const Tensor& out) = 0;
  // Along one dim: values and i64 indices of the max (or min); out shapes keepdim.
  // Ties resolve to the first index.
  virtual void reduce_arg(ReduceOp op, const Tensor& x, int64_t dim, const Tensor& values,
                          const Tensor& indices) = 0;

  // --- linear algebra. Batched GEMM: a is (B, M, K) or, with trans_a, (B, K, M);
  // b is (B, K, N) or, with trans_b, (B, N, K). Each matrix is row- or column-
  // major (one of its two inner strides is 1); batch strides are arbitrary,
  // 0 included (broadcast). out = alpha * op(a) @ op(b) + beta * out, (B, M, N)
  // contiguous (beta = 0 ignores out's old contents, NaN included).
  virtual void matmul(const Tensor& a, const Tensor& b, const Tensor& out, bool trans_a, bool trans_b,
                      double alpha = 1.0, double beta = 0.0) = 0;

  // --- indexing (idx: i64, values in range; callers check and name the op)
  // out = x.index_select(dim, idx)
  virtual void index_select(const Tensor& x, int64_t dim, const Tensor& idx, const Tensor& out) = 0;
  // in place: out.index_select(dim, idx) += alpha * src   (repeated indices accumulate,
  // in index order; floating: each add is fma(alpha, src, out), one rounding)
  virtual void index_add(const Tensor& out, int64_t dim, const Tensor& idx, const Tensor& src, double alpha) = 0;
  // out[i][j] = x[idx[i][j]][j] along dim (idx has out's shape)
  virtual void gather(const Tensor& x, int64_t dim, const Tensor& idx, const Tensor& out) = 0;
  // in place: out[idx[i][j]][j] += src[i][j] along dim
  virtual void scatter_add(const Tensor& out, int64_t dim, const Tensor& idx, const Tensor& src) = 0;
  // k largest (or smallest) along dim; sorted descending (ascending) when `sorted`.
  virtual void topk(const Tensor& x, int64_t k, int64_t dim, bool largest, bool sorted, const Tensor& values,
                    const Tensor& indices) = 0;

  // --- checks. Every value of the i64 index `idx` (any shape, may be strided)
  // lies in [0, size) or equals `skip` (cross_entropy's ignore_index):
  // negative positions are never wrapped, no op of dyngrad takes them. The
  // failure is a dg::Error whose text is `message` with the first bad value
  // put in its one "{}" (the caller writes the op, the size and the shapes
  // into it), e.g. "gather: index {} out of range for dim 1 of size 3 (...)".
  // The values stay on the device: the CPU and the guarded device check at
  // once; CUDA checks asynchronously and raises the error at its next
  // synchronize() or copy to the host (the error then names the op that
  // failed, not the one running).
  virtual void check_indices(const Tensor& idx, int64_t size, std::string_view message,
                             std::optional<int64_t> skip) = 0;

  // --- random fills: counter-based (Philox 4x32-10). Element i of the
  // (contiguous) output uses counter `offset + i`, so results do not depend on
  // the device or the thread count.
  virtual void fill_uniform(const Tensor& out, double lo, double hi, uint64_t seed, uint64_t offset) = 0;
  virtual void fill_normal(const Tensor& out, double mean, double std, uint64_t seed, uint64_t offset) = 0;
  virtual void fill_bernoulli(const Tensor& out, double p, uint64_t seed, uint64_t offset) = 0;

  // --- fused nn kernels (each pays for itself: one pass instead of several).
  // Softmax / log-softmax over the last dim of contiguous x (rows of length n).
  virtual void softmax(const Tensor& x, const Tensor& out, bool log) = 0;
  // gx = y * (gy - sum(gy*y))  or, for log, gx = gy - exp(y) * sum(gy)
  virtual void softmax_backward(const Tensor& y, const Tensor& gy, const Tensor& gx, bool log) = 0;
  // Normalise over the last dim: x (N, C) contiguous; weight/bias (C) or undefined.
  // Saves mean and rstd (N) for backward.
  virtual void layer_norm(const Tensor& x, const Tensor& weight, const Tensor& bias, double eps, const Tensor& y,
                          const Tensor& mean, const Tensor& rstd) = 0;
  // gweight/gbias may be undefined (not needed); they are overwritten, not
  // accumulated. add_to_gx: gx += the input gradient (a gradient sum the
  // engine lets the backward add into, rounded as gx + it), else gx = it.
  virtual void layer_norm_backward(const Tensor& gy, const Tensor& x, const Tensor& weight, const Tensor& mean,
                                   const Tensor& rstd, const Tensor& gx, const Tensor& gweight, const Tensor& gbias,
                                   bool add_to_gx) = 0;
  virtual void rms_norm(const Tensor& x, const Tensor& weight, double eps, const Tensor& y, const Tensor& rstd) = 0;
  virtual void rms_norm_backward(const Tensor& gy, const Tensor& x, const Tensor& weight, const Tensor& rstd,
                                 const Tensor& gx, const Tensor& gweight) = 0;
  // Per-row loss of logits (N, V) contiguous against i64 target (N): with label
  // smoothing s, loss = (1-s)*(lse - x[t]) + s*(lse - mean(x)); rows whose
  // target == ignore_index get loss 0. Saves lse (N).
  virtual void cross_entropy(const Tensor& logits, const Tensor& target, int64_t ignore_index,
                             double label_smoothing, const Tensor& loss, const Tensor& lse) = 0;
  // glogits = gloss[n] * (softmax(x) - (1-s)*onehot(t) - s/V), 0 for ignored rows.
  virtual void cross_entropy_backward(const Tensor& logits, const Tensor& target, const Tensor& lse,
                                      const Tensor& gloss, int64_t ignore_index, double label_smoothing,
                                      const Tensor& glogits) = 0;
  // Scaled dot-product attention on contiguous q, k, v (B, H, T, D):
  // out = softmax(q k^T * scale + mask) v, causal mask when `causal`.
  // Saves the row log-sum-exp lse (B, H, T) for backward.
  virtual void attention(const Tensor& q, const Tensor& k, const Tensor& v, double scale, bool causal,
                         const Tensor& out, const Tensor& lse) = 0;
  virtual void attention_backward(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& out,
                                  const Tensor& lse, const Tensor& gout, double scale, bool causal,
                                  const Tensor& gq, const Tensor& gk, const Tensor& gv) = 0;
  // Packed variable-length causal attention: q, k, v (H, N, D) contiguous hold
  // S sequences back to back; cu_seqlens is i64 (S + 1), contiguous, with
  // cu[0] = 0, non-decreasing, cu[S] = N, and sequence s owns rows
  // [cu[s], cu[s+1]). Within each sequence out = softmax(q k^T * scale +
  // causal mask) v; no query sees another sequence's keys. Empty sequences are
  // allowed. Saves lse (H, N) for backward.
  virtual void attention_varlen(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& cu_seqlens,
                                double scale, const Tensor& out, const Tensor& lse) = 0;
  // gq, gk, gv (H, N, D) are overwritten, not accumulated.
  virtual void attention_varlen_backward(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& cu_seqlens,
                                         const Tensor& out, const Tensor& lse, const Tensor& gout, double scale,
                                         const Tensor& gq, const Tensor& gk, const Tensor& gv) = 0;
  // Causal attention straight from fused projections, packed like
  // attention_varlen: qkv (N, 3C) contiguous holds per token [q | k | v], each
  // C = H * D wide with head h at columns h*D; out (N, C) (head h at columns
  // h*D, ready for the output projection), lse (H, N). Same result as
  // splitting qkv into (H, N, D) heads and calling attention_varlen, without
  // the copies.
  virtual void attention_qkv(const Tensor& qkv, const Tensor& cu_seqlens, int64_t H, double scale,
                             const Tensor& out, const Tensor& lse) = 0;
  // gqkv (N, 3C) is overwritten, not accumulated.
  virtual void attention_qkv_backward(const Tensor& qkv, const Tensor& cu_seqlens, int64_t H, const Tensor& out,
                                      const Tensor& lse, const Tensor& gout, double scale, const Tensor& gqkv) = 0;
  // Optional fused kernels: a backend without one returns false and writes
  // nothing, and the op composes it from the ops above.
  // in place: out (N, C) rows idx[k] += w[k] * src[k] (K, C), w (K); repeated
  // rows accumulate. All contiguous.
  virtual bool index_add_rows(const Tensor& /*out*/, const Tensor& /*idx*/, const Tensor& /*src*/,
                              const Tensor& /*w*/) {
    return false;
  }
  // Its backward for the incoming g (N, C): gsrc[k] = w[k] g[idx[k]] and
  // gw[k] = <g[idx[k]], src[k]>, each written when defined (overwritten).
  virtual bool index_add_rows_backward(const Tensor& /*g*/, const Tensor& /*idx*/, const Tensor& /*src*/,
                                       const Tensor& /*w*/, const Tensor& /*gsrc*/, const Tensor& /*gw*/) {
    return false;
  }
  // attention_qkv with the tokens in any row order: packed position j is row
  // rows[j] (i64 (N), a permutation of 0..N-1) of qkv and of out; lse (H, N)
  // in packed order. Optional: a backend without a fused kernel returns
  // false and writes nothing, and the op permutes, attends and permutes back.
  virtual bool attention_qkv_rows(const Tensor& /*qkv*/, const Tensor& /*cu_seqlens*/, const Tensor& /*rows*/,
                                  int64_t /*H*/, double /*scale*/, const Tensor& /*out*/, const Tensor& /*lse*/) {
    return false;
  }
  // gqkv (N, 3C) is overwritten, not accumulated; false: not fused here.
  virtual bool attention_qkv_rows_backward(const Tensor& /*qkv*/, const Tensor& /*cu_seqlens*/,
                                           const Tensor& /*rows*/, int64_t /*H*/, const Tensor& /*out*/,
                                           const Tensor& /*lse*/, const Tensor& /*gout*/, double /*scale*/,
                                           const Tensor& /*gqkv*/) {
    return false;
  }
  // One AdamW step (torch.optim.AdamW, non-amsgrad), in place on contiguous
  // param, exp_avg (m) and exp_avg_sq (v), all of grad's shape and dtype;
  // step t >= 1 counts this update. With bc1 = 1 - beta1^t, bc2 = 1 - beta2^t:
  //   p *= 1 - lr*wd;  m = beta1*m + (1-beta1)*g;  v = beta2*v + (1-beta2)*g*g;
  //   p += -(lr/bc1) * m / (sqrt(v)/sqrt(bc2) + eps)
  // Fused: one pass over memory instead of ~10 elementwise kernels and their
  // temporaries. The caller bumps the storage versions.
  virtual void adamw_step(const Tensor& param, const Tensor& grad, const Tensor& exp_avg, const Tensor& exp_avg_sq,
                          double lr, double beta1, double beta2, double eps, double weight_decay, int64_t step) = 0;
};

// The backend registered for a device; a dg::Error if that device is not available.
Backend& backend_for(Device d);
inline Backend& backend_of(const Tensor& t) { return backend_for(t.device()); }

// Devices of a type this process can use: 1 for the CPU and the guarded test
// device; for CUDA, the GPUs
// visible (0 in a build without the CUDA backend, or without a driver or GPU).
int device_count(DeviceType type);
// "cpu", "cuda" (= cuda:0), "cuda:N" or "guarded" (the test device of
// tensor/guarded_backend.h) as a Device; any other text is a
// dg::Error naming the text and the accepted forms. The device need not exist
// (backend_for says so when it is used).
Device parse_device(std::string_view text);

// Threads used by CPU kernels: DG_NUM_THREADS, or all cores by default.
void set_num_threads(int n);
int num_threads();

}  // namespace dg
