// Reductions: sum / max / min / prod over any set of dims, and max / min with
// their index along one dim.
//
// Legend: x is the input (any strides), out the keepdim output (contiguous).
// K = kept dims (out order), R = reduced dims (sorted by x stride, largest
// first), each list coalesced so that a contiguous block becomes one dim.
//
// Two loop shapes, chosen by which dim has the smaller x stride:
//  - per-output fold: the innermost reduced dim is the fastest in memory
//    (reducing the last dim of a contiguous tensor: rows of contiguous runs);
//  - column accumulate: the innermost kept dim is the fastest (reducing
//    leading dims): a block of up to kColBlock outputs is accumulated row by
//    row, an elementwise loop the compiler vectorises.
// Work is spread over OpenMP threads by outputs when there are enough of them,
// else by splitting the reduced range into per-thread partials that are then
// combined in thread order (deterministic for a given thread count).
//
// Accuracy: sums and products of f32 accumulate in double (contiguous f32
// runs too, widened inside the SIMD loop: sum_in_double), so an f32 sum is
// its double sum rounded once, whatever the length.
#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <memory>
#include <type_traits>

#include "tensor/cpu/cpu_backend.h"
#include "tensor/cpu/eigen.h"
#include "tensor/cpu/loops.h"

namespace dg::cpu {

namespace {

constexpr int64_t kColBlock = 256;   // outputs accumulated together in column mode
constexpr int64_t kSumBlock = 1024;  // SIMD block of a contiguous f64 sum

// The sum of n contiguous floats, each widened to double before it is added,
// in a fixed order of lanes (so the same for every call on one build): the
// SIMD widening of AVX-512 or AVX where the build has it (16 or 8 doubles
// added per step: 0.049 ms for 10^6 floats on one core here, against 0.044
// for the f32 sum it replaces), else 8 scalar accumulators.
double sum_in_double(const float* p, int64_t n) {
  int64_t i = 0;
  double total = 0;
#if defined(__AVX512F__)
  __m512d a0 = _mm512_setzero_pd(), a1 = _mm512_setzero_pd();
  for (; i + 16 <= n; i += 16) {
    const __m512 v = _mm512_loadu_ps(p + i);
    a0 = _mm512_add_pd(a0, _mm512_cvtps_pd(_mm512_castps512_ps256(v)));
    a1 = _mm512_add_pd(a1, _mm512_cvtps_pd(_mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1))));
  }
  alignas(64) double lanes[8];
  _mm512_store_pd(lanes, _mm512_add_pd(a0, a1));
  for (double l : lanes) total += l;
#elif defined(__AVX__)
  __m256d a0 = _mm256_setzero_pd(), a1 = _mm256_setzero_pd();
  for (; i + 8 <= n; i += 8) {
    a0 = _mm256_add_pd(a0, _mm256_cvtps_pd(_mm_loadu_ps(p + i)));
    a1 = _mm256_add_pd(a1, _mm256_cvtps_pd(_mm_loadu_ps(p + i + 4)));
  }
  alignas(32) double lanes[4];
  _mm256_store_pd(lanes, _mm256_add_pd(a0, a1));
  for (double l : lanes) total += l;
#else
  double lanes[8] = {};
  for (; i + 8 <= n; i += 8)
    for (int j = 0; j < 8; ++j) lanes[j] += static_cast<double>(p[i + j]);
  for (double l : lanes) total += l;
#endif
  for (; i < n; ++i) total += static_cast<double>(p[i]);
  return total;
}

// A list of dims with the x stride and (for kept dims) the out stride of each.
struct DimList {
  int n = 0;
  int64_t size[kMaxDims];
  int64_t xs[kMaxDims];
  int64_t os[kMaxDims];
  int64_t numel() const {
    int64_t p = 1;
    for (int i = 0; i < n; ++i) p *= size[i];
    return p;
  }
  // Appends a dim, merging it into the previous one when both strides allow.
  void push(int64_t sz, int64_t x_stride, int64_t o_stride) {
    if (n > 0 && xs[n - 1] == x_stride * sz && os[n - 1] == o_stride * sz) {
      size[n - 1] *= sz;
      xs[n - 1] = x_stride;
      os[n - 1] = o_stride;
      return;
    }
    size[n] = sz, xs[n] = x_stride, os[n] = o_stride;
    ++n;
  }
  // The same dims without the last one (the "outer" dims of a column loop).
  DimList drop_last() const {
    DimList d = *this;
    --d.n;
    return d;
  }
};

