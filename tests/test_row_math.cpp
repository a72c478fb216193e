// The fused row kernels of the CUDA backend (cuda/nn.cu), run on the host:
// each row split over kern::threads_per_row(C) threads as strided partials,
// combined as row_allreduce does (xor butterfly per warp, then the warps in
// order), with the per-element formulas of tensor/kernels/row_norm.h, and the
// weight/bias gradients as per-chunk column partials summed in chunk order.
// Compared in f64 with the CPU backend (tensor/cpu/nn.cpp, loss.cpp) to
// 1e-12, for rows short (one warp) and long (a block), odd lengths, with and
// without weight and bias, ignored targets and label smoothing.
//
// Legend: N = rows, C = row length (V for logits).
#include <gtest/gtest.h>

#include <array>
#include <cmath>
#include <limits>
#include <vector>

#include "tensor/backend.h"
#include "tensor/creation.h"
#include "tensor/kernels/row_norm.h"
#include "testing.h"

using namespace dg;

namespace {

using dg::testing::max_rel_diff;

using T = double;
const T kNaN = std::numeric_limits<T>::quiet_NaN();
constexpr double kTol = 1e-12;

// row_allreduce over the threads_per_row(C) partials of f over a row.
template <class F, class Op>
T row_reduce(int64_t C, bool max, const F& f, const Op& op) {
  const int n = kern::threads_per_row(C);
  std::vector<T> part(static_cast<size_t>(n));
  for (int t = 0; t < n; ++t) part[t] = max ? kern::strided_max<T>(C, t, n, f) : kern::strided_sum<T>(C, t, n, f);
  std::vector<T> warp_total;
  for (int w = 0; w < n / 32; ++w) {
    std::array<T, 32> v;
    std::copy(part.begin() + w * 32, part.begin() + w * 32 + 32, v.begin());
    for (int o = 16; o > 0; o >>= 1) {
      const std::array<T, 32> prev = v;
      for (int l = 0; l < 32; ++l) v[l] = op(prev[l], prev[l ^ o]);
    }
    warp_total.push_back(v[0]);
  }
  T r = warp_total[0];
  for (size_t w = 1; w < warp_total.size(); ++w) r = op(r, warp_total[w]);
  return r;
}
template <class F>
T row_sum(int64_t C, const F& f) {
  return row_reduce(C, false, f, [](T a, T b) { return a + b; });
}
template <class F>
T row_max(int64_t C, const F& f) {
  return row_reduce(C, true, f, [](T a, T b) { return a > b ? a : b; });
}

std::vector<T> random_values(int64_t n, uint64_t seed, T lo = -2, T hi = 2) {
  Generator g(seed);
  std::vector<T> v = rand({n}, {DType::f64}, &g).to_vector<T>();
  for (T& x : v) x = lo + (hi - lo) * x;
  return v;
}

std::vector<T> nans(int64_t n) { return std::vector<T>(static_cast<size_t>(n), kNaN); }

// norm_param_partials_kernel + sum_chunks_kernel: out[c] = sum over rows of term(r, c).
template <class F>
std::vector<T> column_sums(int64_t N, int64_t C, const F& term) {
  const int64_t rows = kern::param_grad_rows_per_chunk(N), chunks = (N + rows - 1) / rows;
  std::vector<T> partial(static_cast<size_t>(chunks * C)), out(static_cast<size_t>(C));
  for (int64_t k = 0; k < chunks; ++k)
    for (int64_t c = 0; c < C; ++c) {
      T acc = T(0);
      for (int64_t r = k * rows; r < std::min(N, (k + 1) * rows); ++r) acc += term(r, c);
      partial[k * C + c] = acc;
    }
  for (int64_t c = 0; c < C; ++c) {
    T acc = T(0);
    for (int64_t k = 0; k < chunks; ++k) acc += partial[k * C + c];
    out[c] = acc;
  }
  return out;
}

Backend& cpu() { return backend_for(Device::cpu()); }
Tensor as_tensor(const std::vector<T>& v, const Shape& shape) { return from_vector<T>(v, shape); }

void check_softmax(int64_t N, int64_t C, bool log, uint64_t seed) {
  SCOPED_TRACE(::testing::Message() << (log ? "log_softmax" : "softmax") << " N " << N << " C " << C);
  const std::vector<T> x = random_values(N * C, seed, -30, 30), gy = random_values(N * C, seed + 1);
  Tensor y_ref = zeros({N, C}, {DType::f64}), gx_ref = zeros({N, C}, {DType::f64});
  cpu().softmax(as_tensor(x, {N, C}), y_ref, log);
  cpu().softmax_backward(y_ref, as_tensor(gy, {N, C}), gx_ref, log);
  std::vector<T> y = nans(N * C), gx = nans(N * C);
  const std::vector<T> yr_cpu = y_ref.to_vector<T>();
  for (int64_t r = 0; r < N; ++r) {  // softmax_kernel, softmax_backward_kernel
    const T* xr = &x[r * C];
    const T m = row_max(C, [&](int64_t i) { return xr[i]; });
    const T sum = row_sum(C, [&](int64_t i) { return std::exp(xr[i] - m); });
    for (int64_t i = 0; i < C; ++i) y[r * C + i] = kern::softmax_value(xr[i], m, sum, log);
    const T* yr = &yr_cpu[r * C];
    const T dot = row_sum(C, [&](int64_t i) { return kern::softmax_grad_dot_term(yr[i], gy[r * C + i], log); });
    for (int64_t i = 0; i < C; ++i) gx[r * C + i] = kern::softmax_grad(yr[i], gy[r * C + i], dot, log);
  }
  EXPECT_LE(max_rel_diff(y, y_ref), kTol);
  EXPECT_LE(max_rel_diff(gx, gx_ref), kTol);
}

// Layer norm (with_mean) or RMS norm, forward and backward, weight and bias optional.
void check_norm(bool with_mean, int64_t N, int64_t C, bool has_w, bool has_b, uint64_t seed) {
  SCOPED_TRACE(::testing::Message() << (with_mean ? "layer_norm" : "rms_norm") << " N " << N << " C " << C
                                  << (has_w ? " w" : "") << (has_b ? " b" : ""));
  const T eps = 1e-5;
  const std::vector<T> x = random_values(N * C, seed, -3, 5), gy = random_values(N * C, seed + 1),
                       wv = random_values(C, seed + 2), bv = random_values(C, seed + 3);
  const Tensor xt = as_tensor(x, {N, C}), gyt = as_tensor(gy, {N, C});
  const Tensor w = has_w ? as_tensor(wv, {C}) : Tensor(), b = has_b ? as_tensor(bv, {C}) : Tensor();
  Tensor y_ref = zeros({N, C}, {DType::f64}), mean_ref = zeros({N}, {DType::f64}), rstd_ref = zeros({N}, {DType::f64});
  Tensor gx_ref = zeros({N, C}, {DType::f64}), gw_ref = zeros({C}, {DType::f64}), gb_ref = zeros({C}, {DType::f64});
  if (with_mean) {
    cpu().layer_norm(xt, w, b, eps, y_ref, mean_ref, rstd_ref);
    cpu().layer_norm_backward(gyt, xt, w, mean_ref, rstd_ref, gx_ref, gw_ref, gb_ref, /*add_to_gx=*/false);
  } else {
    cpu().rms_norm(xt, w, eps, y_ref, rstd_ref);
    cpu().rms_norm_backward(gyt, xt, w, rstd_ref, gx_ref, gw_ref);
  }
  const T* wp = has_w ? wv.data() : nullptr;
  const T* bp = has_b && with_mean ? bv.data() : nullptr;
  std::vector<T> y = nans(N * C), mean = nans(N), rstd = nans(N), gx = nans(N * C);
  for (int64_t r = 0; r < N; ++r) {  // norm_kernel, norm_backward_kernel
    const T* xr = &x[r * C];
    const T* gr = &gy[r * C];
    const T mu = with_mean ? kern::row_mean(row_sum(C, [&](int64_t i) { return xr[i]; }), C) : T(0);
    const T rs = kern::rstd_of(row_sum(C, [&](int64_t i) { return kern::centred_square(xr[i], mu); }), C, eps);
    mean[r] = mu;
    rstd[r] = rs;
    for (int64_t i = 0; i < C; ++i) y[r * C + i] = kern::affine(kern::normalised(xr[i], mu, rs), wp, bp, i);
    const T a = with_mean ? kern::row_mean(row_sum(C, [&](int64_t i) { return kern::dxhat_of(gr[i], wp, i); }), C)
                          : T(0);
    const T c = kern::row_mean(
        row_sum(C, [&](int64_t i) { return kern::dxhat_of(gr[i], wp, i) * kern::normalised(xr[i], mu, rs); }), C);
    for (int64_t i = 0; i < C; ++i)
      gx[r * C + i] = kern::norm_grad(kern::dxhat_of(gr[i], wp, i), kern::normalised(xr[i], mu, rs), rs, a, c);
  }
  const std::vector<T> gw = column_sums(N, C, [&](int64_t r, int64_t c) {
    return gy[r * C + c] * kern::normalised(x[r * C + c], mean[r], rstd[r]);
  });
  const std::vector<T> gb = column_sums(N, C, [&](int64_t r, int64_t c) { return gy[r * C + c]; });
  EXPECT_LE(max_rel_diff(y, y_ref), kTol);
  EXPECT_LE(max_rel_diff(rstd, rstd_ref), kTol);
  if (with_mean) {
    EXPECT_LE(max_rel_diff(mean, mean_ref), kTol);
  }
  EXPECT_LE(max_rel_diff(gx, gx_ref), kTol);
  EXPECT_LE(max_rel_diff(gw, gw_ref), kTol);
  if (with_mean) {
    EXPECT_LE(max_rel_diff(gb, gb_ref), kTol);
    // add_to_gx: gx + the input gradient, rounded once: exactly what the
    // engine's separate add of gx_ref would give (no parameter gradients asked).
    const std::vector<T> before = random_values(N * C, seed + 4);
    Tensor sum_t = as_tensor(before, {N, C});
    cpu().layer_norm_backward(gyt, xt, w, mean_ref, rstd_ref, sum_t, Tensor(), Tensor(), /*add_to_gx=*/true);
    const std::vector<T> sum = sum_t.to_vector<T>(), g = gx_ref.to_vector<T>();
    for (int64_t i = 0; i < N * C; ++i) ASSERT_EQ(sum[i], before[i] + g[i]) << "element " << i;
  }
}

void check_cross_entropy(int64_t N, int64_t V, T s, uint64_t seed) {
  SCOPED_TRACE(::testing::Message() << "cross_entropy N " << N << " V " << V << " s " << s);
  const int64_t ignore = -100;
  const std::vector<T> x = random_values(N * V, seed, -20, 20), g = random_values(N, seed + 1);
  std::vector<int64_t> target(static_cast<size_t>(N));
  for (int64_t n = 0; n < N; ++n) target[n] = n % 3 == 1 ? ignore : (n * 7919) % V;
  const Tensor xt = as_tensor(x, {N, V}), tt = from_vector<int64_t>(target, {N});
  Tensor loss_ref = zeros({N}, {DType::f64}), lse_ref = zeros({N}, {DType::f64}), gx_ref = zeros({N, V}, {DType::f64});
  cpu().cross_entropy(xt, tt, ignore, s, loss_ref, lse_ref);
  cpu().cross_entropy_backward(xt, tt, lse_ref, as_tensor(g, {N}), ignore, s, gx_ref);
  std::vector<T> loss = nans(N), lse = nans(N), gx = nans(N * V);
  for (int64_t n = 0; n < N; ++n) {  // cross_entropy_kernel, cross_entropy_backward_kernel
    const T* xr = &x[n * V];
    const T m = row_max(V, [&](int64_t i) { return xr[i]; });
    const T log_sum = std::log(row_sum(V, [&](int64_t i) { return std::exp(xr[i] - m); }));
    const T mean_x = s != 0 ? kern::row_mean(row_sum(V, [&](int64_t i) { return xr[i]; }), V) : T(0);
    lse[n] = m + log_sum;
    const int64_t t = target[n];
    loss[n] = t == ignore ? T(0) : kern::cross_entropy_loss(log_sum, m, xr[t], mean_x, s);
    for (int64_t i = 0; i < V; ++i)
      gx[n * V + i] = t == ignore ? T(0) : kern::cross_entropy_grad(xr[i], lse[n], g[n], s / T(V), s, i == t);
  }
  EXPECT_LE(max_rel_diff(loss, loss_ref), kTol);
  EXPECT_LE(max_rel_diff(lse, lse_ref), kTol);
  EXPECT_LE(max_rel_diff(gx, gx_ref), kTol);
}

}  // namespace

