// Indexing ops: index_select, index_add, index_add_rows, gather, scatter_add,
// embedding, masked_fill and topk. Values against hand-computed results, the CPU kernels'
// strided and parallel paths against a naive host reference, gradcheck of
// every op (contiguous, strided, broadcast), and the error messages.
#include <cmath>
#include <limits>

#include "testing.h"

using namespace dg;
using dg::testing::expect_values;
using dg::testing::rand_input;

namespace {

Tensor idx(std::vector<int64_t> v, const Shape& shape = {}) { return from_vector<int64_t>(v, shape); }

// A transposed view of `t` (2-D) made with as_strided only (no autograd), so
// the kernels' strided paths are tested independently of transpose().
Tensor t_view(const Tensor& t) {
  return as_strided(t, {t.shape()[1], t.shape()[0]}, {t.strides()[1], t.strides()[0]}, t.offset());
}

}  // namespace

// --- index_select

TEST(IndexSelect, PicksRowsAndColumns) {
  Tensor x = from_vector<double>({0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11}, {3, 4});
  Tensor r = index_select(x, 0, idx({2, 0, 2}));
  EXPECT_EQ(r.shape(), (Shape{3, 4}));
  expect_values(r, {8, 9, 10, 11, 0, 1, 2, 3, 8, 9, 10, 11});
  Tensor c = index_select(x, -1, idx({3, 1}));
  EXPECT_EQ(c.shape(), (Shape{3, 2}));
  expect_values(c, {3, 1, 7, 5, 11, 9});
  // A 0-D index keeps the dim with size 1 (like PyTorch).
  Tensor s = index_select(x, 1, full({}, 2.0, {DType::i64}));
  EXPECT_EQ(s.shape(), (Shape{3, 1}));
  expect_values(s, {2, 6, 10});
  // Empty index: an empty result of the right shape.
  EXPECT_EQ(index_select(x, 0, idx({})).shape(), (Shape{0, 4}));
}

TEST(IndexSelect, StridedInputAndFloat32AndIntegers) {
  Tensor base = from_vector<float>({0, 1, 2, 3, 4, 5}, {2, 3});
  Tensor xt = t_view(base);  // (3, 2): [[0, 3], [1, 4], [2, 5]]
  ASSERT_FALSE(xt.is_contiguous());
  Tensor r = index_select(xt, 0, idx({2, 2, 0}));
  EXPECT_EQ(r.dtype(), DType::f32);
  expect_values(r, {2, 5, 2, 5, 0, 3});
  expect_values(index_select(xt, 1, idx({1})), {3, 4, 5});
  Tensor xi = from_vector<int64_t>({10, 20, 30});
  expect_values(index_select(xi, 0, idx({2, 0})), {30, 10});
}

// The contiguous fast path (parallel over rows) and the strided path, on sizes
// above the parallel threshold, against a host loop.
TEST(IndexSelect, LargeMatchesHostReference) {
  const int64_t D = 300, C = 96, K = 1000;
  Generator g(1);
  Tensor x = randn({D, C}, {}, &g);
  Tensor index = randint(0, D, {K}, &g);
  std::vector<float> xv = x.to_vector<float>();
  std::vector<int64_t> iv = index.to_vector<int64_t>();
  std::vector<double> want;
  for (int64_t k = 0; k < K; ++k)
    for (int64_t c = 0; c < C; ++c) want.push_back(xv[iv[k] * C + c]);
  expect_values(index_select(x, 0, index), want, 0);
  // The same rows read from a transposed (C, D) storage: column picks of t_view.
  Tensor xt = contiguous(transpose(x, 0, 1));  // (C, D) contiguous
  Tensor r = index_select(t_view(xt), 0, index);  // t_view(xt) is x again, strided
  expect_values(r, want, 0);
  // dim 1 of the (C, D) contiguous tensor: outer = C, inner = 1.
  Tensor r1 = index_select(xt, 1, index);
  expect_values(transpose(r1, 0, 1), want, 0);
}

// --- index_add

