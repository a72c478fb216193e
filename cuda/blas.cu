// STUB: to be replaced by the kernels of this family (see cuda_backend.h).
#include "cuda/common.cuh"

namespace dg::cuda {

void CudaBackend::matmul(const Tensor& a, const Tensor& b, const Tensor& out, bool trans_a, bool trans_b, double alpha, double beta) {
  throw Error("cuda: matmul is not implemented yet");
}

}  // namespace dg::cuda
