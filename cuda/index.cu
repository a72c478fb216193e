// Indexing kernels on CUDA: index_select, index_add, gather, scatter_add,
// with the CPU's results (tensor/cpu/index.cpp) for every dtype.
//
// Legend: a tensor indexed along `dim` is (O, D, I): O = outer (dims before
// dim), D = the size of dim, I = inner (dims after it). An index of length K
// picks K of the D rows. Any operand may be strided: element offsets come
// from OffsetCalc with the indexed tensor's stride along dim set to 0, the
// index value times that stride added per element.
//
// Memory rules:
//  - index_select / gather only read x: one thread per output element.
//  - index_add / scatter_add write `out` in place, and repeated indices must
//    accumulate. Default: one thread per source element with atomicAdd (the
//    order of float additions then varies from run to run). With
//    dg::deterministic() (floating dtypes), each thread owns a set of
//    non-dim coordinates and walks the whole index along dim in order, as the
//    CPU does: no two threads touch one element, and the sums are the CPU's
//    bit for bit (index_add computes out + alpha * src rounded once, fma,
//    on both).
//    Integer adds are exact in any order, so they always take the atomic path;
//    a bool "add" is a logical or, an idempotent store of true.
#include "cuda/common.cuh"
#include "cuda/shape_text.h"
#include "tensor/settings.h"

