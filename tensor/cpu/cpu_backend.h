#pragma once
// The CPU backend. Kernels are split by family across tensor/cpu/*.cpp:
//   memory.cpp (allocator, fill, copy), elementwise.cpp, reduce.cpp,
//   matmul.cpp (GEMM: OpenBLAS or Eigen), index.cpp, random.cpp, nn.cpp (fused kernels),
//   attention.cpp, optim.cpp (fused AdamW step).
#include "tensor/backend.h"

namespace dg::cpu {

class CpuBackend final : public Backend {
 public:
  CpuBackend();
  ~CpuBackend() override;
  Device device() const override { return Device::cpu(); }

  void* allocate(size_t nbytes) override;
  void deallocate(void* ptr, size_t nbytes) override;
  void empty_cache() override;
  size_t bytes_in_use() const override;
  size_t bytes_cached() const;  // freed blocks kept for reuse
  void copy_from_host(const void* src, const Tensor& dst) override;
  void copy_to_host(const Tensor& src, void* dst) override;
  void synchronize() override {}

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
  bool index_add_rows(const Tensor& out, const Tensor& idx, const Tensor& src, const Tensor& w) override;
  bool index_add_rows_backward(const Tensor& g, const Tensor& idx, const Tensor& src, const Tensor& w,
                               const Tensor& gsrc, const Tensor& gw) override;
  bool attention_qkv_rows(const Tensor& qkv, const Tensor& cu_seqlens, const Tensor& rows, int64_t H, double scale,
                          const Tensor& out, const Tensor& lse) override;
  bool attention_qkv_rows_backward(const Tensor& qkv, const Tensor& cu_seqlens, const Tensor& rows, int64_t H,
                                   const Tensor& out, const Tensor& lse, const Tensor& gout, double scale,
                                   const Tensor& gqkv) override;
  void adamw_step(const Tensor& param, const Tensor& grad, const Tensor& exp_avg, const Tensor& exp_avg_sq, double lr,
                  double beta1, double beta2, double eps, double weight_decay, int64_t step) override;

 private:
  struct Cache;
  Cache* cache_;
};

CpuBackend& cpu_backend();

// C (M, N) = alpha op(A) op(B) + beta C on row-major matrices given by
// pointer and row stride (op(A) is (M, K): A stored (M, K), or (K, M) when
// trans_a; likewise op(B) is (K, N)), in the calling thread. For the small
// products inside other kernels (attention tiles): OpenBLAS when the matmul
// kernel would use it, else Eigen. Defined in matmul.cpp for f32 and f64.
template <class T>
void gemm_rows(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, T alpha, const T* a, int64_t lda,
               const T* b, int64_t ldb, T beta, T* c, int64_t ldc);

}  // namespace dg::cpu
