// STUB: replaced by the real implementation.
#include "tensor/cpu/cpu_backend.h"

namespace dg::cpu {

void CpuBackend::attention(const Tensor& q, const Tensor& k, const Tensor& v, double scale, bool causal, const Tensor& out,
                 const Tensor& lse) { throw Error("cpu attention: not implemented yet"); }
void CpuBackend::attention_backward(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& out, const Tensor& lse,
                          const Tensor& gout, double scale, bool causal, const Tensor& gq, const Tensor& gk,
                          const Tensor& gv) { throw Error("cpu attention_backward: not implemented yet"); }

}  // namespace dg::cpu
