#pragma once
// Strided loops for CPU kernels. A kernel over N tensors of one shape (inputs
// already broadcast by stride-0 views, output contiguous) calls
//
//   strided_loop<2>(out.shape(), {x.strides(), out.strides()},
//                   [&](std::array<int64_t, 2> off, int64_t n, std::array<int64_t, 2> inc) {
//                     for (int64_t i = 0; i < n; ++i) o[off[1] + i*inc[1]] = f(x[off[0] + i*inc[0]]);
//                   });
//
// Dims are coalesced first (a contiguous tensor becomes one flat run), and
// rows are spread over OpenMP threads above kParallelGrain elements.
#include <omp.h>

#include <algorithm>
#include <array>
#include <cstdint>

#include "tensor/shape.h"

namespace dg::cpu {

inline constexpr int64_t kParallelGrain = 32768;

// OpenMP's `if` clause: parallel only when the work pays for the fork.
inline bool worth_parallel(int64_t work) { return work >= kParallelGrain && omp_get_max_threads() > 1; }

// Calls f(i) for i in [0, n): spread over OpenMP threads when `work` pays
// for the fork, else a plain loop that never enters an OpenMP region (even an
// inactive one, if(false), costs more than a 16-element kernel).
template <class F>
void parallel_for(int64_t n, int64_t work, F&& f) {
  if (!worth_parallel(work)) {
    for (int64_t i = 0; i < n; ++i) f(i);
    return;
  }
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < n; ++i) f(i);
}

// Calls f(begin, end, thread) on contiguous chunks of [0, n): one chunk per
// thread when `work` pays for the fork, else once on this thread. Returns the
// number of chunks (threads used), for per-thread partial results.
template <class F>
int parallel_chunks(int64_t n, int64_t work, F&& f) {
  if (!worth_parallel(work)) {
    f(int64_t{0}, n, 0);
    return 1;
  }
  int chunks = 1;
#pragma omp parallel
  {
    const int nt = omp_get_num_threads(), id = omp_get_thread_num();
    const int64_t per = (n + nt - 1) / nt, b = std::min(n, id * per), e = std::min(n, b + per);
    f(b, e, id);
    if (id == 0) chunks = nt;
  }
  return chunks;
}

template <size_t N, class Inner>
void strided_loop(const Shape& shape, const std::array<Strides, N>& strides, Inner&& inner) {
  // Coalesce: drop size-1 dims, merge dim i into i+1 when every tensor is
  // contiguous across the pair.
  int64_t sizes[kMaxDims];
  int64_t st[N][kMaxDims];
  int64_t nd = 0;
  for (int64_t d = 0; d < shape.size(); ++d) {
    if (shape[d] == 1) continue;
    bool merge = nd > 0;
    for (size_t t = 0; t < N && merge; ++t) merge = st[t][nd - 1] == strides[t][d] * shape[d];
    if (merge) {
      sizes[nd - 1] *= shape[d];
      for (size_t t = 0; t < N; ++t) st[t][nd - 1] = strides[t][d];
    } else {
      sizes[nd] = shape[d];
      for (size_t t = 0; t < N; ++t) st[t][nd] = strides[t][d];
      ++nd;
    }
  }
  int64_t numel = shape.numel();
  if (numel == 0) return;
  if (nd == 0) {  // a single element
    std::array<int64_t, N> off{}, inc{};
    inner(off, 1, inc);
    return;
  }
  const int64_t n_inner = sizes[nd - 1];
  std::array<int64_t, N> inc;
  for (size_t t = 0; t < N; ++t) inc[t] = st[t][nd - 1];
  const int64_t rows = numel / n_inner;
  auto row = [&](int64_t r) {
    std::array<int64_t, N> off{};
    int64_t rem = r;
    for (int64_t d = nd - 2; d >= 0; --d) {
      int64_t i = rem % sizes[d];
      rem /= sizes[d];
      for (size_t t = 0; t < N; ++t) off[t] += i * st[t][d];
    }
    inner(off, n_inner, inc);
  };
  if (rows == 1 && worth_parallel(n_inner)) {
    // One long run: split it into chunks.
#pragma omp parallel
    {
      int nt = omp_get_num_threads(), id = omp_get_thread_num();
      int64_t chunk = (n_inner + nt - 1) / nt, b = chunk * id, e = std::min(n_inner, b + chunk);
      if (b < e) {
        std::array<int64_t, N> off;
        for (size_t t = 0; t < N; ++t) off[t] = b * inc[t];
        inner(off, e - b, inc);
      }
    }
    return;
  }
  // Small tensors never enter an OpenMP region: even an inactive one
  // (if(false)) costs more than a 16-element kernel.
  if (!worth_parallel(numel)) {
    for (int64_t r = 0; r < rows; ++r) row(r);
    return;
  }
#pragma omp parallel for schedule(static)
  for (int64_t r = 0; r < rows; ++r) row(r);
}

}  // namespace dg::cpu
