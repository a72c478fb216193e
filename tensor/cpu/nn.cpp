// STUB: replaced by the real implementation.
#include "tensor/cpu/cpu_backend.h"

namespace dg::cpu {

void CpuBackend::softmax(const Tensor& x, const Tensor& out, bool log) { throw Error("cpu softmax: not implemented yet"); }
void CpuBackend::softmax_backward(const Tensor& y, const Tensor& gy, const Tensor& gx, bool log) { throw Error("cpu softmax_backward: not implemented yet"); }
void CpuBackend::layer_norm(const Tensor& x, const Tensor& weight, const Tensor& bias, double eps, const Tensor& y,
                  const Tensor& mean, const Tensor& rstd) { throw Error("cpu layer_norm: not implemented yet"); }
void CpuBackend::layer_norm_backward(const Tensor& gy, const Tensor& x, const Tensor& weight, const Tensor& mean,
                           const Tensor& rstd, const Tensor& gx, const Tensor& gweight, const Tensor& gbias) { throw Error("cpu layer_norm_backward: not implemented yet"); }
void CpuBackend::rms_norm(const Tensor& x, const Tensor& weight, double eps, const Tensor& y, const Tensor& rstd) { throw Error("cpu rms_norm: not implemented yet"); }
void CpuBackend::rms_norm_backward(const Tensor& gy, const Tensor& x, const Tensor& weight, const Tensor& rstd,
                         const Tensor& gx, const Tensor& gweight) { throw Error("cpu rms_norm_backward: not implemented yet"); }

}  // namespace dg::cpu
