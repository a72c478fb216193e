// STUB: to be replaced by the kernels of this family (see cuda_backend.h).
#include "cuda/common.cuh"

namespace dg::cuda {

void CudaBackend::softmax(const Tensor& x, const Tensor& out, bool log) {
  throw Error("cuda: softmax is not implemented yet");
}

void CudaBackend::softmax_backward(const Tensor& y, const Tensor& gy, const Tensor& gx, bool log) {
  throw Error("cuda: softmax_backward is not implemented yet");
}

void CudaBackend::layer_norm(const Tensor& x, const Tensor& weight, const Tensor& bias, double eps, const Tensor& y, const Tensor& mean, const Tensor& rstd) {
  throw Error("cuda: layer_norm is not implemented yet");
}

void CudaBackend::layer_norm_backward(const Tensor& gy, const Tensor& x, const Tensor& weight, const Tensor& mean, const Tensor& rstd, const Tensor& gx, const Tensor& gweight, const Tensor& gbias) {
  throw Error("cuda: layer_norm_backward is not implemented yet");
}

void CudaBackend::rms_norm(const Tensor& x, const Tensor& weight, double eps, const Tensor& y, const Tensor& rstd) {
  throw Error("cuda: rms_norm is not implemented yet");
}

void CudaBackend::rms_norm_backward(const Tensor& gy, const Tensor& x, const Tensor& weight, const Tensor& rstd, const Tensor& gx, const Tensor& gweight) {
  throw Error("cuda: rms_norm_backward is not implemented yet");
}

void CudaBackend::cross_entropy(const Tensor& logits, const Tensor& target, int64_t ignore_index, double label_smoothing, const Tensor& loss, const Tensor& lse) {
  throw Error("cuda: cross_entropy is not implemented yet");
}

void CudaBackend::cross_entropy_backward(const Tensor& logits, const Tensor& target, const Tensor& lse, const Tensor& gloss, int64_t ignore_index, double label_smoothing, const Tensor& glogits) {
  throw Error("cuda: cross_entropy_backward is not implemented yet");
}

}  // namespace dg::cuda
