// matmul: values against a naive triple loop for every rank combination,
// gradcheck on contiguous, transposed and broadcast operands, double backward,
// the folded (Linear-shaped) path, f32 against f64, the per-thread GEMM bands,
// and error messages; linear (x W^T + b as one op) against the composite.
#include "testing.h"

using namespace dg;
using namespace dg::testing;

namespace {

// Naive (..., M, K) @ (..., K, N) on the host for equal batch shapes.
std::vector<double> naive_bmm(const Tensor& a, const Tensor& b) {
  const int64_t M = a.size(-2), K = a.size(-1), N = b.size(-1), Bn = a.numel() / (M * K);
  std::vector<double> av = a.to_vector<double>(), bv = b.to_vector<double>(), out(Bn * M * N, 0.0);
  for (int64_t z = 0; z < Bn; ++z)
    for (int64_t i = 0; i < M; ++i)
      for (int64_t j = 0; j < N; ++j) {
        double s = 0;
        for (int64_t k = 0; k < K; ++k) s += av[z * M * K + i * K + k] * bv[z * K * N + k * N + j];
        out[z * M * N + i * N + j] = s;
      }
  return out;
}

}  // namespace

TEST(Matmul, ValuesForEveryRankCombination) {
  Tensor a = rand_input({3, 4}, 1), b = rand_input({4, 5}, 2);
  expect_values(matmul(a, b), naive_bmm(a, b), 1e-14);
  Tensor v = rand_input({4}, 3), w = rand_input({4}, 4);
  double dot = 0;
  for (int i = 0; i < 4; ++i) dot += v.to_vector<double>()[i] * w.to_vector<double>()[i];
  Tensor d = matmul(v, w);
  EXPECT_EQ(d.dim(), 0);
  expect_values(d, {dot}, 1e-14);
  EXPECT_EQ(matmul(v, b).shape(), (Shape{5}));
  expect_values(matmul(v, b), naive_bmm(reshape(v, {1, 4}), b), 1e-14);
  EXPECT_EQ(matmul(a, v).shape(), (Shape{3}));
  expect_values(matmul(a, v), naive_bmm(a, reshape(v, {4, 1})), 1e-14);
  Tensor ba = rand_input({2, 3, 4}, 5), bb = rand_input({2, 4, 5}, 6);
  expect_values(matmul(ba, bb), naive_bmm(ba, bb), 1e-14);
  // Broadcast batch dims: (2, 1, 3, 4) @ (3, 4, 5) -> (2, 3, 3, 5).
  Tensor x = rand_input({2, 1, 3, 4}, 7), y = rand_input({3, 4, 5}, 8);
  Tensor r = matmul(x, y);
  EXPECT_EQ(r.shape(), (Shape{2, 3, 3, 5}));
  expect_values(r, naive_bmm(contiguous(expand(x, {2, 3, 3, 4})), contiguous(expand(y, {2, 3, 4, 5}))), 1e-14);
  // Folded path: (2, 3, 4) @ (4, 5) is one (6, 4) @ (4, 5) product.
  expect_values(matmul(ba, b), naive_bmm(reshape(ba, {6, 4}), b), 1e-14);
}

TEST(Matmul, StridedOperandsNeedNoCopyAndGiveTheSameValues) {
  Tensor a = rand_input({4, 3}, 11), b = rand_input({5, 4}, 12);
  Tensor at = transpose(a, 0, 1), bt = transpose(b, 0, 1);  // column-major views
  expect_values(matmul(at, bt), naive_bmm(contiguous(at), contiguous(bt)), 1e-14);
  // A sliced operand with step 2 is neither row- nor column-major: copied internally.
  Tensor big = rand_input({3, 8}, 13);
  Tensor s = slice(big, 1, 0, 8, 2);  // (3, 4), strides (8, 2)
  expect_values(matmul(s, rand_input({4, 2}, 14).detach()),
                naive_bmm(contiguous(s), rand_input({4, 2}, 14).detach()), 1e-14);
  // Batched, transposed inner dims.
  Tensor p = rand_input({2, 4, 3}, 15), q = rand_input({2, 5, 4}, 16);
  expect_values(matmul(transpose(p, 1, 2), transpose(q, 1, 2)),
                naive_bmm(contiguous(transpose(p, 1, 2)), contiguous(transpose(q, 1, 2))), 1e-14);
}

