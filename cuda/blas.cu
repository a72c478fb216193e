// Batched matmul on cuBLAS: out[b] = alpha * op(a[b]) @ op(b[b]) + beta * out[b].
//
// Legend: a (B, M, K) or, with trans_a, (B, K, M); b (B, K, N) or (B, N, K);
// out (B, M, N) contiguous. Each input matrix is row- or column-major with any
// batch stride, 0 included (tensor/backend.h).
//
// The row-major product becomes one column-major cublasGemmStridedBatchedEx
// call computing out^T = op(b)^T op(a)^T (cuda/linalg_plan.h: plan_gemm, whose
// mapping tests/test_cuda_plans.cpp checks against the CPU backend). An operand
// that is neither row- nor column-major (a stride-0 dim inside the matrix) is
// made contiguous first.
//
// Precision: f32 is exact f32 (CUBLAS_COMPUTE_32F) unless dg::allow_tf32()
// (CUBLAS_COMPUTE_32F_FAST_TF32, as PyTorch's allow_tf32); f64 is
// CUBLAS_COMPUTE_64F. beta = 0 never reads out (cuBLAS's rule), so NaN there
// is ignored. Integer dtypes (no cuBLAS GEMM for them) run a plain kernel that
// evaluates the same plan element by element (colmajor_dot).
#include "cuda/common.cuh"
#include "cuda/linalg_plan.h"
#include "cuda/shape_text.h"
#include "tensor/creation.h"
#include "tensor/settings.h"

