// CPU elementwise kernels: unary map, its first and second derivatives,
// binary map and where. The scalar math is in tensor/functors.h; this file is
// only loops.
//
// Legend: x, g, y, a, b, cond are inputs already broadcast to out's shape
// (stride-0 views on broadcast dims); out is contiguous, except that binary()
// also runs in place (out aliasing a with the same layout, for add_).
//
// Speed: strided_loop coalesces dims and spreads rows over OpenMP threads.
// Unary kernels work on contiguous runs: strided inputs are gathered into
// small stack blocks first, so every element goes through the same code (the
// result does not depend on the layout) and the loops vectorise. Ops with a
// transcendental core (exp, tanh, sigmoid, gelu, silu, ...) compute it with
// Eigen's SIMD functions over the block and the rest in plain loops.
#include <algorithm>
#include <array>

#include "tensor/cpu/cpu_backend.h"
#include "tensor/cpu/eigen.h"
#include "tensor/cpu/loops.h"
#include "tensor/functors.h"

namespace dg::cpu {
namespace {

using fn::Core;

// Block length for gathered inputs and core values: small enough for L1.
constexpr int64_t kBlock = 256;

template <class T>
using ArrayMap = Eigen::Map<Eigen::Array<T, Eigen::Dynamic, 1>>;
template <class T>
using ConstArrayMap = Eigen::Map<const Eigen::Array<T, Eigen::Dynamic, 1>>;

// v[i] = core(v[i]) for i < n, with Eigen's vectorised functions (exp, log,
// sqrt, rsqrt, logistic for f32/f64, tanh for f32; Eigen falls back to the
// scalar function where it has no SIMD version).
template <class T>
void apply_core(Core c, T* v, int64_t n) {
  ArrayMap<T> a(v, n);
  switch (c) {
    case Core::exp: a = a.exp(); break;
    case Core::log: a = a.log(); break;
    case Core::sqrt: a = a.sqrt(); break;
    case Core::rsqrt: a = a.rsqrt(); break;
    case Core::tanh: a = a.tanh(); break;
    case Core::sigmoid: a = a.logistic(); break;
    case Core::none: break;
  }
}

template <class F, class T>
constexpr bool has_core() {
  if constexpr (std::is_floating_point_v<T>) return F::kCore != Core::none;
  else return false;
}
// Whether df/d2f are computed from the core (gelu_tanh, silu) rather than from y.
template <class F, class T>
constexpr bool grad_uses_core() {
  return has_core<F, T>() && requires(F f, T v) { f.df_core(v, v); };
}

// --- contiguous runs (n <= kBlock when a core is used; callers split).

// o = f(x)
template <class F, class T, class O>
void unary_run(const F& fn, const T* x, O* o, int64_t n) {
  if constexpr (has_core<F, T>()) {
    T t[kBlock];
    for (int64_t i = 0; i < n; ++i) t[i] = fn.arg(x[i]);
    apply_core(F::kCore, t, n);
    for (int64_t i = 0; i < n; ++i) o[i] = fn.f_core(x[i], t[i]);
  } else {
    for (int64_t i = 0; i < n; ++i) o[i] = fn.f(x[i]);
  }
}

// o = g * f'(x)
template <class F, class T>
void unary_grad_run(const F& fn, const T* g, const T* x, const T* y, T* o, int64_t n) {
  if constexpr (grad_uses_core<F, T>()) {
    T t[kBlock];
    for (int64_t i = 0; i < n; ++i) t[i] = fn.arg(x[i]);
    apply_core(F::kCore, t, n);
    for (int64_t i = 0; i < n; ++i) o[i] = g[i] * fn.df_core(x[i], t[i]);
  } else {
    for (int64_t i = 0; i < n; ++i) o[i] = g[i] * fn.df(x[i], y[i]);
  }
}

// o = f''(x)
template <class F, class T>
void unary_grad2_run(const F& fn, const T* x, const T* y, T* o, int64_t n) {
  if constexpr (grad_uses_core<F, T>()) {
    T t[kBlock];
    for (int64_t i = 0; i < n; ++i) t[i] = fn.arg(x[i]);
    apply_core(F::kCore, t, n);
    for (int64_t i = 0; i < n; ++i) o[i] = fn.d2f_core(x[i], t[i]);
  } else {
    for (int64_t i = 0; i < n; ++i) o[i] = fn.d2f(x[i], y[i]);
  }
}

// Runs run(ptrs, o, n) over out's elements, where ptrs are NIn contiguous
// input runs of n <= kBlock elements: the tensors' own memory where a run is
// contiguous, else a block gathered from the strided input (written back for
// a strided output).
template <size_t NIn, class T, class O, class Run>
void blocked_map(const std::array<const Tensor*, NIn>& in, const Tensor& out, Run&& run) {
  std::array<Strides, NIn + 1> strides;
  std::array<const T*, NIn> base;
  for (size_t k = 0; k < NIn; ++k) strides[k] = in[k]->strides(), base[k] = in[k]->template data<T>();
  strides[NIn] = out.strides();
  O* obase = out.data<O>();
  strided_loop<NIn + 1>(out.shape(), strides, [&](auto off, int64_t n, auto inc) {
    T buf[NIn][kBlock];
    O obuf[kBlock];
    for (int64_t s = 0; s < n; s += kBlock) {
      int64_t m = std::min(kBlock, n - s);
      std::array<const T*, NIn> p;
      for (size_t k = 0; k < NIn; ++k) {
        const T* src = base[k] + off[k] + s * inc[k];
        if (inc[k] == 1) {
          p[k] = src;
        } else {
          for (int64_t i = 0; i < m; ++i) buf[k][i] = src[i * inc[k]];
          p[k] = buf[k];
        }
      }
      O* dst = obase + off[NIn] + s * inc[NIn];
      if (inc[NIn] == 1) {
        run(p, dst, m);
      } else {
        run(p, obuf, m);
        for (int64_t i = 0; i < m; ++i) dst[i * inc[NIn]] = obuf[i];
      }
    }
  });
}

// --- binary: o[i] = f(a[i], b[i]) with fast paths for contiguous runs, a
// scalar operand (stride 0) and the in-place case o == a.
template <class F, class T, class O>
void binary_run(const F& fn, const T* a, int64_t ia, const T* b, int64_t ib, O* o, int64_t io, int64_t n) {
  if (io == 1 && ia == 1 && ib == 1) {
    if constexpr (std::is_same_v<T, O>) {
      if (static_cast<const void*>(o) == a) {  // in place: one pointer less, so no alias check
        for (int64_t i = 0; i < n; ++i) o[i] = fn.f(o[i], b[i]);
        return;
      }
    }
    for (int64_t i = 0; i < n; ++i) o[i] = fn.f(a[i], b[i]);
  } else if (io == 1 && ia == 1 && ib == 0) {
    const T bv = *b;
    for (int64_t i = 0; i < n; ++i) o[i] = fn.f(a[i], bv);
  } else if (io == 1 && ia == 0 && ib == 1) {
    const T av = *a;
    for (int64_t i = 0; i < n; ++i) o[i] = fn.f(av, b[i]);
  } else {
    for (int64_t i = 0; i < n; ++i) o[i * io] = fn.f(a[i * ia], b[i * ib]);
  }
}

}  // namespace

void CpuBackend::unary(UnaryOp op, const Tensor& x, const Tensor& out, UnaryParams p) {
  DG_ASSERT(x.shape() == out.shape(), "cpu unary: {} vs {}", x.shape(), out.shape());
  fn::visit_unary_dtype("cpu unary", op, p, x.dtype(), [&](auto f, auto tag) {
    using F = decltype(f);
    using T = decltype(tag);
    using O = std::conditional_t<F::kBoolOut, bool, T>;
    blocked_map<1, T, O>({&x}, out, [&](const auto& in, O* o, int64_t n) { unary_run(f, in[0], o, n); });
  });
}

void CpuBackend::unary_grad(UnaryOp op, const Tensor& g, const Tensor& x, const Tensor& y, const Tensor& out,
                            UnaryParams p) {
  DG_ASSERT(g.shape() == out.shape() && x.shape() == out.shape() && y.shape() == out.shape(),
            "cpu unary_grad: {} {} {} -> {}", g.shape(), x.shape(), y.shape(), out.shape());
  fn::visit_unary_dtype("cpu unary_grad", op, p, x.dtype(), [&](auto f, auto tag) {
    using F = decltype(f);
    using T = decltype(tag);
    if constexpr (F::kBoolOut) {
      DG_ASSERT(false, "cpu unary_grad: {} has no gradient", unary_op_name(op));
    } else {
      blocked_map<3, T, T>({&g, &x, &y}, out,
                           [&](const auto& in, T* o, int64_t n) { unary_grad_run(f, in[0], in[1], in[2], o, n); });
    }
  });
}

void CpuBackend::unary_grad2(UnaryOp op, const Tensor& x, const Tensor& y, const Tensor& out, UnaryParams p) {
  DG_ASSERT(x.shape() == out.shape() && y.shape() == out.shape(), "cpu unary_grad2: {} {} -> {}", x.shape(),
            y.shape(), out.shape());
  fn::visit_unary_dtype("cpu unary_grad2", op, p, x.dtype(), [&](auto f, auto tag) {
    using F = decltype(f);
    using T = decltype(tag);
    if constexpr (F::kBoolOut) {
      DG_ASSERT(false, "cpu unary_grad2: {} has no gradient", unary_op_name(op));
    } else {
      blocked_map<2, T, T>({&x, &y}, out,
                           [&](const auto& in, T* o, int64_t n) { unary_grad2_run(f, in[0], in[1], o, n); });
    }
  });
}

void CpuBackend::binary(BinaryOp op, const Tensor& a, const Tensor& b, const Tensor& out) {
  DG_ASSERT(a.shape() == out.shape() && b.shape() == out.shape() && a.dtype() == b.dtype(),
            "cpu binary: {} {} and {} {} -> {}", a.dtype(), a.shape(), b.dtype(), b.shape(), out.shape());
  fn::visit_binary_dtype("cpu binary", op, a.dtype(), [&](auto f, auto tag) {
    using T = decltype(tag);
    using O = decltype(f.f(T{}, T{}));
    const T *pa = a.data<T>(), *pb = b.data<T>();
    O* po = out.data<O>();
    strided_loop<3>(out.shape(), {a.strides(), b.strides(), out.strides()}, [&](auto off, int64_t n, auto inc) {
      binary_run(f, pa + off[0], inc[0], pb + off[1], inc[1], po + off[2], inc[2], n);
    });
  });
}

void CpuBackend::where(const Tensor& cond, const Tensor& a, const Tensor& b, const Tensor& out) {
  DG_ASSERT(cond.dtype() == DType::b8 && a.dtype() == b.dtype() && a.dtype() == out.dtype(), "cpu where: dtypes");
  DG_ASSERT(cond.shape() == out.shape() && a.shape() == out.shape() && b.shape() == out.shape(), "cpu where: shapes");
  visit_dtype(a.dtype(), [&](auto tag) {
    using T = decltype(tag);
    const bool* pc = cond.data<bool>();
    const T *pa = a.data<T>(), *pb = b.data<T>();
    T* po = out.data<T>();
    strided_loop<4>(out.shape(), {cond.strides(), a.strides(), b.strides(), out.strides()},
                    [&](auto off, int64_t n, auto inc) {
                      const bool* c = pc + off[0];
                      const T *x = pa + off[1], *y = pb + off[2];
                      T* o = po + off[3];
                      if (inc[0] == 1 && inc[1] == 1 && inc[2] == 1 && inc[3] == 1) {
                        for (int64_t i = 0; i < n; ++i) o[i] = c[i] ? x[i] : y[i];
                      } else {
                        for (int64_t i = 0; i < n; ++i)
                          o[i * inc[3]] = c[i * inc[0]] ? x[i * inc[1]] : y[i * inc[2]];
                      }
                    });
  });
}

}  // namespace dg::cpu
