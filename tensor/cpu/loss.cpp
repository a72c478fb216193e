// CPU softmax-cross-entropy, fused with log-softmax: one pass over each row of
// logits gives the loss, and the backward is one more pass, without ever
// materialising the (N, V) log-probabilities.
//
// Legend: N = rows (tokens), V = classes (vocab), s = label smoothing,
// t = target class of a row, lse = log(sum(exp(x))) of a row.
//
//   loss[n]   = (1-s)*(lse - x[t]) + s*(lse - mean(x))     (0 when t == ignore_index)
//   dlogits   = g[n] * (softmax(x) - (1-s)*onehot(t) - s/V)
//
// Rows are independent: OpenMP over rows, Eigen array maps inside a row
// (max, exp and sum are SIMD-vectorised).
#include <cmath>

#include "tensor/cpu/cpu_backend.h"
#include "tensor/cpu/eigen.h"
#include "tensor/cpu/loops.h"
#include "tensor/kernels/row_contracts.h"

namespace dg::cpu {

namespace {

template <class T>
using Row = Eigen::Map<const Eigen::Array<T, Eigen::Dynamic, 1>>;
template <class T>
using MutRow = Eigen::Map<Eigen::Array<T, Eigen::Dynamic, 1>>;

}  // namespace

// logits (N, V) contiguous, target (N) i64 -> loss (N), lse (N) contiguous.
// lse is the numerically stable m + log(sum(exp(x - m))), m = max(x); it is
// written for ignored rows too (the backward does not read it there).
void CpuBackend::cross_entropy(const Tensor& logits, const Tensor& target, int64_t ignore_index,
                               double label_smoothing, const Tensor& loss, const Tensor& lse) {
  const kern::RowLayout rows = kern::cross_entropy_layout(logits, target, loss, lse);
  const int64_t N = rows.N, V = rows.C;
  const int64_t ts = target.strides()[0];
  const int64_t* tp = target.data<int64_t>();
  visit_floating(logits.dtype(), "cross_entropy", [&](auto tag) {
    using T = decltype(tag);
    const T* xp = logits.data<T>();
    T *lp = loss.data<T>(), *sp = lse.data<T>();
    const T s = static_cast<T>(label_smoothing);
    parallel_for(N, N * V, [&](int64_t n) {
      Row<T> x(xp + n * V, V);
      // The loss is formed from shifted logits, log(sum exp(x - m)) - (x[t] - m),
      // never as lse - x[t]: with logits near 1000 in f32 the latter loses
      // every digit below 6e-5 to the size of lse itself.
      const T m = x.maxCoeff();
      const T log_sum = std::log((x - m).exp().sum());
      sp[n] = m + log_sum;
      const int64_t t = tp[n * ts];  // in [0, V): checked by the caller (no throwing inside OpenMP)
      if (t == ignore_index) {
        lp[n] = 0;
        return;
      }
      const T nll = log_sum - (x[t] - m);
      lp[n] = s == 0 ? nll : (1 - s) * nll + s * (log_sum - (x.mean() - m));
    });
  });
}

// glogits (N, V) contiguous = gloss[n] * (exp(x - lse) - (1-s)*onehot(t) - s/V);
// zero rows where t == ignore_index. gloss (N) may be strided (stride 0 when
// it comes from the backward of a mean or sum).
void CpuBackend::cross_entropy_backward(const Tensor& logits, const Tensor& target, const Tensor& lse,
                                        const Tensor& gloss, int64_t ignore_index, double label_smoothing,
                                        const Tensor& glogits) {
  const kern::RowLayout rows = kern::cross_entropy_backward_layout(logits, target, lse, gloss, glogits);
  const int64_t N = rows.N, V = rows.C;
  const int64_t ts = target.strides()[0], gs = gloss.strides()[0];
  const int64_t* tp = target.data<int64_t>();
  visit_floating(logits.dtype(), "cross_entropy_backward", [&](auto tag) {
    using T = decltype(tag);
    const T *xp = logits.data<T>(), *sp = lse.data<T>(), *gp = gloss.data<T>();
    T* dp = glogits.data<T>();
    const T s = static_cast<T>(label_smoothing), uniform = s / static_cast<T>(V);
    parallel_for(N, N * V, [&](int64_t n) {
      MutRow<T> dx(dp + n * V, V);
      const int64_t t = tp[n * ts];
      if (t == ignore_index) {
        dx.setZero();
        return;
      }
      const T g = gp[n * gs];
      dx = ((Row<T>(xp + n * V, V) - sp[n]).exp() - uniform) * g;
      dx[t] -= g * (1 - s);
    });
  });
}

}  // namespace dg::cpu
