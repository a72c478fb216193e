// STUB: to be replaced by the kernels of this family (see cuda_backend.h).
#include "cuda/common.cuh"

namespace dg::cuda {

void CudaBackend::reduce(ReduceOp op, const Tensor& x, const Tensor& out) {
  throw Error("cuda: reduce is not implemented yet");
}

void CudaBackend::reduce_arg(ReduceOp op, const Tensor& x, int64_t dim, const Tensor& values, const Tensor& indices) {
  throw Error("cuda: reduce_arg is not implemented yet");
}

void CudaBackend::topk(const Tensor& x, int64_t k, int64_t dim, bool largest, bool sorted, const Tensor& values, const Tensor& indices) {
  throw Error("cuda: topk is not implemented yet");
}

}  // namespace dg::cuda