namespace dg::cuda {

namespace {

// ---------------------------------------------------------------- kernels

// Integer GEMM: one thread per element of out, the column-major product of
// the plan (C[i + j*ldc] with i < m = N, j < n = M), as Eigen's: alpha * dot,
// plus beta * out unless beta is 0.
template <class T>
__global__ void gemm_integer_kernel(GemmPlan p, const T* A, const T* Bm, T* C, T alpha, T beta, bool use_beta) {
  const int64_t per_batch = p.m * p.n, total = per_batch * p.batch;
  for (int64_t e = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; e < total; e += int64_t{gridDim.x} * blockDim.x) {
    const int64_t s = e / per_batch, rem = e % per_batch, i = rem % p.m, j = rem / p.m;
    T& c = C[s * p.stride_c + i + j * p.ldc];
    const T dot = colmajor_dot(p, A + s * p.stride_a, Bm + s * p.stride_b, i, j);
    c = use_beta ? T(alpha * dot + beta * c) : T(alpha * dot);
  }
}

// out = beta * out (an empty inner dimension, K = 0), as the CPU: in double, then cast.
template <class T>
__global__ void scale_kernel(T* out, int64_t n, double beta) {
  for (int64_t e = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; e < n; e += int64_t{gridDim.x} * blockDim.x)
    out[e] = static_cast<T>(static_cast<double>(out[e]) * beta);
}

// ---------------------------------------------------------------- launchers

GemmOperand operand_of(const Tensor& t) {
  GemmOperand o{};
  for (int d = 0; d < 3; ++d) o.shape[d] = t.shape()[d], o.strides[d] = t.strides()[d];
  return o;
}

cublasOperation_t op_of(bool trans) { return trans ? CUBLAS_OP_T : CUBLAS_OP_N; }

template <class T>
void cublas_gemm(const GemmPlan& p, const Tensor& a, const Tensor& b, const Tensor& out, double alpha, double beta) {
  constexpr bool kDouble = std::is_same_v<T, double>;
  const cudaDataType type = kDouble ? CUDA_R_64F : CUDA_R_32F;
  const cublasComputeType_t compute =
      kDouble ? CUBLAS_COMPUTE_64F : (allow_tf32() ? CUBLAS_COMPUTE_32F_FAST_TF32 : CUBLAS_COMPUTE_32F);
  const T al = static_cast<T>(alpha), be = static_cast<T>(beta);  // scalars of the compute type
  DG_CUBLAS_CHECK(cublasGemmStridedBatchedEx_64(cublas_handle(out), op_of(p.transa), op_of(p.transb), p.m, p.n, p.k, &al,
                                             b.raw_data(), type, p.lda, p.stride_a, a.raw_data(), type, p.ldb,
                                             p.stride_b, &be, out.raw_data(), type, p.ldc, p.stride_c, p.batch,
                                             compute, CUBLAS_GEMM_DEFAULT),
                  fmt::format("matmul {} {} -> {}: cublasGemmStridedBatchedEx_64", shape_text(a.shape()),
                              shape_text(b.shape()), shape_text(out.shape()))
                      .c_str());
}

template <class T>
void integer_gemm(const GemmPlan& p, const Tensor& a, const Tensor& b, const Tensor& out, double alpha, double beta) {
  const int64_t total = p.m * p.n * p.batch;
  gemm_integer_kernel<T><<<blocks_for(total), kThreads, 0, stream_of(out)>>>(
      p, dptr<const T>(b), dptr<const T>(a), dptr<T>(out), static_cast<T>(alpha), static_cast<T>(beta), beta != 0.0);
  DG_CUDA_LAUNCHED("cuda matmul (integer)");
}

}  // namespace

void CudaBackend::matmul(const Tensor& a, const Tensor& b, const Tensor& out, bool trans_a, bool trans_b, double alpha,
                         double beta) {
  DG_ASSERT(a.dim() == 3 && b.dim() == 3 && out.dim() == 3 && out.is_contiguous(), "matmul kernel: {} {} -> {}",
            shape_text(a.shape()), shape_text(b.shape()), shape_text(out.shape()));
  DG_ASSERT(a.dtype() == b.dtype() && a.dtype() == out.dtype() && a.dtype() != DType::b8);
  const int64_t B = out.shape()[0], M = out.shape()[1], N = out.shape()[2];
  const int64_t K = trans_a ? a.shape()[1] : a.shape()[2];
  DG_ASSERT(a.shape()[0] == B && b.shape()[0] == B && (trans_a ? a.shape()[2] : a.shape()[1]) == M &&
            (trans_b ? b.shape()[1] : b.shape()[2]) == N && (trans_b ? b.shape()[2] : b.shape()[1]) == K,
            "matmul kernel: {} {} -> {} (trans {} {})", shape_text(a.shape()), shape_text(b.shape()),
            shape_text(out.shape()), trans_a, trans_b);
  if (out.numel() == 0) return;
  if (K == 0) {  // an empty sum: beta * out
    if (beta == 0.0) {
      DG_CUDA_CHECK(cudaMemsetAsync(out.raw_data(), 0, out.nbytes(), stream_of(out)), "cuda matmul (K = 0)");
      return;
    }
    visit_dtype(out.dtype(), [&](auto tag) {
      using T = decltype(tag);
      scale_kernel<T><<<blocks_for(out.numel()), kThreads, 0, stream_of(out)>>>(dptr<T>(out), out.numel(), beta);
    });
    DG_CUDA_LAUNCHED("cuda matmul (K = 0)");
    return;
  }
  GemmPlan p = plan_gemm(operand_of(a), operand_of(b), trans_a, trans_b);
  const Tensor ac = p.copy_a ? to_contiguous(a) : a, bc = p.copy_b ? to_contiguous(b) : b;
  if (p.copy_a || p.copy_b) p = plan_gemm(operand_of(ac), operand_of(bc), trans_a, trans_b);
  DG_ASSERT(!p.copy_a && !p.copy_b, "matmul kernel: contiguous operands must map onto cuBLAS");
  switch (out.dtype()) {
    case DType::f32: cublas_gemm<float>(p, ac, bc, out, alpha, beta); break;
    case DType::f64: cublas_gemm<double>(p, ac, bc, out, alpha, beta); break;
    case DType::i64: integer_gemm<int64_t>(p, ac, bc, out, alpha, beta); break;
    case DType::i32: integer_gemm<int32_t>(p, ac, bc, out, alpha, beta); break;
    case DType::b8: break;  // refused above
  }
}

}  // namespace dg::cuda
