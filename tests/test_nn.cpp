// Fused nn ops: softmax, log_softmax, layer_norm, rms_norm. Forward values
// against composite references built from basic differentiable ops (f64),
// gradcheck on contiguous and strided inputs, f32 against f64, the parallel
// paths, double backward and error messages. Attention: test_attention.cpp.
#include <cmath>
#include <limits>

#include "autograd/engine.h"
#include "testing.h"

using namespace dg;
using namespace dg::testing;

namespace {

// --- composite references (basic ops only)
Tensor ref_softmax(const Tensor& x, int64_t dim) { return exp(x - logsumexp(x, {dim}, true)); }
Tensor ref_log_softmax(const Tensor& x, int64_t dim) { return x - logsumexp(x, {dim}, true); }

Tensor ref_layer_norm(const Tensor& x, const Tensor& w, const Tensor& b, double eps) {
  Tensor xhat = (x - mean(x, {-1}, true)) * rsqrt(var(x, {-1}, true, /*correction=*/0) + eps);
  if (w.defined()) xhat = xhat * w;
  if (b.defined()) xhat = xhat + b;
  return xhat;
}

Tensor ref_rms_norm(const Tensor& x, const Tensor& w, double eps) {
  Tensor y = x * rsqrt(mean(square(x), {-1}, true) + eps);
  return w.defined() ? y * w : y;
}

Tensor f32(const Tensor& t) { return to_dtype(t, DType::f32); }

// Gradients of out·w with respect to xs, for comparing two implementations.
Tensors vjp(const Tensor& out, const Tensors& xs, uint64_t seed) {
  Generator g(seed);
  return grad({out}, xs, {randn(out.shape(), {out.dtype()}, &g)});
}

}  // namespace

// ---------------------------------------------------------------- softmax

TEST(Softmax, KnownValues) {
  Tensor x = from_vector<double>({1, 2, 3});
  expect_values(softmax(x), {0.0900305731703805, 0.2447284710547976, 0.6652409557748219}, 1e-15);
  expect_values(log_softmax(x), {-2.4076059644443806, -1.4076059644443806, -0.4076059644443806}, 1e-15);
  // A 0-dim tensor is one row of one element.
  expect_values(softmax(scalar_tensor(5.0, {DType::f64})), {1.0});
  expect_values(log_softmax(scalar_tensor(5.0, {DType::f64})), {0.0});
}

TEST(Softmax, LargeAndMaskedValuesAreStable) {
  const double inf = std::numeric_limits<double>::infinity();
  Tensor x = from_vector<double>({1000, 1001, 1002, -inf});
  expect_values(softmax(x), {0.0900305731703805, 0.2447284710547976, 0.6652409557748219, 0.0}, 1e-15);
  expect_values(log_softmax(from_vector<float>({-1000, -1001})), {-0.31326169, -1.31326169}, 1e-6);
}

TEST(Softmax, MatchesCompositeOverEveryDim) {
  Tensor x = rand_input({3, 4, 5}, 1, -3, 3);
  for (int64_t dim : {0, 1, 2, -1}) {
    EXPECT_LT(max_abs_diff(softmax(x, dim), ref_softmax(x, dim)), 1e-14) << "dim " << dim;
    EXPECT_LT(max_abs_diff(log_softmax(x, dim), ref_log_softmax(x, dim)), 1e-14) << "dim " << dim;
    Tensors g = vjp(softmax(x, dim), {x}, 2), gr = vjp(ref_softmax(x, dim), {x}, 2);
    EXPECT_LT(max_abs_diff(g[0], gr[0]), 1e-14) << "dim " << dim;
    g = vjp(log_softmax(x, dim), {x}, 3), gr = vjp(ref_log_softmax(x, dim), {x}, 3);
    EXPECT_LT(max_abs_diff(g[0], gr[0]), 1e-13) << "dim " << dim;
  }
}

TEST(Softmax, Gradcheck) {
  Tensor x = rand_input({3, 5}, 4, -2, 2);
  for (int64_t dim : {0, 1}) {
    EXPECT_GRADCHECK([dim](const Tensors& in) { return softmax(in[0], dim); }, {x});
    EXPECT_GRADCHECK([dim](const Tensors& in) { return log_softmax(in[0], dim); }, {x});
  }
  // Strided input: a transposed view, normalised along its (strided) last dim.
  EXPECT_GRADCHECK([](const Tensors& in) { return softmax(transpose(in[0], 0, 1), -1); }, {x});
  EXPECT_GRADCHECK([](const Tensors& in) { return log_softmax(transpose(in[0], 0, 1), -1); }, {x});
  // Middle dim of a 3-D tensor (permuted copy, view back).
  Tensor y = rand_input({2, 3, 4}, 5, -2, 2);
  EXPECT_GRADCHECK([](const Tensors& in) { return softmax(in[0], 1); }, {y});
  EXPECT_GRADCHECK([](const Tensors& in) { return log_softmax(in[0], 1); }, {y});
}