TEST(IndexAdd, RepeatedIndicesAccumulateWithAlpha) {
  Tensor x = zeros({4, 2}, {DType::f64});
  Tensor src = from_vector<double>({1, 2, 3, 4, 5, 6}, {3, 2});
  Tensor r = index_add(x, 0, idx({1, 3, 1}), src, 2.0);
  expect_values(r, {0, 0, 2 * (1 + 5), 2 * (2 + 6), 0, 0, 6, 8});
  expect_values(x, {0, 0, 0, 0, 0, 0, 0, 0});  // out of place
  // Along dim 1, with a base.
  Tensor b = from_vector<double>({1, 1, 1, 1, 1, 1}, {2, 3});
  Tensor s = from_vector<double>({10, 20, 30, 40}, {2, 2});
  expect_values(index_add(b, 1, idx({2, 2}), s), {1, 1, 31, 1, 1, 71});
}

// out + alpha * src is rounded once (fma), on the contiguous and the strided
// path alike, whatever the compiler would contract: the CUDA kernels compute
// it so too. The values are chosen so that rounding alpha * src first gives
// another result (1.5 * (1 + 2^-23) is not a float).
TEST(IndexAdd, AlphaTimesSourceIsAddedWithOneRounding) {
  const float s = 1.0f + 0x1p-23f, base = -1.5f;
  volatile float product = 1.5f * s;  // rounded on its own
  const float unfused = base + product, fused = std::fma(1.5f, s, base);
  ASSERT_NE(unfused, fused);
  Tensor out = index_add(from_vector<float>({base, base}), 0, idx({1}), from_vector<float>({s}), 1.5);
  EXPECT_EQ(out.to_vector<float>(), (std::vector<float>{base, fused}));
  Tensor storage = from_vector<float>({s, 9.0f, s, 9.0f});
  Tensor src = as_strided(storage, {1, 2}, {4, 2}, 0);  // (1, 2) read every other element: the strided path
  ASSERT_FALSE(src.is_contiguous());
  Tensor strided = index_add(from_vector<float>({base, base}, {1, 2}), 1, idx({0, 1}), src, 1.5);
  EXPECT_EQ(strided.to_vector<float>(), (std::vector<float>{fused, fused}));
}

TEST(IndexAdd, StridedSourceAndIntegers) {
  // A source broadcast with stride 0 (as a gradient coming from sum() is).
  Tensor one = from_vector<double>({1, 2});
  Tensor src = as_strided(one, {3, 2}, {0, 1}, 0);
  expect_values(index_add(zeros({2, 2}, {DType::f64}), 0, idx({0, 0, 1}), src), {2, 4, 1, 2});
  Tensor xi = from_vector<int64_t>({1, 2, 3});
  expect_values(index_add(xi, 0, idx({2, 2}), from_vector<int64_t>({5, 7})), {1, 2, 15});
}

// Both the column-split (dim 0: one outer row) and the outer-split (dim 1)
// parallel paths, with many repeated indices, against a host loop.
TEST(IndexAdd, LargeRepeatedMatchesHostReference) {
  Generator g(2);
  const int64_t D = 50, C = 512, K = 4000;
  Tensor index = randint(0, D, {K}, &g);
  std::vector<int64_t> iv = index.to_vector<int64_t>();
  Tensor src = randn({K, C}, {DType::f64}, &g);
  std::vector<double> sv = src.to_vector<double>(), want(D * C, 0.0);
  for (int64_t k = 0; k < K; ++k)
    for (int64_t c = 0; c < C; ++c) want[iv[k] * C + c] += 0.5 * sv[k * C + c];
  expect_values(index_add(zeros({D, C}, {DType::f64}), 0, index, src, 0.5), want, 1e-12);
  // Strided source (transposed storage) takes the general path.
  Tensor st = contiguous(transpose(src, 0, 1));
  expect_values(index_add(zeros({D, C}, {DType::f64}), 0, index, t_view(st), 0.5), want, 1e-12);

  // dim 1 of (O, D, I): src (O, K, I).
  const int64_t O = 8, I = 16;
  Tensor src3 = randn({O, K, I}, {DType::f64}, &g);
  std::vector<double> s3 = src3.to_vector<double>(), want3(O * D * I, 0.0);
  for (int64_t o = 0; o < O; ++o)
    for (int64_t k = 0; k < K; ++k)
      for (int64_t i = 0; i < I; ++i) want3[(o * D + iv[k]) * I + i] += s3[(o * K + k) * I + i];
  expect_values(index_add(zeros({O, D, I}, {DType::f64}), 1, index, src3), want3, 1e-12);
}

