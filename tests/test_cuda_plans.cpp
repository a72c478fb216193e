// The host-and-device logic of the CUDA reductions, top-k and matmul
// (cuda/linalg_plan.h), run on the host against the CPU backend. No GPU is
// needed: these are the index maps and orders the CUDA kernels execute.
//  - GEMM: the cuBLAS parameters of every transpose / layout / batch-stride
//    case, executed by emulating the column-major product element by element;
//  - reductions: ReducePlan offsets + ReduceFold over strided inputs;
//  - arg-reductions: arg_better as a sequential scan and as a tree combine;
//  - top-k: the rank selection of the short-row kernel, and a stable sort by
//    radix_key as the long-row path, both with ties, NaN and -0.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <random>
#include <vector>

#include "cuda/linalg_plan.h"
#include "tensor/backend.h"
#include "tensor/creation.h"

namespace {

using namespace dg;
using dg::cuda::GemmOperand;
using dg::cuda::GemmPlan;

Backend& cpu() { return backend_for(Device::cpu()); }

// A (B, R, C) view of fresh random f64 storage with the given strides.
Tensor strided_f64(const Shape& shape, const Strides& strides, std::mt19937& rng) {
  int64_t span = 1;
  for (int64_t d = 0; d < shape.size(); ++d) span += (shape[d] - 1) * strides[d];
  std::uniform_real_distribution<double> u(-1, 1);
  std::vector<double> v(static_cast<size_t>(span));
  for (double& x : v) x = u(rng);
  return as_strided(from_vector<double>(v), shape, strides, 0);
}

GemmOperand operand(const Tensor& t) {
  GemmOperand o{};
  for (int d = 0; d < 3; ++d) o.shape[d] = t.shape()[d], o.strides[d] = t.strides()[d];
  return o;
}

// Storage of a (B, R, C) operand: row-major or column-major with `pad` extra
// leading-dim elements, batch stride 0 (broadcast) or the matrix span.
Tensor gemm_operand(int64_t B, int64_t R, int64_t C, bool col_major, int64_t pad, bool broadcast, std::mt19937& rng) {
  const int64_t ld = (col_major ? R : C) + pad;
  const int64_t span = ld * (col_major ? C : R);
  Strides st{broadcast ? 0 : span, col_major ? 1 : ld, col_major ? ld : 1};
  return strided_f64({B, R, C}, st, rng);
}

// out = alpha op(a) op(b) + beta out, computed the way cuBLAS would from the plan.
std::vector<double> emulate_cublas(const GemmPlan& p, const Tensor& a, const Tensor& b, std::vector<double> out,
                                   double alpha, double beta) {
  const double* A = static_cast<const double*>(b.raw_data());  // cuBLAS's A is our b
  const double* Bm = static_cast<const double*>(a.raw_data());
  for (int64_t s = 0; s < p.batch; ++s)
    for (int64_t j = 0; j < p.n; ++j)
      for (int64_t i = 0; i < p.m; ++i) {
        double& c = out[static_cast<size_t>(s * p.stride_c + i + j * p.ldc)];
        const double dot = cuda::colmajor_dot(p, A + s * p.stride_a, Bm + s * p.stride_b, i, j);
        c = alpha * dot + (beta == 0 ? 0.0 : beta * c);
      }
  return out;
}

TEST(CudaPlans, GemmMappingMatchesCpuForEveryLayout) {
  std::mt19937 rng(7);
  int cases = 0;
  for (int64_t B : {1, 3})
    for (auto [M, N, K] : {std::array<int64_t, 3>{4, 5, 3}, {1, 6, 2}, {5, 1, 4}, {3, 4, 1}, {1, 1, 7}})
      for (bool ta : {false, true})
        for (bool tb : {false, true})
          for (int la = 0; la < 4; ++la)      // a: row/col-major x ld padded or not
            for (int lb = 0; lb < 4; ++lb)    // b: same
              for (int bc = 0; bc < 3; ++bc) {  // batch stride 0 on a, on b, or neither
                const bool a_col = la & 1, b_col = lb & 1;
                Tensor a = ta ? gemm_operand(B, K, M, a_col, (la >> 1) * 2, bc == 1, rng)
                              : gemm_operand(B, M, K, a_col, (la >> 1) * 2, bc == 1, rng);
                Tensor b = tb ? gemm_operand(B, N, K, b_col, (lb >> 1) * 3, bc == 2, rng)
                              : gemm_operand(B, K, N, b_col, (lb >> 1) * 3, bc == 2, rng);
                const GemmPlan p = cuda::plan_gemm(operand(a), operand(b), ta, tb);
                ASSERT_FALSE(p.copy_a || p.copy_b);
                EXPECT_EQ(p.m, N);
                EXPECT_EQ(p.n, M);
                EXPECT_EQ(p.k, K);
                // cuBLAS's rules on leading dims: >= rows of the stored column-major matrix.
                EXPECT_GE(p.lda, std::max<int64_t>(1, p.transa ? p.k : p.m));
                EXPECT_GE(p.ldb, std::max<int64_t>(1, p.transb ? p.n : p.k));
                EXPECT_GE(p.ldc, std::max<int64_t>(1, p.m));
                for (double beta : {0.0, 0.5}) {
                  Tensor out = from_vector<double>(std::vector<double>(static_cast<size_t>(B * M * N), 0.25),
                                                   {B, M, N});
                  if (beta == 0) cpu().fill(out, std::nan(""));  // beta = 0 ignores NaN in out
                  std::vector<double> before = out.to_vector<double>();
                  cpu().matmul(a, b, out, ta, tb, 1.5, beta);
                  std::vector<double> want = out.to_vector<double>();
                  std::vector<double> got = emulate_cublas(p, a, b, before, 1.5, beta);
                  for (size_t i = 0; i < want.size(); ++i)
                    ASSERT_NEAR(got[i], want[i], 1e-12 * (1 + std::abs(want[i])))
                        << "B=" << B << " M=" << M << " N=" << N << " K=" << K << " ta=" << ta << " tb=" << tb
                        << " la=" << la << " lb=" << lb << " bc=" << bc << " i=" << i;
                }
                ++cases;
              }
  EXPECT_EQ(cases, 2 * 5 * 4 * 16 * 3);
}

TEST(CudaPlans, GemmOperandThatIsNeitherLayoutIsCopied) {
  std::mt19937 rng(3);
  // An expanded (stride-0) row inside the matrix, and overlapping rows.
  Tensor expanded = strided_f64({2, 4, 3}, {3, 0, 1}, rng);
  Tensor overlapping = strided_f64({1, 4, 3}, {0, 2, 1}, rng);
  Tensor fine = strided_f64({2, 3, 5}, {15, 5, 1}, rng);
  GemmPlan p = cuda::plan_gemm(operand(expanded), operand(fine), false, false);
  EXPECT_TRUE(p.copy_a);
  EXPECT_FALSE(p.copy_b);
  p = cuda::plan_gemm(operand(fine), operand(overlapping), true, true);
  EXPECT_FALSE(p.copy_a);
  EXPECT_TRUE(p.copy_b);
  // A vector stored with any element stride is still usable without a copy.
  EXPECT_TRUE(cuda::matrix_layout(5, 1, 7, 99).usable);
  EXPECT_TRUE(cuda::matrix_layout(1, 5, 99, 7).usable);
  EXPECT_FALSE(cuda::matrix_layout(5, 1, 0, 99).usable);  // an expanded column
}

// --------------------------------------------------------------- reductions

template <ReduceOp Op, class T>
std::vector<T> emulate_reduce(const Tensor& x, const Shape& out_shape) {
  using F = cuda::ReduceFold<Op, T>;
  const cuda::ReducePlan p = cuda::plan_reduce(x.shape(), x.strides(), out_shape);
  const T* xp = static_cast<const T*>(x.raw_data());
  std::vector<T> out(static_cast<size_t>(p.n_out));
  for (int64_t o = 0; o < p.n_out; ++o) {
    auto acc = F::init();
    const int64_t base = p.kept.offset(o);
    for (int64_t r = 0; r < p.n_red; ++r) acc = F::step(acc, static_cast<typename F::Acc>(xp[base + p.reduced.offset(r)]));
    out[static_cast<size_t>(o)] = F::result(acc);
  }
  return out;
}

template <class T>
void expect_same(const std::vector<T>& got, const std::vector<T>& want, double rel, const std::string& what) {
  ASSERT_EQ(got.size(), want.size()) << what;
  for (size_t i = 0; i < got.size(); ++i) {
    if constexpr (std::is_floating_point_v<T>) {
      if (std::isnan(want[i])) {
        EXPECT_TRUE(std::isnan(got[i])) << what << " i=" << i;
        continue;
      }
      EXPECT_NEAR(got[i], want[i], rel * (1 + std::abs(want[i]))) << what << " i=" << i;
    } else {
      EXPECT_EQ(got[i], want[i]) << what << " i=" << i;
    }
  }
}

// x (2, 3, 4, 5) permuted to a strided view, reduced over every subset of dims.
template <class T>
void check_reductions(DType dt, double rel, bool with_nan) {
  std::mt19937 rng(11);
  Tensor base = from_doubles([&] {
    std::vector<double> v(120);
    std::uniform_int_distribution<int> u(-3, 3);
    for (double& x : v) x = dt == DType::b8 ? (u(rng) > 0) : u(rng) * 0.75 + (is_floating(dt) ? 0.1 : 0.0);
    if (with_nan) v[17] = std::nan("");
    return v;
  }(), {2, 3, 4, 5}, {dt});
  // permute (2, 3, 4, 5) -> (4, 2, 5, 3): strides (5, 60, 1, 20)
  Tensor x = as_strided(base, {4, 2, 5, 3}, {5, 60, 1, 20}, 0);
  for (int mask = 1; mask < 16; ++mask) {
    Shape os = x.shape();
    for (int d = 0; d < 4; ++d)
      if (mask >> d & 1) os[d] = 1;
    for (ReduceOp op : {ReduceOp::sum, ReduceOp::max, ReduceOp::min, ReduceOp::prod}) {
      Tensor out = empty(os, {dt});
      cpu().reduce(op, x, out);
      std::vector<T> want = out.to_vector<T>(), got;
      switch (op) {
        case ReduceOp::sum: got = emulate_reduce<ReduceOp::sum, T>(x, os); break;
        case ReduceOp::max: got = emulate_reduce<ReduceOp::max, T>(x, os); break;
        case ReduceOp::min: got = emulate_reduce<ReduceOp::min, T>(x, os); break;
        case ReduceOp::prod: got = emulate_reduce<ReduceOp::prod, T>(x, os); break;
      }
      expect_same(got, want, rel, fmt::format("{} {} mask {}", dtype_name(dt), static_cast<int>(op), mask));
    }
  }
}

TEST(CudaPlans, ReducePlanAndFoldMatchCpu) {
  check_reductions<double>(DType::f64, 1e-12, false);
  check_reductions<double>(DType::f64, 1e-12, true);
  check_reductions<float>(DType::f32, 1e-6, true);
  check_reductions<int64_t>(DType::i64, 0, false);
  check_reductions<int32_t>(DType::i32, 0, false);
  check_reductions<bool>(DType::b8, 0, false);
}

TEST(CudaPlans, ReducePlanCoalescesAndChoosesColumns) {
  // Contiguous (6, 7, 8) summed over the last two dims: one kept dim, one merged reduced run.
  cuda::ReducePlan p = cuda::plan_reduce({6, 7, 8}, {56, 8, 1}, {6, 1, 1});
  EXPECT_EQ(p.kept.n, 1);
  EXPECT_EQ(p.reduced.n, 1);
  EXPECT_EQ(p.n_red, 56);
  EXPECT_FALSE(p.columns);
  // Over the first dim: neighbouring outputs are neighbours in x.
  p = cuda::plan_reduce({6, 7, 8}, {56, 8, 1}, {1, 7, 8});
  EXPECT_EQ(p.kept.n, 1);
  EXPECT_EQ(p.n_out, 56);
  EXPECT_TRUE(p.columns);
}

// ------------------------------------------------------------ arg / top-k

// Rows with ties, NaN and signed zeros.
std::vector<double> tricky_row_values(std::mt19937& rng, int64_t n, bool nan) {
  std::uniform_int_distribution<int> u(-2, 2);
  std::vector<double> v(static_cast<size_t>(n));
  for (double& x : v) x = u(rng) * 0.5;
  for (double& x : v)
    if (x == 0 && u(rng) > 0) x = -0.0;
  if (nan && n > 2) v[static_cast<size_t>(n / 3)] = v[static_cast<size_t>(n - 1)] = std::nan("");
  return v;
}

TEST(CudaPlans, ArgBetterScanAndTreeMatchCpu) {
  std::mt19937 rng(5);
  for (bool nan : {false, true})
    for (int64_t n : {1, 2, 7, 33}) {
      const int64_t rows = 6;
      Tensor x = from_vector<double>(tricky_row_values(rng, rows * n, nan), {rows, n});
      for (bool max : {true, false}) {
        Tensor vals = empty({rows, 1}, {DType::f64}), idx = empty({rows, 1}, {DType::i64});
        cpu().reduce_arg(max ? ReduceOp::max : ReduceOp::min, x, 1, vals, idx);
        std::vector<int64_t> want = idx.to_vector<int64_t>();
        const double* xp = static_cast<const double*>(x.raw_data());
        for (int64_t r = 0; r < rows; ++r) {
          const double* row = xp + r * n;
          // sequential scan (one thread per output)
          int64_t bi = 0;
          for (int64_t i = 1; i < n; ++i)
            if (cuda::arg_better(row[i], i, row[bi], bi, max)) bi = i;
          EXPECT_EQ(bi, want[static_cast<size_t>(r)]) << "scan n=" << n << " r=" << r;
          // strided partials of 4 "threads", then a tree combine in reverse (one block per output)
          std::vector<int64_t> part;
          for (int64_t t = 0; t < 4 && t < n; ++t) {
            int64_t b = t;
            for (int64_t i = t + 4; i < n; i += 4)
              if (cuda::arg_better(row[i], i, row[b], b, max)) b = i;
            part.push_back(b);
          }
          int64_t tb = part.back();
          for (auto it = part.rbegin() + 1; it != part.rend(); ++it)
            if (cuda::arg_better(row[*it], *it, row[tb], tb, max)) tb = *it;
          EXPECT_EQ(tb, want[static_cast<size_t>(r)]) << "tree n=" << n << " r=" << r;
        }
      }
    }
}

TEST(CudaPlans, TopkRankAndRadixOrderMatchCpu) {
  std::mt19937 rng(9);
  for (bool nan : {false, true})
    for (int64_t D : {1, 5, 16, 40}) {
      const int64_t rows = 4;
      std::vector<double> vals = tricky_row_values(rng, rows * D, nan);
      Tensor x64 = from_vector<double>(vals, {rows, D});
      Tensor x32 = from_doubles(vals, {rows, D}, {DType::f32});
      for (int64_t k : {int64_t{1}, (D + 1) / 2, D})
        for (bool largest : {true, false})
          for (bool sorted : {true, false}) {
            Tensor v = empty({rows, k}, {DType::f32}), ix = empty({rows, k}, {DType::i64});
            cpu().topk(x32, k, 1, largest, sorted, v, ix);
            std::vector<int64_t> want = ix.to_vector<int64_t>();
            const float* xp = static_cast<const float*>(x32.raw_data());
            for (int64_t r = 0; r < rows; ++r) {
              const float* row = xp + r * D;
              // short-row kernel: ranks, then sorted slot = rank, unsorted slot = selected before j
              std::vector<int64_t> rank(static_cast<size_t>(D)), got(static_cast<size_t>(k), -1);
              for (int64_t j = 0; j < D; ++j) rank[j] = cuda::topk_rank(row, D, j, largest);
              for (int64_t j = 0; j < D; ++j) {
                if (rank[j] >= k) continue;
                int64_t slot = rank[j];
                if (!sorted) {
                  slot = 0;
                  for (int64_t i = 0; i < j; ++i) slot += rank[i] < k;
                }
                got[slot] = j;
              }
              // long-row path: stable sort by radix key (descending for largest)
              std::vector<int64_t> order(static_cast<size_t>(D));
              std::iota(order.begin(), order.end(), 0);
              std::stable_sort(order.begin(), order.end(), [&](int64_t p, int64_t q) {
                auto kp = cuda::radix_key(row[p]), kq = cuda::radix_key(row[q]);
                return largest ? kp > kq : kp < kq;
              });
              order.resize(static_cast<size_t>(k));
              if (!sorted) std::sort(order.begin(), order.end());
              for (int64_t j = 0; j < k; ++j) {
                EXPECT_EQ(got[j], want[r * k + j]) << "rank D=" << D << " k=" << k << " largest=" << largest
                                                   << " sorted=" << sorted << " r=" << r;
                EXPECT_EQ(order[j], want[r * k + j]) << "radix D=" << D << " k=" << k << " largest=" << largest
                                                     << " sorted=" << sorted << " r=" << r;
              }
            }
            (void)x64;
          }
    }
}

TEST(CudaPlans, RadixKeyOrdersEveryDtype) {
  const double inf = std::numeric_limits<double>::infinity();
  std::vector<double> ordered{-inf, -3.5, -1e-30, 0.0, 1e-30, 2.0, inf};
  for (size_t i = 0; i + 1 < ordered.size(); ++i) {
    EXPECT_LT(cuda::radix_key(ordered[i]), cuda::radix_key(ordered[i + 1])) << i;
    EXPECT_LT(cuda::radix_key(static_cast<float>(ordered[i])), cuda::radix_key(static_cast<float>(ordered[i + 1])))
        << i;
  }
  EXPECT_EQ(cuda::radix_key(-0.0), cuda::radix_key(0.0));
  EXPECT_EQ(cuda::radix_key(-0.0f), cuda::radix_key(0.0f));
  EXPECT_GT(cuda::radix_key(-std::nan("")), cuda::radix_key(inf));
  EXPECT_EQ(cuda::radix_key(-std::nanf("")), cuda::radix_key(std::nanf("1")));
  EXPECT_LT(cuda::radix_key(int64_t{-5}), cuda::radix_key(int64_t{3}));
  EXPECT_LT(cuda::radix_key(std::numeric_limits<int32_t>::min()), cuda::radix_key(int32_t{-1}));
  EXPECT_LT(cuda::radix_key(false), cuda::radix_key(true));
}

}  // namespace
