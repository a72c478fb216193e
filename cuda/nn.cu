// Fused row kernels on the GPU: softmax / log-softmax, layer norm, RMS norm,
// softmax-cross-entropy, each with its backward. The per-row math is
// tensor/kernels/row_norm.h (shared with the host emulation of
// tests/test_tile_math.cpp); results match tensor/cpu/nn.cpp and loss.cpp.
//
// Legend: N = rows, C (V for logits) = row length, x (N, C) contiguous.
// One warp per row for C <= 256 (four rows per block), else one block of 256
// threads per row (RowLaunch); each pass over a row is a strided partial per
// thread and a warp-shuffle / shared-memory reduction (row_allreduce).
//
// Weight/bias gradients sum over rows without atomics: a first kernel sums
// chunks of rows per column into partials (chunks, C), a second adds the
// chunks in order, so the result is deterministic.
// fmt's shape formatting in the DG_ASSERT messages is constexpr, hence also
// compiled for the device under --expt-relaxed-constexpr, where nvcc warns that
// its long double is a double there; no device code formats anything.
#pragma nv_diag_suppress 20208
#include <algorithm>
#include <type_traits>

#include "cuda/row_reduce.cuh"
#include "tensor/dtype.h"
#include "tensor/kernels/row_contracts.h"
#include "tensor/kernels/row_norm.h"