TEST(Softmax, F32MatchesF64) {
  Tensor x = rand_input({6, 33}, 6, -4, 4);
  for (int64_t dim : {0, 1}) {
    EXPECT_LT(max_abs_diff(softmax(f32(x), dim), softmax(x, dim)), 1e-6);
    EXPECT_LT(max_abs_diff(log_softmax(f32(x), dim), log_softmax(x, dim)), 2e-6);
  }
}

// Rows spread over threads (above the parallel grain) give the same values as
// the rows computed one at a time (up to rounding: Eigen's vectorised sums
// start at the first aligned element, so a row's address can change the order).
TEST(Softmax, ParallelRowsMatchSingleRows) {
  const int64_t N = 300, C = 200;
  Tensor x = rand_input({N, C}, 7, -5, 5);
  Tensor y = softmax(x), ly = log_softmax(x);
  std::vector<double> xv = x.to_vector<double>(), yv = y.to_vector<double>(), lyv = ly.to_vector<double>();
  for (int64_t r : {int64_t{0}, N / 2, N - 1}) {
    std::vector<double> row(xv.begin() + r * C, xv.begin() + (r + 1) * C);
    std::vector<double> y1 = softmax(from_vector<double>(row)).to_vector<double>();
    std::vector<double> l1 = log_softmax(from_vector<double>(row)).to_vector<double>();
    for (int64_t c = 0; c < C; ++c) {
      EXPECT_NEAR(yv[r * C + c], y1[c], 1e-16);
      EXPECT_NEAR(lyv[r * C + c], l1[c], 1e-14);
    }
  }
}

TEST(Softmax, NoDoubleBackward) {
  Tensor x = rand_input({2, 3}, 8);
  Tensor w = rand_input({2, 3}, 9).detach();
  for (bool log : {false, true}) {
    Tensor y = log ? log_softmax(x) : softmax(x);
    Tensors g = grad({y}, {x}, {w}, /*retain_graph=*/false, /*create_graph=*/true);
    EXPECT_TRUE(g[0].requires_grad());
    EXPECT_DG_ERROR(grad({g[0]}, {x}, {w}), log ? "double backward of log_softmax is not supported"
                                                 : "double backward of softmax is not supported");
  }
  // Without create_graph the gradient has no history.
  Tensors g = grad({softmax(x)}, {x}, {w});
  EXPECT_FALSE(g[0].requires_grad());
}

TEST(Softmax, Errors) {
  EXPECT_DG_ERROR(softmax(from_vector<double>({1, 2}), 1), "softmax", "dim 1 out of range");
  EXPECT_DG_ERROR(log_softmax(zeros({2, 3}, {DType::i64}), -1), "log_softmax", "floating", "[2, 3]");
  EXPECT_DG_ERROR(softmax(Tensor()), "softmax", "undefined");
}

TEST(Softmax, NoGradRecordsNothing) {
  Tensor x = rand_input({2, 3}, 10);
  NoGradGuard no_grad;
  EXPECT_FALSE(softmax(x).requires_grad());
}

// ---------------------------------------------------------------- layer_norm

TEST(LayerNorm, KnownValues) {
  Tensor x = from_vector<double>({1, 2, 3, -1, -1, 5}, {2, 3});
  Tensor w = from_vector<double>({1, 2, 3}), b = from_vector<double>({0, 1, 0});
  const double s = std::sqrt(1.5);  // 1 / std of {1, 2, 3}
  expect_values(layer_norm(x, w, b, 0.0),
                {-s, 1, 3 * s, -1 / std::sqrt(2.0), 1 - 2 / std::sqrt(2.0), 3 * std::sqrt(2.0)}, 1e-14);
  expect_values(layer_norm(x, Tensor(), Tensor(), 0.0),
                {-s, 0, s, -1 / std::sqrt(2.0), -1 / std::sqrt(2.0), std::sqrt(2.0)}, 1e-14);
}

