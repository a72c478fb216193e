// STUB: replaced by the real implementation.
#include "tensor/cpu/cpu_backend.h"

namespace dg::cpu {

void CpuBackend::cross_entropy(const Tensor& logits, const Tensor& target, int64_t ignore_index, double label_smoothing,
void CpuBackend::cross_entropy_backward(const Tensor& logits, const Tensor& target, const Tensor& lse, const Tensor& gloss,

}  // namespace dg::cpu