// Walks a DimList in row-major order, keeping the x and out offsets.
struct Counter {
  const DimList* dims;
  int64_t idx[kMaxDims] = {};
  int64_t xoff = 0, ooff = 0;
  explicit Counter(const DimList& d) : dims(&d) {}
  void seek(int64_t flat) {
    xoff = ooff = 0;
    for (int d = dims->n - 1; d >= 0; --d) {
      idx[d] = flat % dims->size[d];
      flat /= dims->size[d];
      xoff += idx[d] * dims->xs[d];
      ooff += idx[d] * dims->os[d];
    }
  }
  void next() {
    for (int d = dims->n - 1; d >= 0; --d) {
      xoff += dims->xs[d];
      ooff += dims->os[d];
      if (++idx[d] < dims->size[d]) return;
      xoff -= dims->xs[d] * dims->size[d];
      ooff -= dims->os[d] * dims->size[d];
      idx[d] = 0;
    }
  }
};

template <class T>
bool is_nan(T v) {
  if constexpr (std::is_floating_point_v<T>) return std::isnan(v);
  else return false;
}

// The fold of one ReduceOp: accumulator type, identity, step and combine.
// Sums and products accumulate in double (floating) or int64 (integers and
// bool; a bool result is then "any" / "all"); max and min stay in T and
// propagate NaN like PyTorch.
template <ReduceOp Op, class T>
struct Fold {
  static constexpr bool kWide = Op == ReduceOp::sum || Op == ReduceOp::prod;
  using Acc = std::conditional_t<kWide, std::conditional_t<std::is_floating_point_v<T>, double, int64_t>, T>;
  static Acc init() {
    if constexpr (Op == ReduceOp::sum) return Acc(0);
    else if constexpr (Op == ReduceOp::prod) return Acc(1);
    else if constexpr (Op == ReduceOp::max)
      return std::numeric_limits<T>::has_infinity ? -std::numeric_limits<T>::infinity() : std::numeric_limits<T>::lowest();
    else
      return std::numeric_limits<T>::has_infinity ? std::numeric_limits<T>::infinity() : std::numeric_limits<T>::max();
  }
  static Acc step(Acc a, Acc v) {
    if constexpr (Op == ReduceOp::sum) return a + v;
    else if constexpr (Op == ReduceOp::prod) return a * v;
    else if constexpr (Op == ReduceOp::max) return (v > a || is_nan(v)) ? v : a;
    else return (v < a || is_nan(v)) ? v : a;
  }
  static Acc combine(Acc a, Acc b) { return step(a, b); }
  static T result(Acc a) { return static_cast<T>(a); }
};

// Folds n elements p[0], p[s], ..., p[(n-1)s] into acc.
template <ReduceOp Op, class T>
typename Fold<Op, T>::Acc fold_run(const T* p, int64_t n, int64_t s, typename Fold<Op, T>::Acc acc) {
  using F = Fold<Op, T>;
  using Acc = typename F::Acc;
  if constexpr (std::is_floating_point_v<T>) {
    if (s == 1 && n >= 16) {
      using Map = Eigen::Map<const Eigen::Array<T, Eigen::Dynamic, 1>>;
      if constexpr (Op == ReduceOp::sum) {
        // f32 widened to double inside the SIMD sum too (a block summed in
        // f32 lost up to ~6e-6 of a 4096-element row), f64 as it is.
        if constexpr (std::is_same_v<T, float>) {
          acc += sum_in_double(p, n);
        } else {
          for (int64_t i = 0; i < n; i += kSumBlock) acc += static_cast<Acc>(Map(p + i, std::min(kSumBlock, n - i)).sum());
        }
        return acc;
      } else if constexpr (Op == ReduceOp::max) {
        return F::step(acc, Map(p, n).template maxCoeff<Eigen::PropagateNaN>());
      } else if constexpr (Op == ReduceOp::min) {
        return F::step(acc, Map(p, n).template minCoeff<Eigen::PropagateNaN>());
      }
    }
  }
  if (s == 1) {
    for (int64_t i = 0; i < n; ++i) acc = F::step(acc, static_cast<Acc>(p[i]));
  } else {
    for (int64_t i = 0; i < n; ++i) acc = F::step(acc, static_cast<Acc>(p[i * s]));
  }
  return acc;
}