namespace dg::cuda {

namespace {

using kern::strided_max;
using kern::strided_sum;

// This thread's place in the row layout: its row, its index t among the n
// threads of the row, and the row length it works on (0 past the last row,
// where the thread only takes part in the block's reductions: not active).
struct RowThread {
  int64_t row, t, n, C;
  bool active;
  __device__ RowThread(int64_t N, int64_t C_) {
    row = int64_t{blockIdx.x} * blockDim.y + threadIdx.y;
    t = threadIdx.x;
    n = blockDim.x;
    active = row < N;
    C = active ? C_ : 0;
    if (!active) row = 0;
  }
};

// ---------------------------------------------------------------- kernels

template <class T>
__global__ void softmax_kernel(const T* x, T* y, int64_t N, int64_t C, bool log) {
  const RowThread r(N, C);
  const T* xr = x + r.row * C;
  T* yr = y + r.row * C;
  const T m = row_allreduce(strided_max<T>(r.C, r.t, r.n, [&](int64_t i) { return xr[i]; }), MaxOp{});
  const T sum =
      row_allreduce(strided_sum<T>(r.C, r.t, r.n, [&](int64_t i) { return T(std::exp(xr[i] - m)); }), SumOp{});
  for (int64_t i = r.t; i < r.C; i += r.n) yr[i] = kern::softmax_value(xr[i], m, sum, log);
}

template <class T>
__global__ void softmax_backward_kernel(const T* y, const T* gy, T* gx, int64_t N, int64_t C, bool log) {
  const RowThread r(N, C);
  const T *yr = y + r.row * C, *gr = gy + r.row * C;
  T* gxr = gx + r.row * C;
  const T dot = row_allreduce(
      strided_sum<T>(r.C, r.t, r.n, [&](int64_t i) { return kern::softmax_grad_dot_term(yr[i], gr[i], log); }),
      SumOp{});
  for (int64_t i = r.t; i < r.C; i += r.n) gxr[i] = kern::softmax_grad(yr[i], gr[i], dot, log);
}

// Layer norm (with_mean) or RMS norm (mean 0): saves mean (layer norm) and rstd.
template <class T, bool with_mean>
__global__ void norm_kernel(const T* x, const T* w, const T* b, T eps, T* y, T* mean, T* rstd, int64_t N,
                            int64_t C) {
  const RowThread r(N, C);
  const T* xr = x + r.row * C;
  T* yr = y + r.row * C;
  T mu = T(0);
  if (with_mean)
    mu = kern::row_mean(row_allreduce(strided_sum<T>(r.C, r.t, r.n, [&](int64_t i) { return xr[i]; }), SumOp{}),
                        C);
  const T sum_sq = row_allreduce(
      strided_sum<T>(r.C, r.t, r.n, [&](int64_t i) { return kern::centred_square(xr[i], mu); }), SumOp{});
  const T rs = kern::rstd_of(sum_sq, C, eps);
  if (r.active && r.t == 0) {
    if (with_mean) mean[r.row] = mu;
    rstd[r.row] = rs;
  }
  for (int64_t i = r.t; i < r.C; i += r.n) yr[i] = kern::affine(kern::normalised(xr[i], mu, rs), w, b, i);
}

// a + b rounded once, never fused with the multiply that made b: the sum the
// engine's separate add would have given (add_to_gx below).
template <class T>
__device__ T add_rounded(T a, T b) {
  if constexpr (std::is_same_v<T, float>)
    return __fadd_rn(a, b);
  else
    return __dadd_rn(a, b);
}

// gx of layer norm (with_mean) or RMS norm (a = 0 and mean 0); add_to_gx:
// gx += it (layer norm into a gradient sum the engine hands out).
template <class T, bool with_mean>
__global__ void norm_backward_kernel(const T* gy, const T* x, const T* w, const T* mean, const T* rstd, T* gx,
                                     int64_t N, int64_t C, bool add_to_gx = false) {
  const RowThread r(N, C);
  const T *xr = x + r.row * C, *gr = gy + r.row * C;
  T* gxr = gx + r.row * C;
  const T mu = with_mean ? mean[r.row] : T(0), rs = rstd[r.row];
  T a = T(0);
  if (with_mean)
    a = kern::row_mean(
        row_allreduce(strided_sum<T>(r.C, r.t, r.n, [&](int64_t i) { return kern::dxhat_of(gr[i], w, i); }),
                      SumOp{}),
        C);
  const T c = kern::row_mean(row_allreduce(strided_sum<T>(r.C, r.t, r.n,
                                                          [&](int64_t i) {
                                                            return kern::dxhat_of(gr[i], w, i) *
                                                                   kern::normalised(xr[i], mu, rs);
                                                          }),
                                           SumOp{}),
                             C);
  for (int64_t i = r.t; i < r.C; i += r.n) {
    const T v = kern::norm_grad(kern::dxhat_of(gr[i], w, i), kern::normalised(xr[i], mu, rs), rs, a, c);
    gxr[i] = add_to_gx ? add_rounded(gxr[i], v) : v;
  }
}

// Partials over a chunk of rows per column c: pw[chunk, c] = sum gy * xhat,
// pb[chunk, c] = sum gy (pb may be null). mean null: RMS norm.
template <class T>
__global__ void norm_param_partials_kernel(const T* gy, const T* x, const T* mean, const T* rstd, T* pw, T* pb,
                                           int64_t N, int64_t C, int64_t rows_per_chunk) {
  const int64_t c = int64_t{blockIdx.x} * blockDim.x + threadIdx.x, chunk = blockIdx.y;
  if (c >= C) return;
  const int64_t r0 = chunk * rows_per_chunk, r1 = std::min(N, r0 + rows_per_chunk);
  T aw = T(0), ab = T(0);
  for (int64_t r = r0; r < r1; ++r) {
    const T g = gy[r * C + c];
    aw += g * kern::normalised(x[r * C + c], mean ? mean[r] : T(0), rstd[r]);
    ab += g;
  }
  if (pw) pw[chunk * C + c] = aw;
  if (pb) pb[chunk * C + c] = ab;
}

// out[c] = sum over chunks k (in order) of partials[k, c]
template <class T>
__global__ void sum_chunks_kernel(const T* partials, int64_t chunks, int64_t C, T* out) {
  const int64_t c = int64_t{blockIdx.x} * blockDim.x + threadIdx.x;
  if (c >= C) return;
  T acc = T(0);
  for (int64_t k = 0; k < chunks; ++k) acc += partials[k * C + c];
  out[c] = acc;
}

template <class T>
__global__ void cross_entropy_kernel(const T* logits, const int64_t* target, int64_t ts, int64_t ignore_index, T s,
                                     T* loss, T* lse, int64_t N, int64_t V) {
  const RowThread r(N, V);
  const T* xr = logits + r.row * V;
  const T m = row_allreduce(strided_max<T>(r.C, r.t, r.n, [&](int64_t i) { return xr[i]; }), MaxOp{});
  const T log_sum = std::log(
      row_allreduce(strided_sum<T>(r.C, r.t, r.n, [&](int64_t i) { return T(std::exp(xr[i] - m)); }), SumOp{}));
  T mean_x = T(0);
  if (s != T(0))
    mean_x = kern::row_mean(
        row_allreduce(strided_sum<T>(r.C, r.t, r.n, [&](int64_t i) { return xr[i]; }), SumOp{}), V);
  if (!r.active || r.t != 0) return;
  lse[r.row] = m + log_sum;
  const int64_t t = target[r.row * ts];  // in [0, V) or ignore_index: checked by the caller
  loss[r.row] = t == ignore_index ? T(0) : kern::cross_entropy_loss(log_sum, m, xr[t], mean_x, s);
}

// One row per block: no reduction, so plain grid-stride over the row.
template <class T>
__global__ void cross_entropy_backward_kernel(const T* logits, const int64_t* target, int64_t ts, const T* lse,
                                              const T* gloss, int64_t gs, int64_t ignore_index, T s, T* glogits,
                                              int64_t V) {
  const int64_t n = blockIdx.x, t = target[n * ts];
  const T *xr = logits + n * V, g = gloss[n * gs], uniform = s / T(V);
  T* dr = glogits + n * V;
  for (int64_t i = threadIdx.x; i < V; i += blockDim.x)
    dr[i] = t == ignore_index ? T(0) : kern::cross_entropy_grad(xr[i], lse[n], g, uniform, s, i == t);
}

// ---------------------------------------------------------------- launchers

template <class T>
const T* ptr_or_null(const Tensor& t) {
  return t.defined() ? dptr<T>(t) : nullptr;
}
template <class T>
T* mut_ptr_or_null(const Tensor& t) {
  return t.defined() ? dptr<T>(t) : nullptr;
}

// gw (and gb) = column sums over N rows of gy * xhat (and gy), in two passes.
template <class T>
void norm_param_grads(CudaBackend& be, cudaStream_t st, const T* gy, const T* x, const T* mean, const T* rstd, T* gw,
                      T* gb, int64_t N, int64_t C) {
  if (!gw && !gb) return;
  if (N == 0) {  // an empty sum
    if (gw) DG_CUDA_CHECK(cudaMemsetAsync(gw, 0, C * sizeof(T), st), "norm weight grad");
    if (gb) DG_CUDA_CHECK(cudaMemsetAsync(gb, 0, C * sizeof(T), st), "norm bias grad");
    return;
  }
  const int64_t rows_per_chunk = kern::param_grad_rows_per_chunk(N), chunks = (N + rows_per_chunk - 1) / rows_per_chunk;
  Scratch<T> pw(be, gw ? chunks * C : 0), pb(be, gb ? chunks * C : 0);
  const dim3 grid(blocks_for(C), static_cast<unsigned>(chunks));
  norm_param_partials_kernel<T><<<grid, kThreads, 0, st>>>(gy, x, mean, rstd, gw ? pw.ptr : nullptr,
                                                            gb ? pb.ptr : nullptr, N, C, rows_per_chunk);
  DG_CUDA_LAUNCHED("norm_param_partials");
  if (gw) sum_chunks_kernel<T><<<blocks_for(C), kThreads, 0, st>>>(pw.ptr, chunks, C, gw);
  DG_CUDA_LAUNCHED("norm weight grad");
  if (gb) sum_chunks_kernel<T><<<blocks_for(C), kThreads, 0, st>>>(pb.ptr, chunks, C, gb);
  DG_CUDA_LAUNCHED("norm bias grad");
}

}  // namespace

void CudaBackend::softmax(const Tensor& x, const Tensor& out, bool log) {
  const kern::RowLayout rows = kern::softmax_layout(x, out);
  const int64_t N = rows.N, C = rows.C;
  if (N == 0) return;
  visit_floating(x.dtype(), "softmax", [&](auto tag) {
    using T = decltype(tag);
    const RowLaunch L(N, C);
    softmax_kernel<T><<<L.grid, L.block, 0, stream_of(x)>>>(dptr<T>(x), dptr<T>(out), N, C, log);
    DG_CUDA_LAUNCHED("softmax");
  });
}

void CudaBackend::softmax_backward(const Tensor& y, const Tensor& gy, const Tensor& gx, bool log) {
  kern::assert_backward_args("softmax_backward", y, gy, gx);
  const kern::RowLayout rows = kern::softmax_layout(y, gx);
  const int64_t N = rows.N, C = rows.C;
  if (N == 0) return;
  visit_floating(y.dtype(), "softmax_backward", [&](auto tag) {
    using T = decltype(tag);
    const RowLaunch L(N, C);
    softmax_backward_kernel<T><<<L.grid, L.block, 0, stream_of(y)>>>(dptr<T>(y), dptr<T>(gy), dptr<T>(gx), N, C, log);
    DG_CUDA_LAUNCHED("softmax_backward");
  });
}

void CudaBackend::layer_norm(const Tensor& x, const Tensor& weight, const Tensor& bias, double eps, const Tensor& y,
                             const Tensor& mean, const Tensor& rstd) {
  const kern::RowLayout rows = kern::norm_layout("layer_norm", x, y, mean, rstd);
  const int64_t N = rows.N, C = rows.C;
  if (N == 0) return;
  visit_floating(x.dtype(), "layer_norm", [&](auto tag) {
    using T = decltype(tag);
    const RowLaunch L(N, C);
    norm_kernel<T, true><<<L.grid, L.block, 0, stream_of(x)>>>(dptr<T>(x), ptr_or_null<T>(weight),
                                                                ptr_or_null<T>(bias), T(eps), dptr<T>(y),
                                                                dptr<T>(mean), dptr<T>(rstd), N, C);
    DG_CUDA_LAUNCHED("layer_norm");
  });
}

void CudaBackend::layer_norm_backward(const Tensor& gy, const Tensor& x, const Tensor& weight, const Tensor& mean,
                                      const Tensor& rstd, const Tensor& gx, const Tensor& gweight,
                                      const Tensor& gbias, bool add_to_gx) {
  kern::assert_backward_args("layer_norm_backward", gy, x, gx);
  const int64_t C = kern::row_length(x), N = mean.numel();
  visit_floating(x.dtype(), "layer_norm_backward", [&](auto tag) {
    using T = decltype(tag);
    const cudaStream_t st = stream_of(x);
    if (N > 0) {
      const RowLaunch L(N, C);
      norm_backward_kernel<T, true><<<L.grid, L.block, 0, st>>>(dptr<T>(gy), dptr<T>(x), ptr_or_null<T>(weight),
                                                                 dptr<T>(mean), dptr<T>(rstd), dptr<T>(gx), N, C,
                                                                 add_to_gx);
      DG_CUDA_LAUNCHED("layer_norm_backward");
    }
    norm_param_grads<T>(*this, st, dptr<T>(gy), dptr<T>(x), dptr<T>(mean), dptr<T>(rstd), mut_ptr_or_null<T>(gweight),
                        mut_ptr_or_null<T>(gbias), N, C);
  });
}

void CudaBackend::rms_norm(const Tensor& x, const Tensor& weight, double eps, const Tensor& y, const Tensor& rstd) {
  const kern::RowLayout rows = kern::norm_layout("rms_norm", x, y, Tensor(), rstd);
  const int64_t N = rows.N, C = rows.C;
  if (N == 0) return;
  visit_floating(x.dtype(), "rms_norm", [&](auto tag) {
    using T = decltype(tag);
    const RowLaunch L(N, C);
    norm_kernel<T, false><<<L.grid, L.block, 0, stream_of(x)>>>(dptr<T>(x), ptr_or_null<T>(weight), nullptr, T(eps),
                                                                 dptr<T>(y), nullptr, dptr<T>(rstd), N, C);
    DG_CUDA_LAUNCHED("rms_norm");
  });
}

void CudaBackend::rms_norm_backward(const Tensor& gy, const Tensor& x, const Tensor& weight, const Tensor& rstd,
                                    const Tensor& gx, const Tensor& gweight) {
  kern::assert_backward_args("rms_norm_backward", gy, x, gx);
  const int64_t C = kern::row_length(x), N = rstd.numel();
  visit_floating(x.dtype(), "rms_norm_backward", [&](auto tag) {
    using T = decltype(tag);
    const cudaStream_t st = stream_of(x);
    if (N > 0) {
      const RowLaunch L(N, C);
      norm_backward_kernel<T, false><<<L.grid, L.block, 0, st>>>(dptr<T>(gy), dptr<T>(x), ptr_or_null<T>(weight),
                                                                  nullptr, dptr<T>(rstd), dptr<T>(gx), N, C);
      DG_CUDA_LAUNCHED("rms_norm_backward");
    }
    norm_param_grads<T>(*this, st, dptr<T>(gy), dptr<T>(x), nullptr, dptr<T>(rstd), mut_ptr_or_null<T>(gweight),
                        nullptr, N, C);
  });
}

void CudaBackend::cross_entropy(const Tensor& logits, const Tensor& target, int64_t ignore_index,
                                double label_smoothing, const Tensor& loss, const Tensor& lse) {
  const kern::RowLayout rows = kern::cross_entropy_layout(logits, target, loss, lse);
  const int64_t N = rows.N, V = rows.C;
  const int64_t ts = target.strides()[0];
  if (N == 0) return;
  visit_floating(logits.dtype(), "cross_entropy", [&](auto tag) {
    using T = decltype(tag);
    const RowLaunch L(N, V);
    cross_entropy_kernel<T><<<L.grid, L.block, 0, stream_of(logits)>>>(
        dptr<T>(logits), dptr<int64_t>(target), ts, ignore_index, T(label_smoothing), dptr<T>(loss), dptr<T>(lse), N,
        V);
    DG_CUDA_LAUNCHED("cross_entropy");
  });
}

void CudaBackend::cross_entropy_backward(const Tensor& logits, const Tensor& target, const Tensor& lse,
                                         const Tensor& gloss, int64_t ignore_index, double label_smoothing,
                                         const Tensor& glogits) {
  const kern::RowLayout rows = kern::cross_entropy_backward_layout(logits, target, lse, gloss, glogits);
  const int64_t N = rows.N, V = rows.C;
  const int64_t ts = target.strides()[0], gs = gloss.strides()[0];
  if (N == 0 || V == 0) return;
  visit_floating(logits.dtype(), "cross_entropy_backward", [&](auto tag) {
    using T = decltype(tag);
    cross_entropy_backward_kernel<T><<<static_cast<unsigned>(N), kThreads, 0, stream_of(logits)>>>(
        dptr<T>(logits), dptr<int64_t>(target), ts, dptr<T>(lse), dptr<T>(gloss), gs, ignore_index,
        T(label_smoothing), dptr<T>(glogits), V);
    DG_CUDA_LAUNCHED("cross_entropy_backward");
  });
}

}  // namespace dg::cuda
