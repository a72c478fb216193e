// Fused optimizer kernels: the AdamW step.
//
// Legend: n = number of elements; p (param), g (grad), m (exp_avg) and
// v (exp_avg_sq) are contiguous arrays of n elements of one dtype (f32/f64).
//
// Why fused: written with elementwise kernels, one AdamW step is about ten
// passes over memory (p*=, m*=, m+=, v*=, g*g, v+=, sqrt, /, +eps, p+=) and
// several temporaries of n elements; here it is one pass. The arrays are
// walked in blocks of kBlock elements (p, g, m, v of one block fit in L1),
// each block going through the four statements below on Eigen array maps,
// which vectorise; blocks are spread over OpenMP threads above
// worth_parallel. Every element is independent, so the result does not
// depend on the thread count.
//
// Order of operations follows torch.optim.AdamW (PyTorch 1.13,
// _single_tensor_adamw) so that f32 results match to rounding: scalars are
// computed in double and rounded to T once, then
//   p = p * (1 - lr*wd)
//   m = m*beta1 + (1-beta1)*g                   (exp_avg.mul_(b1).add_(g, alpha=1-b1))
//   v = v*beta2 + ((1-beta2)*g)*g               (addcmul_: value * t1 * t2)
//   p = p + (-lr/bc1 * m) / (sqrt(v)/sqrt(bc2) + eps)   (addcdiv_: value * t1 / t2)
// with bc1 = 1 - beta1^t, bc2 = 1 - beta2^t (Python's float pow, i.e. C pow).
#include <algorithm>
#include <cmath>

#include "tensor/cpu/cpu_backend.h"
#include "tensor/cpu/eigen.h"
#include "tensor/cpu/loops.h"

namespace dg::cpu {

namespace {

template <class T>
using Block = Eigen::Map<Eigen::Array<T, Eigen::Dynamic, 1>>;
template <class T>
using ConstBlock = Eigen::Map<const Eigen::Array<T, Eigen::Dynamic, 1>>;

// 4 arrays x 2048 x 8 bytes = 64 KiB at most: L1/L2-resident between the statements.
constexpr int64_t kBlock = 2048;

struct AdamWScalars {
  double decay, beta1, one_minus_beta1, beta2, one_minus_beta2, neg_step_size, bc2_sqrt, eps;
};

template <class T>
void adamw_blocks(T* p, const T* g, T* m, T* v, int64_t n, const AdamWScalars& s) {
  const T decay = T(s.decay), b1 = T(s.beta1), c1 = T(s.one_minus_beta1), b2 = T(s.beta2),
          c2 = T(s.one_minus_beta2), neg_step = T(s.neg_step_size), bc2_sqrt = T(s.bc2_sqrt), eps = T(s.eps);
  parallel_chunks(n, n, [&](int64_t begin, int64_t end, int) {
    for (int64_t b = begin; b < end; b += kBlock) {
      const int64_t len = std::min(kBlock, end - b);
      Block<T> pb(p + b, len), mb(m + b, len), vb(v + b, len);
      ConstBlock<T> gb(g + b, len);
      pb *= decay;
      mb = mb * b1 + c1 * gb;
      vb = vb * b2 + c2 * gb * gb;
      pb += neg_step * mb / (vb.sqrt() / bc2_sqrt + eps);
    }
  });
}

}  // namespace

void CpuBackend::adamw_step(const Tensor& param, const Tensor& grad, const Tensor& exp_avg, const Tensor& exp_avg_sq,
                            double lr, double beta1, double beta2, double eps, double weight_decay, int64_t step) {
  DG_ASSERT(step >= 1, "adamw_step: step {} (the first update is step 1)", step);
  DG_ASSERT(param.is_contiguous() && grad.is_contiguous() && exp_avg.is_contiguous() && exp_avg_sq.is_contiguous(),
            "adamw_step: every tensor must be contiguous");
  DG_ASSERT(grad.shape() == param.shape() && exp_avg.shape() == param.shape() && exp_avg_sq.shape() == param.shape(),
            "adamw_step: shapes differ");
  DG_ASSERT(grad.dtype() == param.dtype() && exp_avg.dtype() == param.dtype() && exp_avg_sq.dtype() == param.dtype(),
            "adamw_step: dtypes differ");
  const double t = static_cast<double>(step);
  const double bc1 = 1.0 - std::pow(beta1, t), bc2 = 1.0 - std::pow(beta2, t);
  const AdamWScalars s{1.0 - lr * weight_decay, beta1, 1.0 - beta1, beta2, 1.0 - beta2, -(lr / bc1),
                       std::sqrt(bc2), eps};
  const int64_t n = param.numel();
  switch (param.dtype()) {
    case DType::f32:
      adamw_blocks(param.data<float>(), grad.data<float>(), exp_avg.data<float>(), exp_avg_sq.data<float>(), n, s);
      break;
    case DType::f64:
      adamw_blocks(param.data<double>(), grad.data<double>(), exp_avg.data<double>(), exp_avg_sq.data<double>(), n,
                   s);
      break;
    default:
      DG_ASSERT(false, "adamw_step: dtype {} is not a floating type", param.dtype());
  }
}

}  // namespace dg::cpu
