// CPU vs CUDA for the CUDA backend's reductions, arg-reductions, top-k,
// indexing kernels and matmul (cuda/reduce.cu, index.cu, blas.cu): the same
// inputs through both backends' kernels, f64 to 1e-12 relative, f32 to the
// tolerance stated per op, indices and integer results exactly. Skipped (with
// the reason) where no GPU is visible.
#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <string>
#include <vector>

#include "tensor/backend.h"
#include "tensor/creation.h"
#include "tensor/settings.h"

namespace {

using namespace dg;

class CudaVsCpu : public ::testing::Test {
 protected:
  void SetUp() override {
    if (device_count(DeviceType::cuda) == 0) GTEST_SKIP() << "no CUDA device visible: CPU-vs-CUDA check not run";
  }
  void TearDown() override {
    set_allow_tf32(false);
    set_deterministic(false);
  }
  Backend& cpu() { return backend_for(Device::cpu()); }
  Backend& gpu() { return backend_for(Device::cuda(0)); }
};

Tensor on_gpu(const Tensor& t) { return to_device(t, Device::cuda(0)); }
// The same view (shape, strides, offset) of another copy of t's storage.
Tensor view_like(const Tensor& storage, const Tensor& v) {
  return as_strided(storage, v.shape(), v.strides(), v.offset());
}

// Values with ties, NaN (floating) and both zeros, as dtype dt.
Tensor tricky(const Shape& shape, DType dt, uint32_t seed, bool nan = true) {
  std::mt19937 rng(seed);
  std::uniform_int_distribution<int> u(-4, 4);
  std::vector<double> v(static_cast<size_t>(shape.numel()));
  for (double& x : v) x = dt == DType::b8 ? (u(rng) > 0) : is_floating(dt) ? u(rng) * 0.37 : u(rng);
  if (nan && is_floating(dt) && v.size() > 7) v[v.size() / 7] = std::nan("");
  return from_doubles(v, shape, {dt});
}

Tensor uniform(const Shape& shape, DType dt, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<double> u(-1, 1);
  std::vector<double> v(static_cast<size_t>(shape.numel()));
  for (double& x : v) x = u(rng);
  return from_doubles(v, shape, {dt});
}

// |got - want| <= tol * (1 + |want|) elementwise, NaN where want is NaN.
void expect_close(const Tensor& got, const Tensor& want, double tol, const std::string& what) {
  ASSERT_EQ(got.shape(), want.shape()) << what;
  std::vector<double> g = got.to_vector<double>(), w = want.to_vector<double>();
  double worst = 0;
  for (size_t i = 0; i < g.size(); ++i) {
    if (std::isnan(w[i])) {
      EXPECT_TRUE(std::isnan(g[i])) << what << " i=" << i;
      continue;
    }
    worst = std::max(worst, std::abs(g[i] - w[i]) / (1 + std::abs(w[i])));
  }
  EXPECT_LE(worst, tol) << what;
}

void expect_equal(const Tensor& got, const Tensor& want, const std::string& what) { expect_close(got, want, 0, what); }

double tol_of(DType dt) { return dt == DType::f32 ? 1e-6 : dt == DType::f64 ? 1e-12 : 0; }

TEST_F(CudaVsCpu, ReduceEveryDimSubsetOfAStridedTensor) {
  for (DType dt : {DType::f32, DType::f64, DType::i64, DType::i32, DType::b8}) {
    Tensor base = tricky({3, 4, 5, 6}, dt, 1, false), gbase = on_gpu(base);
    Tensor x = as_strided(base, {5, 3, 6, 4}, {6, 120, 1, 30}, 0);  // permuted view
    for (int mask = 1; mask < 16; ++mask) {
      Shape os = x.shape();
      for (int d = 0; d < 4; ++d)
        if (mask >> d & 1) os[d] = 1;
      for (ReduceOp op : {ReduceOp::sum, ReduceOp::max, ReduceOp::min, ReduceOp::prod}) {
        Tensor want = empty(os, {dt}), got = empty(os, {dt, Device::cuda(0)});
        cpu().reduce(op, x, want);
        gpu().reduce(op, view_like(gbase, x), got);
        expect_close(got, want, tol_of(dt), fmt::format("reduce {} op {} mask {}", dtype_name(dt), int(op), mask));
      }
    }
  }
}

TEST_F(CudaVsCpu, ReduceLongRowsColumnsAndNaN) {
  // f32 sums accumulate in double on both: 1e-6 relative on a million elements.
  for (Shape s : {Shape{1 << 20}, Shape{4096, 300}, Shape{300, 4096}}) {
    Tensor x = uniform(s, DType::f32, 2), gx = on_gpu(x);
    for (int64_t d = 0; d < s.size(); ++d) {
      Shape os = s;
      os[d] = 1;
      Tensor want = empty(os, {DType::f32}), got = empty(os, {DType::f32, Device::cuda(0)});
      cpu().reduce(ReduceOp::sum, x, want);
      gpu().reduce(ReduceOp::sum, gx, got);
      expect_close(got, want, 1e-6, fmt::format("sum dim {} of {}", d, s));
    }
  }
  Tensor x = tricky({64, 33}, DType::f64, 3), gx = on_gpu(x);
  for (ReduceOp op : {ReduceOp::max, ReduceOp::min, ReduceOp::sum}) {
    Tensor want = empty({64, 1}, {DType::f64}), got = empty({64, 1}, {DType::f64, Device::cuda(0)});
    cpu().reduce(op, x, want);
    gpu().reduce(op, gx, got);
    expect_close(got, want, 1e-12, "NaN propagation");
  }
}

TEST_F(CudaVsCpu, ArgReductionsTiesAndNaN) {
  for (DType dt : {DType::f32, DType::f64, DType::i64, DType::i32, DType::b8})
    for (Shape s : {Shape{7, 5, 9}, Shape{2000, 3}, Shape{3, 5000}})
      for (int64_t dim = 0; dim < s.size(); ++dim)
        for (ReduceOp op : {ReduceOp::max, ReduceOp::min}) {
          Tensor x = tricky(s, dt, 4), gx = on_gpu(x);
          Shape os = s;
          os[dim] = 1;
          Tensor v = empty(os, {dt}), i = empty(os, {DType::i64});
          Tensor gv = empty(os, {dt, Device::cuda(0)}), gi = empty(os, {DType::i64, Device::cuda(0)});
          cpu().reduce_arg(op, x, dim, v, i);
          gpu().reduce_arg(op, gx, dim, gv, gi);
          const std::string what = fmt::format("arg {} {} dim {} op {}", dtype_name(dt), s, dim, int(op));
          expect_equal(gi, i, what);
          expect_equal(gv, v, what);
        }
}

TEST_F(CudaVsCpu, TopkShortAndLongRows) {
  for (DType dt : {DType::f32, DType::f64, DType::i64, DType::i32})
    for (auto [s, dim, k] : {std::tuple<Shape, int64_t, int64_t>{{6, 40}, 1, 7}, {{40, 3, 5}, 0, 40}, {{3, 5000}, 1, 11},
                             {{2, 3000, 2}, 1, 3000}})
      for (bool largest : {true, false})
        for (bool sorted : {true, false}) {
          Tensor x = tricky(s, dt, 5), gx = on_gpu(x);
          Shape os = s;
          os[dim] = k;
          Tensor v = empty(os, {dt}), i = empty(os, {DType::i64});
          Tensor gv = empty(os, {dt, Device::cuda(0)}), gi = empty(os, {DType::i64, Device::cuda(0)});
          cpu().topk(x, k, dim, largest, sorted, v, i);
          gpu().topk(gx, k, dim, largest, sorted, gv, gi);
          const std::string what =
              fmt::format("topk {} {} dim {} k {} largest {} sorted {}", dtype_name(dt), s, dim, k, largest, sorted);
          expect_equal(gi, i, what);
          expect_equal(gv, v, what);
        }
}

TEST_F(CudaVsCpu, IndexSelectAndGather) {
  for (DType dt : {DType::f32, DType::f64, DType::i64, DType::i32, DType::b8}) {
    Tensor x = tricky({5, 6, 7}, dt, 6, false), gx = on_gpu(x);
    Tensor xt = as_strided(x, {7, 6, 5}, {1, 7, 42}, 0);  // strided view
    Tensor idx = from_vector<int64_t>({4, 0, 0, 3, 1, 4}), gidx = on_gpu(idx);
    for (int64_t dim = 0; dim < 3; ++dim) {
      Shape os = xt.shape();
      os[dim] = 6;
      Tensor want = empty(os, {dt}), got = empty(os, {dt, Device::cuda(0)});
      cpu().index_select(xt, dim, idx, want);
      gpu().index_select(view_like(gx, xt), dim, gidx, got);
      expect_equal(got, want, fmt::format("index_select {} dim {}", dtype_name(dt), dim));
      std::vector<int64_t> iv(static_cast<size_t>(os.numel()));
      for (size_t j = 0; j < iv.size(); ++j) iv[j] = static_cast<int64_t>((j * 7 + 3) % 5);
      Tensor gi = from_vector<int64_t>(iv, os);
      cpu().gather(xt, dim, gi, want);
      gpu().gather(view_like(gx, xt), dim, on_gpu(gi), got);
      expect_equal(got, want, fmt::format("gather {} dim {}", dtype_name(dt), dim));
    }
  }
}

TEST_F(CudaVsCpu, IndexAddAndScatterAddAtomicAndDeterministic) {
  for (bool det : {false, true})
    for (DType dt : {DType::f32, DType::f64, DType::i64, DType::i32, DType::b8}) {
      set_deterministic(det);
      // index_add: 6 source rows onto 4, repeated indices, alpha.
      Tensor idx = from_vector<int64_t>({3, 0, 3, 3, 1, 0}), gidx = on_gpu(idx);
      for (int64_t dim = 0; dim < 2; ++dim) {
        Shape os{4, 4}, ss{4, 4};
        ss[dim] = 6;
        Tensor out = tricky(os, dt, 7, false), src = tricky(ss, dt, 8, false);
        Tensor gout = on_gpu(out);
        const double alpha = dt == DType::b8 ? 1.0 : 1.5;
        cpu().index_add(out, dim, idx, src, alpha);
        gpu().index_add(gout, dim, gidx, on_gpu(src), alpha);
        expect_close(gout, out, det ? 0 : tol_of(dt), fmt::format("index_add {} dim {} det {}", dtype_name(dt), dim, det));
      }
      // scatter_add: src (5, 3) into out (4, 3) along dim 0, repeated targets.
      Tensor sidx = from_vector<int64_t>({0, 1, 2, 3, 0, 1, 0, 0, 0, 2, 2, 2, 1, 3, 0}, {5, 3});
      Tensor out = tricky({4, 3}, dt, 9, false), src = tricky({5, 3}, dt, 10, false), gout = on_gpu(out);
      cpu().scatter_add(out, 0, sidx, src);
      gpu().scatter_add(gout, 0, on_gpu(sidx), on_gpu(src));
      expect_close(gout, out, det ? 0 : tol_of(dt), fmt::format("scatter_add {} det {}", dtype_name(dt), det));
    }
}

TEST_F(CudaVsCpu, DeterministicIndexAddIsBitwiseRepeatable) {
  set_deterministic(true);
  // An embedding-gradient shape: 4096 rows onto 50, f32.
  std::vector<int64_t> iv(4096);
  for (size_t i = 0; i < iv.size(); ++i) iv[i] = static_cast<int64_t>((i * 31) % 50);
  Tensor idx = on_gpu(from_vector<int64_t>(iv)), src = on_gpu(uniform({4096, 64}, DType::f32, 11));
  Tensor want = zeros({50, 64}), first = on_gpu(zeros({50, 64})), second = on_gpu(zeros({50, 64}));
  cpu().index_add(want, 0, to_device(idx, Device::cpu()), to_device(src, Device::cpu()), 1.0);
  gpu().index_add(first, 0, idx, src, 1.0);
  gpu().index_add(second, 0, idx, src, 1.0);
  EXPECT_EQ(first.to_vector<float>(), second.to_vector<float>());
  EXPECT_EQ(first.to_vector<float>(), want.to_vector<float>());
}

TEST_F(CudaVsCpu, MatmulLayoutsBatchStridesAlphaBeta) {
  const int64_t B = 3, M = 17, N = 9, K = 33;
  for (DType dt : {DType::f64, DType::f32, DType::i64})
    for (bool ta : {false, true})
      for (bool tb : {false, true})
        for (bool bcast : {false, true})
          for (double beta : {0.0, 0.5}) {
            // a column-major when !ta (a transposed view of as); b row- (tb) or
            // column-major, its batch stride 0 (broadcast) when bcast.
            Tensor as = dt == DType::i64 ? tricky({B, K, M}, dt, 12, false) : uniform({B, K, M}, dt, 12);
            Tensor a = ta ? as : as_strided(as, {B, M, K}, {K * M, 1, M}, 0);
            Tensor bs = dt == DType::i64 ? tricky({B, N, K}, dt, 13, false) : uniform({B, N, K}, dt, 13);
            const int64_t sb = bcast ? 0 : N * K;
            Tensor b = tb ? as_strided(bs, {B, N, K}, {sb, K, 1}, 0) : as_strided(bs, {B, K, N}, {sb, 1, K}, 0);
            Tensor out = full({B, M, N}, beta == 0 ? std::nan("") : 0.25, {dt});
            if (dt == DType::i64) out = full({B, M, N}, 2, {dt});
            Tensor gout = on_gpu(out);
            const double alpha = dt == DType::i64 ? 2.0 : 1.5;
            cpu().matmul(a, b, out, ta, tb, alpha, beta);
            gpu().matmul(view_like(on_gpu(as), a), view_like(on_gpu(bs), b), gout, ta, tb, alpha, beta);
            const double tol = dt == DType::f32 ? 2e-6 * K : tol_of(dt);
            expect_close(gout, out, tol,
                         fmt::format("matmul {} ta {} tb {} bcast {} beta {}", dtype_name(dt), ta, tb, bcast, beta));
          }
}

TEST_F(CudaVsCpu, MatmulF32IsExactUnlessTf32IsAllowed) {
  const int64_t M = 64, N = 64, K = 1024;
  Tensor a = uniform({1, M, K}, DType::f32, 14), b = uniform({1, K, N}, DType::f32, 15);
  Tensor ref = empty({1, M, N}, {DType::f64});
  cpu().matmul(to_dtype(a, DType::f64), to_dtype(b, DType::f64), ref, false, false);
  auto max_err = [&](bool tf32) {
    set_allow_tf32(tf32);
    Tensor out = on_gpu(zeros({1, M, N}));
    gpu().matmul(on_gpu(a), on_gpu(b), out, false, false);
    std::vector<double> g = out.to_vector<double>(), r = ref.to_vector<double>();
    double e = 0;
    for (size_t i = 0; i < g.size(); ++i) e = std::max(e, std::abs(g[i] - r[i]));
    return e;
  };
  // Sums of 1024 products of U(-1, 1): exact f32 is within ~1e-4 of f64; TF32
  // (10-bit mantissa inputs) is off by ~1e-2 and must stay under 0.2.
  const double exact = max_err(false), tf32 = max_err(true);
  EXPECT_LT(exact, 2e-4);
  EXPECT_LT(tf32, 0.2);
  EXPECT_GT(tf32, 10 * exact) << "allow_tf32 had no effect";
}

}  // namespace
