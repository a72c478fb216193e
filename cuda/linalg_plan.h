#pragma once
// Host-and-device logic of the CUDA reductions, top-k and matmul, kept free of
// CUDA includes so that tests/test_cuda_plans.cpp checks it on the CPU against
// the CPU backend:
//  - GemmPlan: a row-major batched product (tensor/backend.h's matmul) as the
//    parameters of one column-major cublasGemmStridedBatchedEx call, and the
//    column-major product of one element those parameters describe;
//  - ReducePlan: the kept / reduced dims of a keepdim reduction, coalesced,
//    giving x's offset of (output o, reduced element r);
//  - ReduceFold: accumulator type, identity and step of each ReduceOp, as the
//    CPU's (f32 sums accumulate in double);
//  - arg_better / topk_before: the tie-breaking orders of arg-reductions and
//    top-k (NaN above every number, ties to the lower index), and radix_key,
//    the same order as an unsigned integer for CUB's radix sort.
#include <cstdint>
#include <cstring>
#include <limits>
#include <type_traits>
#include <utility>

#include "tensor/backend.h"
#include "tensor/shape.h"

#ifndef DG_HOST_DEVICE
#ifdef __CUDACC__
#define DG_HOST_DEVICE __host__ __device__
#else
#define DG_HOST_DEVICE
#endif
#endif