// --- index_add_rows: x[index[k]] += w[k] * src[k]

TEST(IndexAddRows, RepeatedRowsAccumulateWeighted) {
  Tensor x = from_vector<double>({1, 1, 1, 1, 1, 1, 1, 1}, {4, 2});
  Tensor src = from_vector<double>({1, 2, 3, 4, 5, 6}, {3, 2}), w = from_vector<double>({2, -1, 0.5});
  Tensor r = index_add_rows(x, idx({1, 3, 1}), src, w);
  expect_values(r, {1, 1, 1 + 2 * 1 + 0.5 * 5, 1 + 2 * 2 + 0.5 * 6, 1, 1, 1 - 3, 1 - 4});
  expect_values(x, {1, 1, 1, 1, 1, 1, 1, 1});  // out of place
  // Nothing to add: no row, or rows of no column.
  expect_values(index_add_rows(x, idx({}, {0}), zeros({0, 2}, {DType::f64}), zeros({0}, {DType::f64})),
                x.to_vector<double>());
  EXPECT_EQ(index_add_rows(zeros({3, 0}, {DType::f64}), idx({2, 0}), zeros({2, 0}, {DType::f64}),
                           ones({2}, {DType::f64})).shape(), (Shape{3, 0}));
}

// The fused kernels (column-split forward, row-parallel backward) against the
// composite index_add(x, 0, index, src * w), f64 and f32, many repeats.
TEST(IndexAddRows, LargeMatchesTheComposite) {
  Generator g(5);
  const int64_t N = 70, C = 96, K = 3000;
  const Tensor index = randint(0, N, {K}, &g);
  for (DType dt : {DType::f64, DType::f32}) {
    Tensor x = randn({N, C}, {dt}, &g).set_requires_grad(), src = randn({K, C}, {dt}, &g).set_requires_grad();
    Tensor w = randn({K}, {dt}, &g).set_requires_grad(), gy = randn({N, C}, {dt}, &g);
    Tensor a = index_add_rows(x, index, src, w), b = index_add(x, 0, index, src * unsqueeze(w, 1));
    const double tol = dt == DType::f64 ? 1e-12 : 1e-4;
    EXPECT_LT(dg::testing::max_abs_diff(a, b), tol) << dtype_name(dt);
    Tensors ga = grad({a}, {x, src, w}, {gy}), gb = grad({b}, {x, src, w}, {gy});
    for (size_t i = 0; i < ga.size(); ++i) EXPECT_LT(dg::testing::max_abs_diff(ga[i], gb[i]), tol) << "input " << i;
  }
}

TEST(IndexAddRows, GradcheckAndErrors) {
  Tensor x = rand_input({4, 3}, 20), src = rand_input({5, 3}, 21), w = rand_input({5}, 22);
  Tensor rep = idx({3, 0, 3, 1, 3});
  auto fn = [&](const Tensors& in) { return index_add_rows(in[0], rep, in[1], in[2]); };
  EXPECT_GRADCHECK(fn, {x, src, w});
  EXPECT_GRADGRADCHECK(fn, {x, src, w});
  const char* op = "index_add_rows";
  EXPECT_DG_ERROR(index_add_rows(x, idx({0, 4}), rand_input({2, 3}, 23), rand_input({2}, 24)), op, "out of range");
  EXPECT_DG_ERROR(index_add_rows(x, rep, rand_input({5, 2}, 25), w), op, "expected x (N, C), index (K), src (K, C)",
                  "src [5, 2]");
  EXPECT_DG_ERROR(index_add_rows(x, rep, src, rand_input({4}, 26)), op, "w [4]");
  EXPECT_DG_ERROR(index_add_rows(x, rep, src, to_dtype(w, DType::f32)), op);
}

