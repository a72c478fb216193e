// Batched GEMM on Eigen: out[b] = alpha * op(a[b]) @ op(b[b]) + beta * out[b].
//
// Legend: a is (B, M, K) (trans_a: (B, K, M)), b is (B, K, N) (trans_b:
// (B, N, K)), out is (B, M, N) contiguous. Each input matrix is row-major
// (column stride 1) or column-major (row stride 1); batch strides are free,
// 0 meaning one matrix shared by the whole batch.
//
// Every matrix is mapped without a copy as a row-major Eigen::Map of either
// itself or its transpose (a column-major R x C matrix with outer stride s is
// the transpose of a row-major C x R one), so the four combinations reach
// Eigen's GEMM as plain or .transpose() operands, which it packs directly.
//
// Threads: one big product is split by Eigen's own OpenMP GEMM (Eigen is
// compiled with OpenMP and follows omp_get_max_threads(), i.e. DG_NUM_THREADS
// or dg::set_num_threads). A batch of small products is spread over the
// threads instead, each product then running single-threaded (Eigen does not
// nest inside a parallel region).
// GCC 12 reports a false "may be used uninitialized" inside its own AVX-512
// intrinsics when Eigen's kernels are inlined (GCC bug 105593).
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"

#include <Eigen/Core>
#include <cstdlib>
#include <cstring>
#include <string>

#include "tensor/cpu/cpu_backend.h"
#include "tensor/cpu/loops.h"

#ifdef DG_HAVE_OPENBLAS
#include <cblas.h>
#endif

namespace dg::cpu {

namespace {

// Products below this many multiply-adds are batched over threads, not split.
constexpr int64_t kSmallGemm = int64_t{96} * 96 * 96;

// One operand as a row-major map of shape (rows, cols) with an outer stride;
// `transposed` means the logical matrix is the transpose of this map.
struct MatView {
  int64_t rows, cols, outer;
  bool transposed;
};

// (R, C) with strides (sr, sc): row-major when sc == 1 (or C == 1), else
// column-major, i.e. the transpose of a row-major (C, R) map.
MatView mat_view(int64_t R, int64_t C, int64_t sr, int64_t sc) {
  if (C == 1) return {R, 1, sr, false};
  if (sc == 1) return {R, C, R == 1 ? C : sr, false};
  if (R == 1) return {C, 1, sc, true};
  DG_ASSERT(sr == 1, "matmul kernel: a ({}, {}) matrix with strides ({}, {}) is neither row- nor column-major", R, C,
            sr, sc);
  return {C, R, sc, true};
}

template <class T>
using RowMap = Eigen::Map<const Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>, 0,
                          Eigen::OuterStride<>>;
template <class T>
using OutMap = Eigen::Map<Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>>;

// C = alpha * A @ B + beta * C for Eigen operands A, B (plain or transposed maps).
template <class T, class A, class B>
void gemm(OutMap<T>& C, const A& a, const B& b, T alpha, T beta) {
  if (beta == T(0)) {
    C.noalias() = alpha * a * b;
  } else {
    if (beta != T(1)) C *= beta;
    C.noalias() += alpha * a * b;
  }
}

// Which GEMM runs. OpenBLAS when it is built in and runs kernels at least as
// wide as the CPU's (its AVX-512 "SkylakeX"/"Cooperlake"/"SapphireRapids"
// cores, or any core on a CPU without AVX-512); otherwise Eigen, whose
// AVX-512 kernels beat OpenBLAS forced onto narrower ones (an
// OPENBLAS_CORETYPE=Haswell environment). DG_GEMM=eigen|openblas overrides.
bool use_openblas() {
#ifdef DG_HAVE_OPENBLAS
  static const bool use = [] {
    if (const char* e = std::getenv("DG_GEMM")) {
      if (std::strcmp(e, "eigen") == 0) return false;
      if (std::strcmp(e, "openblas") == 0) return true;
    }
    const std::string core = openblas_get_corename();
    const bool wide = core.find("SkylakeX") != std::string::npos || core.find("Cooperlake") != std::string::npos ||
                      core.find("SapphireRapids") != std::string::npos;
    return wide || !__builtin_cpu_supports("avx512f");
  }();
  return use;
#else
  return false;
#endif
}

#ifdef DG_HAVE_OPENBLAS
// C = alpha op(A) op(B) + beta C with row-major maps (rows, cols, outer stride).
void blas_gemm(const float* a, const MatView& va, bool ta, const float* b, const MatView& vb, bool tb, float* c,
               int64_t M, int64_t N, int64_t K, float alpha, float beta) {
  cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, M, N, K, alpha, a,
              va.outer, b, vb.outer, beta, c, N);
}
void blas_gemm(const double* a, const MatView& va, bool ta, const double* b, const MatView& vb, bool tb, double* c,
               int64_t M, int64_t N, int64_t K, double alpha, double beta) {
  cblas_dgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, M, N, K, alpha, a,
              va.outer, b, vb.outer, beta, c, N);
}
#endif