TEST(Matmul, Gradcheck) {
  auto mm = [](const Tensors& in) { return matmul(in[0], in[1]); };
  EXPECT_GRADCHECK(mm, {rand_input({3, 4}, 1), rand_input({4, 2}, 2)});
  EXPECT_GRADCHECK(mm, {rand_input({4}, 3), rand_input({4, 2}, 4)});
  EXPECT_GRADCHECK(mm, {rand_input({3, 4}, 5), rand_input({4}, 6)});
  EXPECT_GRADCHECK(mm, {rand_input({4}, 7), rand_input({4}, 8)});
  EXPECT_GRADCHECK(mm, {rand_input({2, 3, 4}, 9), rand_input({2, 4, 2}, 10)});
  EXPECT_GRADCHECK(mm, {rand_input({2, 3, 4}, 11), rand_input({4, 2}, 12)});     // folded
  EXPECT_GRADCHECK(mm, {rand_input({3, 4}, 13), rand_input({2, 4, 2}, 14)});     // a broadcast over the batch
  EXPECT_GRADCHECK(mm, {rand_input({2, 1, 3, 4}, 15), rand_input({3, 4, 2}, 16)});  // both broadcast
  // Transposed (strided) operands.
  EXPECT_GRADCHECK([](const Tensors& in) { return matmul(transpose(in[0], 0, 1), transpose(in[1], -1, -2)); },
                   {rand_input({4, 3}, 17), rand_input({2, 2, 4}, 18)});
}

TEST(Matmul, DoubleBackward) {
  auto mm = [](const Tensors& in) { return matmul(in[0], in[1]); };
  EXPECT_GRADGRADCHECK(mm, {rand_input({3, 4}, 21), rand_input({4, 2}, 22)});
  EXPECT_GRADGRADCHECK(mm, {rand_input({2, 3, 4}, 23), rand_input({4, 2}, 24)});
  EXPECT_GRADGRADCHECK([](const Tensors& in) { return tanh(matmul(in[0], in[1])); },
                       {rand_input({2, 3}, 25), rand_input({3}, 26)});
}

TEST(Matmul, F32AgreesWithF64) {
  Tensor a = rand_input({2, 33, 70}, 31).detach(), b = rand_input({70, 41}, 32).detach();
  Tensor r64 = matmul(a, b), r32 = matmul(to_dtype(a, DType::f32), to_dtype(b, DType::f32));
  EXPECT_LT(max_abs_diff(to_dtype(r32, DType::f64), r64), 1e-4);
  // A product large enough for the threaded GEMM path.
  Tensor c = rand_input({200, 150}, 33).detach(), d = rand_input({150, 120}, 34).detach();
  expect_values(matmul(c, d), naive_bmm(c, d), 1e-12);
}

TEST(Matmul, EmptyInnerDimGivesZeros) {
  Tensor a = zeros({3, 0}, {DType::f64}), b = zeros({0, 2}, {DType::f64});
  expect_values(matmul(a, b), std::vector<double>(6, 0.0), 0.0);
}

TEST(Matmul, ErrorsNameTheOpAndShapes) {
  Tensor a = rand_input({3, 4}, 1), b = rand_input({5, 2}, 2);
  EXPECT_DG_ERROR(matmul(a, b), "matmul", "[3, 4]", "[5, 2]", "4 vs 5");
  EXPECT_DG_ERROR(matmul(rand_input({2, 3, 4}, 3), rand_input({3, 4, 2}, 4)), "matmul", "[2]", "[3]");
  EXPECT_DG_ERROR(matmul(a, to_dtype(b, DType::f32)), "matmul", "f64", "f32");
  EXPECT_DG_ERROR(matmul(zeros({}, {DType::f64}), a), "matmul", "at least 1 dim");
  EXPECT_DG_ERROR(matmul(from_vector<int64_t>({1, 2}), from_vector<int64_t>({1, 2})), "matmul", "floating");
}

// ---------------------------------------------------------------- linear
// linear(x, W, b) = x @ W^T + b as one op (bias as the GEMM's starting output).

TEST(Linear, MatchesMatmulPlusBias) {
  Tensor x = rand_input({2, 3, 4}, 41), w = rand_input({5, 4}, 42), b = rand_input({5}, 43);
  Tensor ref = matmul(x, transpose(w, 0, 1)) + b;
  Tensor y = linear(x, w, b);
  EXPECT_EQ(y.shape(), (Shape{2, 3, 5}));
  EXPECT_LT(max_abs_diff(y, ref), 1e-14);
  EXPECT_LT(max_abs_diff(linear(x, w), matmul(x, transpose(w, 0, 1))), 1e-14);
  // 1-D input: one row.
  Tensor v = rand_input({4}, 44);
  EXPECT_EQ(linear(v, w, b).shape(), (Shape{5}));
  EXPECT_LT(max_abs_diff(linear(v, w, b), matmul(v, transpose(w, 0, 1)) + b), 1e-14);
  // Strided input and a weight that is a transposed view.
  Tensor xt = transpose(rand_input({4, 3}, 45), 0, 1);  // (3, 4), column-major
  Tensor wt = transpose(rand_input({4, 5}, 46), 0, 1);  // (5, 4), column-major
  EXPECT_LT(max_abs_diff(linear(xt, wt, b), matmul(xt, transpose(wt, 0, 1)) + b), 1e-14);
}