// --- gather / scatter_add

TEST(Gather, PicksAlongADim) {
  Tensor x = from_vector<double>({1, 2, 3, 4, 5, 6}, {2, 3});
  // dim 1: out[i][j] = x[i][idx[i][j]]
  expect_values(gather(x, 1, idx({2, 0, 1, 1}, {2, 2})), {3, 1, 5, 5});
  // dim 0: out[i][j] = x[idx[i][j]][j]; the index may be smaller off dim.
  Tensor r = gather(x, 0, idx({1, 0}, {1, 2}));
  EXPECT_EQ(r.shape(), (Shape{1, 2}));
  expect_values(r, {4, 2});
  // Strided input: t_view(x) = [[1, 4], [2, 5], [3, 6]].
  expect_values(gather(t_view(x), 1, idx({1, 0, 0}, {3, 1})), {4, 2, 3});
}

TEST(ScatterAdd, RepeatedPlacesAccumulate) {
  Tensor x = from_vector<double>({1, 1, 1, 1, 1, 1}, {2, 3});
  Tensor src = from_vector<double>({10, 20, 30, 40}, {2, 2});
  // dim 1: out[i][idx[i][j]] += src[i][j]
  expect_values(scatter_add(x, 1, idx({2, 2, 0, 1}, {2, 2}), src), {1, 1, 31, 31, 41, 1});
  // dim 0: out[idx[i][j]][j] += src[i][j]
  expect_values(scatter_add(x, 0, idx({1, 1, 1, 0}, {2, 2}), src), {1, 41, 1, 41, 21, 1});
  expect_values(x, {1, 1, 1, 1, 1, 1});  // out of place
}

TEST(ScatterAdd, LargeMatchesHostReferenceAndInvertsGather) {
  Generator g(3);
  const int64_t R = 64, D = 40, J = 900;  // scatter J values per row into D places along dim 1
  Tensor index = randint(0, D, {R, J}, &g);
  Tensor src = randn({R, J}, {DType::f64}, &g);
  std::vector<int64_t> iv = index.to_vector<int64_t>();
  std::vector<double> sv = src.to_vector<double>(), want(R * D, 0.0);
  for (int64_t r = 0; r < R; ++r)
    for (int64_t j = 0; j < J; ++j) want[r * D + iv[r * J + j]] += sv[r * J + j];
  expect_values(scatter_add(zeros({R, D}, {DType::f64}), 1, index, src), want, 1e-12);
  // Along dim 0 of the transposed problem, through strided views.
  Tensor it = contiguous(transpose(index, 0, 1)), st = contiguous(transpose(src, 0, 1));  // (J, R)
  Tensor out = scatter_add(zeros({D, R}, {DType::f64}), 0, it, st);
  expect_values(transpose(out, 0, 1), want, 1e-12);
  // gather reads back what a permutation scatter wrote.
  Tensor perm = idx({2, 0, 1}, {1, 3});
  Tensor vals = from_vector<double>({7, 8, 9}, {1, 3});
  expect_values(gather(scatter_add(zeros({1, 3}, {DType::f64}), 1, perm, vals), 1, perm), {7, 8, 9});
}

// --- embedding

TEST(Embedding, LooksUpRowsAndAccumulatesGradient) {
  Tensor w = from_vector<double>({0, 1, 10, 11, 20, 21}, {3, 2}).set_requires_grad();
  Tensor tokens = idx({2, 0, 2, 2, 1, 0}, {2, 3});
  Tensor e = embedding(w, tokens);
  EXPECT_EQ(e.shape(), (Shape{2, 3, 2}));
  expect_values(e, {20, 21, 0, 1, 20, 21, 20, 21, 10, 11, 0, 1});
  e.backward(ones({2, 3, 2}, {DType::f64}));
  expect_values(w.grad(), {2, 2, 1, 1, 3, 3});  // token counts: 0 twice, 1 once, 2 three times
  // A 0-D index gives one row.
  EXPECT_EQ(embedding(w, full({}, 1.0, {DType::i64})).shape(), (Shape{2}));
}

// --- masked_fill

