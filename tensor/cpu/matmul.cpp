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
// Threads: a batch of small products is spread over the threads, each
// product then running single-threaded (neither Eigen nor OpenBLAS nests
// inside a parallel region). One big product on OpenBLAS is split here into
// one row (or column) band per thread, each band a single-threaded sgemm.
// On every GEMM shape of a tiny GPT step (M = B*T = 2048 rows, N and K a few
// hundred, or K = 2048 for a weight gradient) that is faster than OpenBLAS's
// own threading: 1.16-2.3x per call in bench_ops BM_GemmShapes (2 threads,
// against DG_GEMM_SPLIT=0), most on the thin products (N = 128). On Eigen a
// big product is split by Eigen's own OpenMP GEMM (it follows
// omp_get_max_threads(), i.e. DG_NUM_THREADS or
// dg::set_num_threads).

#include <omp.h>
#include <cstdlib>
#include <cstring>
#include <string>

#include "tensor/cpu/cpu_backend.h"
#include "tensor/cpu/eigen.h"
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
using OutMap = Eigen::Map<Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>, 0, Eigen::OuterStride<>>;

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

// C (M, N, row stride ldc) = alpha op(A) op(B) + beta C on Eigen: each
// operand mapped in place (plain or .transpose()).
template <class T>
void eigen_gemm(const T* ap, const MatView& va, bool ta, const T* bp, const MatView& vb, bool tb, T* cp, int64_t ldc,
                int64_t M, int64_t N, T alpha, T beta) {
  OutMap<T> C(cp, M, N, Eigen::OuterStride<>(ldc));
  RowMap<T> A(ap, va.rows, va.cols, Eigen::OuterStride<>(va.outer));
  RowMap<T> B(bp, vb.rows, vb.cols, Eigen::OuterStride<>(vb.outer));
  if (!ta && !tb) gemm<T>(C, A, B, alpha, beta);
  else if (ta && !tb) gemm<T>(C, A.transpose(), B, alpha, beta);
  else if (!ta && tb) gemm<T>(C, A, B.transpose(), alpha, beta);
  else gemm<T>(C, A.transpose(), B.transpose(), alpha, beta);
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
// C (M, N, row stride ldc) = alpha op(A) op(B) + beta C with row-major maps
// (rows, cols, outer stride).
void blas_gemm(const float* a, const MatView& va, bool ta, const float* b, const MatView& vb, bool tb, float* c,
               int64_t ldc, int64_t M, int64_t N, int64_t K, float alpha, float beta) {
  cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, M, N, K, alpha, a,
              va.outer, b, vb.outer, beta, c, ldc);
}
void blas_gemm(const double* a, const MatView& va, bool ta, const double* b, const MatView& vb, bool tb, double* c,
               int64_t ldc, int64_t M, int64_t N, int64_t K, double alpha, double beta) {
  cblas_dgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, M, N, K, alpha, a,
              va.outer, b, vb.outer, beta, c, ldc);
}

// Bands are whole multiples of this many rows (columns), so that each
// thread's sgemm runs full micro-tiles except at the very end.
constexpr int64_t kBand = 16;

// DG_GEMM_SPLIT=0 leaves the threading to OpenBLAS (for A/B timing).
bool split_enabled() {
  static const bool on = [] {
    const char* e = std::getenv("DG_GEMM_SPLIT");
    return !(e && std::strcmp(e, "0") == 0);
  }();
  return on;
}

// The product on OpenBLAS, split into one band of rows of C per thread (or
// of columns when C is wider than tall), each a single-threaded call: row
// band [r0, r1) of C needs rows r0..r1 of op(A) (column offset r0 of a
// transposed A), column band needs columns of op(B) likewise. Not split when
// already inside a parallel region or the product is small.
template <class T>
void blas_gemm_split(const T* a, const MatView& va, bool ta, const T* b, const MatView& vb, bool tb, T* c,
                     int64_t M, int64_t N, int64_t K, T alpha, T beta) {
  const int nt = omp_in_parallel() ? 1 : omp_get_max_threads();
  const bool by_rows = M >= N;
  const int64_t units = ((by_rows ? M : N) + kBand - 1) / kBand;
  if (nt == 1 || M * N * K < kSmallGemm || units < 2 || !split_enabled()) {
    blas_gemm(a, va, ta, b, vb, tb, c, N, M, N, K, alpha, beta);
    return;
  }
#pragma omp parallel num_threads(static_cast<int>(std::min<int64_t>(nt, units)))
  {
    const int id = omp_get_thread_num(), n = omp_get_num_threads();
    const int64_t D = by_rows ? M : N;
    const int64_t d0 = std::min(D, units * id / n * kBand), d1 = std::min(D, units * (id + 1) / n * kBand);
    if (d1 > d0) {
      if (by_rows)
        blas_gemm(ta ? a + d0 : a + d0 * va.outer, va, ta, b, vb, tb, c + d0 * N, N, d1 - d0, N, K, alpha, beta);
      else
        blas_gemm(a, va, ta, tb ? b + d0 * vb.outer : b + d0, vb, tb, c + d0, N, M, d1 - d0, K, alpha, beta);
    }
  }
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
      blas_gemm_split<T>(ap, va, ta, bp, vb, tb, op, M, N, K, alpha, beta);
      return;
    }
  }
#endif
  eigen_gemm<T>(ap, va, ta, bp, vb, tb, op, N, M, N, alpha, beta);
}

}  // namespace

template <class T>
void gemm_rows(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, T alpha, const T* a, int64_t lda,
               const T* b, int64_t ldb, T beta, T* c, int64_t ldc) {
  if (M == 0 || N == 0) return;
  const MatView va{trans_a ? K : M, trans_a ? M : K, lda, false}, vb{trans_b ? N : K, trans_b ? K : N, ldb, false};
#ifdef DG_HAVE_OPENBLAS
  if (use_openblas() && K > 0) {
    blas_gemm(a, va, trans_a, b, vb, trans_b, c, ldc, M, N, K, alpha, beta);
    return;
  }
#endif
  eigen_gemm<T>(a, va, trans_a, b, vb, trans_b, c, ldc, M, N, alpha, beta);
}
template void gemm_rows<float>(bool, bool, int64_t, int64_t, int64_t, float, const float*, int64_t, const float*,
                               int64_t, float, float*, int64_t);
template void gemm_rows<double>(bool, bool, int64_t, int64_t, int64_t, double, const double*, int64_t, const double*,
                                int64_t, double, double*, int64_t);

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