TEST(Linear, Gradcheck) {
  auto lin = [](const Tensors& in) { return linear(in[0], in[1], in[2]); };
  EXPECT_GRADCHECK(lin, {rand_input({2, 3, 4}, 51), rand_input({5, 4}, 52), rand_input({5}, 53)});
  EXPECT_GRADCHECK(lin, {rand_input({4}, 54), rand_input({2, 4}, 55), rand_input({2}, 56)});
  EXPECT_GRADCHECK([](const Tensors& in) { return linear(in[0], in[1]); },
                   {rand_input({3, 4}, 57), rand_input({2, 4}, 58)});
  EXPECT_GRADCHECK([](const Tensors& in) { return linear(transpose(in[0], 0, 1), in[1], in[2]); },
                   {rand_input({4, 3}, 59), rand_input({2, 4}, 60), rand_input({2}, 61)});
}

TEST(Linear, DoubleBackward) {
  EXPECT_GRADGRADCHECK([](const Tensors& in) { return tanh(linear(in[0], in[1], in[2])); },
                       {rand_input({2, 3}, 62), rand_input({4, 3}, 63), rand_input({4}, 64)});
}

TEST(Linear, EmptyRowsAndEmptyInnerDim) {
  Tensor w = rand_input({3, 4}, 65), b = rand_input({3}, 66);
  EXPECT_EQ(linear(zeros({0, 4}, {DType::f64}), w, b).shape(), (Shape{0, 3}));
  // K = 0: the product is empty, the output is the bias on every row.
  Tensor y = linear(zeros({2, 0}, {DType::f64}), zeros({3, 0}, {DType::f64}), b);
  const std::vector<double> bv = b.to_vector<double>();
  expect_values(y, {bv[0], bv[1], bv[2], bv[0], bv[1], bv[2]}, 0.0);
}

TEST(Linear, ErrorsNameTheOpAndShapes) {
  Tensor x = rand_input({2, 4}, 67), w = rand_input({3, 4}, 68);
  EXPECT_DG_ERROR(linear(x, rand_input({3, 5}, 69)), "linear", "[2, 4]", "in_features = 5", "[3, 5]");
  EXPECT_DG_ERROR(linear(x, rand_input({4}, 70)), "linear", "weight must be 2-D", "[4]");
  EXPECT_DG_ERROR(linear(x, w, rand_input({4}, 71)), "linear", "bias", "[4]", "out_features = 3");
  EXPECT_DG_ERROR(linear(x, to_dtype(w, DType::f32)), "linear", "f64", "f32");
  EXPECT_DG_ERROR(linear(x, w, to_dtype(rand_input({3}, 72), DType::f32)), "linear", "f64", "f32");
  EXPECT_DG_ERROR(linear(Tensor(), w), "linear", "input");
}

// Products big enough to be split into one band of rows (or columns) per
// thread, with sizes that are not multiples of the band (16), in f32 against
// a naive f64 product: row bands (M >= N), column bands (N > M), a
// transposed A (a weight gradient's x^T g), and the bias through linear.
TEST(Matmul, ThreadBandsMatchNaive) {
  auto f32 = [](const Tensor& t) { return to_dtype(t, DType::f32); };
  auto rel_err = [](const Tensor& got, const std::vector<double>& want) {
    const std::vector<double> g = to_dtype(got, DType::f64).to_vector<double>();
    double err = 0, scale = 0;
    for (size_t i = 0; i < g.size(); ++i) {
      err = std::max(err, std::abs(g[i] - want[i]));
      scale = std::max(scale, std::abs(want[i]));
    }
    return err / scale;
  };
  Tensor a = rand_input({2055, 70}, 81).detach(), b = rand_input({70, 301}, 82).detach();  // rows
  EXPECT_LT(rel_err(matmul(f32(a), f32(b)), naive_bmm(a, b)), 1e-5);
  Tensor c = rand_input({37, 900}, 83).detach(), d = rand_input({900, 611}, 84).detach();  // columns
  EXPECT_LT(rel_err(matmul(f32(c), f32(d)), naive_bmm(c, d)), 1e-5);
  // A^T (x^T g): rows of C are columns of x, so a band starts at a column offset.
  Tensor xt = rand_input({900, 301}, 85).detach(), g = rand_input({900, 45}, 86).detach();
  EXPECT_LT(rel_err(matmul(transpose(f32(xt), 0, 1), f32(g)), naive_bmm(contiguous(transpose(xt, 0, 1)), g)), 1e-5);
  // B^T (x W^T) split by columns: a band starts at a row of W.
  Tensor wide = rand_input({611, 900}, 89).detach();
  EXPECT_LT(rel_err(matmul(f32(c), transpose(f32(wide), 0, 1)), naive_bmm(c, contiguous(transpose(wide, 0, 1)))),
            1e-5);
  Tensor w = rand_input({301, 70}, 87).detach(), bias = rand_input({301}, 88).detach();
  std::vector<double> want = naive_bmm(a, contiguous(transpose(w, 0, 1)));
  const std::vector<double> bv = bias.to_vector<double>();
  for (size_t i = 0; i < want.size(); ++i) want[i] += bv[i % 301];
  EXPECT_LT(rel_err(linear(f32(a), f32(w), f32(bias)), want), 1e-5);
  // f64 takes the same bands (dgemm).
  EXPECT_LT(rel_err(matmul(c, d), naive_bmm(c, d)), 1e-13);
}