TEST(MaskedFill, BroadcastsMaskAndInput) {
  Tensor x = from_vector<double>({1, 2, 3, 4, 5, 6}, {2, 3});
  Tensor m = from_vector<bool>({true, false, true}, {1, 3});
  expect_values(masked_fill(x, m, -1.0), {-1, 2, -1, -1, 5, -1});
  // x broadcasts against a bigger mask: the result has the broadcast shape.
  Tensor row = from_vector<double>({1, 2, 3});
  Tensor m2 = from_vector<bool>({false, true, false, true, false, false}, {2, 3});
  Tensor r = masked_fill(row, m2, 0.5);
  EXPECT_EQ(r.shape(), (Shape{2, 3}));
  expect_values(r, {1, 0.5, 3, 0.5, 2, 3});
  // -inf, as for attention masks, in f32.
  Tensor f = masked_fill(ones({2}), from_vector<bool>({false, true}), -std::numeric_limits<double>::infinity());
  EXPECT_EQ(f.to_vector<float>()[1], -std::numeric_limits<float>::infinity());
}

TEST(MaskedFill, GradientIsZeroWhereFilled) {
  Tensor x = from_vector<double>({1, 2, 3}).set_requires_grad();
  Tensor m2 = from_vector<bool>({false, true, false, true, false, false}, {2, 3});
  sum(masked_fill(x, m2, 7.0)).backward();
  expect_values(x.grad(), {1, 1, 2});  // column 0 masked once, column 1 once, column 2 never
}

// --- topk

TEST(Topk, LargestSmallestAndTies) {
  Tensor x = from_vector<double>({1, 3, 3, 2, 3, 0});
  ValuesIndices a = topk(x, 2);
  expect_values(a.values, {3, 3});
  expect_values(a.indices, {1, 2});  // ties: the lower index first
  EXPECT_EQ(a.indices.dtype(), DType::i64);
  ValuesIndices b = topk(x, 4, 0, /*largest=*/true);
  expect_values(b.values, {3, 3, 3, 2});
  expect_values(b.indices, {1, 2, 4, 3});
  ValuesIndices s = topk(x, 3, 0, /*largest=*/false);
  expect_values(s.values, {0, 1, 2});
  expect_values(s.indices, {5, 0, 3});
  // Unsorted: the same selection, in index order.
  ValuesIndices u = topk(from_vector<double>({5, 1, 9, 7}), 3, 0, true, /*sorted=*/false);
  expect_values(u.indices, {0, 2, 3});
  expect_values(u.values, {5, 9, 7});
  // k = 0 and k = D.
  EXPECT_EQ(topk(x, 0).values.shape(), (Shape{0}));
  expect_values(topk(x, 6, 0, false).indices, {5, 0, 3, 1, 2, 4});
}

TEST(Topk, AlongDim0StridedAndIntegersAndNaN) {
  // x (3, 2) = [[1, 6], [5, 2], [3, 4]]; top-2 along dim 0.
  Tensor x = from_vector<float>({1, 6, 5, 2, 3, 4}, {3, 2});
  ValuesIndices r = topk(x, 2, 0);
  EXPECT_EQ(r.values.shape(), (Shape{2, 2}));
  expect_values(r.values, {5, 6, 3, 4});
  expect_values(r.indices, {1, 0, 2, 2});
  // The same on a strided view: t_view(x) = [[1, 5, 3], [6, 2, 4]], top-2 of each row.
  ValuesIndices t = topk(t_view(x), 2, 1);
  expect_values(t.values, {5, 3, 6, 4});
  expect_values(t.indices, {1, 2, 0, 2});
  expect_values(topk(from_vector<int64_t>({4, -1, 9}), 1, 0, false).values, {-1});
  // NaN ranks above every number (as in PyTorch).
  double nan = std::numeric_limits<double>::quiet_NaN();
  ValuesIndices n = topk(from_vector<double>({1, nan, 3}), 2);
  expect_values(n.indices, {1, 2});
  expect_values(topk(from_vector<double>({1, nan, 3}), 2, 0, false).indices, {0, 2});
}

