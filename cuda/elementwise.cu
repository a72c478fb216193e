// CUDA elementwise kernels: fill, arange, dtype-converting copy, unary map
// and its first and second derivatives, binary map, where, the random fills
// and the AdamW step. The scalar math is in tensor/functors.h, rng.h and
// optim_math.h, shared with the CPU; this file is only maps over elements.
//
// Legend: n = out.numel(); inputs are already broadcast to out's shape
// (stride-0 views on broadcast dims) and may be strided; out is contiguous,
// except that fill and copy write strided outputs and binary also runs in
// place (out aliasing a with the same layout: each element is read and
// written by the same thread, so that is safe).
//
// One map for everything: thread i handles linear indices i, i + grid, ...
// (grid-stride), and for each calls an elementwise functor with the element
// offsets of its N operands. When every operand is contiguous, the offsets
// are the linear index itself (linear_map); otherwise OffsetCalc turns the
// index into per-operand offsets (strided_map). Consecutive threads touch
// consecutive elements, so loads and stores coalesce on contiguous data.
//
// This file is compiled with --fmad=false (cuda/CMakeLists.txt): nvcc would
// otherwise fuse a*b + c into one fma, rounding differently from the CPU. The
// shared formulas write an fma explicitly where both sides must fuse.
#include "cuda/common.cuh"
#include "tensor/functors.h"
#include "tensor/optim_math.h"
#include "tensor/rng.h"

