// STUB: replaced by the real implementation.
#include "tensor/cpu/cpu_backend.h"

namespace dg::cpu {

void CpuBackend::index_select(const Tensor& x, int64_t dim, const Tensor& idx, const Tensor& out) { throw Error("cpu index_select: not implemented yet"); }
void CpuBackend::index_add(const Tensor& out, int64_t dim, const Tensor& idx, const Tensor& src, double alpha) { throw Error("cpu index_add: not implemented yet"); }
void CpuBackend::gather(const Tensor& x, int64_t dim, const Tensor& idx, const Tensor& out) { throw Error("cpu gather: not implemented yet"); }
void CpuBackend::scatter_add(const Tensor& out, int64_t dim, const Tensor& idx, const Tensor& src) { throw Error("cpu scatter_add: not implemented yet"); }
void CpuBackend::topk(const Tensor& x, int64_t k, int64_t dim, bool largest, bool sorted, const Tensor& values,
            const Tensor& indices) { throw Error("cpu topk: not implemented yet"); }

}  // namespace dg::cpu