TEST(Topk, LargeRowsMatchSortedReference) {
  Generator g(4);
  const int64_t R = 200, D = 300, k = 17;
  Tensor x = randint(0, 50, {R, D}, &g);  // many ties
  std::vector<int64_t> xv = x.to_vector<int64_t>();
  ValuesIndices r = topk(x, k, 1);
  std::vector<int64_t> vals = r.values.to_vector<int64_t>(), inds = r.indices.to_vector<int64_t>();
  for (int64_t row = 0; row < R; ++row) {
    std::vector<int64_t> order(D);
    for (int64_t j = 0; j < D; ++j) order[j] = j;
    std::stable_sort(order.begin(), order.end(), [&](int64_t a, int64_t b) { return xv[row * D + a] > xv[row * D + b]; });
    for (int64_t j = 0; j < k; ++j) {
      ASSERT_EQ(inds[row * k + j], order[j]) << "row " << row << " rank " << j;
      ASSERT_EQ(vals[row * k + j], xv[row * D + order[j]]);
    }
  }
}

// --- gradients (f64 central differences)

TEST(IndexGrad, IndexSelectAndIndexAdd) {
  Tensor x = rand_input({4, 3}, 10);
  Tensor rep = idx({3, 0, 3, 1, 3});  // repeated rows: gradients accumulate
  EXPECT_GRADCHECK([&](const Tensors& in) { return index_select(in[0], 0, rep); }, {x});
  EXPECT_GRADCHECK([&](const Tensors& in) { return index_select(in[0], 1, idx({2, 2, 0})); }, {x});
  EXPECT_GRADCHECK([&](const Tensors& in) { return index_select(transpose(in[0], 0, 1), 1, rep); }, {x});
  EXPECT_GRADGRADCHECK([&](const Tensors& in) { return index_select(in[0] * in[0], 0, rep); }, {x});

  Tensor src = rand_input({5, 3}, 11);
  EXPECT_GRADCHECK([&](const Tensors& in) { return index_add(in[0], 0, rep, in[1], -1.5); }, {x, src});
  // Both transposed: strided input and source, along dim 1.
  EXPECT_GRADCHECK([&](const Tensors& in) { return index_add(transpose(in[0], 0, 1), 1, rep, transpose(in[1], 0, 1)); },
                   {x, src});
  EXPECT_GRADGRADCHECK([&](const Tensors& in) { return index_add(in[0], 0, rep, in[1] * in[1]); }, {x, src});
}

// A permutation of the rows takes the inverse-permutation backward (a gather,
// no zero fill), also when the index is a strided view; a same-length index
// with a repeat takes the scatter-add one. Each gives the gradient an
// explicit reference gives.
TEST(IndexGrad, IndexSelectPermutationBackward) {
  Tensor x = rand_input({5, 3}, 12);
  Tensor perm = idx({3, 0, 4, 1, 2});
  EXPECT_GRADCHECK([&](const Tensors& in) { return index_select(in[0], 0, perm); }, {x});
  EXPECT_GRADCHECK([&](const Tensors& in) { return index_select(in[0], 1, idx({2, 0, 1})); }, {x});
  EXPECT_GRADGRADCHECK([&](const Tensors& in) { return index_select(in[0] * in[0], 0, perm); }, {x});
  Tensor w = rand_input({5, 3}, 13).detach();
  for (const Tensor& index : {perm, idx({3, 0, 3, 1, 2}), slice(idx({3, 9, 0, 9, 4, 9, 1, 9, 2, 9}), 0, 0, 10, 2)}) {
    Tensor leaf = x.detach().set_requires_grad();
    sum(index_select(leaf, 0, index) * w).backward();
    // d/dx[r] of sum_k x[index[k]] . w[k] = sum of w[k] over the k with index[k] == r.
    const std::vector<int64_t> iv = contiguous(index).to_vector<int64_t>();
    const std::vector<double> wv = w.to_vector<double>();
    std::vector<double> want(15, 0.0);
    for (size_t k = 0; k < iv.size(); ++k)
      for (int c = 0; c < 3; ++c) want[iv[k] * 3 + c] += wv[k * 3 + c];
    expect_values(leaf.grad(), want, 1e-15);
  }
}