// Folds the reduced elements with flat indices [b, e) of R, starting at x.
template <ReduceOp Op, class T>
typename Fold<Op, T>::Acc fold_span(const T* x, const DimList& R, int64_t b, int64_t e) {
  using F = Fold<Op, T>;
  typename F::Acc acc = F::init();
  const int64_t run = R.size[R.n - 1], rs = R.xs[R.n - 1];
  DimList outer = R.drop_last();
  Counter c(outer);
  c.seek(b / run);
  int64_t pos = b % run;
  while (b < e) {
    int64_t len = std::min(run - pos, e - b);
    acc = fold_run<Op, T>(x + c.xoff + pos * rs, len, rs, acc);
    b += len;
    pos = 0;
    c.next();
  }
  return acc;
}

// Splits [0, n) over the threads; partial results combined in thread order.
template <class Acc, class Part, class Combine>
Acc parallel_fold(int64_t n, Acc init, Part&& part, Combine&& combine) {
  // (a plain array: std::vector<bool> has no addressable elements)
  std::unique_ptr<Acc[]> partial(new Acc[omp_get_max_threads()]);
  std::fill(partial.get(), partial.get() + omp_get_max_threads(), init);
  int used = 1;
#pragma omp parallel
  {
    int nt = omp_get_num_threads(), id = omp_get_thread_num();
#pragma omp single
    used = nt;
    int64_t chunk = (n + nt - 1) / nt, b = std::min(n, chunk * id), e = std::min(n, b + chunk);
    if (b < e) partial[id] = part(b, e);
  }
  Acc acc = partial[0];
  for (int t = 1; t < used; ++t) acc = combine(acc, partial[t]);
  return acc;
}

// Per-output fold: out[k] = fold over R of x[k + r].
template <ReduceOp Op, class T>
void reduce_per_output(const T* x, T* o, const DimList& K, const DimList& R) {
  using F = Fold<Op, T>;
  const int64_t n_out = K.numel(), n_red = R.numel();
  const int nthreads = omp_get_max_threads();
  if (n_out >= nthreads || !worth_parallel(n_out * n_red)) {
    parallel_chunks(n_out, n_out * n_red, [&](int64_t b, int64_t e, int) {
      Counter c(K);
      c.seek(b);
      for (int64_t k = b; k < e; ++k, c.next()) o[c.ooff] = F::result(fold_span<Op, T>(x + c.xoff, R, 0, n_red));
    });
    return;
  }
  // Few outputs, much work each (e.g. a full reduction): split each one.
  Counter c(K);
  for (int64_t k = 0; k < n_out; ++k, c.next()) {
    const T* xk = x + c.xoff;
    auto acc = parallel_fold(n_red, F::init(), [&](int64_t b, int64_t e) { return fold_span<Op, T>(xk, R, b, e); },
                             F::combine);
    o[c.ooff] = F::result(acc);
  }
}

// acc[j] = fold(acc[j], x[j * cs + r]) for the reduced flat indices [b, e).
template <ReduceOp Op, class T>
void accumulate_columns(const T* x, int64_t w, int64_t cs, const DimList& R, int64_t b, int64_t e,
                        typename Fold<Op, T>::Acc* acc) {
  using F = Fold<Op, T>;
  using Acc = typename F::Acc;
  Counter c(R);
  c.seek(b);
  for (int64_t r = b; r < e; ++r, c.next()) {
    const T* p = x + c.xoff;
    if (cs == 1) {
      for (int64_t j = 0; j < w; ++j) acc[j] = F::step(acc[j], static_cast<Acc>(p[j]));
    } else {
      for (int64_t j = 0; j < w; ++j) acc[j] = F::step(acc[j], static_cast<Acc>(p[j * cs]));
    }
  }
}

