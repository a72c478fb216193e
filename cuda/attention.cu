// STUB: to be replaced by the kernels of this family (see cuda_backend.h).
#include "cuda/common.cuh"

namespace dg::cuda {

void CudaBackend::attention(const Tensor& q, const Tensor& k, const Tensor& v, double scale, bool causal, const Tensor& out, const Tensor& lse) {
  throw Error("cuda: attention is not implemented yet");
}

void CudaBackend::attention_backward(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& out, const Tensor& lse, const Tensor& gout, double scale, bool causal, const Tensor& gq, const Tensor& gk, const Tensor& gv) {
  throw Error("cuda: attention_backward is not implemented yet");
}

void CudaBackend::attention_varlen(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& cu_seqlens, double scale, const Tensor& out, const Tensor& lse) {
  throw Error("cuda: attention_varlen is not implemented yet");
}

void CudaBackend::attention_varlen_backward(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& cu_seqlens, const Tensor& out, const Tensor& lse, const Tensor& gout, double scale, const Tensor& gq, const Tensor& gk, const Tensor& gv) {
  throw Error("cuda: attention_varlen_backward is not implemented yet");
}

void CudaBackend::attention_qkv(const Tensor& qkv, const Tensor& cu_seqlens, int64_t H, double scale, const Tensor& out, const Tensor& lse) {
  throw Error("cuda: attention_qkv is not implemented yet");
}

void CudaBackend::attention_qkv_backward(const Tensor& qkv, const Tensor& cu_seqlens, int64_t H, const Tensor& out, const Tensor& lse, const Tensor& gout, double scale, const Tensor& gqkv) {
  throw Error("cuda: attention_qkv_backward is not implemented yet");
}

}  // namespace dg::cuda