TEST(LayerNorm, MatchesComposite) {
  Tensor x = rand_input({2, 3, 7}, 11, -2, 3);
  Tensor w = rand_input({7}, 12), b = rand_input({7}, 13);
  for (auto [wi, bi] : {std::pair{w, b}, {w, Tensor()}, {Tensor(), b}, {Tensor(), Tensor()}}) {
    Tensor y = layer_norm(x, wi, bi, 1e-5), yr = ref_layer_norm(x, wi, bi, 1e-5);
    EXPECT_LT(max_abs_diff(y, yr), 1e-13);
    Tensors in{x};
    if (wi.defined()) in.push_back(wi);
    if (bi.defined()) in.push_back(bi);
    Tensors g = vjp(y, in, 14), gr = vjp(yr, in, 14);
    for (size_t i = 0; i < in.size(); ++i) EXPECT_LT(max_abs_diff(g[i], gr[i]), 1e-12) << "input " << i;
  }
}

TEST(LayerNorm, Gradcheck) {
  Tensor x = rand_input({4, 5}, 15, -2, 2), w = rand_input({5}, 16), b = rand_input({5}, 17);
  EXPECT_GRADCHECK([](const Tensors& in) { return layer_norm(in[0], in[1], in[2], 1e-5); }, {x, w, b});
  EXPECT_GRADCHECK([](const Tensors& in) { return layer_norm(in[0], Tensor(), Tensor(), 1e-5); }, {x});
  EXPECT_GRADCHECK([](const Tensors& in) { return layer_norm(in[0], in[1], Tensor(), 1e-5); }, {x, w});
  // Strided input: the transpose (5, 4) normalised over its strided last dim.
  Tensor w4 = rand_input({4}, 18), b4 = rand_input({4}, 19);
  EXPECT_GRADCHECK([](const Tensors& in) { return layer_norm(transpose(in[0], 0, 1), in[1], in[2], 1e-5); },
                   {x, w4, b4});
  // Weight and bias only (the input needs no gradient); 3-D input.
  Tensor x3 = rand_input({2, 3, 5}, 20).detach();
  EXPECT_GRADCHECK([x3](const Tensors& in) { return layer_norm(x3, in[0], in[1], 1e-5); }, {w, b});
}

TEST(LayerNorm, F32MatchesF64) {
  Tensor x = rand_input({5, 37}, 21, -3, 3), w = rand_input({37}, 22), b = rand_input({37}, 23);
  EXPECT_LT(max_abs_diff(layer_norm(f32(x), f32(w), f32(b)), layer_norm(x, w, b)), 2e-6);
  Tensors g = vjp(layer_norm(x, w, b), {x, w, b}, 24);
  Tensor x32 = f32(x).set_requires_grad(), w32 = f32(w).set_requires_grad(), b32 = f32(b).set_requires_grad();
  Tensors g32 = vjp(layer_norm(x32, w32, b32), {x32, w32, b32}, 24);
  for (size_t i = 0; i < 3; ++i) EXPECT_LT(max_abs_diff(g32[i], g[i]), 1e-5) << "input " << i;
}

// Many rows: the weight/bias gradients are per-thread partial sums reduced
// after the loop; they must equal the sums of the per-row gradients.
TEST(LayerNorm, ParallelWeightGradientsMatchRowSums) {
  const int64_t N = 400, C = 96;
  Tensor x = rand_input({N, C}, 25, -2, 2), w = rand_input({C}, 26), b = rand_input({C}, 27);
  Tensor gy = rand_input({N, C}, 28).detach();
  Tensors g = grad({layer_norm(x, w, b)}, {x, w, b}, {gy});
  std::vector<double> xv = x.to_vector<double>(), gyv = gy.to_vector<double>(), gwv(C, 0.0), gbv(C, 0.0);
  std::vector<double> gxv = g[0].to_vector<double>();
  for (int64_t r = 0; r < N; ++r) {
    Tensor xr = from_vector<double>({xv.begin() + r * C, xv.begin() + (r + 1) * C}).set_requires_grad();
    Tensor wr = w.detach().set_requires_grad(), br = b.detach().set_requires_grad();
    Tensors gr = grad({layer_norm(xr, wr, br)}, {xr, wr, br},
                      {from_vector<double>({gyv.begin() + r * C, gyv.begin() + (r + 1) * C})});
    std::vector<double> gxr = gr[0].to_vector<double>(), gwr = gr[1].to_vector<double>(),
                        gbr = gr[2].to_vector<double>();
    for (int64_t c = 0; c < C; ++c) {
      EXPECT_NEAR(gxv[r * C + c], gxr[c], 1e-13);
      gwv[c] += gwr[c], gbv[c] += gbr[c];
    }
  }
  EXPECT_LT(max_abs_diff(g[1], from_vector<double>(gwv)), 1e-11);
  EXPECT_LT(max_abs_diff(g[2], from_vector<double>(gbv)), 1e-11);
}

