// Reductions, arg-reductions and top-k on CUDA, with the CPU's results
// (tensor/cpu/reduce.cpp, tensor/cpu/index.cpp).
//
// Legend: x is the input (any strides); out, values, indices are keepdim /
// (O, k, I) outputs, contiguous. n_out outputs, n_red reduced elements each.
// The index maps, folds and tie orders live in cuda/linalg_plan.h (host and
// device, tested on the CPU by tests/test_cuda_plans.cpp).
//
// Accumulation as the CPU: f32 sums and products in double, integers in
// int64, max / min in T propagating NaN. Arg-reductions: NaN wins, ties go to
// the first index. Top-k: NaN above every number, ties to the lower index;
// sorted = best first, unsorted = the selected k in index order.
//
// Two shapes of kernel per family:
//  - one block per output (cub::BlockReduce over a strided walk of the
//    reduced elements): few outputs, or reduced elements contiguous in x;
//  - outputs whose neighbours are neighbours in x ("columns", reducing
//    leading dims): 32 neighbouring outputs per warp, so loads coalesce (for
//    arg-reductions with many outputs, one thread per output).
// Top-k rows up to kShortRow elements are ranked in shared memory (one block
// per row, O(D^2) comparisons); longer rows go through CUB's stable radix sort.
#include <cub/block/block_reduce.cuh>
#include <cub/device/device_radix_sort.cuh>

#include "cuda/common.cuh"
#include "cuda/linalg_plan.h"
#include "cuda/shape_text.h"
#include "tensor/creation.h"

