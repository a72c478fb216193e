// STUB: replaced by the real implementation.
#include "tensor/cpu/cpu_backend.h"

namespace dg::cpu {

void CpuBackend::matmul(const Tensor& a, const Tensor& b, const Tensor& out, bool trans_a, bool trans_b, double alpha,
              double beta) { throw Error("cpu matmul: not implemented yet"); }

}  // namespace dg::cpu