// ---------------------------------------------------------------- grouped_linear
// Groups of rows through different layers, one op: the same values and
// gradients as one linear per group (an empty group, a missing bias).

TEST(GroupedLinear, MatchesOneLinearPerGroup) {
  Tensor x = rand_input({7, 4}, 90);
  const std::vector<int64_t> off{0, 3, 3, 7};
  Tensors w{rand_input({5, 4}, 91), rand_input({5, 4}, 92), rand_input({5, 4}, 93)};
  Tensors b{rand_input({5}, 94), rand_input({5}, 95), Tensor()};
  auto ref = [&] { return cat({linear(slice(x, 0, 0, 3), w[0], b[0]), linear(slice(x, 0, 3, 7), w[2])}); };
  Tensor y = grouped_linear(x, off, w, b);
  EXPECT_EQ(y.shape(), (Shape{7, 5}));
  EXPECT_LT(max_abs_diff(y, ref()), 1e-14);
  EXPECT_LT(max_abs_diff(grouped_linear(x, off, w), cat({linear(slice(x, 0, 0, 3), w[0]), linear(slice(x, 0, 3, 7), w[2])})),
            1e-14);
  Tensor gy = rand_input({7, 5}, 96).detach();
  Tensors got = grad({sum(grouped_linear(x, off, w, b) * gy)}, {x, w[0], w[2], b[0]});
  Tensors want = grad({sum(ref() * gy)}, {x, w[0], w[2], b[0]});
  for (size_t i = 0; i < got.size(); ++i) EXPECT_LT(max_abs_diff(got[i], want[i]), 1e-14) << "input " << i;
  // The empty group's layer gets no gradient (it was not used).
  Tensors unused = grad({sum(grouped_linear(x, off, w, b))}, {w[1]}, {}, false, false, /*allow_unused=*/true);
  EXPECT_FALSE(unused[0].defined());
}

TEST(GroupedLinear, GradcheckAndDoubleBackward) {
  const std::vector<int64_t> off{0, 2, 5};
  auto fn = [&](const Tensors& in) { return grouped_linear(in[0], off, {in[1], in[2]}, {in[3], in[4]}); };
  const Tensors in{rand_input({5, 3}, 97), rand_input({2, 3}, 98), rand_input({2, 3}, 99), rand_input({2}, 100),
                   rand_input({2}, 101)};
  EXPECT_GRADCHECK(fn, in);
  EXPECT_GRADGRADCHECK([&](const Tensors& t) { return tanh(fn(t)); }, in);
}

TEST(GroupedLinear, ErrorsNameTheOpAndShapes) {
  Tensor x = rand_input({4, 3}, 102), w = rand_input({2, 3}, 103);
  EXPECT_DG_ERROR(grouped_linear(x, {0, 4}, {w, w}), "grouped_linear", "2 weights need 3 offsets");
  EXPECT_DG_ERROR(grouped_linear(x, {0, 3, 2, 4}, {w, w, w}), "grouped_linear", "decrease at group 1");
  EXPECT_DG_ERROR(grouped_linear(x, {0, 1, 5}, {w, w}), "grouped_linear", "0 to the input's 4 rows");
  EXPECT_DG_ERROR(grouped_linear(x, {0, 1, 4}, {w, rand_input({2, 4}, 104)}), "grouped_linear", "weight 1 of shape [2, 4]");
  EXPECT_DG_ERROR(grouped_linear(x, {0, 1, 4}, {w, rand_input({3, 3}, 105)}), "grouped_linear", "weight 1 of shape [3, 3]");
  EXPECT_DG_ERROR(grouped_linear(x, {0, 1, 4}, {w, w}, {rand_input({3}, 106), Tensor()}), "grouped_linear",
                  "bias 0 of shape [3]", "out_features = 2");
  EXPECT_DG_ERROR(grouped_linear(x, {0, 1, 4}, {w, w}, {Tensor()}), "grouped_linear", "1 biases for 2 weights");
  EXPECT_DG_ERROR(grouped_linear(rand_input({4}, 107), {0, 4}, {w}), "grouped_linear", "2-D");
}