namespace dg::cuda {
namespace {

template <int N>
using Offsets = std::array<int64_t, N>;

// ---------------------------------------------------------------- kernels

template <int N, class Op>
__global__ void linear_map(int64_t n, Op op) {
  for (int64_t i = int64_t{blockIdx.x} * blockDim.x + threadIdx.x; i < n; i += int64_t{gridDim.x} * blockDim.x) {
    Offsets<N> off;
    for (int t = 0; t < N; ++t) off[t] = i;
    op(off);
  }
}

template <int N, class Op>
__global__ void strided_map(int64_t n, OffsetCalc<N> oc, Op op) {
  for (int64_t i = int64_t{blockIdx.x} * blockDim.x + threadIdx.x; i < n; i += int64_t{gridDim.x} * blockDim.x)
    op(oc.get(i));
}

// ---------------------------------------------------------------- elementwise functors
// Operand k of a functor has offset off[k]; the output is the last operand.

template <class T>
struct FillOp {  // o = v
  T* o;
  T v;
  __device__ void operator()(Offsets<1> off) const { o[off[0]] = v; }
};

template <class T>
struct ArangeOp {  // o[i] = start + i*step
  T* o;
  double start, step;
  __device__ void operator()(Offsets<1> off) const { o[off[0]] = static_cast<T>(fn::arange_at(off[0], start, step)); }
};

template <class S, class D>
struct CopyOp {  // d = s converted to D
  const S* s;
  D* d;
  __device__ void operator()(Offsets<2> off) const { d[off[1]] = static_cast<D>(s[off[0]]); }
};

template <class F, class T, class O>
struct UnaryMapOp {  // o = f(x)
  F f;
  const T* x;
  O* o;
  __device__ void operator()(Offsets<2> off) const { o[off[1]] = f.f(x[off[0]]); }
};

template <class F, class T>
struct UnaryGradOp {  // o = g * f'(x), y = f(x)
  F f;
  const T *g, *x, *y;
  T* o;
  __device__ void operator()(Offsets<4> off) const { o[off[3]] = g[off[0]] * f.df(x[off[1]], y[off[2]]); }
};

template <class F, class T>
struct UnaryGrad2Op {  // o = f''(x), y = f(x)
  F f;
  const T *x, *y;
  T* o;
  __device__ void operator()(Offsets<3> off) const { o[off[2]] = f.d2f(x[off[0]], y[off[1]]); }
};

template <class F, class T, class O>
struct BinaryMapOp {  // o = f(a, b)
  F f;
  const T *a, *b;
  O* o;
  __device__ void operator()(Offsets<3> off) const { o[off[2]] = f.f(a[off[0]], b[off[1]]); }
};

template <class T>
struct WhereOp {  // o = cond ? a : b
  const bool* cond;
  const T *a, *b;
  T* o;
  __device__ void operator()(Offsets<4> off) const { o[off[3]] = cond[off[0]] ? a[off[1]] : b[off[2]]; }
};

// o[i] = value(offset + i), element i of a random fill (tensor/rng.h).
enum class Distribution { uniform, normal, bernoulli };
template <class T, Distribution D>
struct RandomOp {
  T* o;
  uint64_t seed, offset;
  double a, b;  // lo, hi | mean, std | p, unused
  __device__ void operator()(Offsets<1> off) const {
    const uint64_t counter = offset + static_cast<uint64_t>(off[0]);
    double v;
    if constexpr (D == Distribution::uniform) v = uniform_at(seed, counter, a, b);
    else if constexpr (D == Distribution::normal) v = normal_at(seed, counter, a, b);
    else v = bernoulli_at(seed, counter, a);
    o[off[0]] = static_cast<T>(v);
  }
};

template <class T>
struct AdamWOp {  // one AdamW update of p, m, v from g (tensor/optim_math.h)
  T *p, *m, *v;
  const T* g;
  AdamWCoeffs<T> c;
  __device__ void operator()(Offsets<1> off) const {
    const int64_t i = off[0];
    adamw_update(p[i], g[i], m[i], v[i], c);
  }
};

// ---------------------------------------------------------------- launchers

// Runs op over out's elements, with the strides of op's N operands (out's last).
template <int N, class Op>
void launch_map(const char* what, const Tensor& out, const std::array<Strides, N>& strides, const Op& op) {
  const int64_t n = out.numel();
  if (n == 0) return;
  cudaStream_t stream = stream_of(out);
  const OffsetCalc<N> oc(out.shape(), strides);
  if (oc.is_linear()) linear_map<N><<<blocks_for(n), kThreads, 0, stream>>>(n, op);
  else strided_map<N><<<blocks_for(n), kThreads, 0, stream>>>(n, oc, op);
  DG_CUDA_LAUNCHED(what);
}

// A random fill of contiguous out with distribution D and parameters a, b.
template <Distribution D>
void fill_random(const char* what, const Tensor& out, uint64_t seed, uint64_t offset, double a, double b) {
  DG_ASSERT(out.is_contiguous(), "{}: out must be contiguous", what);
  visit_dtype(out.dtype(), [&](auto tag) {
    using T = decltype(tag);
    launch_map<1>(what, out, {out.strides()}, RandomOp<T, D>{dptr<T>(out), seed, offset, a, b});
  });
}

}  // namespace

void CudaBackend::fill(const Tensor& out, double value) {
  visit_dtype(out.dtype(), [&](auto tag) {
    using T = decltype(tag);
    launch_map<1>("cuda fill", out, {out.strides()}, FillOp<T>{dptr<T>(out), static_cast<T>(value)});
  });
}

void CudaBackend::arange(const Tensor& out, double start, double step) {
  DG_ASSERT(out.is_contiguous(), "cuda arange: out must be contiguous");
  visit_dtype(out.dtype(), [&](auto tag) {
    using T = decltype(tag);
    launch_map<1>("cuda arange", out, {out.strides()}, ArangeOp<T>{dptr<T>(out), start, step});
  });
}

void CudaBackend::copy(const Tensor& src, const Tensor& dst) {
  DG_ASSERT(src.shape() == dst.shape(), "cuda copy {} -> {}", src.shape(), dst.shape());
  visit_dtype(src.dtype(), [&](auto stag) {
    using S = decltype(stag);
    visit_dtype(dst.dtype(), [&](auto dtag) {
      using D = decltype(dtag);
      launch_map<2>("cuda copy", dst, {src.strides(), dst.strides()}, CopyOp<S, D>{dptr<S>(src), dptr<D>(dst)});
    });
  });
}

void CudaBackend::unary(UnaryOp op, const Tensor& x, const Tensor& out, UnaryParams p) {
  DG_ASSERT(x.shape() == out.shape(), "cuda unary: {} vs {}", x.shape(), out.shape());
  fn::visit_unary_dtype("cuda unary", op, p, x.dtype(), [&](auto f, auto tag) {
    using F = decltype(f);
    using T = decltype(tag);
    using O = std::conditional_t<F::kBoolOut, bool, T>;
    launch_map<2>("cuda unary", out, {x.strides(), out.strides()}, UnaryMapOp<F, T, O>{f, dptr<T>(x), dptr<O>(out)});
  });
}

void CudaBackend::unary_grad(UnaryOp op, const Tensor& g, const Tensor& x, const Tensor& y, const Tensor& out,
                             UnaryParams p) {
  DG_ASSERT(g.shape() == out.shape() && x.shape() == out.shape() && y.shape() == out.shape(),
            "cuda unary_grad: {} {} {} -> {}", g.shape(), x.shape(), y.shape(), out.shape());
  fn::visit_unary_dtype("cuda unary_grad", op, p, x.dtype(), [&](auto f, auto tag) {
    using F = decltype(f);
    using T = decltype(tag);
    if constexpr (F::kBoolOut) {
      DG_ASSERT(false, "cuda unary_grad: {} has no gradient", unary_op_name(op));
    } else {
      launch_map<4>("cuda unary_grad", out, {g.strides(), x.strides(), y.strides(), out.strides()},
                    UnaryGradOp<F, T>{f, dptr<T>(g), dptr<T>(x), dptr<T>(y), dptr<T>(out)});
    }
  });
}

void CudaBackend::unary_grad2(UnaryOp op, const Tensor& x, const Tensor& y, const Tensor& out, UnaryParams p) {
  DG_ASSERT(x.shape() == out.shape() && y.shape() == out.shape(), "cuda unary_grad2: {} {} -> {}", x.shape(),
            y.shape(), out.shape());
  fn::visit_unary_dtype("cuda unary_grad2", op, p, x.dtype(), [&](auto f, auto tag) {
    using F = decltype(f);
    using T = decltype(tag);
    if constexpr (F::kBoolOut) {
      DG_ASSERT(false, "cuda unary_grad2: {} has no gradient", unary_op_name(op));
    } else {
      launch_map<3>("cuda unary_grad2", out, {x.strides(), y.strides(), out.strides()},
                    UnaryGrad2Op<F, T>{f, dptr<T>(x), dptr<T>(y), dptr<T>(out)});
    }
  });
}

void CudaBackend::binary(BinaryOp op, const Tensor& a, const Tensor& b, const Tensor& out) {
  DG_ASSERT(a.shape() == out.shape() && b.shape() == out.shape() && a.dtype() == b.dtype(),
            "cuda binary: {} and {} -> {}", a.shape(), b.shape(), out.shape());
  fn::visit_binary_dtype("cuda binary", op, a.dtype(), [&](auto f, auto tag) {
    using F = decltype(f);
    using T = decltype(tag);
    using O = decltype(f.f(T{}, T{}));
    launch_map<3>("cuda binary", out, {a.strides(), b.strides(), out.strides()},
                  BinaryMapOp<F, T, O>{f, dptr<T>(a), dptr<T>(b), dptr<O>(out)});
  });
}

void CudaBackend::where(const Tensor& cond, const Tensor& a, const Tensor& b, const Tensor& out) {
  DG_ASSERT(cond.dtype() == DType::b8 && a.dtype() == b.dtype() && a.dtype() == out.dtype(), "cuda where: dtypes");
  DG_ASSERT(cond.shape() == out.shape() && a.shape() == out.shape() && b.shape() == out.shape(), "cuda where: shapes");
  visit_dtype(a.dtype(), [&](auto tag) {
    using T = decltype(tag);
    launch_map<4>("cuda where", out, {cond.strides(), a.strides(), b.strides(), out.strides()},
                  WhereOp<T>{dptr<bool>(cond), dptr<T>(a), dptr<T>(b), dptr<T>(out)});
  });
}

void CudaBackend::fill_uniform(const Tensor& out, double lo, double hi, uint64_t seed, uint64_t offset) {
  fill_random<Distribution::uniform>("cuda fill_uniform", out, seed, offset, lo, hi);
}

void CudaBackend::fill_normal(const Tensor& out, double mean, double std, uint64_t seed, uint64_t offset) {
  fill_random<Distribution::normal>("cuda fill_normal", out, seed, offset, mean, std);
}

void CudaBackend::fill_bernoulli(const Tensor& out, double p, uint64_t seed, uint64_t offset) {
  fill_random<Distribution::bernoulli>("cuda fill_bernoulli", out, seed, offset, p, 0.0);
}

void CudaBackend::adamw_step(const Tensor& param, const Tensor& grad, const Tensor& exp_avg, const Tensor& exp_avg_sq,
                             double lr, double beta1, double beta2, double eps, double weight_decay, int64_t step) {
  assert_adamw_args(param, grad, exp_avg, exp_avg_sq, step);
  visit_floating(param.dtype(), "cuda adamw_step", [&](auto tag) {
    using T = decltype(tag);
    launch_map<1>("cuda adamw_step", param, {param.strides()},
                  AdamWOp<T>{dptr<T>(param), dptr<T>(exp_avg), dptr<T>(exp_avg_sq), dptr<T>(grad),
                             adamw_coeffs<T>(lr, beta1, beta2, eps, weight_decay, step)});
  });
}

}  // namespace dg::cuda