namespace dg::cuda {

namespace {

// ---------------------------------------------------------------- helpers

int64_t inner_of(const Shape& s, int64_t dim) {
  int64_t inner = 1;
  for (int64_t d = dim + 1; d < s.size(); ++d) inner *= s[d];
  return inner;
}

// dst += v in place, race-free against other threads (bool: dst = dst || v).
template <class T>
__device__ void atomic_accumulate(T* dst, T v) {
  if constexpr (std::is_same_v<T, bool>) {
    if (v) *dst = true;
  } else if constexpr (std::is_same_v<T, int64_t>) {
    atomicAdd(reinterpret_cast<unsigned long long*>(dst), static_cast<unsigned long long>(v));
  } else {
    atomicAdd(dst, v);  // float, double, int32
  }
}

// dst += v by the only thread that owns dst.
template <class T>
__device__ void owned_accumulate(T& dst, T v) {
  if constexpr (std::is_same_v<T, bool>) dst = dst || v;
  else dst = dst + v;
}

bool take_ordered_path(DType dt) { return is_floating(dt) && deterministic(); }

// ---------------------------------------------------------------- kernels

// out (O, K, I) = x (O, D, I) rows idx[k]; oc: {x with dim stride 0} over out's shape.
// Indices are checked on the device by the op (Backend::check_indices), which
// reports a bad one at the next host read; until then the kernels skip it
// (reads give 0, adds drop it) instead of touching memory out of bounds.
__device__ inline bool in_range(int64_t j, int64_t size) { return j >= 0 && j < size; }

template <class T>
__global__ void index_select_kernel(const T* x, int64_t xs, const int64_t* idx, int64_t is, int64_t K, int64_t I,
                                    OffsetCalc<1> oc, T* out, int64_t n, int64_t D) {
  for (int64_t e = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; e < n; e += int64_t{gridDim.x} * blockDim.x) {
    const int64_t k = (e / I) % K, j = idx[k * is];
    out[e] = in_range(j, D) ? x[oc.get(e)[0] + j * xs] : T(0);
  }
}

// out[..j..] = x[..idx[..j..]..]; oc: {x with dim stride 0, out, idx} over out's shape.
template <class T>
__global__ void gather_kernel(const T* x, int64_t xs, const int64_t* idx, OffsetCalc<3> oc, T* out, int64_t n,
                              int64_t D) {
  for (int64_t e = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; e < n; e += int64_t{gridDim.x} * blockDim.x) {
    const auto off = oc.get(e);
    const int64_t j = idx[off[2]];
    out[off[1]] = in_range(j, D) ? x[off[0] + j * xs] : T(0);
  }
}

// Atomic index_add: one thread per src element; oc: {src, out with dim stride 0} over src's shape.
template <class T>
__global__ void index_add_atomic_kernel(T* out, int64_t os, const int64_t* idx, int64_t is, int64_t K, int64_t I,
                                        const T* src, T alpha, OffsetCalc<2> oc, int64_t n, int64_t D) {
  for (int64_t e = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; e < n; e += int64_t{gridDim.x} * blockDim.x) {
    const auto off = oc.get(e);
    const int64_t k = (e / I) % K;
    if (!in_range(idx[k * is], D)) continue;
    const T s = src[off[0]];
    if constexpr (std::is_same_v<T, bool>) atomic_accumulate(out + off[1] + idx[k * is] * os, T(alpha && s));
    else atomic_accumulate(out + off[1] + idx[k * is] * os, T(alpha * s));
  }
}

// Ordered index_add: one thread per non-dim coordinate (oc over src's shape
// with dim collapsed: {src, out}), walking k = 0..K-1 in order.
template <class T>
__global__ void index_add_ordered_kernel(T* out, int64_t os, const int64_t* idx, int64_t is, int64_t K, const T* src,
                                         int64_t ss, T alpha, OffsetCalc<2> oc, int64_t n, int64_t D) {
  for (int64_t e = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; e < n; e += int64_t{gridDim.x} * blockDim.x) {
    const auto off = oc.get(e);
    for (int64_t k = 0; k < K; ++k) {
      if (!in_range(idx[k * is], D)) continue;
      T& dst = out[off[1] + idx[k * is] * os];
      const T s = src[off[0] + k * ss];
      if constexpr (std::is_same_v<T, bool>) owned_accumulate(dst, T(alpha && s));
      else if constexpr (std::is_floating_point_v<T>) dst = fma(alpha, s, dst);  // the CPU's fused_add
      else owned_accumulate(dst, alpha * s);
    }
  }
}

// Atomic scatter_add: one thread per src element; oc: {src, out with dim stride 0, idx} over src's shape.
template <class T>
__global__ void scatter_add_atomic_kernel(T* out, int64_t os, const int64_t* idx, const T* src, OffsetCalc<3> oc,
                                          int64_t n, int64_t D) {
  for (int64_t e = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; e < n; e += int64_t{gridDim.x} * blockDim.x) {
    const auto off = oc.get(e);
    if (!in_range(idx[off[2]], D)) continue;
    atomic_accumulate(out + off[1] + idx[off[2]] * os, src[off[0]]);
  }
}

// Ordered scatter_add: one thread per non-dim coordinate (oc over src's shape
// with dim collapsed: {src, out, idx}), walking j = 0..J-1 along dim in order.
template <class T>
__global__ void scatter_add_ordered_kernel(T* out, int64_t os, const int64_t* idx, int64_t is, const T* src,
                                           int64_t ss, int64_t J, OffsetCalc<3> oc, int64_t n, int64_t D) {
  for (int64_t e = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; e < n; e += int64_t{gridDim.x} * blockDim.x) {
    const auto off = oc.get(e);
    for (int64_t j = 0; j < J; ++j) {
      const int64_t t = idx[off[2] + j * is];
      if (in_range(t, D)) owned_accumulate(out[off[1] + t * os], src[off[0] + j * ss]);
    }
  }
}

}  // namespace

// ---------------------------------------------------------------- launchers

// out (O, K, I) = x (O, D, I) rows idx[k].  idx: 1-D i64 of length K.
void CudaBackend::index_select(const Tensor& x, int64_t dim, const Tensor& idx, const Tensor& out) {
  DG_ASSERT(out.is_contiguous() && idx.dim() == 1 && idx.dtype() == DType::i64, "index_select {} -> {}",
            shape_text(x.shape()), shape_text(out.shape()));
  const int64_t n = out.numel(), K = idx.numel();
  if (n == 0) return;
  const OffsetCalc<1> oc(out.shape(), {with_stride(x.strides(), dim, 0)});
  visit_dtype(x.dtype(), [&](auto tag) {
    using T = decltype(tag);
    index_select_kernel<T><<<blocks_for(n), kThreads, 0, stream_of(out)>>>(
        dptr<const T>(x), x.strides()[dim], dptr<const int64_t>(idx), idx.strides()[0], K, inner_of(out.shape(), dim),
        oc, dptr<T>(out), n, x.shape()[dim]);
  });
  DG_CUDA_LAUNCHED("cuda index_select");
}

// out (O, D, I) rows idx[k] += alpha * src (O, K, I) rows k, in place.
void CudaBackend::index_add(const Tensor& out, int64_t dim, const Tensor& idx, const Tensor& src, double alpha) {
  DG_ASSERT(idx.dim() == 1 && idx.dtype() == DType::i64 && out.dtype() == src.dtype(), "index_add {} += {}",
            shape_text(out.shape()), shape_text(src.shape()));
  const int64_t K = idx.numel(), is = idx.strides()[0], os = out.strides()[dim];
  if (src.numel() == 0) return;
  cudaStream_t s = stream_of(out);
  visit_dtype(out.dtype(), [&](auto tag) {
    using T = decltype(tag);
    const T a = static_cast<T>(alpha);
    if (take_ordered_path(out.dtype())) {
      const Shape cols = without_dim(src.shape(), dim);
      const OffsetCalc<2> oc(cols, {src.strides(), out.strides()});
      index_add_ordered_kernel<T><<<blocks_for(cols.numel()), kThreads, 0, s>>>(
          dptr<T>(out), os, dptr<const int64_t>(idx), is, K, dptr<const T>(src), src.strides()[dim], a, oc,
          cols.numel(), out.shape()[dim]);
    } else {
      const OffsetCalc<2> oc(src.shape(), {src.strides(), with_stride(out.strides(), dim, 0)});
      index_add_atomic_kernel<T><<<blocks_for(src.numel()), kThreads, 0, s>>>(
          dptr<T>(out), os, dptr<const int64_t>(idx), is, K, inner_of(src.shape(), dim), dptr<const T>(src), a, oc,
          src.numel(), out.shape()[dim]);
    }
  });
  DG_CUDA_LAUNCHED("cuda index_add");
}

// out[..., j, ...] = x[..., idx[..., j, ...], ...] along dim; idx has out's shape.
void CudaBackend::gather(const Tensor& x, int64_t dim, const Tensor& idx, const Tensor& out) {
  DG_ASSERT(idx.shape() == out.shape() && idx.dtype() == DType::i64, "gather {} by {}", shape_text(x.shape()),
            shape_text(idx.shape()));
  const int64_t n = out.numel();
  if (n == 0) return;
  const OffsetCalc<3> oc(out.shape(), {with_stride(x.strides(), dim, 0), out.strides(), idx.strides()});
  visit_dtype(x.dtype(), [&](auto tag) {
    using T = decltype(tag);
    gather_kernel<T><<<blocks_for(n), kThreads, 0, stream_of(out)>>>(dptr<const T>(x), x.strides()[dim],
                                                                      dptr<const int64_t>(idx), oc, dptr<T>(out), n,
                                                                      x.shape()[dim]);
  });
  DG_CUDA_LAUNCHED("cuda gather");
}

// out[..., idx[..., j, ...], ...] += src[..., j, ...] along dim, in place; idx has src's shape.
void CudaBackend::scatter_add(const Tensor& out, int64_t dim, const Tensor& idx, const Tensor& src) {
  DG_ASSERT(idx.shape() == src.shape() && idx.dtype() == DType::i64 && out.dtype() == src.dtype(),
            "scatter_add {} += {}", shape_text(out.shape()), shape_text(src.shape()));
  const int64_t os = out.strides()[dim];
  if (src.numel() == 0) return;
  cudaStream_t s = stream_of(out);
  visit_dtype(out.dtype(), [&](auto tag) {
    using T = decltype(tag);
    if (take_ordered_path(out.dtype())) {
      const Shape cols = without_dim(src.shape(), dim);
      const OffsetCalc<3> oc(cols, {src.strides(), with_stride(out.strides(), dim, 0), idx.strides()});
      scatter_add_ordered_kernel<T><<<blocks_for(cols.numel()), kThreads, 0, s>>>(
          dptr<T>(out), os, dptr<const int64_t>(idx), idx.strides()[dim], dptr<const T>(src), src.strides()[dim],
          src.shape()[dim], oc, cols.numel(), out.shape()[dim]);
    } else {
      const OffsetCalc<3> oc(src.shape(), {src.strides(), with_stride(out.strides(), dim, 0), idx.strides()});
      scatter_add_atomic_kernel<T><<<blocks_for(src.numel()), kThreads, 0, s>>>(
          dptr<T>(out), os, dptr<const int64_t>(idx), dptr<const T>(src), oc, src.numel(), out.shape()[dim]);
    }
  });
  DG_CUDA_LAUNCHED("cuda scatter_add");
}

}  // namespace dg::cuda