TEST(LayerNorm, NoDoubleBackward) {
  Tensor x = rand_input({2, 3}, 29), w = rand_input({3}, 30);
  Tensor gy = rand_input({2, 3}, 31).detach();
  Tensors g = grad({layer_norm(x, w, Tensor())}, {x, w}, {gy}, false, /*create_graph=*/true);
  EXPECT_DG_ERROR(grad({g[0]}, {x}, {gy}), "double backward of layer_norm is not supported");
  EXPECT_DG_ERROR(grad({g[1]}, {w}, {ones({3}, {DType::f64})}), "double backward of layer_norm");
}

TEST(LayerNorm, Errors) {
  Tensor x = zeros({2, 4}, {DType::f64});
  EXPECT_DG_ERROR(layer_norm(x, zeros({5}, {DType::f64}), Tensor()),
                  "layer_norm: weight of shape [5] for input of shape [2, 4]");
  EXPECT_DG_ERROR(layer_norm(x, Tensor(), zeros({2, 4}, {DType::f64})),
                  "layer_norm: bias of shape [2, 4] for input of shape [2, 4]");
  EXPECT_DG_ERROR(layer_norm(x, zeros({4}), Tensor()), "layer_norm", "dtype mismatch");
  EXPECT_DG_ERROR(layer_norm(scalar_tensor(1.0), Tensor(), Tensor()), "layer_norm", "at least one dim", "[]");
  EXPECT_DG_ERROR(layer_norm(zeros({3}, {DType::i32}), Tensor(), Tensor()), "layer_norm", "floating");
}

// ---------------------------------------------------------------- grouped_layer_norm
// Groups of rows through different norms, one op: the same values and
// gradients as one layer_norm per group (an empty group included).

TEST(GroupedLayerNorm, MatchesOneLayerNormPerGroup) {
  Tensor x = rand_input({7, 4}, 40);
  const std::vector<int64_t> off{0, 3, 3, 7};
  Tensors w{rand_input({4}, 41), rand_input({4}, 42), rand_input({4}, 43)};
  Tensors b{rand_input({4}, 44), Tensor(), rand_input({4}, 45)};
  Tensor y = grouped_layer_norm(x, off, w, b, 1e-5);
  Tensor ref = cat({layer_norm(slice(x, 0, 0, 3), w[0], b[0], 1e-5), layer_norm(slice(x, 0, 3, 7), w[2], b[2], 1e-5)});
  EXPECT_LT(max_abs_diff(y, ref), 1e-15);
  // Gradients: a weighted sum through both forms.
  Tensor gy = rand_input({7, 4}, 46).detach();
  Tensors got = grad({sum(grouped_layer_norm(x, off, w, b, 1e-5) * gy)}, {x, w[0], w[2], b[0], b[2]});
  Tensors want = grad({sum(cat({layer_norm(slice(x, 0, 0, 3), w[0], b[0], 1e-5),
                                 layer_norm(slice(x, 0, 3, 7), w[2], b[2], 1e-5)}) * gy)},
                      {x, w[0], w[2], b[0], b[2]});
  for (size_t i = 0; i < got.size(); ++i) EXPECT_LT(max_abs_diff(got[i], want[i]), 1e-14) << "input " << i;
}

TEST(GroupedLayerNorm, Gradcheck) {
  const std::vector<int64_t> off{0, 2, 5};
  EXPECT_GRADCHECK([&](const Tensors& in) { return grouped_layer_norm(in[0], off, {in[1], in[2]}, {in[3], in[4]}); },
                   {rand_input({5, 3}, 47), rand_input({3}, 48), rand_input({3}, 49), rand_input({3}, 50),
                    rand_input({3}, 51)});
}

