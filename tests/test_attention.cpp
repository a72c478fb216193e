// scaled_dot_product_attention: forward and gradients against the composite
// (matmul + masked softmax + matmul) in f64, gradcheck on contiguous and
// strided inputs, causal and not, KV-cache shapes (fewer queries than keys),
// causality, f32 against f64, double backward and error messages.
#include <cmath>
#include <limits>

#include "autograd/engine.h"
#include "testing.h"

using namespace dg;
using namespace dg::testing;

namespace {

// Additive causal mask (Tq, Tk): -inf where key j is after query i's position
// i + Tk - Tq, else 0.
Tensor causal_mask(int64_t Tq, int64_t Tk) {
  std::vector<double> m(Tq * Tk, 0.0);
  for (int64_t i = 0; i < Tq; ++i)
    for (int64_t j = i + 1 + (Tk - Tq); j < Tk; ++j) m[i * Tk + j] = -std::numeric_limits<double>::infinity();
  return from_vector<double>(m, {Tq, Tk});
}

// The composite: softmax(q k^T * scale + mask) v, with softmax = exp(s - logsumexp(s)).
Tensor ref_attention(const Tensor& q, const Tensor& k, const Tensor& v, bool causal, double scale = 0.0) {
  if (scale == 0.0) scale = 1.0 / std::sqrt(static_cast<double>(q.size(3)));
  Tensor s = matmul(q, transpose(k, -2, -1)) * scale;
  if (causal) s = s + causal_mask(q.size(2), k.size(2));
  return matmul(exp(s - logsumexp(s, {-1}, true)), v);
}

struct Qkv {
  Tensor q, k, v;
};
Qkv make_qkv(int64_t B, int64_t H, int64_t Tq, int64_t Tk, int64_t D, uint64_t seed) {
  return {rand_input({B, H, Tq, D}, seed, -2, 2), rand_input({B, H, Tk, D}, seed + 1, -2, 2),
          rand_input({B, H, Tk, D}, seed + 2, -2, 2)};
}

Tensors vjp(const Tensor& out, const Tensors& xs, uint64_t seed) {
  Generator g(seed);
  return grad({out}, xs, {randn(out.shape(), {out.dtype()}, &g)});
}

Tensor f32(const Tensor& t) { return to_dtype(t, DType::f32); }

}  // namespace

TEST(Attention, KnownValues) {
  // One head, two positions, D = 1, scale 1: the causal first row sees only v0.
  Tensor q = from_vector<double>({1, 2}, {1, 1, 2, 1});
  Tensor k = from_vector<double>({0, 1}, {1, 1, 2, 1});
  Tensor v = from_vector<double>({10, 20}, {1, 1, 2, 1});
  const double p = 1 / (1 + std::exp(-2.0));  // softmax([0, 2])[1]
  expect_values(scaled_dot_product_attention(q, k, v, true, 1.0), {10, 10 * (1 - p) + 20 * p}, 1e-12);
  const double p0 = 1 / (1 + std::exp(-1.0));
  expect_values(scaled_dot_product_attention(q, k, v, false, 1.0), {10 * (1 - p0) + 20 * p0, 10 * (1 - p) + 20 * p},
                1e-12);
}

// Sizes around the kernel's query block (32), so blocks are partial and the
// causal key ranges vary across blocks.
TEST(Attention, MatchesComposite) {
  struct Case {
    int64_t B, H, Tq, Tk, D;
  };
  for (Case c : {Case{2, 3, 5, 5, 4}, Case{1, 2, 37, 37, 8}, Case{1, 1, 70, 70, 3}, Case{2, 1, 3, 9, 4},
                 Case{1, 2, 1, 40, 5}, Case{1, 1, 33, 65, 2}}) {
    Qkv t = make_qkv(c.B, c.H, c.Tq, c.Tk, c.D, 100 + c.Tq);
    for (bool causal : {true, false}) {
      Tensor out = scaled_dot_product_attention(t.q, t.k, t.v, causal);
      Tensor ref = ref_attention(t.q, t.k, t.v, causal);
      EXPECT_LT(max_abs_diff(out, ref), 1e-12) << "T " << c.Tq << "x" << c.Tk << " causal " << causal;
      Tensors g = vjp(out, {t.q, t.k, t.v}, 7), gr = vjp(ref, {t.q, t.k, t.v}, 7);
      for (size_t i = 0; i < 3; ++i)
        EXPECT_LT(max_abs_diff(g[i], gr[i]), 1e-11) << "input " << i << " T " << c.Tq << "x" << c.Tk << " causal "
                                                    << causal;
    }
  }
}