TEST(IndexGrad, GatherAndScatterAdd) {
  Tensor x = rand_input({3, 4}, 20);
  Tensor gi = idx({3, 3, 0, 1, 1, 1}, {3, 2});
  EXPECT_GRADCHECK([&](const Tensors& in) { return gather(in[0], 1, gi); }, {x});
  EXPECT_GRADCHECK([&](const Tensors& in) { return gather(in[0], 0, idx({2, 2, 0, 1}, {1, 4})); }, {x});
  EXPECT_GRADCHECK([&](const Tensors& in) { return gather(transpose(in[0], 0, 1), 0, idx({3, 0, 3}, {1, 3})); }, {x});
  EXPECT_GRADGRADCHECK([&](const Tensors& in) { return gather(in[0] * in[0], 1, gi); }, {x});

  Tensor src = rand_input({3, 2}, 21);
  EXPECT_GRADCHECK([&](const Tensors& in) { return scatter_add(in[0], 1, gi, in[1]); }, {x, src});
  EXPECT_GRADCHECK([&](const Tensors& in) { return scatter_add(transpose(in[0], 0, 1), 0, idx({2, 2, 0}, {1, 3}),
                                                               transpose(in[1], 0, 1)); },
                   {rand_input({3, 4}, 22), rand_input({3, 1}, 23)});
  EXPECT_GRADGRADCHECK([&](const Tensors& in) { return scatter_add(in[0], 1, gi, in[1] * in[1]); }, {x, src});
}

TEST(IndexGrad, EmbeddingMaskedFillTopk) {
  Tensor w = rand_input({5, 3}, 30);
  Tensor tokens = idx({4, 0, 4, 2, 4, 1}, {2, 3});
  EXPECT_GRADCHECK([&](const Tensors& in) { return embedding(in[0], tokens); }, {w});
  EXPECT_GRADCHECK([&](const Tensors& in) { return embedding(transpose(in[0], 0, 1), idx({1, 2, 1})); },
                   {rand_input({3, 5}, 31)});
  EXPECT_GRADGRADCHECK([&](const Tensors& in) { return embedding(in[0] * in[0], tokens); }, {w});

  Tensor x = rand_input({2, 3}, 32);
  Tensor m = from_vector<bool>({true, false, false, false, true, false}, {2, 3});
  EXPECT_GRADCHECK([&](const Tensors& in) { return masked_fill(in[0], m, 2.0); }, {x});
  EXPECT_GRADCHECK([&](const Tensors& in) { return masked_fill(transpose(in[0], 0, 1), t_view(m), 2.0); }, {x});
  // Broadcast: x (3) against a (2, 3) mask, and a (1, 3) mask against x (2, 3).
  EXPECT_GRADCHECK([&](const Tensors& in) { return masked_fill(in[0], m, -1.0); }, {rand_input({3}, 33)});
  EXPECT_GRADCHECK([&](const Tensors& in) { return masked_fill(in[0], from_vector<bool>({false, true, false}, {1, 3}), 0.0); },
                   {x});

  Tensor y = rand_input({3, 5}, 34);  // distinct values: the selection is stable under eps
  EXPECT_GRADCHECK([&](const Tensors& in) { return topk(in[0], 2, 1).values; }, {y});
  EXPECT_GRADCHECK([&](const Tensors& in) { return topk(in[0], 2, 0, false).values; }, {y});
  EXPECT_GRADCHECK([&](const Tensors& in) { return topk(transpose(in[0], 0, 1), 3, 0, true, false).values; }, {y});
  EXPECT_GRADGRADCHECK([&](const Tensors& in) { return topk(in[0] * in[0], 2, 1).values; }, {y});
}

TEST(IndexGrad, IndicesCarryNoGradient) {
  Tensor x = rand_input({4}, 40);
  ValuesIndices r = topk(x, 2);
  EXPECT_TRUE(r.values.requires_grad());
  EXPECT_FALSE(r.indices.requires_grad());
  Tensor y = index_select(x, 0, r.indices);  // routing: pick the chosen entries again
  sum(y).backward();
  std::vector<double> g = x.grad().to_vector<double>();
  std::vector<int64_t> chosen = r.indices.to_vector<int64_t>();
  EXPECT_EQ(g[chosen[0]] + g[chosen[1]], 2.0);
  EXPECT_EQ(g[0] + g[1] + g[2] + g[3], 2.0);
}