template <class T>
void gemm_one(const T* ap, const MatView& va, bool ta, const T* bp, const MatView& vb, bool tb, T* op, int64_t M,
              int64_t N, T alpha, T beta) {
#ifdef DG_HAVE_OPENBLAS
  if constexpr (std::is_same_v<T, float> || std::is_same_v<T, double>) {
    // BLAS needs each leading dimension >= the stored row length.
    if (use_openblas() && va.outer >= std::max<int64_t>(1, va.cols) && vb.outer >= std::max<int64_t>(1, vb.cols)) {
      const int64_t K = ta ? va.rows : va.cols;
      blas_gemm(ap, va, ta, bp, vb, tb, op, M, N, K, alpha, beta);
      return;
    }
  }
#endif
  OutMap<T> C(op, M, N);
  RowMap<T> A(ap, va.rows, va.cols, Eigen::OuterStride<>(va.outer));
  RowMap<T> B(bp, vb.rows, vb.cols, Eigen::OuterStride<>(vb.outer));
  if (!ta && !tb) gemm<T>(C, A, B, alpha, beta);
  else if (ta && !tb) gemm<T>(C, A.transpose(), B, alpha, beta);
  else if (!ta && tb) gemm<T>(C, A, B.transpose(), alpha, beta);
  else gemm<T>(C, A.transpose(), B.transpose(), alpha, beta);
}

}  // namespace

void CpuBackend::matmul(const Tensor& a, const Tensor& b, const Tensor& out, bool trans_a, bool trans_b, double alpha,
                        double beta) {
  DG_ASSERT(a.dim() == 3 && b.dim() == 3 && out.dim() == 3 && out.is_contiguous(), "matmul kernel: {} {} -> {}",
            a.shape(), b.shape(), out.shape());
  DG_ASSERT(a.dtype() == b.dtype() && a.dtype() == out.dtype() && a.dtype() != DType::b8);
  const int64_t B = out.shape()[0], M = out.shape()[1], N = out.shape()[2];
  const int64_t K = trans_a ? a.shape()[1] : a.shape()[2];
  DG_ASSERT(a.shape()[0] == B && b.shape()[0] == B && (trans_a ? a.shape()[2] : a.shape()[1]) == M &&
            (trans_b ? b.shape()[1] : b.shape()[2]) == N && (trans_b ? b.shape()[2] : b.shape()[1]) == K,
            "matmul kernel: {} {} -> {} (trans {} {})", a.shape(), b.shape(), out.shape(), trans_a, trans_b);
  if (out.numel() == 0) return;
  if (K == 0) {  // an empty sum: beta * out
    if (beta == 0.0) fill(out, 0.0);
    else visit_dtype(out.dtype(), [&](auto tag) {
      using T = decltype(tag);
      if constexpr (!std::is_same_v<T, bool>) {
        T* o = out.data<T>();
        for (int64_t i = 0; i < out.numel(); ++i) o[i] = static_cast<T>(o[i] * beta);
      }
    });
    return;
  }
  // Logical op(a) is (M, K): the map of a, transposed when it is column-major,
  // flipped once more by trans_a. Likewise op(b) is (K, N).
  MatView va = mat_view(a.shape()[1], a.shape()[2], a.strides()[1], a.strides()[2]);
  MatView vb = mat_view(b.shape()[1], b.shape()[2], b.strides()[1], b.strides()[2]);
  const bool ta = va.transposed != trans_a, tb = vb.transposed != trans_b;
  const int64_t sa = a.strides()[0], sb = b.strides()[0], so = M * N;
  visit_dtype(a.dtype(), [&](auto tag) {
    using T = decltype(tag);
    if constexpr (!std::is_same_v<T, bool>) {
      const T *ap = a.data<T>(), *bp = b.data<T>();
      T* op = out.data<T>();
      const T al = static_cast<T>(alpha), be = static_cast<T>(beta);
      const int64_t flops = M * N * K;
      if (B > 1 && flops < kSmallGemm) {
#pragma omp parallel for schedule(static) if (worth_parallel(B * flops))
        for (int64_t i = 0; i < B; ++i) gemm_one<T>(ap + i * sa, va, ta, bp + i * sb, vb, tb, op + i * so, M, N, al, be);
      } else {
        for (int64_t i = 0; i < B; ++i) gemm_one<T>(ap + i * sa, va, ta, bp + i * sb, vb, tb, op + i * so, M, N, al, be);
      }
    }
  });
}

}  // namespace dg::cpu
