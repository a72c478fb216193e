#pragma once
// Helpers of the fused row kernels (nn.cu) and attention (attention.cu):
// warp-shuffle reductions, the row layout of a thread block, and scratch
// memory from the backend's caching allocator.
//
// Row layout: a block of (n, rows) threads; threadIdx.y picks the row and the
// n = blockDim.x threads of that row (a multiple of 32) split its elements as
// kern::strided_sum does. Short rows get one warp each (n = 32, 4 rows per
// block), long rows a whole block (n = 256, 1 row).
#include <cuda_runtime.h>

#include "cuda/common.cuh"
#include "tensor/kernels/row_norm.h"

namespace dg::cuda {

struct MaxOp {
  template <class T>
  __device__ T operator()(T a, T b) const { return a > b ? a : b; }
};
struct SumOp {
  template <class T>
  __device__ T operator()(T a, T b) const { return a + b; }
};

// Combines v over the 32 lanes of a warp (butterfly: every lane gets the total).
template <class T, class Op>
__device__ T warp_allreduce(T v, Op op) {
  for (int o = 16; o > 0; o >>= 1) v = op(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}

inline constexpr int kMaxRowsPerBlock = 4;
inline constexpr int kMaxWarpsPerRow = kThreads / 32;

// Combines v over the blockDim.x threads of this row; every thread of the
// block must call it (it synchronises the block when a row spans warps). The
// warps' totals are then added in warp order, so the result is deterministic.
template <class T, class Op>
__device__ T row_allreduce(T v, Op op) {
  __shared__ T partial[kMaxRowsPerBlock][kMaxWarpsPerRow];
  v = warp_allreduce(v, op);
  if (blockDim.x == 32) return v;
  const int warp = threadIdx.x / 32, warps = blockDim.x / 32;
  __syncthreads();  // the previous reduction has read `partial`
  if (threadIdx.x % 32 == 0) partial[threadIdx.y][warp] = v;
  __syncthreads();
  T r = partial[threadIdx.y][0];
  for (int w = 1; w < warps; ++w) r = op(r, partial[threadIdx.y][w]);
  return r;
}

// The launch shape for N rows of C elements.
struct RowLaunch {
  dim3 grid, block;
  RowLaunch(int64_t N, int64_t C) {
    const int threads = kern::threads_per_row(C), rows = threads == 32 ? kMaxRowsPerBlock : 1;
    block = dim3(threads, rows);
    grid = dim3(static_cast<unsigned>((N + rows - 1) / rows));
  }
};

// Device scratch of `count` T from the backend's caching allocator, returned
// on scope exit (the allocator is stream-ordered: kernels queued before the
// return still own the memory).
template <class T>
struct Scratch {
  CudaBackend& backend;
  size_t bytes;
  T* ptr;
  Scratch(CudaBackend& b, int64_t count)
      : backend(b), bytes(static_cast<size_t>(count > 0 ? count : 1) * sizeof(T)),
        ptr(static_cast<T*>(b.allocate(bytes))) {}
  ~Scratch() { backend.deallocate(ptr, bytes); }
  Scratch(const Scratch&) = delete;
  Scratch& operator=(const Scratch&) = delete;
};

}  // namespace dg::cuda