// Column accumulate: the innermost kept dim (nc columns, x stride cs, out
// stride 1) is walked in blocks of kColBlock; every reduced element adds one
// row of the block.
template <ReduceOp Op, class T>
void reduce_columns(const T* x, T* o, const DimList& K, const DimList& R) {
  using F = Fold<Op, T>;
  using Acc = typename F::Acc;
  const int64_t nc = K.size[K.n - 1], cs = K.xs[K.n - 1];
  const DimList outer = K.drop_last();
  const int64_t n_blocks = (nc + kColBlock - 1) / kColBlock, tasks = outer.numel() * n_blocks;
  const int64_t n_red = R.numel(), work = K.numel() * n_red;
  auto task_base = [&](int64_t t, int64_t& xoff, int64_t& ooff, int64_t& w) {
    Counter c(outer);
    c.seek(t / n_blocks);
    int64_t j0 = (t % n_blocks) * kColBlock;
    w = std::min(kColBlock, nc - j0);
    xoff = c.xoff + j0 * cs;
    ooff = c.ooff + j0;
  };
  if (tasks >= omp_get_max_threads() || !worth_parallel(work)) {
    parallel_for(tasks, work, [&](int64_t t) {
      int64_t xoff, ooff, w;
      task_base(t, xoff, ooff, w);
      Acc acc[kColBlock];
      std::fill(acc, acc + w, F::init());
      accumulate_columns<Op, T>(x + xoff, w, cs, R, 0, n_red, acc);
      for (int64_t j = 0; j < w; ++j) o[ooff + j] = F::result(acc[j]);
    });
    return;
  }
  // Few column blocks and many rows: each thread accumulates part of the rows.
  for (int64_t t = 0; t < tasks; ++t) {
    int64_t xoff, ooff, w;
    task_base(t, xoff, ooff, w);
    const size_t n_partial = static_cast<size_t>(omp_get_max_threads()) * kColBlock;
    std::unique_ptr<Acc[]> partial(new Acc[n_partial]);
    std::fill(partial.get(), partial.get() + n_partial, F::init());
    int used = 1;
#pragma omp parallel
    {
      int nt = omp_get_num_threads(), id = omp_get_thread_num();
#pragma omp single
      used = nt;
      int64_t chunk = (n_red + nt - 1) / nt, b = std::min(n_red, chunk * id), e = std::min(n_red, b + chunk);
      accumulate_columns<Op, T>(x + xoff, w, cs, R, b, e, partial.get() + id * kColBlock);
    }
    for (int64_t j = 0; j < w; ++j) {
      Acc a = partial[j];
      for (int id = 1; id < used; ++id) a = F::combine(a, partial[id * kColBlock + j]);
      o[ooff + j] = F::result(a);
    }
  }
}

template <ReduceOp Op, class T>
void reduce_typed(const Tensor& x, const Tensor& out, const DimList& K, const DimList& R) {
  const T* xp = x.data<T>();
  T* op = out.data<T>();
  bool columns = K.n > 0 && K.xs[K.n - 1] < R.xs[R.n - 1];
  if (columns) reduce_columns<Op, T>(xp, op, K, R);
  else reduce_per_output<Op, T>(xp, op, K, R);
}

// Index of the max (min) of n elements at stride s; NaN wins, ties go to the
// first index.
template <class T, bool Max>
bool better(T v, T best) {
  if constexpr (std::is_floating_point_v<T>) {
    if (std::isnan(best)) return false;
    if (std::isnan(v)) return true;
  }
  return Max ? v > best : v < best;
}

template <class T, bool Max>
void arg_per_output(const T* x, T* vals, int64_t* idx, const DimList& K, int64_t n, int64_t s) {
  const int64_t n_out = K.numel();
  parallel_chunks(n_out, n_out * n, [&](int64_t b, int64_t e, int) {
    Counter c(K);
    c.seek(b);
    for (int64_t k = b; k < e; ++k, c.next()) {
      const T* p = x + c.xoff;
      T best = p[0];
      int64_t bi = 0;
      for (int64_t i = 1; i < n; ++i) {
        if (better<T, Max>(p[i * s], best)) best = p[i * s], bi = i;
      }
      vals[c.ooff] = best;
      idx[c.ooff] = bi;
    }
  });
}