TEST(RowMath, SoftmaxShortAndLongRows) {
  for (bool log : {false, true})
    for (int64_t C : {1, 5, 31, 256, 257, 1000}) check_softmax(9, C, log, 10 + C);
}

TEST(RowMath, LayerNormWithAndWithoutAffine) {
  for (int64_t C : {1, 7, 256, 300}) {
    check_norm(true, 150, C, true, true, 20 + C);  // 150 rows: three gradient chunks of 64
    check_norm(true, 5, C, true, false, 30 + C);
    check_norm(true, 5, C, false, false, 40 + C);
  }
}

TEST(RowMath, RmsNormWithAndWithoutWeight) {
  for (int64_t C : {1, 33, 257}) {
    check_norm(false, 150, C, true, false, 50 + C);
    check_norm(false, 4, C, false, false, 60 + C);
  }
}

TEST(RowMath, CrossEntropyIgnoreIndexAndSmoothing) {
  for (T s : {0.0, 0.1})
    for (int64_t V : {3, 256, 1001}) check_cross_entropy(11, V, s, 70 + V);
}

TEST(RowMath, LaunchShapeRules) {
  EXPECT_EQ(kern::threads_per_row(256), 32);
  EXPECT_EQ(kern::threads_per_row(257), 256);
  EXPECT_EQ(kern::param_grad_rows_per_chunk(10), 64);
  EXPECT_LE((int64_t{1} << 30) / kern::param_grad_rows_per_chunk(int64_t{1} << 30), 65535);
}
