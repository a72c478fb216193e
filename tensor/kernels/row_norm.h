#pragma once
// Per-row math of the fused row kernels (softmax, layer norm, RMS norm,
// softmax-cross-entropy), written once for the CUDA kernels (cuda/nn.cu) and
// the host emulation of their thread layout (tests/test_tile_math.cpp). The
// formulas and their rounding order are those of tensor/cpu/nn.cpp and
// tensor/cpu/loss.cpp; accumulation is in T (float for f32), as there.
//
// Legend: C = row length, x a row of C values, n threads share a row; thread
// t of n owns the elements t, t + n, t + 2n, ... ("strided" partials below),
// and the n partials of a pass are then combined (a warp-shuffle / shared
// memory reduction on the GPU) into the row's total.
//
//   float m = strided_max<float>(C, t, n, [&](int64_t i) { return x[i]; });
//   ... combine m over the n threads, then:
//   float s = strided_sum<float>(C, t, n, [&](int64_t i) { return std::exp(x[i] - m); });
#include <cmath>
#include <cstdint>
#include <limits>

#include "tensor/functors.h"

namespace dg::kern {

template <class T>
DG_HOST_DEVICE T neg_inf() {
  return -std::numeric_limits<T>::infinity();
}
template <class T>
DG_HOST_DEVICE T max_of(T a, T b) {
  return a > b ? a : b;
}

// Thread t's partial sum of f(i) over its elements i = t, t + n, ... < C.
template <class T, class F>
DG_HOST_DEVICE T strided_sum(int64_t C, int64_t t, int64_t n, const F& f) {
  T acc = T(0);
  for (int64_t i = t; i < C; i += n) acc += f(i);
  return acc;
}
// Thread t's partial max of f(i) (-inf when it owns no element).
template <class T, class F>
DG_HOST_DEVICE T strided_max(int64_t C, int64_t t, int64_t n, const F& f) {
  T acc = neg_inf<T>();
  for (int64_t i = t; i < C; i += n) acc = max_of(acc, f(i));
  return acc;
}

// Threads sharing a row in the CUDA kernels: one warp for short rows, a block
// of 256 otherwise.
constexpr int threads_per_row(int64_t C) { return C <= 256 ? 32 : 256; }
// Rows per chunk of the weight/bias gradient partials (at most 65535 chunks:
// the grid's y limit).
constexpr int64_t param_grad_rows_per_chunk(int64_t N) {
  const int64_t r = (N + 65534) / 65535;
  return r > 64 ? r : 64;
}

// ---------------------------------------------------------------- softmax
// Row statistics m = max(x), sum = sum(exp(x - m)) give
//   softmax:     y = exp(x - m) * (1 / sum)
//   log-softmax: y = (x - m) - log(sum)
template <class T>
DG_HOST_DEVICE T softmax_value(T x, T m, T sum, bool log) {
  return log ? (x - m) - std::log(sum) : std::exp(x - m) * (T(1) / sum);
}
// Backward with dot = sum(gy * y) (softmax) or sum(gy) (log-softmax):
//   softmax:     gx = y * (gy - dot)
//   log-softmax: gx = gy - exp(y) * dot
template <class T>
DG_HOST_DEVICE T softmax_grad(T y, T gy, T dot, bool log) {
  return log ? gy - std::exp(y) * dot : y * (gy - dot);
}
// The row dot of softmax_grad: the term of element i.
template <class T>
DG_HOST_DEVICE T softmax_grad_dot_term(T y, T gy, bool log) {
  return log ? gy : gy * y;
}

// ---------------------------------------------------------------- layer norm
// mean = sum(x) / C; var = sum((x - mean)^2) / C (second pass: no
// cancellation); rstd = 1 / sqrt(var + eps); y = (x - mean) * rstd * w + b.
template <class T>
DG_HOST_DEVICE T row_mean(T sum, int64_t C) {
  return sum / T(C);
}
// rstd from a sum of squares (of x - mean for layer norm, of x for RMS norm).
template <class T>
DG_HOST_DEVICE T rstd_of(T sum_sq, int64_t C, T eps) {
  return T(1) / std::sqrt(sum_sq / T(C) + eps);
}
template <class T>
DG_HOST_DEVICE T centred_square(T x, T mean) {
  return (x - mean) * (x - mean);
}
// xhat = (x - mean) * rstd (RMS norm: mean = 0).
template <class T>
DG_HOST_DEVICE T normalised(T x, T mean, T rstd) {
  return (x - mean) * rstd;
}
// y = xhat * w + b, w and b optional (null: 1 and 0).
template <class T>
DG_HOST_DEVICE T affine(T xhat, const T* w, const T* b, int64_t i) {
  T y = xhat;
  if (w) y = y * w[i];
  if (b) y = y + b[i];
  return y;
}
// Backward, with dxhat = gy * w (gy without w), a = sum(dxhat) / C,
// c = sum(dxhat * xhat) / C:
//   layer norm: gx = rstd * (dxhat - a - xhat * c)
//   RMS norm:   gx = rstd * (dxhat - xhat * c)        (a = 0)
// gw = sum over rows of gy * xhat, gb = sum over rows of gy.
template <class T>
DG_HOST_DEVICE T dxhat_of(T gy, const T* w, int64_t i) {
  return w ? gy * w[i] : gy;
}
template <class T>
DG_HOST_DEVICE T norm_grad(T dxhat, T xhat, T rstd, T a, T c) {
  return rstd * (dxhat - a - xhat * c);
}

// ---------------------------------------------------------------- cross-entropy
// With m = max(x), log_sum = log(sum(exp(x - m))), lse = m + log_sum and
// label smoothing s:
//   loss = (1-s) * (log_sum - (x[t] - m)) + s * (log_sum - (mean(x) - m))
// formed from shifted logits (never lse - x[t], which loses the low digits
// of large logits in f32); 0 for an ignored row.
template <class T>
DG_HOST_DEVICE T cross_entropy_loss(T log_sum, T m, T x_target, T mean_x, T s) {
  const T nll = log_sum - (x_target - m);
  return s == T(0) ? nll : (1 - s) * nll + s * (log_sum - (mean_x - m));
}
// glogits[i] = g * (exp(x[i] - lse) - s/V) - [i == t] * g * (1-s)
template <class T>
DG_HOST_DEVICE T cross_entropy_grad(T x, T lse, T g, T uniform, T s, bool is_target) {
  T d = (std::exp(x - lse) - uniform) * g;
  if (is_target) d -= g * (1 - s);
  return d;
}

}  // namespace dg::kern