template <class T, bool Max>
void arg_columns(const T* x, T* vals, int64_t* idx, const DimList& K, int64_t n, int64_t s) {
  const int64_t nc = K.size[K.n - 1], cs = K.xs[K.n - 1];
  const DimList outer = K.drop_last();
  const int64_t n_blocks = (nc + kColBlock - 1) / kColBlock, tasks = outer.numel() * n_blocks;
  parallel_for(tasks, K.numel() * n, [&](int64_t t) {
    Counter c(outer);
    c.seek(t / n_blocks);
    int64_t j0 = (t % n_blocks) * kColBlock, w = std::min(kColBlock, nc - j0);
    const T* p = x + c.xoff + j0 * cs;
    T* v = vals + c.ooff + j0;
    int64_t* ix = idx + c.ooff + j0;
    for (int64_t j = 0; j < w; ++j) v[j] = p[j * cs], ix[j] = 0;
    for (int64_t i = 1; i < n; ++i) {
      const T* row = p + i * s;
      for (int64_t j = 0; j < w; ++j) {
        if (better<T, Max>(row[j * cs], v[j])) v[j] = row[j * cs], ix[j] = i;
      }
    }
  });
}

}  // namespace

// out: x's rank, size 1 on reduced dims, contiguous.
void CpuBackend::reduce(ReduceOp op, const Tensor& x, const Tensor& out) {
  DG_ASSERT(x.dim() == out.dim() && x.dtype() == out.dtype() && out.is_contiguous(), "reduce {} -> {}", x.shape(),
            out.shape());
  if (out.numel() == 0) return;
  // Kept dims in out order; reduced dims sorted by x stride (largest first) so
  // the innermost reduced loop walks the fastest dim of x.
  DimList K, R;
  int rd[kMaxDims], nr = 0;
  for (int64_t d = 0; d < x.dim(); ++d) {
    if (x.shape()[d] == 1) continue;
    if (out.shape()[d] == 1) rd[nr++] = static_cast<int>(d);
    else {
      DG_ASSERT(out.shape()[d] == x.shape()[d], "reduce {} -> {}", x.shape(), out.shape());
      K.push(x.shape()[d], x.strides()[d], out.strides()[d]);
    }
  }
  if (nr == 0) {  // only size-1 dims "reduced": a copy
    copy(x, out);
    return;
  }
  if (x.numel() == 0) {  // an empty fold: the identity (callers reject empty max/min)
    fill(out, op == ReduceOp::prod ? 1.0 : 0.0);
    return;
  }
  std::stable_sort(rd, rd + nr, [&](int a, int b) { return x.strides()[a] > x.strides()[b]; });
  for (int i = 0; i < nr; ++i) R.push(x.shape()[rd[i]], x.strides()[rd[i]], 0);
  visit_dtype(x.dtype(), [&](auto tag) {
    using T = decltype(tag);
    switch (op) {
      case ReduceOp::sum: reduce_typed<ReduceOp::sum, T>(x, out, K, R); break;
      case ReduceOp::max: reduce_typed<ReduceOp::max, T>(x, out, K, R); break;
      case ReduceOp::min: reduce_typed<ReduceOp::min, T>(x, out, K, R); break;
      case ReduceOp::prod: reduce_typed<ReduceOp::prod, T>(x, out, K, R); break;
    }
  });
}

// values, indices: x's shape with size 1 at dim (contiguous); n = x.shape[dim] > 0.
void CpuBackend::reduce_arg(ReduceOp op, const Tensor& x, int64_t dim, const Tensor& values, const Tensor& indices) {
  DG_ASSERT(op == ReduceOp::max || op == ReduceOp::min, "reduce_arg: only max and min");
  DG_ASSERT(values.is_contiguous() && indices.is_contiguous() && indices.dtype() == DType::i64 &&
            values.dtype() == x.dtype() && x.size(dim) > 0);
  if (values.numel() == 0) return;
  DimList K;
  for (int64_t d = 0; d < x.dim(); ++d)
    if (d != dim && x.shape()[d] != 1) K.push(x.shape()[d], x.strides()[d], values.strides()[d]);
  const int64_t n = x.shape()[dim], s = x.strides()[dim];
  bool columns = K.n > 0 && n > 1 && K.xs[K.n - 1] < s;
  visit_dtype(x.dtype(), [&](auto tag) {
    using T = decltype(tag);
    const T* xp = x.data<T>();
    T* vp = values.data<T>();
    int64_t* ip = indices.data<int64_t>();
    if (op == ReduceOp::max) {
      if (columns) arg_columns<T, true>(xp, vp, ip, K, n, s);
      else arg_per_output<T, true>(xp, vp, ip, K, n, s);
    } else {
      if (columns) arg_columns<T, false>(xp, vp, ip, K, n, s);
      else arg_per_output<T, false>(xp, vp, ip, K, n, s);
    }
  });
}

}  // namespace dg::cpu
