#pragma once
// Shared helpers of the CUDA kernels: error checks, the stream and cuBLAS
// handle of a tensor's device, launch sizes, and the offset calculator for
// strided inputs.
//
//   DG_CUDA_CHECK(cudaMemsetAsync(p, 0, n, stream_of(t)), "fill");
//   OffsetCalc<2> oc(out.shape(), {x.strides(), out.strides()});   // host side
//   ... in a kernel: auto off = oc.get(i);  x[off[0]] ... o[off[1]]
#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <array>
#include <cstdint>

#include "cuda/cuda_backend.h"
#include "tensor/error.h"
#include "tensor/shape.h"
#include "tensor/tensor.h"

namespace dg::cuda {

// Throws a dg::Error naming what was being done and the CUDA error.
[[noreturn]] void throw_cuda_error(cudaError_t err, const char* what, const char* file, int line);
#define DG_CUDA_CHECK(expr, what)                                                  \
  do {                                                                             \
    cudaError_t dg_err_ = (expr);                                                  \
    if (dg_err_ != cudaSuccess) [[unlikely]]                                       \
      ::dg::cuda::throw_cuda_error(dg_err_, what, __FILE__, __LINE__);             \
  } while (0)
// After a kernel launch: reports launch errors (bad configuration) at once.
#define DG_CUDA_LAUNCHED(what) DG_CUDA_CHECK(cudaGetLastError(), what)

// The same for cuBLAS calls.
[[noreturn]] void throw_cublas_error(cublasStatus_t status, const char* what, const char* file, int line);
#define DG_CUBLAS_CHECK(expr, what)                                                \
  do {                                                                             \
    cublasStatus_t dg_status_ = (expr);                                            \
    if (dg_status_ != CUBLAS_STATUS_SUCCESS) [[unlikely]]                          \
      ::dg::cuda::throw_cublas_error(dg_status_, what, __FILE__, __LINE__);        \
  } while (0)

// The stream every kernel of a tensor's device runs on (one per device), with
// that device made current. Defined in backend.cu.
cudaStream_t stream_of(const Tensor& t);
CudaBackend& backend_of_cuda(const Tensor& t);
// The cuBLAS handle of a tensor's device (created on first use, bound to its
// stream), with that device made current.
cublasHandle_t cublas_handle(const Tensor& t);

inline constexpr int kThreads = 256;
// Blocks for n elements at kThreads per block (at least 1, capped so the grid
// stays legal; kernels use grid-stride loops).
inline unsigned blocks_for(int64_t n, int threads = kThreads) {
  int64_t b = (n + threads - 1) / threads;
  if (b < 1) b = 1;
  if (b > (int64_t{1} << 20)) b = int64_t{1} << 20;
  return static_cast<unsigned>(b);
}

// Element offsets of N tensors of one shape from a linear index, for strided
// (transposed, sliced, broadcast stride-0) operands. Passed to kernels by
// value. Size-1 dims are dropped and mergeable dims coalesced on the host.
template <int N>
struct OffsetCalc {
  int nd = 0;
  int64_t sizes[kMaxDims];
  int64_t strides[N][kMaxDims];

  OffsetCalc() = default;
  OffsetCalc(const Shape& shape, const std::array<Strides, N>& st) {
    for (int64_t d = 0; d < shape.size(); ++d) {
      if (shape[d] == 1) continue;
      bool merge = nd > 0;
      for (int t = 0; t < N && merge; ++t) merge = strides[t][nd - 1] == st[t][d] * shape[d];
      if (merge) {
        sizes[nd - 1] *= shape[d];
        for (int t = 0; t < N; ++t) strides[t][nd - 1] = st[t][d];
      } else {
        sizes[nd] = shape[d];
        for (int t = 0; t < N; ++t) strides[t][nd] = st[t][d];
        ++nd;
      }
    }
  }
  // Every operand contiguous (then all dims coalesce into one of stride 1):
  // each operand's offset is the linear index.
  bool is_linear() const {
    if (nd > 1) return false;
    for (int t = 0; t < N && nd == 1; ++t)
      if (strides[t][0] != 1) return false;
    return true;
  }
  __host__ __device__ std::array<int64_t, N> get(int64_t linear) const {
    std::array<int64_t, N> off{};
    for (int d = nd - 1; d >= 0; --d) {
      int64_t i = linear % sizes[d];
      linear /= sizes[d];
      for (int t = 0; t < N; ++t) off[t] += i * strides[t][d];
    }
    return off;
  }
};

// Typed pointer to a tensor's first element (offset applied) for kernels.
template <class T>
T* dptr(const Tensor& t) {
  return static_cast<T*>(t.raw_data());
}

}  // namespace dg::cuda
