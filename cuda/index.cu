// STUB: to be replaced by the kernels of this family (see cuda_backend.h).
#include "cuda/common.cuh"

namespace dg::cuda {

void CudaBackend::index_select(const Tensor& x, int64_t dim, const Tensor& idx, const Tensor& out) {
  throw Error("cuda: index_select is not implemented yet");
}

void CudaBackend::index_add(const Tensor& out, int64_t dim, const Tensor& idx, const Tensor& src, double alpha) {
  throw Error("cuda: index_add is not implemented yet");
}

void CudaBackend::gather(const Tensor& x, int64_t dim, const Tensor& idx, const Tensor& out) {
  throw Error("cuda: gather is not implemented yet");
}

void CudaBackend::scatter_add(const Tensor& out, int64_t dim, const Tensor& idx, const Tensor& src) {
  throw Error("cuda: scatter_add is not implemented yet");
}

}  // namespace dg::cuda
