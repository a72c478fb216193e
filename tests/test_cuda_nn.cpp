// The CUDA backend's fused nn kernels (cuda/nn.cu, cuda/attention.cu) against
// the CPU backend, called through the Backend interface on the same inputs:
// softmax / log-softmax, layer norm, RMS norm, cross-entropy, and attention in
// its three layouts, forward and backward, f64 and f32, on shapes that take
// every launch path (one warp or one block per row, several weight-gradient
// chunks, head dims 1..256, causal and not, fewer queries than keys, empty
// and length-1 packed sequences). Skipped without a GPU.
//
// Tolerances, max |cuda - cpu| / (1 + |cpu|): f64 1e-12; f32 2e-5 for the row
// kernels and attention forward, 1e-4 for sums over many rows (weight
// gradients, attention backward), where the summation orders differ.
#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <limits>
#include <vector>

#include "tensor/backend.h"
#include "tensor/creation.h"
#include "testing.h"

using namespace dg;

namespace {

using dg::testing::max_rel_diff;

using Outputs = std::vector<Tensor>;

bool no_gpu() { return device_count(DeviceType::cuda) == 0; }
constexpr const char* kNoGpu =
    "no CUDA device: the kernels' math is checked by the host emulation of test_tile_math / test_row_math only";

// run(device) computes the outputs on that device; compared CUDA vs CPU.
void expect_cuda_matches_cpu(const std::function<Outputs(Device)>& run, const std::vector<double>& tol) {
  const Outputs cpu = run(Device::cpu()), gpu = run(Device::cuda(0));
  ASSERT_EQ(cpu.size(), gpu.size());
  for (size_t i = 0; i < cpu.size(); ++i)
    EXPECT_LE(max_rel_diff(to_device(gpu[i], Device::cpu()), cpu[i]), tol[std::min(i, tol.size() - 1)])
        << "output " << i;
}

Tensor uniform(const Shape& shape, DType dt, uint64_t seed, double lo = -2, double hi = 2) {
  Generator g(seed);
  Tensor u = rand(shape, {DType::f64}, &g);
  std::vector<double> v = u.to_vector<double>();
  for (double& x : v) x = lo + (hi - lo) * x;
  return to_dtype(from_vector<double>(v, shape), dt);
}

double tol_row(DType dt) { return dt == DType::f64 ? 1e-12 : 2e-5; }
double tol_sum(DType dt) { return dt == DType::f64 ? 1e-12 : 1e-4; }
const DType kDtypes[] = {DType::f64, DType::f32};

Tensor cu_from_lengths(const std::vector<int64_t>& lengths) {
  std::vector<int64_t> cu{0};
  for (int64_t len : lengths) cu.push_back(cu.back() + len);
  return from_vector<int64_t>(cu, {static_cast<int64_t>(cu.size())});
}

}  // namespace

TEST(CudaNn, SoftmaxMatchesCpu) {
  if (no_gpu()) GTEST_SKIP() << kNoGpu;
  for (DType dt : kDtypes)
    for (bool log : {false, true})
      for (int64_t C : {1, 5, 256, 257, 4096}) {
        SCOPED_TRACE(::testing::Message() << dtype_name(dt) << " log " << log << " C " << C);
        const Tensor x = uniform({37, C}, dt, C, -20, 20), gy = uniform({37, C}, dt, C + 1);
        expect_cuda_matches_cpu([&](Device d) {
          Backend& be = backend_for(d);
          Tensor y = zeros(x.shape(), {dt, d}), gx = zeros(x.shape(), {dt, d});
          be.softmax(to_device(x, d), y, log);
          be.softmax_backward(y, to_device(gy, d), gx, log);
          return Outputs{y, gx};
        }, {tol_row(dt)});
      }
}

