#pragma once
// The AdamW update of Backend::adamw_step, written once for every backend.
//
// Order of operations follows torch.optim.AdamW (PyTorch 1.13,
// _single_tensor_adamw) so that f32 results match to rounding: the scalars
// are computed in double once per step and rounded to T, then
//   p = p * (1 - lr*wd)
//   m = m*beta1 + (1-beta1)*g                   (exp_avg.mul_(b1).add_(g, alpha=1-b1))
//   v = v*beta2 + ((1-beta2)*g)*g               (addcmul_: value * t1 * t2)
//   p = p + (-lr/bc1 * m) / (sqrt(v)/sqrt(bc2) + eps)   (addcdiv_: value * t1 / t2)
// with bc1 = 1 - beta1^t, bc2 = 1 - beta2^t (Python's float pow, i.e. C pow).
//
//   auto c = adamw_coeffs<float>(lr, beta1, beta2, eps, weight_decay, step);
//   adamw_update(p[i], g[i], m[i], v[i], c);          // one element (CUDA)
//   adamw_update(p_block, g_block, m_block, v_block, c);  // Eigen array maps (CPU)
#include <cmath>
#include <cstdint>

#include "tensor/host_device.h"
#include "tensor/tensor.h"

namespace dg {

template <class T>
struct AdamWCoeffs {
  T decay, beta1, one_minus_beta1, beta2, one_minus_beta2, neg_step_size, bc2_sqrt, eps;
};

template <class T>
AdamWCoeffs<T> adamw_coeffs(double lr, double beta1, double beta2, double eps, double weight_decay, int64_t step) {
  const double t = static_cast<double>(step);
  const double bc1 = 1.0 - std::pow(beta1, t), bc2 = 1.0 - std::pow(beta2, t);
  // 1 - lr*wd as an explicit fma: GCC with -march=native contracts it anyway;
  // spelled out, every compiler (nvcc's host pass too) gets the same scalar.
  return {T(std::fma(-lr, weight_decay, 1.0)), T(beta1), T(1.0 - beta1), T(beta2), T(1.0 - beta2), T(-(lr / bc1)),
          T(std::sqrt(bc2)), T(eps)};
}

// P and G are T (one element) or array expressions of T (a block of
// elements); sqrt is std::sqrt for scalars and found by ADL for arrays.
template <class P, class G, class T>
DG_HOST_DEVICE void adamw_update(P& p, const G& g, P& m, P& v, const AdamWCoeffs<T>& c) {
  using std::sqrt;
  p *= c.decay;
  m = m * c.beta1 + c.one_minus_beta1 * g;
  v = v * c.beta2 + c.one_minus_beta2 * g * g;
  p += c.neg_step_size * m / (sqrt(v) / c.bc2_sqrt + c.eps);
}

// The backends' checks of adamw_step's arguments (the optimizer guarantees them).
inline void assert_adamw_args(const Tensor& param, const Tensor& grad, const Tensor& exp_avg,
                              const Tensor& exp_avg_sq, int64_t step) {
  DG_ASSERT(step >= 1, "adamw_step: step {} (the first update is step 1)", step);
  DG_ASSERT(param.is_contiguous() && grad.is_contiguous() && exp_avg.is_contiguous() && exp_avg_sq.is_contiguous(),
            "adamw_step: every tensor must be contiguous");
  DG_ASSERT(grad.shape() == param.shape() && exp_avg.shape() == param.shape() && exp_avg_sq.shape() == param.shape(),
            "adamw_step: shapes differ");
  DG_ASSERT(grad.dtype() == param.dtype() && exp_avg.dtype() == param.dtype() && exp_avg_sq.dtype() == param.dtype(),
            "adamw_step: dtypes differ");
  DG_ASSERT(is_floating(param.dtype()), "adamw_step: dtype {} is not a floating type", dtype_name(param.dtype()));
}

}  // namespace dg