namespace dg::cuda {

// ---------------------------------------------------------------- GEMM plan
//
// Legend: a (B, M, K) or, with trans_a, (B, K, M); b (B, K, N) or (B, N, K);
// out (B, M, N) contiguous row-major. cuBLAS is column-major, and a row-major
// (M, N) matrix with row stride N is the column-major (N, M) matrix out^T.
// So we ask cuBLAS for  out^T = op(b)^T @ op(a)^T : its A is our b, its B our a,
// m = N, n = M, k = K, ldc = N.
//
// A stored matrix (R, C) with strides (sr, sc) is row-major when sc == 1
// (then column-major memory of leading dim sr holds its transpose (C, R)) or
// column-major when sr == 1 (leading dim sc, the matrix itself). The stride
// of a size-1 dim is irrelevant and is normalised; a matrix that is neither
// (e.g. an expanded one, stride 0 inside the matrix) is copied first.

struct MatrixLayout {
  bool usable = false;    // false: neither row- nor column-major with a legal leading dim
  bool col_major = false;
  int64_t ld = 0;         // cuBLAS leading dim of the column-major memory view
};

inline MatrixLayout matrix_layout(int64_t R, int64_t C, int64_t sr, int64_t sc) {
  // Row-major: cuBLAS sees the (C, R) transpose, leading dim sr >= C.
  const int64_t row_sr = R == 1 ? (C > 1 ? C : 1) : sr, row_sc = C == 1 ? 1 : sc;
  if (row_sc == 1 && row_sr >= (C > 1 ? C : 1)) return {true, false, row_sr};
  // Column-major: cuBLAS sees (R, C) itself, leading dim sc >= R.
  const int64_t col_sr = R == 1 ? 1 : sr, col_sc = C == 1 ? (R > 1 ? R : 1) : sc;
  if (col_sr == 1 && col_sc >= (R > 1 ? R : 1)) return {true, true, col_sc};
  return {};
}

// One operand of the batched product: shape and strides of its 3 dims.
struct GemmOperand {
  int64_t shape[3];
  int64_t strides[3];
};

struct GemmPlan {
  // cuBLAS's names: A is our b, B is our a (see the legend).
  bool transa = false, transb = false;
  int64_t m = 0, n = 0, k = 0;
  int64_t lda = 1, ldb = 1, ldc = 1;
  int64_t stride_a = 0, stride_b = 0, stride_c = 0;  // batch strides in elements (0: shared)
  int64_t batch = 0;
  bool copy_a = false, copy_b = false;  // our a / b must be made contiguous first, then planned again
};

inline GemmPlan plan_gemm(const GemmOperand& a, const GemmOperand& b, bool trans_a, bool trans_b) {
  GemmPlan p;
  const int64_t M = trans_a ? a.shape[2] : a.shape[1], K = trans_a ? a.shape[1] : a.shape[2];
  const int64_t N = trans_b ? b.shape[1] : b.shape[2];
  p.batch = a.shape[0];
  p.m = N, p.n = M, p.k = K;
  p.ldc = N > 1 ? N : 1;
  p.stride_c = M * N;
  const MatrixLayout la = matrix_layout(a.shape[1], a.shape[2], a.strides[1], a.strides[2]);
  const MatrixLayout lb = matrix_layout(b.shape[1], b.shape[2], b.strides[1], b.strides[2]);
  p.copy_a = !la.usable, p.copy_b = !lb.usable;
  // cuBLAS's op(A) must be op(b)^T (N, K): a row-major b already reads as b^T.
  p.transa = lb.col_major ? !trans_b : trans_b;
  p.lda = lb.ld;
  p.stride_a = b.strides[0];
  // cuBLAS's op(B) must be op(a)^T (K, M).
  p.transb = la.col_major ? !trans_a : trans_a;
  p.ldb = la.ld;
  p.stride_b = a.strides[0];
  return p;
}

// sum over l < k of op(A)[i][l] * op(B)[l][j] for column-major A, B (what one
// element of the cuBLAS call computes), accumulated in T. Used by the CUDA
// kernel for integer dtypes (cuBLAS has no integer GEMM of these types) and
// by the CPU test that checks the plan.
template <class T>
DG_HOST_DEVICE T colmajor_dot(const GemmPlan& p, const T* A, const T* B, int64_t i, int64_t j) {
  T acc = T(0);
  for (int64_t l = 0; l < p.k; ++l) {
    const T av = p.transa ? A[l + i * p.lda] : A[i + l * p.lda];
    const T bv = p.transb ? B[j + l * p.ldb] : B[l + j * p.ldb];
    acc += av * bv;
  }
  return acc;
}

// ----------------------------------------------------------- reduction plan

// Dims walked in row-major order with one x stride each; offset(flat) is the
// x offset of the flat-th element.
struct StridedDims {
  int n = 0;
  int64_t size[kMaxDims] = {};
  int64_t stride[kMaxDims] = {};
  // Appends a dim, merged into the previous one when the strides allow.
  void push(int64_t sz, int64_t st) {
    if (n > 0 && stride[n - 1] == st * sz) {
      size[n - 1] *= sz;
      stride[n - 1] = st;
      return;
    }
    size[n] = sz, stride[n] = st;
    ++n;
  }
  int64_t numel() const {
    int64_t p = 1;
    for (int i = 0; i < n; ++i) p *= size[i];
    return p;
  }
  DG_HOST_DEVICE int64_t offset(int64_t flat) const {
    int64_t off = 0;
    for (int d = n - 1; d >= 0; --d) {
      off += (flat % size[d]) * stride[d];
      flat /= size[d];
    }
    return off;
  }
};

// out = reduce(x) keepdim, out contiguous: output o (flat, out order) and
// reduced element r read x[kept.offset(o) + reduced.offset(r)]. Reduced dims
// are sorted by x stride, largest first, so consecutive r walk x's fastest
// reduced dim. `columns`: the innermost kept dim is faster in x than every
// reduced dim (reducing leading dims), so neighbouring outputs read
// neighbouring x: one thread per output reads coalesced.
struct ReducePlan {
  StridedDims kept, reduced;
  int64_t n_out = 0, n_red = 0;
  bool columns = false;
};

inline ReducePlan plan_reduce(const Shape& x_shape, const Strides& x_strides, const Shape& out_shape) {
  ReducePlan p;
  int red[kMaxDims], nr = 0;
  for (int64_t d = 0; d < x_shape.size(); ++d) {
    if (x_shape[d] == 1) continue;
    if (out_shape[d] == 1) red[nr++] = static_cast<int>(d);
    else p.kept.push(x_shape[d], x_strides[d]);
  }
  // insertion sort, stable: by stride, largest first
  for (int i = 1; i < nr; ++i)
    for (int j = i; j > 0 && x_strides[red[j - 1]] < x_strides[red[j]]; --j) std::swap(red[j - 1], red[j]);
  for (int i = 0; i < nr; ++i) p.reduced.push(x_shape[red[i]], x_strides[red[i]]);
  p.n_out = p.kept.numel(), p.n_red = p.reduced.numel();
  p.columns = p.kept.n > 0 && p.reduced.n > 0 && p.kept.stride[p.kept.n - 1] < p.reduced.stride[p.reduced.n - 1];
  return p;
}

template <class T>
DG_HOST_DEVICE bool is_nan_value(T v) {
  if constexpr (std::is_floating_point_v<T>) return v != v;
  else return false;
}

// The fold of one ReduceOp, as the CPU's (tensor/cpu/reduce.cpp): sums and
// products accumulate in double (floating) or int64 (integers, bool: a bool
// sum is "any", a product "all"); max and min stay in T and propagate NaN.
// step() is associative, so partial folds may be combined with it.
template <ReduceOp Op, class T>
struct ReduceFold {
  static constexpr bool kWide = Op == ReduceOp::sum || Op == ReduceOp::prod;
  using Acc = std::conditional_t<kWide, std::conditional_t<std::is_floating_point_v<T>, double, int64_t>, T>;
  DG_HOST_DEVICE static Acc init() {
    if constexpr (Op == ReduceOp::sum) return Acc(0);
    else if constexpr (Op == ReduceOp::prod) return Acc(1);
    else if constexpr (Op == ReduceOp::max)
      return std::numeric_limits<T>::has_infinity ? -std::numeric_limits<T>::infinity()
                                                  : std::numeric_limits<T>::lowest();
    else
      return std::numeric_limits<T>::has_infinity ? std::numeric_limits<T>::infinity() : std::numeric_limits<T>::max();
  }
  DG_HOST_DEVICE static Acc step(Acc a, Acc v) {
    if constexpr (Op == ReduceOp::sum) return a + v;
    else if constexpr (Op == ReduceOp::prod) return a * v;
    else if constexpr (Op == ReduceOp::max) return (v > a || is_nan_value(v)) ? v : a;
    else return (v < a || is_nan_value(v)) ? v : a;
  }
  DG_HOST_DEVICE static T result(Acc a) { return static_cast<T>(a); }
};

// ------------------------------------------------- arg-reductions and top-k

// Does candidate (v, i) beat the current best (best, bi) of an argmax
// (max) or argmin? NaN beats every number; among equals (or NaNs) the lower
// index wins. A sequential scan with it is the CPU's; it is also a valid
// combine of two partial results in any order (a total order on (v, i)).
template <class T>
DG_HOST_DEVICE bool arg_better(T v, int64_t i, T best, int64_t bi, bool max) {
  const bool vn = is_nan_value(v), bn = is_nan_value(best);
  if (vn || bn) return vn && (!bn || i < bi);
  if (max ? v > best : v < best) return true;
  return v == best && i < bi;
}

// Does (a, ia) come before (b, ib) in top-k order? Largest: descending value
// with NaN above every number; smallest: ascending with NaN last; ties by the
// lower index. A strict total order, the CPU's `before` (tensor/cpu/index.cpp).
template <class T>
DG_HOST_DEVICE bool topk_before(T a, int64_t ia, T b, int64_t ib, bool largest) {
  auto greater = [](T x, T y) { return x > y || (is_nan_value(x) && !is_nan_value(y)); };
  const bool ab = largest ? greater(a, b) : greater(b, a);
  const bool ba = largest ? greater(b, a) : greater(a, b);
  return ab || (!ba && ia < ib);
}

// Rank of row[j] among the D elements of a row in topk_before order (0 =
// first): the element is selected when rank < k, and its sorted slot is its
// rank. O(D) per element; the CUDA kernel for short rows runs it per thread.
template <class T>
DG_HOST_DEVICE int64_t topk_rank(const T* row, int64_t D, int64_t j, bool largest) {
  int64_t rank = 0;
  for (int64_t i = 0; i < D; ++i) rank += topk_before(row[i], i, row[j], j, largest) ? 1 : 0;
  return rank;
}

// An unsigned key whose ascending order is the value order of topk_before
// (NaN above +inf, -0 equal to +0), for CUB's radix sort: a stable sort of
// (key, index) pairs by key then ties in index order, descending for largest.
template <class T>
DG_HOST_DEVICE auto radix_key(T v) {
  if constexpr (std::is_same_v<T, float>) {
    if (v != v) v = std::numeric_limits<float>::quiet_NaN();  // one NaN, positive
    if (v == 0.0f) v = 0.0f;                                   // -0 -> +0
    uint32_t u;
    memcpy(&u, &v, sizeof u);
    return (u & 0x80000000u) ? ~u : (u | 0x80000000u);
  } else if constexpr (std::is_same_v<T, double>) {
    if (v != v) v = std::numeric_limits<double>::quiet_NaN();
    if (v == 0.0) v = 0.0;
    uint64_t u;
    memcpy(&u, &v, sizeof u);
    return (u & 0x8000000000000000ull) ? ~u : (u | 0x8000000000000000ull);
  } else if constexpr (std::is_same_v<T, int64_t>) {
    return static_cast<uint64_t>(v) ^ 0x8000000000000000ull;
  } else if constexpr (std::is_same_v<T, int32_t>) {
    return static_cast<uint32_t>(v) ^ 0x80000000u;
  } else {
    return static_cast<uint8_t>(v ? 1 : 0);
  }
}

}  // namespace dg::cuda