TEST(CudaNn, LayerNormAndRmsNormMatchCpu) {
  if (no_gpu()) GTEST_SKIP() << kNoGpu;
  for (DType dt : kDtypes)
    for (int64_t C : {3, 96, 300})
      for (int affine = 0; affine < 3; ++affine) {  // 0: w and b, 1: w only, 2: neither
        SCOPED_TRACE(::testing::Message() << dtype_name(dt) << " C " << C << " affine " << affine);
        const int64_t N = 1000;
        const Tensor x = uniform({N, C}, dt, C, -3, 5), gy = uniform({N, C}, dt, C + 1);
        const Tensor w = affine < 2 ? uniform({C}, dt, C + 2) : Tensor();
        const Tensor b = affine == 0 ? uniform({C}, dt, C + 3) : Tensor();
        auto on = [](const Tensor& t, Device d) { return t.defined() ? to_device(t, d) : Tensor(); };
        expect_cuda_matches_cpu([&](Device d) {
          Backend& be = backend_for(d);
          Tensor y = zeros({N, C}, {dt, d}), mean = zeros({N}, {dt, d}), rstd = zeros({N}, {dt, d});
          Tensor gx = zeros({N, C}, {dt, d}), gw = zeros({C}, {dt, d}), gb = zeros({C}, {dt, d});
          be.layer_norm(to_device(x, d), on(w, d), on(b, d), 1e-5, y, mean, rstd);
          be.layer_norm_backward(to_device(gy, d), to_device(x, d), on(w, d), mean, rstd, gx, gw, gb, false);
          Tensor gx_sum = to_device(x, d);  // add_to_gx: into a gradient sum (here x's values)
          be.layer_norm_backward(to_device(gy, d), to_device(x, d), on(w, d), mean, rstd, gx_sum, Tensor(), Tensor(),
                                 true);
          Tensor ry = zeros({N, C}, {dt, d}), rrstd = zeros({N}, {dt, d}), rgx = zeros({N, C}, {dt, d}),
                 rgw = zeros({C}, {dt, d});
          be.rms_norm(to_device(x, d), on(w, d), 1e-5, ry, rrstd);
          be.rms_norm_backward(to_device(gy, d), to_device(x, d), on(w, d), rrstd, rgx, rgw);
          return Outputs{y, mean, rstd, gx, ry, rrstd, rgx, gx_sum, gw, gb, rgw};
        }, {tol_row(dt), tol_row(dt), tol_row(dt), tol_row(dt), tol_row(dt), tol_row(dt), tol_row(dt), tol_row(dt),
            tol_sum(dt)});
      }
}

TEST(CudaNn, CrossEntropyMatchesCpu) {
  if (no_gpu()) GTEST_SKIP() << kNoGpu;
  for (DType dt : kDtypes)
    for (double s : {0.0, 0.1})
      for (int64_t V : {3, 256, 50257}) {
        SCOPED_TRACE(::testing::Message() << dtype_name(dt) << " s " << s << " V " << V);
        const int64_t N = 23, ignore = -100;
        std::vector<int64_t> t(N);
        for (int64_t n = 0; n < N; ++n) t[n] = n % 4 == 2 ? ignore : (n * 7919) % V;
        const Tensor x = uniform({N, V}, dt, V, -20, 20), g = uniform({N}, dt, V + 1),
                     target = from_vector<int64_t>(t, {N});
        expect_cuda_matches_cpu([&](Device d) {
          Backend& be = backend_for(d);
          Tensor loss = zeros({N}, {dt, d}), lse = zeros({N}, {dt, d}), gx = zeros({N, V}, {dt, d});
          const Tensor xd = to_device(x, d), td = to_device(target, d);
          be.cross_entropy(xd, td, ignore, s, loss, lse);
          be.cross_entropy_backward(xd, td, lse, to_device(g, d), ignore, s, gx);
          return Outputs{loss, lse, gx};
        }, {tol_row(dt)});
      }
}

