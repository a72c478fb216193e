// STUB: replaced by the real implementation.
#include "tensor/cpu/cpu_backend.h"

namespace dg::cpu {

void CpuBackend::reduce(ReduceOp op, const Tensor& x, const Tensor& out) { throw Error("cpu reduce: not implemented yet"); }
void CpuBackend::reduce_arg(ReduceOp op, const Tensor& x, int64_t dim, const Tensor& values, const Tensor& indices) { throw Error("cpu reduce_arg: not implemented yet"); }

}  // namespace dg::cpu
