// STUB: replaced by the real implementation.
#include "tensor/cpu/cpu_backend.h"

namespace dg::cpu {

void CpuBackend::cross_entropy(const Tensor&, const Tensor&, int64_t, double, const Tensor&, const Tensor&) {
  throw Error("cpu cross_entropy: not implemented yet");
}
void CpuBackend::cross_entropy_backward(const Tensor&, const Tensor&, const Tensor&, const Tensor&, int64_t, double,
                                        const Tensor&) {
  throw Error("cpu cross_entropy_backward: not implemented yet");
}

}  // namespace dg::cpu
