// CPU indexing kernels: index_select, index_add, gather, scatter_add, topk.
//
// Legend: a tensor indexed along `dim` is seen as (O, D, I): O = outer (the
// product of the dims before dim), D = the size of dim, I = inner (the product
// of the dims after it). An index tensor of length K picks K of the D rows.
//
// Memory rules:
//  - index_select / gather only read x, so any split of the output over
//    threads is safe.
//  - index_add / scatter_add write `out` in place, and repeated indices must
//    accumulate. Two source elements can only collide on an output element if
//    they share every coordinate except `dim`; so every parallel task owns a
//    set of non-dim coordinates (outer positions and/or a chunk of columns)
//    and walks the whole index for them, serially and in order. That is
//    race-free and deterministic (the sum order never depends on threads).
#include <omp.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstring>
#include <utility>
#include <vector>

#include "tensor/cpu/cpu_backend.h"
#include "tensor/cpu/loops.h"

namespace dg::cpu {

namespace {

// Callers copy the two fields into named variables instead of a structured
// binding: the parallel loops' lambdas capture them, which C++20 allows for
// bindings but Clang 14 does not implement.
struct OuterInner {
  int64_t outer = 1, inner = 1;
};
OuterInner split_at(const Shape& s, int64_t dim) {
  OuterInner r;
  for (int64_t d = 0; d < dim; ++d) r.outer *= s[d];
  for (int64_t d = dim + 1; d < s.size(); ++d) r.inner *= s[d];
  return r;
}

// Column chunk for in-place accumulation on contiguous (O, D, I) data: when
// there are fewer outer rows than threads, the I columns are split too, so
// that tasks = O * ceil(I / chunk) keeps every thread busy.
int64_t column_chunk(int64_t outer, int64_t inner, int64_t work) {
  int nt = omp_get_max_threads();
  if (!worth_parallel(work) || outer >= nt) return inner;
  int64_t per = (outer * inner + nt - 1) / nt;
  return std::clamp<int64_t>(per, 64, inner);  // at least 64 columns: a few cache lines per task
}

}  // namespace

// out (O, K, I) = x (O, D, I) rows idx[k].  idx: 1-D i64 of length K.
void CpuBackend::index_select(const Tensor& x, int64_t dim, const Tensor& idx, const Tensor& out) {
  DG_ASSERT(out.is_contiguous() && idx.dim() == 1 && idx.dtype() == DType::i64);
  const int64_t K = idx.numel(), is = idx.strides()[0];
  const int64_t* ip = idx.data<int64_t>();
  visit_dtype(x.dtype(), [&](auto tag) {
    using T = decltype(tag);
    const T* xp = x.data<T>();
    T* op = out.data<T>();
    if (x.is_contiguous()) {
      // Fast path: every (o, k) is one run of I contiguous elements (for dim 0,
      // the embedding lookup, one memcpy per row).
      const OuterInner oi = split_at(x.shape(), dim);
      const int64_t O = oi.outer, I = oi.inner;
      const int64_t D = x.shape()[dim];
      parallel_for(O * K, O * K * I, [&](int64_t ok) {
        int64_t o = ok / K, k = ok % K;
        const T* src = xp + (o * D + ip[k * is]) * I;
        T* dst = op + ok * I;
        if (I == 1) *dst = *src;
        else std::memcpy(dst, src, static_cast<size_t>(I) * sizeof(T));
      });
      return;
    }
    // Strided x: loop over out's shape with x's stride along dim set to 0 and
    // the index advancing along dim only; the index value times x's dim stride
    // is added per element.
    const int64_t xs = x.strides()[dim];
    Strides idx_st;
    idx_st.resize(out.dim());
    idx_st[dim] = is;
    strided_loop<3>(out.shape(), {with_stride(x.strides(), dim, 0), out.strides(), idx_st},
                    [&](auto off, int64_t n, auto inc) {
                      for (int64_t i = 0; i < n; ++i)
                        op[off[1] + i * inc[1]] = xp[off[0] + i * inc[0] + ip[off[2] + i * inc[2]] * xs];
                    });
  });
}

// d + a * s for index_add, rounded once for floating types (std::fma), as
// every backend computes it: whether a compiler would fuse `d += a * s` on
// its own depends on its flags, and the CUDA kernels would not match it.
// a == 1 is a plain add (the same value, and no software fma where the
// processor has none).
template <class T>
T fused_add(T d, T a, T s) {
  if constexpr (std::is_floating_point_v<T>) return a == T(1) ? d + s : std::fma(a, s, d);
  else return d + a * s;
}

// out (O, D, I) rows idx[k] += alpha * src (O, K, I) rows k, in place.
void CpuBackend::index_add(const Tensor& out, int64_t dim, const Tensor& idx, const Tensor& src, double alpha) {
  DG_ASSERT(idx.dim() == 1 && idx.dtype() == DType::i64 && out.dtype() == src.dtype());
  const int64_t K = idx.numel(), is = idx.strides()[0];
  const int64_t* ip = idx.data<int64_t>();
  visit_dtype(out.dtype(), [&](auto tag) {
    using T = decltype(tag);
    const T a = static_cast<T>(alpha);
    const T* sp = src.data<T>();
    T* op = out.data<T>();
    if (out.is_contiguous() && src.is_contiguous()) {
      // Fast path: tasks are (outer row, column chunk); each adds all K source
      // rows of its columns, in index order (vectorised row adds).
      const OuterInner oi = split_at(out.shape(), dim);
      const int64_t O = oi.outer, I = oi.inner;
      const int64_t D = out.shape()[dim];
      const int64_t chunk = column_chunk(O, I, O * K * I), nchunks = (I + chunk - 1) / chunk;
      parallel_for(O * nchunks, O * K * I, [&](int64_t task) {
        int64_t o = task / nchunks, c0 = (task % nchunks) * chunk, n = std::min(chunk, I - c0);
        for (int64_t k = 0; k < K; ++k) {
          T* dst = op + (o * D + ip[k * is]) * I + c0;
          const T* s = sp + (o * K + k) * I + c0;
          if constexpr (std::is_same_v<T, bool>) {
            for (int64_t i = 0; i < n; ++i) dst[i] = dst[i] || (a && s[i]);
          } else {
            for (int64_t i = 0; i < n; ++i) dst[i] = fused_add(dst[i], a, s[i]);
          }
        }
      });
      return;
    }
    // Strided: the loop covers the non-dim coordinates once (dim collapsed to
    // 1); each run walks all K index entries for its elements.
    const int64_t os = out.strides()[dim], ss = src.strides()[dim];
    strided_loop<2>(without_dim(src.shape(), dim), {src.strides(), out.strides()}, [&](auto off, int64_t n, auto inc) {
      for (int64_t k = 0; k < K; ++k) {
        T* dst = op + off[1] + ip[k * is] * os;
        const T* s = sp + off[0] + k * ss;
        for (int64_t i = 0; i < n; ++i) {
          if constexpr (std::is_same_v<T, bool>) dst[i * inc[1]] = dst[i * inc[1]] || (a && s[i * inc[0]]);
          else dst[i * inc[1]] = fused_add(dst[i * inc[1]], a, s[i * inc[0]]);
        }
      }
    });
  });
}

// out[..., j, ...] = x[..., idx[..., j, ...], ...] along dim; idx has out's shape.
void CpuBackend::gather(const Tensor& x, int64_t dim, const Tensor& idx, const Tensor& out) {
  DG_ASSERT(idx.shape() == out.shape() && idx.dtype() == DType::i64);
  const int64_t* ip = idx.data<int64_t>();
  const int64_t xs = x.strides()[dim];
  visit_dtype(x.dtype(), [&](auto tag) {
    using T = decltype(tag);
    const T* xp = x.data<T>();
    T* op = out.data<T>();
    // x is read at (its non-dim coordinates) + idx * (its dim stride); x's
    // shape may be larger than idx's off dim, which only its strides see.
    strided_loop<3>(out.shape(), {with_stride(x.strides(), dim, 0), out.strides(), idx.strides()},
                    [&](auto off, int64_t n, auto inc) {
                      if (inc[0] == 1 && inc[1] == 1 && inc[2] == 1) {
                        const T* xr = xp + off[0];
                        const int64_t* ir = ip + off[2];
                        T* orow = op + off[1];
                        for (int64_t i = 0; i < n; ++i) orow[i] = xr[i + ir[i] * xs];
                      } else {
                        for (int64_t i = 0; i < n; ++i)
                          op[off[1] + i * inc[1]] = xp[off[0] + i * inc[0] + ip[off[2] + i * inc[2]] * xs];
                      }
                    });
  });
}

// out[..., idx[..., j, ...], ...] += src[..., j, ...] along dim, in place; idx has src's shape.
void CpuBackend::scatter_add(const Tensor& out, int64_t dim, const Tensor& idx, const Tensor& src) {
  DG_ASSERT(idx.shape() == src.shape() && idx.dtype() == DType::i64 && out.dtype() == src.dtype());
  const int64_t* ip = idx.data<int64_t>();
  const int64_t os = out.strides()[dim], ss = src.strides()[dim], is = idx.strides()[dim];
  const int64_t J = src.shape()[dim];
  visit_dtype(out.dtype(), [&](auto tag) {
    using T = decltype(tag);
    const T* sp = src.data<T>();
    T* op = out.data<T>();
    // Every run owns its non-dim coordinates (dim collapsed to 1) and adds the
    // J entries along dim in order: no two threads touch one output element.
    strided_loop<3>(without_dim(src.shape(), dim), {src.strides(), with_stride(out.strides(), dim, 0), idx.strides()},
                    [&](auto off, int64_t n, auto inc) {
                      for (int64_t j = 0; j < J; ++j) {
                        for (int64_t i = 0; i < n; ++i) {
                          T& dst = op[off[1] + i * inc[1] + ip[off[2] + j * is + i * inc[2]] * os];
                          T v = sp[off[0] + j * ss + i * inc[0]];
                          if constexpr (std::is_same_v<T, bool>) dst = dst || v;
                          else dst += v;
                        }
                      }
                    });
  });
}

// values, indices (O, k, I) = the k largest (smallest) of x (O, D, I) along
// dim. Ties go to the lower index; NaN counts as larger than every number
// (like PyTorch). sorted: best first; unsorted: the selected k in index order.
// Reads the values in place (strided, no allocation: the guarded device runs
// this inside its kernel window). The scan is branch-free so it vectorises;
// the offender is searched for only on failure.
void CpuBackend::check_indices(const Tensor& idx, int64_t size, std::string_view message,
                               std::optional<int64_t> skip) {
  DG_ASSERT(idx.dtype() == DType::i64);
  const int64_t* ip = idx.data<int64_t>();
  const int64_t keep = skip.value_or(0);  // 0 is in range unless size == 0
  const bool has_skip = skip.has_value();
  auto bad = [&](int64_t v) { return (v < 0 || v >= size) && !(has_skip && v == keep); };
  std::atomic<bool> any{false};  // runs may be spread over threads
  strided_loop<1>(idx.shape(), {idx.strides()}, [&](std::array<int64_t, 1> off, int64_t n, std::array<int64_t, 1> inc) {
    bool run_bad = false;
    for (int64_t i = 0; i < n; ++i) run_bad |= bad(ip[off[0] + i * inc[0]]);
    if (run_bad) any.store(true, std::memory_order_relaxed);
  });
  if (!any.load()) return;
  // The first offender in row-major order, serially (failure path only).
  int64_t first = 0;
  for (int64_t linear = 0; linear < idx.numel(); ++linear) {
    int64_t off = 0, rem = linear;
    for (int64_t d = idx.dim() - 1; d >= 0; --d) {
      off += rem % idx.shape()[d] * idx.strides()[d];
      rem /= idx.shape()[d];
    }
    if (bad(ip[off])) {
      first = ip[off];
      break;
    }
  }
  throw Error(fmt::format(fmt::runtime(message), first));
}

void CpuBackend::topk(const Tensor& x, int64_t k, int64_t dim, bool largest, bool sorted, const Tensor& values,
                      const Tensor& indices) {
  DG_ASSERT(values.is_contiguous() && indices.is_contiguous() && indices.dtype() == DType::i64);
  const OuterInner oi = split_at(x.shape(), dim);
  const int64_t O = oi.outer, I = oi.inner;
  const int64_t D = x.shape()[dim];
  const Strides& xst = x.strides();
  const int64_t xs = xst[dim];
  if (k == 0 || O * I == 0) return;
  visit_dtype(x.dtype(), [&](auto tag) {
    using T = decltype(tag);
    using Entry = std::pair<T, int64_t>;
    // a > b with NaN above everything: a strict weak order even with NaNs.
    auto greater = [](T a, T b) {
      if constexpr (std::is_floating_point_v<T>) return a > b || (std::isnan(a) && !std::isnan(b));
      else return a > b;
    };
    auto before = [&](const Entry& p, const Entry& q) {
      bool pq = largest ? greater(p.first, q.first) : greater(q.first, p.first);
      bool qp = largest ? greater(q.first, p.first) : greater(p.first, q.first);
      return pq || (!qp && p.second < q.second);
    };
    const T* xp = x.data<T>();
    T* vp = values.data<T>();
    int64_t* ip = indices.data<int64_t>();
#pragma omp parallel if (worth_parallel(O * I * D))
    {
      std::vector<Entry> row(static_cast<size_t>(D));  // one buffer per thread
#pragma omp for schedule(static)
      for (int64_t r = 0; r < O * I; ++r) {
        // Offset of row r in (a possibly strided) x: unravel its non-dim coordinates.
        int64_t base = 0, rem = r;
        for (int64_t d = x.dim() - 1; d >= 0; --d) {
          if (d == dim) continue;
          base += (rem % x.shape()[d]) * xst[d];
          rem /= x.shape()[d];
        }
        for (int64_t j = 0; j < D; ++j) row[j] = {xp[base + j * xs], j};
        if (sorted) {
          std::partial_sort(row.begin(), row.begin() + k, row.end(), before);
        } else {
          if (k < D) std::nth_element(row.begin(), row.begin() + (k - 1), row.end(), before);
          std::sort(row.begin(), row.begin() + k, [](const Entry& p, const Entry& q) { return p.second < q.second; });
        }
        int64_t o = r / I, i = r % I;
        T* vrow = vp + o * k * I + i;
        int64_t* irow = ip + o * k * I + i;
        for (int64_t j = 0; j < k; ++j) vrow[j * I] = row[j].first, irow[j * I] = row[j].second;
      }
    }
  });
}

// out (N, C) rows idx[k] += w[k] * src[k] (K, C); repeated rows accumulate
// in index order. Tasks are column chunks, each adding all K rows of its
// columns, so no two tasks write one element.
bool CpuBackend::index_add_rows(const Tensor& out, const Tensor& idx, const Tensor& src, const Tensor& w) {
  DG_ASSERT(out.dim() == 2 && out.is_contiguous() && src.dim() == 2 && src.is_contiguous() &&
                src.size(1) == out.size(1) && idx.dtype() == DType::i64 && idx.is_contiguous() &&
                idx.numel() == src.size(0) && w.is_contiguous() && w.numel() == src.size(0) &&
                out.dtype() == src.dtype() && w.dtype() == src.dtype(),
            "index_add_rows out {} idx {} src {} w {}", out.shape(), idx.shape(), src.shape(), w.shape());
  const int64_t K = src.size(0), C = src.size(1);
  if (K == 0 || C == 0) return true;
  const int64_t* ip = idx.data<int64_t>();
  visit_floating(src.dtype(), "index_add_rows", [&](auto tag) {
    using T = decltype(tag);
    const T *sp = src.data<T>(), *wp = w.data<T>();
    T* op = out.data<T>();
    const int64_t chunk = column_chunk(1, C, K * C), nchunks = (C + chunk - 1) / chunk;
    parallel_for(nchunks, K * C, [&](int64_t task) {
      const int64_t c0 = task * chunk, n = std::min(chunk, C - c0);
      for (int64_t k = 0; k < K; ++k) {
        T* dst = op + ip[k] * C + c0;
        const T* s = sp + k * C + c0;
        const T wk = wp[k];
        for (int64_t i = 0; i < n; ++i) dst[i] += wk * s[i];
      }
    });
  });
  return true;
}

// With gi = g's row idx[k]: gsrc[k] = w[k] * gi and gw[k] = <gi, src[k]>,
// one pass over the rows (each task writes only its own rows).
bool CpuBackend::index_add_rows_backward(const Tensor& g, const Tensor& idx, const Tensor& src, const Tensor& w,
                                         const Tensor& gsrc, const Tensor& gw) {
  DG_ASSERT(g.dim() == 2 && g.is_contiguous() && src.dim() == 2 && src.is_contiguous() &&
                src.size(1) == g.size(1) && idx.dtype() == DType::i64 && idx.is_contiguous() &&
                idx.numel() == src.size(0) && w.is_contiguous() && w.numel() == src.size(0) &&
                (!gsrc.defined() || (gsrc.shape() == src.shape() && gsrc.is_contiguous())) &&
                (!gw.defined() || (gw.numel() == w.numel() && gw.is_contiguous())),
            "index_add_rows_backward g {} idx {} src {} w {}", g.shape(), idx.shape(), src.shape(), w.shape());
  const int64_t K = src.size(0), C = src.size(1);
  if (K == 0) return true;
  const int64_t* ip = idx.data<int64_t>();
  visit_floating(src.dtype(), "index_add_rows_backward", [&](auto tag) {
    using T = decltype(tag);
    const T *gp = g.data<T>(), *sp = src.data<T>(), *wp = w.data<T>();
    T* gsp = gsrc.defined() ? gsrc.data<T>() : nullptr;
    T* gwp = gw.defined() ? gw.data<T>() : nullptr;
    parallel_for(K, K * C, [&](int64_t k) {
      const T *gi = gp + ip[k] * C, *s = sp + k * C;
      if (gsp) {
        const T wk = wp[k];
        T* d = gsp + k * C;
        for (int64_t c = 0; c < C; ++c) d[c] = wk * gi[c];
      }
      if (gwp) {
        T acc[8] = {};  // eight partial sums: a vectorisable dot product
        int64_t c = 0;
        for (; c + 8 <= C; c += 8)
          for (int j = 0; j < 8; ++j) acc[j] += gi[c + j] * s[c + j];
        for (; c < C; ++c) acc[0] += gi[c] * s[c];
        gwp[k] = ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]));
      }
    });
  });
  return true;
}

}  // namespace dg::cpu