TEST(Attention, ExplicitScale) {
  Qkv t = make_qkv(1, 2, 6, 6, 4, 200);
  EXPECT_LT(max_abs_diff(scaled_dot_product_attention(t.q, t.k, t.v, true, 0.3), ref_attention(t.q, t.k, t.v, true, 0.3)),
            1e-12);
}

TEST(Attention, Gradcheck) {
  Qkv t = make_qkv(2, 2, 4, 4, 3, 300);
  for (bool causal : {true, false})
    EXPECT_GRADCHECK([causal](const Tensors& in) { return scaled_dot_product_attention(in[0], in[1], in[2], causal); },
                     {t.q, t.k, t.v});
  // Fewer queries than keys (a KV-cached step), causal aligned to the end.
  Qkv s = make_qkv(1, 2, 2, 5, 3, 310);
  EXPECT_GRADCHECK([](const Tensors& in) { return scaled_dot_product_attention(in[0], in[1], in[2], true); },
                   {s.q, s.k, s.v});
}

// The layout models produce: (B, T, H, D) projections viewed as (B, H, T, D).
TEST(Attention, GradcheckStridedInputs) {
  Tensor q = rand_input({2, 4, 2, 3}, 320, -2, 2), k = rand_input({2, 4, 2, 3}, 321, -2, 2),
         v = rand_input({2, 4, 2, 3}, 322, -2, 2);
  auto fn = [](const Tensors& in) {
    return scaled_dot_product_attention(transpose(in[0], 1, 2), transpose(in[1], 1, 2), transpose(in[2], 1, 2), true);
  };
  EXPECT_GRADCHECK(fn, {q, k, v});
  Tensor qt = transpose(q, 1, 2), kt = transpose(k, 1, 2), vt = transpose(v, 1, 2);
  EXPECT_LT(max_abs_diff(scaled_dot_product_attention(qt, kt, vt, true), ref_attention(qt, kt, vt, true)), 1e-12);
}

// Perturbing a later key/value must not change any earlier output, nor the
// gradient reaching an earlier query.
TEST(Attention, CausalOutputsIgnoreTheFuture) {
  const int64_t T = 40, D = 4;
  Qkv t = make_qkv(1, 1, T, T, D, 400);
  Tensor out = scaled_dot_product_attention(t.q, t.k, t.v, true);
  std::vector<double> kv = t.k.to_vector<double>(), vv = t.v.to_vector<double>();
  const int64_t j = 25;  // the perturbed position
  for (int64_t d = 0; d < D; ++d) kv[j * D + d] += 3.0, vv[j * D + d] -= 5.0;
  Tensor k2 = from_vector<double>(kv, {1, 1, T, D}), v2 = from_vector<double>(vv, {1, 1, T, D});
  Tensor out2 = scaled_dot_product_attention(t.q, k2, v2, true);
  std::vector<double> a = out.to_vector<double>(), b = out2.to_vector<double>();
  for (int64_t i = 0; i < T * D; ++i) {
    if (i / D < j) {
      EXPECT_EQ(a[i], b[i]) << "row " << i / D;
    }
  }
  EXPECT_NE(a[j * D], b[j * D]);
}

TEST(Attention, F32MatchesF64) {
  Qkv t = make_qkv(2, 2, 45, 45, 16, 500);
  for (bool causal : {true, false}) {
    Tensor out = scaled_dot_product_attention(t.q, t.k, t.v, causal);
    Tensor q = f32(t.q).set_requires_grad(), k = f32(t.k).set_requires_grad(), v = f32(t.v).set_requires_grad();
    Tensor out32 = scaled_dot_product_attention(q, k, v, causal);
    EXPECT_EQ(out32.dtype(), DType::f32);
    EXPECT_LT(max_abs_diff(out32, out), 1e-5);
    Tensor gy = randn(out.shape(), {DType::f64});
    Tensors g = grad({out}, {t.q, t.k, t.v}, {gy}), g32 = grad({out32}, {q, k, v}, {f32(gy)});
    for (size_t i = 0; i < 3; ++i) EXPECT_LT(max_abs_diff(g32[i], g[i]), 1e-4) << "input " << i;
  }
}

