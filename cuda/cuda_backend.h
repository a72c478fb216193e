#pragma once
// The CUDA backend: one CudaBackend per GPU, registered with tensor/'s registry
// (tensor/registry.cpp calls dg::cuda::cuda_backend). Kernels are split by
// family across cuda/*.cu, like tensor/cpu/:
//   backend.cu     device discovery, streams, the caching allocator, host copies
//   elementwise.cu fill, arange, strided copy, unary/binary/where, random fills, AdamW
//   reduce.cu      reductions, arg-reductions, top-k
//   index.cu       index_select, index_add, gather, scatter_add
//   blas.cu        matmul on cuBLAS
//   nn.cu          softmax, layer norm, RMS norm, cross-entropy
//   attention.cu   dense, varlen and fused-qkv attention, forward and backward
// Only the registry and cuda/ include this header.
#include "tensor/backend.h"

namespace dg::cuda {

class CudaBackend final : public Backend {
 public:
  explicit CudaBackend(int index);
  ~CudaBackend() override;
  Device device() const override { return Device::cuda(index_); }
  int index() const { return index_; }

  void* allocate(size_t nbytes) override;
  void deallocate(void* ptr, size_t nbytes) override;
  void empty_cache() override;
  size_t bytes_in_use() const override;
  void copy_from_host(const void* src, const Tensor& dst) override;
  void copy_to_host(const Tensor& src, void* dst) override;
  void synchronize() override;

  void fill(const Tensor& out, double value) override;
  void arange(const Tensor& out, double start, double step) override;
  void copy(const Tensor& src, const Tensor& dst) override;

  void unary(UnaryOp op, const Tensor& x, const Tensor& out, UnaryParams p) override;
  void unary_grad(UnaryOp op, const Tensor& g, const Tensor& x, const Tensor& y, const Tensor& out,
                  UnaryParams p) override;
  void unary_grad2(UnaryOp op, const Tensor& x, const Tensor& y, const Tensor& out, UnaryParams p) override;
  void binary(BinaryOp op, const Tensor& a, const Tensor& b, const Tensor& out) override;
  void where(const Tensor& cond, const Tensor& a, const Tensor& b, const Tensor& out) override;

  void reduce(ReduceOp op, const Tensor& x, const Tensor& out) override;
  void reduce_arg(ReduceOp op, const Tensor& x, int64_t dim, const Tensor& values, const Tensor& indices) override;

  void matmul(const Tensor& a, const Tensor& b, const Tensor& out, bool trans_a, bool trans_b, double alpha,
              double beta) override;

  void index_select(const Tensor& x, int64_t dim, const Tensor& idx, const Tensor& out) override;
  void index_add(const Tensor& out, int64_t dim, const Tensor& idx, const Tensor& src, double alpha) override;
  void gather(const Tensor& x, int64_t dim, const Tensor& idx, const Tensor& out) override;
  void scatter_add(const Tensor& out, int64_t dim, const Tensor& idx, const Tensor& src) override;
  // cuda/checks.cu: a kernel records the first bad value on the device;
  // raise_pending_errors() (checks.cu) throws it at the next synchronize().
  void check_indices(const Tensor& idx, int64_t size, std::string_view message,
                     std::optional<int64_t> skip) override;
  void topk(const Tensor& x, int64_t k, int64_t dim, bool largest, bool sorted, const Tensor& values,
            const Tensor& indices) override;

  void fill_uniform(const Tensor& out, double lo, double hi, uint64_t seed, uint64_t offset) override;
  void fill_normal(const Tensor& out, double mean, double std, uint64_t seed, uint64_t offset) override;
  void fill_bernoulli(const Tensor& out, double p, uint64_t seed, uint64_t offset) override;

  void softmax(const Tensor& x, const Tensor& out, bool log) override;
  void softmax_backward(const Tensor& y, const Tensor& gy, const Tensor& gx, bool log) override;
  void layer_norm(const Tensor& x, const Tensor& weight, const Tensor& bias, double eps, const Tensor& y,
                  const Tensor& mean, const Tensor& rstd) override;
  void layer_norm_backward(const Tensor& gy, const Tensor& x, const Tensor& weight, const Tensor& mean,
                           const Tensor& rstd, const Tensor& gx, const Tensor& gweight, const Tensor& gbias,
                           bool add_to_gx) override;
  void rms_norm(const Tensor& x, const Tensor& weight, double eps, const Tensor& y, const Tensor& rstd) override;
  void rms_norm_backward(const Tensor& gy, const Tensor& x, const Tensor& weight, const Tensor& rstd,
                         const Tensor& gx, const Tensor& gweight) override;
  void cross_entropy(const Tensor& logits, const Tensor& target, int64_t ignore_index, double label_smoothing,
                     const Tensor& loss, const Tensor& lse) override;
  void cross_entropy_backward(const Tensor& logits, const Tensor& target, const Tensor& lse, const Tensor& gloss,
                              int64_t ignore_index, double label_smoothing, const Tensor& glogits) override;
  void attention(const Tensor& q, const Tensor& k, const Tensor& v, double scale, bool causal, const Tensor& out,
                 const Tensor& lse) override;
  void attention_backward(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& out, const Tensor& lse,
                          const Tensor& gout, double scale, bool causal, const Tensor& gq, const Tensor& gk,
                          const Tensor& gv) override;
  void attention_varlen(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& cu_seqlens, double scale,
                        const Tensor& out, const Tensor& lse) override;
  void attention_varlen_backward(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& cu_seqlens,
                                 const Tensor& out, const Tensor& lse, const Tensor& gout, double scale,
                                 const Tensor& gq, const Tensor& gk, const Tensor& gv) override;
  void attention_qkv(const Tensor& qkv, const Tensor& cu_seqlens, int64_t H, double scale, const Tensor& out,
                     const Tensor& lse) override;
  void attention_qkv_backward(const Tensor& qkv, const Tensor& cu_seqlens, int64_t H, const Tensor& out,
                              const Tensor& lse, const Tensor& gout, double scale, const Tensor& gqkv) override;
  void adamw_step(const Tensor& param, const Tensor& grad, const Tensor& exp_avg, const Tensor& exp_avg_sq, double lr,
                  double beta1, double beta2, double eps, double weight_decay, int64_t step) override;

  // Allocator statistics (bytes): peak of bytes_in_use() since the last reset,
  // and bytes held in the cache (free blocks not returned to the driver).
  size_t peak_bytes_in_use() const;
  void reset_peak_bytes_in_use();
  size_t bytes_cached() const;

  struct Impl;  // stream, cuBLAS handle, allocator: defined in backend.cu
  Impl& impl() const { return *impl_; }

 private:
  int index_;
  Impl* impl_;
};

// The backend of GPU `index`, created on first use; null when this machine has
// no such GPU (no driver, no device, or index past the device count).
Backend* cuda_backend(int index);
// GPUs visible to this process (0 without a driver or device).
int cuda_device_count();

// Throws the dg::Error of the first index check (check_indices, cuda/checks.cu)
// that failed on GPU `device` since the last call, after waiting for that
// check; returns at once, with no device traffic, when no check is pending.
// synchronize() and copy_to_host() call it, so a bad index surfaces at the
// next point where the host looks at device data.
void raise_pending_errors(int device);

}  // namespace dg::cuda