namespace dg::cuda {

namespace {

constexpr int64_t kManyOutputs = 1024;  // enough outputs for one thread each (arg-reductions)
constexpr int kTileCols = 32, kTileRows = 8;  // column reductions: outputs x row groups per block
constexpr int64_t kShortRow = 2048;     // top-k rows ranked in shared memory up to this length

// Blocks for one block per output (grid-stride beyond the cap).
unsigned blocks_per_output(int64_t n_out) { return static_cast<unsigned>(std::min<int64_t>(n_out, 1 << 20)); }

// ---------------------------------------------------------------- kernels: reduce

template <ReduceOp Op, class T>
struct FoldStep {
  using Acc = typename ReduceFold<Op, T>::Acc;
  __device__ Acc operator()(Acc a, Acc b) const { return ReduceFold<Op, T>::step(a, b); }
};

template <ReduceOp Op, class T>
__global__ void reduce_block_kernel(const T* x, T* out, ReducePlan p) {
  using F = ReduceFold<Op, T>;
  using Acc = typename F::Acc;
  using BlockReduce = cub::BlockReduce<Acc, kThreads>;
  __shared__ typename BlockReduce::TempStorage tmp;
  for (int64_t o = blockIdx.x; o < p.n_out; o += gridDim.x) {
    const T* xo = x + p.kept.offset(o);
    Acc acc = F::init();
    for (int64_t r = threadIdx.x; r < p.n_red; r += blockDim.x)
      acc = F::step(acc, static_cast<Acc>(xo[p.reduced.offset(r)]));
    const Acc total = BlockReduce(tmp).Reduce(acc, FoldStep<Op, T>{});
    if (threadIdx.x == 0) out[o] = F::result(total);
    __syncthreads();  // tmp is reused by the next output
  }
}

// Columns: a block of (kTileCols, kTileRows) threads owns kTileCols
// neighbouring outputs; a warp reads one reduced element of 32 neighbouring
// outputs (coalesced), each of the kTileRows rows of threads every
// kTileRows-th reduced element; the rows' partials are then combined in order.
template <ReduceOp Op, class T>
__global__ void reduce_columns_kernel(const T* x, T* out, ReducePlan p) {
  using F = ReduceFold<Op, T>;
  using Acc = typename F::Acc;
  __shared__ Acc part[kTileRows][kTileCols];
  const int tx = threadIdx.x, ty = threadIdx.y;
  for (int64_t base = blockIdx.x * int64_t{kTileCols}; base < p.n_out; base += int64_t{gridDim.x} * kTileCols) {
    const int64_t o = base + tx;
    Acc acc = F::init();
    if (o < p.n_out) {
      const T* xo = x + p.kept.offset(o);
      for (int64_t r = ty; r < p.n_red; r += kTileRows) acc = F::step(acc, static_cast<Acc>(xo[p.reduced.offset(r)]));
    }
    part[ty][tx] = acc;
    __syncthreads();
    if (ty == 0 && o < p.n_out) {
      for (int i = 1; i < kTileRows; ++i) acc = F::step(acc, part[i][tx]);
      out[o] = F::result(acc);
    }
    __syncthreads();  // part is reused by the next tile
  }
}

template <ReduceOp Op, class T>
void launch_reduce(const Tensor& x, const Tensor& out, const ReducePlan& p) {
  cudaStream_t s = stream_of(out);
  if (p.columns) {
    const unsigned tiles = blocks_per_output((p.n_out + kTileCols - 1) / kTileCols);
    reduce_columns_kernel<Op, T><<<tiles, dim3(kTileCols, kTileRows), 0, s>>>(dptr<const T>(x), dptr<T>(out), p);
  } else {
    reduce_block_kernel<Op, T><<<blocks_per_output(p.n_out), kThreads, 0, s>>>(dptr<const T>(x), dptr<T>(out), p);
  }
  DG_CUDA_LAUNCHED("cuda reduce");
}

// ---------------------------------------------------------------- kernels: arg

// A candidate (value, index); index -1 marks "no element seen" (a thread past
// the end of a short row).
template <class T>
struct ArgPair {
  T v;
  int64_t i;
};

template <class T>
struct ArgCombine {
  bool max;
  __device__ ArgPair<T> operator()(const ArgPair<T>& a, const ArgPair<T>& b) const {
    if (b.i < 0) return a;
    if (a.i < 0) return b;
    return arg_better(b.v, b.i, a.v, a.i, max) ? b : a;
  }
};

// kept: the dims other than `dim` (output o at kept.offset(o)); n elements at stride s.
template <class T>
__global__ void arg_block_kernel(const T* x, T* vals, int64_t* idx, StridedDims kept, int64_t n_out, int64_t n,
                                 int64_t s, bool max) {
  using BlockReduce = cub::BlockReduce<ArgPair<T>, kThreads>;
  __shared__ typename BlockReduce::TempStorage tmp;
  for (int64_t o = blockIdx.x; o < n_out; o += gridDim.x) {
    const T* xo = x + kept.offset(o);
    ArgPair<T> best{T{}, -1};
    for (int64_t i = threadIdx.x; i < n; i += blockDim.x) {
      const T v = xo[i * s];
      if (best.i < 0 || arg_better(v, i, best.v, best.i, max)) best = {v, i};
    }
    const ArgPair<T> r = BlockReduce(tmp).Reduce(best, ArgCombine<T>{max});
    if (threadIdx.x == 0) vals[o] = r.v, idx[o] = r.i;
    __syncthreads();
  }
}

template <class T>
__global__ void arg_thread_kernel(const T* x, T* vals, int64_t* idx, StridedDims kept, int64_t n_out, int64_t n,
                                  int64_t s, bool max) {
  for (int64_t o = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; o < n_out; o += int64_t{gridDim.x} * blockDim.x) {
    const T* xo = x + kept.offset(o);
    T best = xo[0];
    int64_t bi = 0;
    for (int64_t i = 1; i < n; ++i)
      if (arg_better(xo[i * s], i, best, bi, max)) best = xo[i * s], bi = i;
    vals[o] = best, idx[o] = bi;
  }
}

// ---------------------------------------------------------------- kernels: top-k

// Where top-k writes row r's slot: values / indices are (O, k, I), row r = (o, i).
__device__ inline int64_t topk_out_offset(int64_t r, int64_t slot, int64_t k, int64_t I) {
  return (r / I) * k * I + slot * I + r % I;
}

// Short rows: one block per row; the row and each element's rank in shared memory.
template <class T>
__global__ void topk_short_kernel(const T* x, StridedDims rows, int64_t n_rows, int64_t D, int64_t xs, int64_t k,
                                  int64_t I, bool largest, bool sorted, T* values, int64_t* indices) {
  extern __shared__ __align__(16) unsigned char smem[];
  T* row = reinterpret_cast<T*>(smem);
  int32_t* rank = reinterpret_cast<int32_t*>(smem + ((D * sizeof(T) + 15) / 16) * 16);
  for (int64_t r = blockIdx.x; r < n_rows; r += gridDim.x) {
    const T* xr = x + rows.offset(r);
    for (int64_t j = threadIdx.x; j < D; j += blockDim.x) row[j] = xr[j * xs];
    __syncthreads();
    for (int64_t j = threadIdx.x; j < D; j += blockDim.x) rank[j] = static_cast<int32_t>(topk_rank(row, D, j, largest));
    __syncthreads();
    for (int64_t j = threadIdx.x; j < D; j += blockDim.x) {
      if (rank[j] >= k) continue;
      int64_t slot = rank[j];
      if (!sorted) {  // the selected elements before j
        slot = 0;
        for (int64_t i = 0; i < j; ++i) slot += rank[i] < k ? 1 : 0;
      }
      const int64_t off = topk_out_offset(r, slot, k, I);
      values[off] = row[j];
      indices[off] = j;
    }
    __syncthreads();  // row and rank are reused by the next row
  }
}

// Long rows, step 1: radix keys of every element and its flat position r*D + j.
template <class T, class Key>
__global__ void topk_keys_kernel(const T* x, StridedDims rows, int64_t D, int64_t xs, int64_t total, Key* keys,
                                 uint64_t* pos) {
  for (int64_t e = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; e < total; e += int64_t{gridDim.x} * blockDim.x) {
    keys[e] = radix_key(x[rows.offset(e / D) + (e % D) * xs]);
    pos[e] = static_cast<uint64_t>(e);
  }
}

// Long rows, step 3: row ids of positions sorted by key (to group rows again,
// stably, so each row keeps its key order).
__global__ void topk_row_ids_kernel(const uint64_t* pos, int64_t D, int64_t total, uint64_t* row_id) {
  for (int64_t e = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; e < total; e += int64_t{gridDim.x} * blockDim.x)
    row_id[e] = pos[e] / static_cast<uint64_t>(D);
}

// Long rows, step 5: the first k positions of each row (grouped and in top-k order).
__global__ void topk_take_kernel(const uint64_t* grouped, int64_t D, int64_t k, int64_t n_sel, uint64_t* sel) {
  for (int64_t q = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; q < n_sel; q += int64_t{gridDim.x} * blockDim.x)
    sel[q] = grouped[(q / k) * D + q % k];
}

// Long rows, last step: slot q % k of row q / k holds flat position sel[q].
template <class T>
__global__ void topk_write_kernel(const T* x, StridedDims rows, const uint64_t* sel, int64_t D, int64_t xs, int64_t k,
                                  int64_t I, int64_t n_sel, T* values, int64_t* indices) {
  for (int64_t q = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; q < n_sel; q += int64_t{gridDim.x} * blockDim.x) {
    const int64_t r = q / k, j = static_cast<int64_t>(sel[q]) - r * D;
    const int64_t off = topk_out_offset(r, q % k, k, I);
    values[off] = x[rows.offset(r) + j * xs];
    indices[off] = j;
  }
}

// ---------------------------------------------------------------- launchers

// Bits needed for values below n (at least 1), to shorten radix passes.
int bits_for(int64_t n) {
  int b = 1;
  while (b < 64 && (int64_t{1} << b) < n) ++b;
  return b;
}

// A stable CUB radix sort of (key, value) pairs; keys are sorted on bits
// [0, end_bit). CUB's temporary storage is a device tensor.
template <class Key>
void radix_sort_pairs(const Tensor& like, const Key* keys_in, Key* keys_out, const uint64_t* vals_in, uint64_t* vals_out,
                      int64_t n, bool descending, int end_bit) {
  cudaStream_t s = stream_of(like);
  size_t bytes = 0;
  auto run = [&](void* tmp) {
    return descending ? cub::DeviceRadixSort::SortPairsDescending(tmp, bytes, keys_in, keys_out, vals_in, vals_out, n,
                                                                  0, end_bit, s)
                      : cub::DeviceRadixSort::SortPairs(tmp, bytes, keys_in, keys_out, vals_in, vals_out, n, 0,
                                                        end_bit, s);
  };
  DG_CUDA_CHECK(run(nullptr), "cuda topk (radix sort size)");
  Tensor tmp = empty({static_cast<int64_t>(bytes) + 1}, {DType::b8, like.device()});
  DG_CUDA_CHECK(run(tmp.raw_data()), "cuda topk (radix sort)");
}

void radix_sort_keys(const Tensor& like, const uint64_t* keys_in, uint64_t* keys_out, int64_t n, int end_bit) {
  cudaStream_t s = stream_of(like);
  size_t bytes = 0;
  DG_CUDA_CHECK(cub::DeviceRadixSort::SortKeys(nullptr, bytes, keys_in, keys_out, n, 0, end_bit, s),
                "cuda topk (radix sort size)");
  Tensor tmp = empty({static_cast<int64_t>(bytes) + 1}, {DType::b8, like.device()});
  DG_CUDA_CHECK(cub::DeviceRadixSort::SortKeys(tmp.raw_data(), bytes, keys_in, keys_out, n, 0, end_bit, s),
                "cuda topk (radix sort)");
}

// A device buffer of n elements of Key (u8, u32 or u64) as a tensor of a dtype of that width.
template <class Key>
Tensor key_buffer(int64_t n, Device d) {
  constexpr DType dt = sizeof(Key) == 8 ? DType::i64 : sizeof(Key) == 4 ? DType::i32 : DType::b8;
  return empty({n}, {dt, d});
}

// Long rows: sort every element by key (stable: ties keep index order), group
// the rows again by a stable sort on row id, keep the first k of each row and,
// unsorted, put them back in index order (a sort of their flat positions).
template <class T>
void topk_long(const Tensor& x, const StridedDims& rows, int64_t n_rows, int64_t D, int64_t xs, int64_t k, int64_t I,
               bool largest, bool sorted, const Tensor& values, const Tensor& indices) {
  using Key = decltype(radix_key(T{}));
  const Device dev = x.device();
  const int64_t total = n_rows * D, n_sel = n_rows * k;
  cudaStream_t s = stream_of(x);
  Tensor keys = key_buffer<Key>(total, dev), keys_sorted = key_buffer<Key>(total, dev);
  Tensor pos = empty({total}, {DType::i64, dev}), pos_sorted = empty({total}, {DType::i64, dev});
  auto* pos_p = static_cast<uint64_t*>(pos.raw_data());
  auto* pos_sorted_p = static_cast<uint64_t*>(pos_sorted.raw_data());
  topk_keys_kernel<T, Key><<<blocks_for(total), kThreads, 0, s>>>(dptr<const T>(x), rows, D, xs, total,
                                                                    static_cast<Key*>(keys.raw_data()), pos_p);
  DG_CUDA_LAUNCHED("cuda topk (keys)");
  radix_sort_pairs<Key>(x, static_cast<const Key*>(keys.raw_data()), static_cast<Key*>(keys_sorted.raw_data()), pos_p,
                        pos_sorted_p, total, largest, static_cast<int>(sizeof(Key) * 8));
  // Regroup by row: row ids of the key order, then a stable sort on them.
  Tensor row_id = empty({total}, {DType::i64, dev}), row_id_sorted = empty({total}, {DType::i64, dev});
  auto* row_id_p = static_cast<uint64_t*>(row_id.raw_data());
  topk_row_ids_kernel<<<blocks_for(total), kThreads, 0, s>>>(pos_sorted_p, D, total, row_id_p);
  DG_CUDA_LAUNCHED("cuda topk (row ids)");
  radix_sort_pairs<uint64_t>(x, row_id_p, static_cast<uint64_t*>(row_id_sorted.raw_data()), pos_sorted_p, pos_p, total,
                             false, bits_for(n_rows));
  // pos now holds each row's positions in top-k order.
  Tensor sel = empty({n_sel}, {DType::i64, dev});
  auto* sel_p = static_cast<uint64_t*>(sel.raw_data());
  topk_take_kernel<<<blocks_for(n_sel), kThreads, 0, s>>>(pos_p, D, k, n_sel, sel_p);
  DG_CUDA_LAUNCHED("cuda topk (take)");
  if (!sorted) {  // flat positions ascending: row by row, index order within a row
    Tensor sel_sorted = empty({n_sel}, {DType::i64, dev});
    radix_sort_keys(x, sel_p, static_cast<uint64_t*>(sel_sorted.raw_data()), n_sel, bits_for(total));
    sel = sel_sorted;
    sel_p = static_cast<uint64_t*>(sel.raw_data());
  }
  topk_write_kernel<T><<<blocks_for(n_sel), kThreads, 0, s>>>(dptr<const T>(x), rows, sel_p, D, xs, k, I, n_sel,
                                                              dptr<T>(values), dptr<int64_t>(indices));
  DG_CUDA_LAUNCHED("cuda topk (write)");
}

}  // namespace

// out: x's rank, size 1 on reduced dims, contiguous.
void CudaBackend::reduce(ReduceOp op, const Tensor& x, const Tensor& out) {
  DG_ASSERT(x.dim() == out.dim() && x.dtype() == out.dtype() && out.is_contiguous(), "reduce {} -> {}",
            shape_text(x.shape()), shape_text(out.shape()));
  if (out.numel() == 0) return;
  const ReducePlan p = plan_reduce(x.shape(), x.strides(), out.shape());
  if (p.reduced.n == 0) {  // only size-1 dims "reduced": a copy
    copy(x, out);
    return;
  }
  if (x.numel() == 0) {  // an empty fold: the identity (callers reject empty max/min)
    fill(out, op == ReduceOp::prod ? 1.0 : 0.0);
    return;
  }
  visit_dtype(x.dtype(), [&](auto tag) {
    using T = decltype(tag);
    switch (op) {
      case ReduceOp::sum: launch_reduce<ReduceOp::sum, T>(x, out, p); break;
      case ReduceOp::max: launch_reduce<ReduceOp::max, T>(x, out, p); break;
      case ReduceOp::min: launch_reduce<ReduceOp::min, T>(x, out, p); break;
      case ReduceOp::prod: launch_reduce<ReduceOp::prod, T>(x, out, p); break;
    }
  });
}

// values, indices: x's shape with size 1 at dim (contiguous); n = x.shape[dim] > 0.
void CudaBackend::reduce_arg(ReduceOp op, const Tensor& x, int64_t dim, const Tensor& values, const Tensor& indices) {
  DG_ASSERT(op == ReduceOp::max || op == ReduceOp::min, "reduce_arg: only max and min");
  DG_ASSERT(values.is_contiguous() && indices.is_contiguous() && indices.dtype() == DType::i64 &&
            values.dtype() == x.dtype() && x.size(dim) > 0);
  if (values.numel() == 0) return;
  StridedDims kept;
  for (int64_t d = 0; d < x.dim(); ++d)
    if (d != dim && x.shape()[d] != 1) kept.push(x.shape()[d], x.strides()[d]);
  const int64_t n_out = kept.numel(), n = x.shape()[dim], s = x.strides()[dim];
  const bool max = op == ReduceOp::max;
  const bool columns = kept.n > 0 && kept.stride[kept.n - 1] < s;
  cudaStream_t st = stream_of(x);
  visit_dtype(x.dtype(), [&](auto tag) {
    using T = decltype(tag);
    if (n_out >= kManyOutputs && (columns || n <= 32))
      arg_thread_kernel<T><<<blocks_for(n_out), kThreads, 0, st>>>(dptr<const T>(x), dptr<T>(values),
                                                                   dptr<int64_t>(indices), kept, n_out, n, s, max);
    else
      arg_block_kernel<T><<<blocks_per_output(n_out), kThreads, 0, st>>>(dptr<const T>(x), dptr<T>(values),
                                                                         dptr<int64_t>(indices), kept, n_out, n, s, max);
  });
  DG_CUDA_LAUNCHED("cuda reduce_arg");
}

// values, indices (O, k, I) = the k largest (smallest) of x (O, D, I) along dim.
void CudaBackend::topk(const Tensor& x, int64_t k, int64_t dim, bool largest, bool sorted, const Tensor& values,
                       const Tensor& indices) {
  DG_ASSERT(values.is_contiguous() && indices.is_contiguous() && indices.dtype() == DType::i64);
  const int64_t D = x.shape()[dim], xs = x.strides()[dim];
  int64_t I = 1;
  for (int64_t d = dim + 1; d < x.dim(); ++d) I *= x.shape()[d];
  StridedDims rows;  // the non-dim dims, in order: row r starts at rows.offset(r)
  for (int64_t d = 0; d < x.dim(); ++d)
    if (d != dim && x.shape()[d] != 1) rows.push(x.shape()[d], x.strides()[d]);
  const int64_t n_rows = rows.numel();
  if (k == 0 || n_rows == 0) return;
  DG_ASSERT(k <= D, "topk: k {} > {}", k, D);
  visit_dtype(x.dtype(), [&](auto tag) {
    using T = decltype(tag);
    if (D <= kShortRow) {
      const size_t smem = ((D * sizeof(T) + 15) / 16) * 16 + D * sizeof(int32_t);
      topk_short_kernel<T><<<blocks_per_output(n_rows), kThreads, smem, stream_of(x)>>>(
          dptr<const T>(x), rows, n_rows, D, xs, k, I, largest, sorted, dptr<T>(values), dptr<int64_t>(indices));
      DG_CUDA_LAUNCHED("cuda topk");
    } else {
      topk_long<T>(x, rows, n_rows, D, xs, k, I, largest, sorted, values, indices);
    }
  });
}

}  // namespace dg::cuda