TEST(GroupedLayerNorm, ErrorsAndNoDoubleBackward) {
  Tensor x = rand_input({4, 3}, 52), w = rand_input({3}, 53);
  EXPECT_DG_ERROR(grouped_layer_norm(x, {0, 2}, {w, w}, {Tensor(), Tensor()}), "grouped_layer_norm", "2 weights need 3 offsets");
  EXPECT_DG_ERROR(grouped_layer_norm(x, {0, 3, 2, 4}, {w, w, w}, {Tensor(), Tensor(), Tensor()}), "grouped_layer_norm",
                  "decrease at group 1");
  EXPECT_DG_ERROR(grouped_layer_norm(x, {0, 1, 3}, {w, w}, {Tensor(), Tensor()}), "grouped_layer_norm", "0 to the input's 4 rows");
  EXPECT_DG_ERROR(grouped_layer_norm(x, {0, 1, 4}, {w, rand_input({4}, 54)}, {Tensor(), Tensor()}),
                  "grouped_layer_norm", "weight of shape [4] for input of shape [4, 3]");
  EXPECT_DG_ERROR(grouped_layer_norm(rand_input({2, 2, 3}, 55), {0, 2}, {w}, {Tensor()}), "grouped_layer_norm", "2-D");
  Tensor gy = rand_input({4, 3}, 56).detach();
  Tensors g = grad({grouped_layer_norm(x, {0, 1, 4}, {w, w}, {Tensor(), Tensor()})}, {x}, {gy}, false, true);
  EXPECT_DG_ERROR(grad({g[0]}, {x}, {gy}), "double backward of grouped_layer_norm is not supported");
}

// ---------------------------------------------------------------- rms_norm

TEST(RmsNorm, KnownValues) {
  Tensor x = from_vector<double>({3, 4, 0, -2}, {2, 2});
  // rms of {3, 4} is sqrt(12.5), of {0, -2} sqrt(2).
  const double r = std::sqrt(12.5);
  expect_values(rms_norm(x, from_vector<double>({1, 2}), 0.0), {3 / r, 8 / r, 0, -4 / std::sqrt(2.0)}, 1e-14);
}

TEST(RmsNorm, MatchesComposite) {
  Tensor x = rand_input({3, 2, 9}, 32, -2, 2), w = rand_input({9}, 33);
  for (Tensor wi : {w, Tensor()}) {
    Tensor y = rms_norm(x, wi, 1e-6), yr = ref_rms_norm(x, wi, 1e-6);
    EXPECT_LT(max_abs_diff(y, yr), 1e-13);
    Tensors in{x};
    if (wi.defined()) in.push_back(wi);
    Tensors g = vjp(y, in, 34), gr = vjp(yr, in, 34);
    for (size_t i = 0; i < in.size(); ++i) EXPECT_LT(max_abs_diff(g[i], gr[i]), 1e-12) << "input " << i;
  }
}

TEST(RmsNorm, Gradcheck) {
  Tensor x = rand_input({4, 5}, 35, -2, 2), w = rand_input({5}, 36), w4 = rand_input({4}, 37);
  EXPECT_GRADCHECK([](const Tensors& in) { return rms_norm(in[0], in[1], 1e-6); }, {x, w});
  EXPECT_GRADCHECK([](const Tensors& in) { return rms_norm(in[0], Tensor(), 1e-6); }, {x});
  EXPECT_GRADCHECK([](const Tensors& in) { return rms_norm(transpose(in[0], 0, 1), in[1], 1e-6); }, {x, w4});
}

TEST(RmsNorm, F32MatchesF64AndParallelWeightGradient) {
  const int64_t N = 500, C = 80;
  Tensor x = rand_input({N, C}, 38, -2, 2), w = rand_input({C}, 39);
  Tensor gy = rand_input({N, C}, 40).detach();
  EXPECT_LT(max_abs_diff(rms_norm(f32(x), f32(w)), rms_norm(x, w)), 2e-6);
  Tensors g = grad({rms_norm(x, w)}, {x, w}, {gy});
  Tensors gr = grad({ref_rms_norm(x, w, 1e-6)}, {x, w}, {gy});
  EXPECT_LT(max_abs_diff(g[0], gr[0]), 1e-12);
  EXPECT_LT(max_abs_diff(g[1], gr[1]), 1e-10);
}

TEST(RmsNorm, ErrorsAndNoDoubleBackward) {
  EXPECT_DG_ERROR(rms_norm(zeros({2, 4}, {DType::f64}), zeros({3}, {DType::f64})),
                  "rms_norm: weight of shape [3] for input of shape [2, 4]");
  Tensor x = rand_input({2, 3}, 41);
  Tensor gy = rand_input({2, 3}, 42).detach();
  Tensors g = grad({rms_norm(x, Tensor())}, {x}, {gy}, false, /*create_graph=*/true);
  EXPECT_DG_ERROR(grad({g[0]}, {x}, {gy}), "double backward of rms_norm is not supported");
}