// --- errors

TEST(IndexErrors, IndexOutOfRange) {
  Tensor x = zeros({5, 3});
  EXPECT_DG_ERROR(index_select(x, 0, idx({1, 7})), "index_select", "index 7 out of range for dim 0 of size 5",
                  "[5, 3]");
  EXPECT_DG_ERROR(index_select(x, 1, idx({-1})), "index_select", "index -1 out of range for dim 1 of size 3");
  EXPECT_DG_ERROR(gather(x, 1, idx({0, 3}, {1, 2})), "gather", "index 3 out of range for dim 1 of size 3");
  EXPECT_DG_ERROR(scatter_add(x, 0, idx({5}, {1, 1}), zeros({1, 1})), "scatter_add", "index 5 out of range");
  EXPECT_DG_ERROR(index_add(x, 0, idx({9}), zeros({1, 3})), "index_add", "index 9 out of range");
  EXPECT_DG_ERROR(embedding(x, idx({0, 5}, {1, 2})), "embedding", "index 5 out of range for dim 0 of size 5",
                  "weight shape [5, 3]");
}

TEST(IndexErrors, WrongIndexDtype) {
  Tensor x = zeros({5, 3});
  Tensor i32 = from_vector<int32_t>({0, 1});
  EXPECT_DG_ERROR(index_select(x, 0, i32), "index_select", "index must be i64", "i32");
  EXPECT_DG_ERROR(gather(x, 0, from_vector<float>({0, 1}, {1, 2})), "gather", "index must be i64", "f32");
  EXPECT_DG_ERROR(embedding(x, i32), "embedding", "index must be i64");
  EXPECT_DG_ERROR(masked_fill(x, zeros({5, 3}), 1.0), "masked_fill", "mask must be bool", "f32");
}

TEST(IndexErrors, WrongDimsAndShapes) {
  Tensor x = zeros({5, 3});
  EXPECT_DG_ERROR(index_select(x, 0, idx({0, 1}, {1, 2})), "index_select", "index must be 0-D or 1-D", "[1, 2]");
  EXPECT_DG_ERROR(index_select(x, 2, idx({0})), "index_select", "dim 2 out of range", "2 dims");
  EXPECT_DG_ERROR(gather(x, 0, idx({0, 1})), "gather", "index must have as many dims as the input (2)", "[2]",
                  "[5, 3]");
  EXPECT_DG_ERROR(gather(x, 0, idx({0, 0, 0, 0}, {1, 4})), "gather", "index shape [1, 4] is larger than the input "
                  "shape [5, 3] at dim 1");
  EXPECT_DG_ERROR(scatter_add(x, 0, idx({0, 0}, {1, 2}), zeros({2, 2})), "scatter_add",
                  "source shape [2, 2] must equal the index shape [1, 2]");
  EXPECT_DG_ERROR(index_add(x, 0, idx({0, 1}), zeros({3, 3})), "index_add", "source shape [3, 3] does not match [2, 3]");
  EXPECT_DG_ERROR(index_add(x, 0, idx({0}), zeros({1, 3}, {DType::f64})), "index_add", "dtype mismatch");
  EXPECT_DG_ERROR(embedding(zeros({5}), idx({0})), "embedding", "weight must be 2-D", "[5]");
  EXPECT_DG_ERROR(masked_fill(x, from_vector<bool>({true, false}), 1.0), "masked_fill", "cannot be broadcast");
  EXPECT_DG_ERROR(topk(x, 4, 1), "topk", "k = 4 out of range for dim 1 of size 3", "[5, 3]");
  EXPECT_DG_ERROR(topk(x, -1), "topk", "k = -1 out of range");
  EXPECT_DG_ERROR(topk(full({}, 1.0), 1), "topk", "0-dim");
}