// Enough heads to run the (b, h) tiles on several threads.
TEST(Attention, ParallelTilesMatchSingleTiles) {
  const int64_t H = 8, T = 64, D = 16;
  Qkv t = make_qkv(2, H, T, T, D, 600);
  Tensor out = scaled_dot_product_attention(t.q, t.k, t.v, true);
  Tensor gy = randn(out.shape(), {DType::f64});
  Tensors g = grad({out}, {t.q, t.k, t.v}, {gy});
  // Tile (b = 1, h = 5) on its own.
  const int64_t tile = (1 * H + 5) * T * D;
  auto one = [&](const Tensor& x) {
    std::vector<double> v = x.to_vector<double>();
    return from_vector<double>({v.begin() + tile, v.begin() + tile + T * D}, {1, 1, T, D});
  };
  Tensor q1 = one(t.q).set_requires_grad(), k1 = one(t.k).set_requires_grad(), v1 = one(t.v).set_requires_grad();
  Tensor out1 = scaled_dot_product_attention(q1, k1, v1, true);
  Tensors g1 = grad({out1}, {q1, k1, v1}, {one(gy)});
  // Equal up to rounding: Eigen's vectorised sums start at the first aligned
  // element, so a tile's alignment in memory can change the summation order.
  EXPECT_LT(max_abs_diff(one(out), out1), 1e-14);
  for (size_t i = 0; i < 3; ++i) EXPECT_LT(max_abs_diff(one(g[i]), g1[i]), 1e-13) << "input " << i;
}

TEST(Attention, NoDoubleBackward) {
  Qkv t = make_qkv(1, 1, 3, 3, 2, 700);
  Tensor gy = rand_input({1, 1, 3, 2}, 701).detach();
  Tensors g = grad({scaled_dot_product_attention(t.q, t.k, t.v, true)}, {t.q, t.k, t.v}, {gy}, false, true);
  for (size_t i = 0; i < 3; ++i)
    EXPECT_DG_ERROR(grad({g[i]}, {t.q}, {ones(g[i].shape(), {DType::f64})}),
                    "double backward of scaled_dot_product_attention is not supported");
}

TEST(Attention, Errors) {
  const char* op = "scaled_dot_product_attention";
  Tensor x4 = zeros({1, 2, 3, 4}, {DType::f64});
  EXPECT_DG_ERROR(scaled_dot_product_attention(zeros({2, 3}, {DType::f64}), x4, x4),
                  "scaled_dot_product_attention: q, k, v must be 4-D (B, H, T, D), got [2, 3]");
  EXPECT_DG_ERROR(scaled_dot_product_attention(x4, x4, zeros({1, 2, 3}, {DType::f64})), op, "got [1, 2, 3] for v");
  EXPECT_DG_ERROR(scaled_dot_product_attention(x4, x4, zeros({1, 2, 3, 5}, {DType::f64})), op,
                  "k and v must have the same shape", "[1, 2, 3, 4]", "[1, 2, 3, 5]");
  Tensor k5 = zeros({1, 2, 3, 5}, {DType::f64});
  EXPECT_DG_ERROR(scaled_dot_product_attention(x4, k5, k5), op, "must agree in batch, heads and head dim",
                  "[1, 2, 3, 4]", "[1, 2, 3, 5]");
  Tensor k2 = zeros({1, 2, 2, 4}, {DType::f64});
  EXPECT_DG_ERROR(scaled_dot_product_attention(x4, k2, k2, true), op, "at least as many keys as queries");
  EXPECT_NO_THROW(scaled_dot_product_attention(x4, k2, k2, false));
  EXPECT_DG_ERROR(scaled_dot_product_attention(x4, zeros({1, 2, 3, 4}), x4), op, "dtype mismatch");
  EXPECT_DG_ERROR(scaled_dot_product_attention(zeros({1, 2, 3, 4}, {DType::i64}), x4, x4), op, "floating");
}