TEST(CudaNn, DenseAttentionMatchesCpu) {
  if (no_gpu()) GTEST_SKIP() << kNoGpu;
  struct Shape4 {
    int64_t B, H, Tq, Tk, D;
  };
  for (DType dt : kDtypes)
    for (const Shape4& s : {Shape4{2, 3, 37, 37, 5}, Shape4{1, 2, 300, 300, 64}, Shape4{2, 2, 20, 45, 33},
                            Shape4{1, 1, 1, 1, 1}, Shape4{1, 2, 70, 70, 129}, Shape4{1, 1, 40, 40, 256}})
      for (bool causal : {true, false}) {
        SCOPED_TRACE(::testing::Message() << dtype_name(dt) << " B " << s.B << " H " << s.H << " Tq " << s.Tq << " Tk "
                                        << s.Tk << " D " << s.D << " causal " << causal);
        const Tensor q = uniform({s.B, s.H, s.Tq, s.D}, dt, 1), k = uniform({s.B, s.H, s.Tk, s.D}, dt, 2),
                     v = uniform({s.B, s.H, s.Tk, s.D}, dt, 3), go = uniform(q.shape(), dt, 4);
        const double scale = 1 / std::sqrt(static_cast<double>(s.D));
        expect_cuda_matches_cpu([&](Device d) {
          Backend& be = backend_for(d);
          const Tensor qd = to_device(q, d), kd = to_device(k, d), vd = to_device(v, d);
          Tensor out = zeros(q.shape(), {dt, d}), lse = zeros({s.B, s.H, s.Tq}, {dt, d});
          Tensor gq = zeros(q.shape(), {dt, d}), gk = zeros(k.shape(), {dt, d}), gv = zeros(k.shape(), {dt, d});
          be.attention(qd, kd, vd, scale, causal, out, lse);
          be.attention_backward(qd, kd, vd, out, lse, to_device(go, d), scale, causal, gq, gk, gv);
          return Outputs{out, lse, gq, gk, gv};
        }, {tol_row(dt), tol_row(dt), tol_sum(dt)});
      }
}

TEST(CudaNn, PackedAndFusedQkvAttentionMatchCpu) {
  if (no_gpu()) GTEST_SKIP() << kNoGpu;
  std::vector<int64_t> many;  // 60 sequences, lengths 0..97
  for (int64_t s = 0; s < 60; ++s) many.push_back((s * 37) % 98);
  for (DType dt : kDtypes)
    for (const auto& lengths : {std::vector<int64_t>{5, 0, 1, 37, 0, 16, 33}, many})
      for (int64_t D : {7, 64}) {
        const Tensor cu = cu_from_lengths(lengths);
        const int64_t H = 3, N = cu.to_vector<int64_t>().back(), C = H * D;
        SCOPED_TRACE(::testing::Message() << dtype_name(dt) << " N " << N << " D " << D);
        const double scale = 1 / std::sqrt(static_cast<double>(D));
        const Tensor q = uniform({H, N, D}, dt, 1), k = uniform({H, N, D}, dt, 2), v = uniform({H, N, D}, dt, 3),
                     go = uniform({H, N, D}, dt, 4), qkv = uniform({N, 3 * C}, dt, 5), go2 = uniform({N, C}, dt, 6);
        expect_cuda_matches_cpu([&](Device d) {
          Backend& be = backend_for(d);
          const Tensor qd = to_device(q, d), kd = to_device(k, d), vd = to_device(v, d), cud = to_device(cu, d);
          Tensor out = zeros(q.shape(), {dt, d}), lse = zeros({H, N}, {dt, d});
          Tensor gq = zeros(q.shape(), {dt, d}), gk = zeros(q.shape(), {dt, d}), gv = zeros(q.shape(), {dt, d});
          be.attention_varlen(qd, kd, vd, cud, scale, out, lse);
          be.attention_varlen_backward(qd, kd, vd, cud, out, lse, to_device(go, d), scale, gq, gk, gv);
          const Tensor qkvd = to_device(qkv, d);
          Tensor out2 = zeros({N, C}, {dt, d}), lse2 = zeros({H, N}, {dt, d}), gqkv = zeros(qkv.shape(), {dt, d});
          be.attention_qkv(qkvd, cud, H, scale, out2, lse2);
          be.attention_qkv_backward(qkvd, cud, H, out2, lse2, to_device(go2, d), scale, gqkv);
          return Outputs{out, lse, out2, lse2, gq, gk, gv, gqkv};
        }, {tol_row(dt), tol_row(dt), tol_row(dt), tol_row(dt), tol_sum(dt)});
      }
}
