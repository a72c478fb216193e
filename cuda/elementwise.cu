// STUB: to be replaced by the kernels of this family (see cuda_backend.h).
#include "cuda/common.cuh"

namespace dg::cuda {

void CudaBackend::fill(const Tensor& out, double value) {
  throw Error("cuda: fill is not implemented yet");
}

void CudaBackend::arange(const Tensor& out, double start, double step) {
  throw Error("cuda: arange is not implemented yet");
}

void CudaBackend::copy(const Tensor& src, const Tensor& dst) {
  throw Error("cuda: copy is not implemented yet");
}

void CudaBackend::unary(UnaryOp op, const Tensor& x, const Tensor& out, UnaryParams p) {
  throw Error("cuda: unary is not implemented yet");
}

void CudaBackend::unary_grad(UnaryOp op, const Tensor& g, const Tensor& x, const Tensor& y, const Tensor& out, UnaryParams p) {
  throw Error("cuda: unary_grad is not implemented yet");
}

void CudaBackend::unary_grad2(UnaryOp op, const Tensor& x, const Tensor& y, const Tensor& out, UnaryParams p) {
  throw Error("cuda: unary_grad2 is not implemented yet");
}

void CudaBackend::binary(BinaryOp op, const Tensor& a, const Tensor& b, const Tensor& out) {
  throw Error("cuda: binary is not implemented yet");
}

void CudaBackend::where(const Tensor& cond, const Tensor& a, const Tensor& b, const Tensor& out) {
  throw Error("cuda: where is not implemented yet");
}

void CudaBackend::fill_uniform(const Tensor& out, double lo, double hi, uint64_t seed, uint64_t offset) {
  throw Error("cuda: fill_uniform is not implemented yet");
}

void CudaBackend::fill_normal(const Tensor& out, double mean, double std, uint64_t seed, uint64_t offset) {
  throw Error("cuda: fill_normal is not implemented yet");
}

void CudaBackend::fill_bernoulli(const Tensor& out, double p, uint64_t seed, uint64_t offset) {
  throw Error("cuda: fill_bernoulli is not implemented yet");
}

void CudaBackend::adamw_step(const Tensor& param, const Tensor& grad, const Tensor& exp_avg, const Tensor& exp_avg_sq, double lr, double beta1, double beta2, double eps, double weight_decay, int64_t step) {
  throw Error("cuda: adamw_step is not implemented yet");
}

}  // namespace dg::cuda
