// Fused row kernels: softmax / log-softmax, layer norm, RMS norm, each with its
// backward.
//
// Legend: N = rows (every leading dim flattened), C = row length (the last
// dim), x (N, C) contiguous. A row (C <= a few thousand) stays in L1 between
// the passes over it, so "single pass" below means one pass over memory; the
// arithmetic passes run on Eigen array maps, which vectorise (exp included)
// for f32 and f64. Rows are spread over OpenMP threads when the tensor is big
// enough to pay for the fork (worth_parallel).
//
// Weight/bias gradients sum over rows: each thread adds its rows into its own
// partial vector, and the partials are summed after the parallel loop, so
// there is no race and, for a fixed thread count, the result is deterministic.
#include <algorithm>
#include <cmath>
#include <vector>

#include "tensor/cpu/cpu_backend.h"
#include "tensor/cpu/eigen.h"
#include "tensor/cpu/loops.h"
#include "tensor/kernels/row_contracts.h"

namespace dg::cpu {

namespace {

template <class T>
using Row = Eigen::Map<Eigen::Array<T, Eigen::Dynamic, 1>>;
template <class T>
using ConstRow = Eigen::Map<const Eigen::Array<T, Eigen::Dynamic, 1>>;

// Length of the last dim (1 for a 0-dim tensor, which is one row of one).
template <class T>
const T* data_or_null(const Tensor& t) {
  return t.defined() ? t.data<T>() : nullptr;
}

// Per-thread partial sums of length C for the weight/bias gradients, laid out
// (threads, C) for up to omp_get_max_threads() threads; sum_into adds the
// first `threads` of them into `out` (C).
template <class T>
struct Partials {
  Partials(bool needed, int64_t C) : C(C), buf(needed ? omp_get_max_threads() * C : 0, T(0)) {}
  T* of(int thread) { return buf.empty() ? nullptr : buf.data() + thread * C; }
  void sum_into(T* out, int threads) const {
    if (!out) return;
    Row<T> o(out, C);
    o = ConstRow<T>(buf.data(), C);
    for (int t = 1; t < threads; ++t) o += ConstRow<T>(buf.data() + t * C, C);
  }
  int64_t C;
  std::vector<T> buf;
};
// ---------------------------------------------------------------- softmax
// y = exp(x - max) / sum(exp(x - max)),  log: y = (x - max) - log sum exp(x - max).
// Subtracting the row max keeps exp from overflowing.
template <class T>
void softmax_rows(const T* x, T* y, int64_t N, int64_t C, bool log) {
  if (C == 0) return;
  parallel_chunks(N, N * C, [&](int64_t r0, int64_t r1, int) {
    for (int64_t r = r0; r < r1; ++r) {
      ConstRow<T> xr(x + r * C, C);
      Row<T> yr(y + r * C, C);
      const T m = xr.maxCoeff();
      if (log) {
        // (x - m) first: exact for the values near the max, so a large common
        // offset (x ~ 1000 in f32) costs no precision.
        yr = (xr - m) - std::log((xr - m).exp().sum());
      } else {
        yr = (xr - m).exp();
        yr *= T(1) / yr.sum();
      }
    }
  });
}

// softmax:     gx = y * (gy - sum(gy * y))
// log-softmax: gx = gy - exp(y) * sum(gy)
template <class T>
void softmax_backward_rows(const T* y, const T* gy, T* gx, int64_t N, int64_t C, bool log) {
  parallel_chunks(N, N * C, [&](int64_t r0, int64_t r1, int) {
    for (int64_t r = r0; r < r1; ++r) {
      ConstRow<T> yr(y + r * C, C), gr(gy + r * C, C);
      Row<T> gxr(gx + r * C, C);
      if (log) {
        gxr = gr - yr.exp() * gr.sum();
      } else {
        gxr = yr * (gr - (gr * yr).sum());
      }
    }
  });
}

// ---------------------------------------------------------------- layer norm
// mean = sum(x)/C, var = sum((x - mean)^2)/C (two passes over the L1-resident
// row: no cancellation as in E[x^2] - E[x]^2), rstd = 1/sqrt(var + eps),
// y = (x - mean) * rstd * w + b. Saves mean and rstd (N).
template <class T>
void layer_norm_rows(const T* x, const T* w, const T* b, T eps, T* y, T* mean, T* rstd, int64_t N, int64_t C) {
  parallel_chunks(N, N * C, [&](int64_t r0, int64_t r1, int) {
    for (int64_t r = r0; r < r1; ++r) {
      ConstRow<T> xr(x + r * C, C);
      Row<T> yr(y + r * C, C);
      const T mu = xr.sum() / T(C);
      const T rs = T(1) / std::sqrt((xr - mu).square().sum() / T(C) + eps);
      mean[r] = mu;
      rstd[r] = rs;
      if (w && b) {
        yr = (xr - mu) * rs * ConstRow<T>(w, C) + ConstRow<T>(b, C);
      } else {
        yr = (xr - mu) * rs;
        if (w) yr *= ConstRow<T>(w, C);
        if (b) yr += ConstRow<T>(b, C);
      }
    }
  });
}

// With xhat = (x - mean) * rstd and dxhat = gy * w (gy when w is absent):
//   gx = rstd * (dxhat - mean(dxhat) - xhat * mean(dxhat * xhat))
//   gw = sum over rows of gy * xhat,  gb = sum over rows of gy
template <class T>
void layer_norm_backward_rows(const T* gy, const T* x, const T* w, const T* mean, const T* rstd, T* gx, T* gw,
                              T* gb, int64_t N, int64_t C, bool add_to_gx) {
  Partials<T> pw(gw != nullptr, C), pb(gb != nullptr, C);
  const int used = parallel_chunks(N, N * C, [&](int64_t r0, int64_t r1, int id) {
    T* accw = pw.of(id);
    T* accb = pb.of(id);
    // add_to_gx: each row's dx is made here, then added to gx in a pass of
    // its own, so that the sum is rounded as the engine's add would round it
    // (the compiler may not fuse the add with the multiply that made dx).
    std::vector<T> made(add_to_gx ? C : 0);
    for (int64_t r = r0; r < r1; ++r) {
      ConstRow<T> xr(x + r * C, C), gr(gy + r * C, C);
      Row<T> gxr(add_to_gx ? made.data() : gx + r * C, C);
      const T mu = mean[r], rs = rstd[r];
      auto xhat = (xr - mu) * rs;
      if (w) {
        ConstRow<T> wr(w, C);
        const T a = (gr * wr).sum() / T(C), b = (gr * wr * xhat).sum() / T(C);
        gxr = rs * (gr * wr - a - xhat * b);
      } else {
        const T a = gr.sum() / T(C), b = (gr * xhat).sum() / T(C);
        gxr = rs * (gr - a - xhat * b);
      }
      if (add_to_gx) Row<T>(gx + r * C, C) += gxr;
      if (accw) Row<T>(accw, C) += gr * xhat;
      if (accb) Row<T>(accb, C) += gr;
    }
  });
  pw.sum_into(gw, used);
  pb.sum_into(gb, used);
}

// ---------------------------------------------------------------- RMS norm
// rstd = 1/sqrt(mean(x^2) + eps), y = x * rstd * w. Saves rstd (N).
template <class T>
void rms_norm_rows(const T* x, const T* w, T eps, T* y, T* rstd, int64_t N, int64_t C) {
  parallel_chunks(N, N * C, [&](int64_t r0, int64_t r1, int) {
    for (int64_t r = r0; r < r1; ++r) {
      ConstRow<T> xr(x + r * C, C);
      Row<T> yr(y + r * C, C);
      const T rs = T(1) / std::sqrt(xr.square().sum() / T(C) + eps);
      rstd[r] = rs;
      if (w) {
        yr = xr * rs * ConstRow<T>(w, C);
      } else {
        yr = xr * rs;
      }
    }
  });
}

// With xhat = x * rstd and dxhat = gy * w:
//   gx = rstd * (dxhat - xhat * mean(dxhat * xhat)),  gw = sum over rows of gy * xhat
template <class T>
void rms_norm_backward_rows(const T* gy, const T* x, const T* w, const T* rstd, T* gx, T* gw, int64_t N,
                            int64_t C) {
  Partials<T> pw(gw != nullptr, C);
  const int used = parallel_chunks(N, N * C, [&](int64_t r0, int64_t r1, int id) {
    T* accw = pw.of(id);
    for (int64_t r = r0; r < r1; ++r) {
      ConstRow<T> xr(x + r * C, C), gr(gy + r * C, C);
      Row<T> gxr(gx + r * C, C);
      const T rs = rstd[r];
      auto xhat = xr * rs;
      if (w) {
        ConstRow<T> wr(w, C);
        gxr = rs * (gr * wr - xhat * ((gr * wr * xhat).sum() / T(C)));
      } else {
        gxr = rs * (gr - xhat * ((gr * xhat).sum() / T(C)));
      }
      if (accw) Row<T>(accw, C) += gr * xhat;
    }
  });
  pw.sum_into(gw, used);
}

}  // namespace

void CpuBackend::softmax(const Tensor& x, const Tensor& out, bool log) {
  const kern::RowLayout rows = kern::softmax_layout(x, out);
  const int64_t N = rows.N, C = rows.C;
  visit_floating(x.dtype(), "softmax", [&](auto tag) {
    using T = decltype(tag);
    softmax_rows<T>(x.data<T>(), out.data<T>(), N, C, log);
  });
}

void CpuBackend::softmax_backward(const Tensor& y, const Tensor& gy, const Tensor& gx, bool log) {
  kern::assert_backward_args("softmax_backward", y, gy, gx);
  const kern::RowLayout rows = kern::softmax_layout(y, gx);
  const int64_t N = rows.N, C = rows.C;
  visit_floating(y.dtype(), "softmax_backward", [&](auto tag) {
    using T = decltype(tag);
    softmax_backward_rows<T>(y.data<T>(), gy.data<T>(), gx.data<T>(), N, C, log);
  });
}

void CpuBackend::layer_norm(const Tensor& x, const Tensor& weight, const Tensor& bias, double eps, const Tensor& y,
                            const Tensor& mean, const Tensor& rstd) {
  const kern::RowLayout rows = kern::norm_layout("layer_norm", x, y, mean, rstd);
  const int64_t N = rows.N, C = rows.C;
  visit_floating(x.dtype(), "layer_norm", [&](auto tag) {
    using T = decltype(tag);
    layer_norm_rows<T>(x.data<T>(), data_or_null<T>(weight), data_or_null<T>(bias), T(eps), y.data<T>(),
                       mean.data<T>(), rstd.data<T>(), N, C);
  });
}

void CpuBackend::layer_norm_backward(const Tensor& gy, const Tensor& x, const Tensor& weight, const Tensor& mean,
                                     const Tensor& rstd, const Tensor& gx, const Tensor& gweight,
                                     const Tensor& gbias, bool add_to_gx) {
  kern::assert_backward_args("layer_norm_backward", gy, x, gx);
  const int64_t C = kern::row_length(x), N = mean.numel();
  visit_floating(x.dtype(), "layer_norm_backward", [&](auto tag) {
    using T = decltype(tag);
    layer_norm_backward_rows<T>(gy.data<T>(), x.data<T>(), data_or_null<T>(weight), mean.data<T>(),
                                rstd.data<T>(), gx.data<T>(), gweight.defined() ? gweight.data<T>() : nullptr,
                                gbias.defined() ? gbias.data<T>() : nullptr, N, C, add_to_gx);
  });
}

void CpuBackend::rms_norm(const Tensor& x, const Tensor& weight, double eps, const Tensor& y, const Tensor& rstd) {
  const kern::RowLayout rows = kern::norm_layout("rms_norm", x, y, Tensor(), rstd);
  const int64_t N = rows.N, C = rows.C;
  visit_floating(x.dtype(), "rms_norm", [&](auto tag) {
    using T = decltype(tag);
    rms_norm_rows<T>(x.data<T>(), data_or_null<T>(weight), T(eps), y.data<T>(), rstd.data<T>(), N, C);
  });
}

void CpuBackend::rms_norm_backward(const Tensor& gy, const Tensor& x, const Tensor& weight, const Tensor& rstd,
                                   const Tensor& gx, const Tensor& gweight) {
  kern::assert_backward_args("rms_norm_backward", gy, x, gx);
  const int64_t C = kern::row_length(x), N = rstd.numel();
  visit_floating(x.dtype(), "rms_norm_backward", [&](auto tag) {
    using T = decltype(tag);
    rms_norm_backward_rows<T>(gy.data<T>(), x.data<T>(), data_or_null<T>(weight), rstd.data<T>(), gx.data<T>(),
                              gweight.defined() ? gweight.data<T>() : nullptr, N, C);
  });
}

}  // namespace dg::cpu
