// Shape ops: values, views sharing storage, gradcheck on contiguous, strided
// and broadcast inputs, gradgradcheck, and error messages.
#include "testing.h"

using namespace dg;
using dg::testing::expect_values;
using dg::testing::rand_input;

namespace {

// 0, 1, 2, ... as f64 of the given shape (no grad).
Tensor iota(const Shape& s) { return reshape(arange(0.0, static_cast<double>(s.numel()), 1.0, {DType::f64}), s); }

bool shares_storage(const Tensor& a, const Tensor& b) { return a.storage_ptr() == b.storage_ptr(); }

// A transposed (non-contiguous) f64 leaf-derived input: fn sees transpose(x).
Tensor t01(const Tensor& x) { return transpose(x, 0, 1); }

}  // namespace

// --- reshape / view / flatten

TEST(Reshape, ValuesAndInferredDim) {
  Tensor x = iota({2, 3});
  Tensor y = reshape(x, {3, -1});
  EXPECT_EQ(y.shape(), (Shape{3, 2}));
  expect_values(y, {0, 1, 2, 3, 4, 5});
  EXPECT_TRUE(shares_storage(x, y));
}

TEST(Reshape, OfATransposeCopies) {
  Tensor x = iota({2, 3});
  Tensor y = reshape(transpose(x, 0, 1), {6});
  expect_values(y, {0, 3, 1, 4, 2, 5});
  EXPECT_FALSE(shares_storage(x, y));
}

TEST(Reshape, ViewWritesAreVisible) {
  Tensor x = zeros({2, 3}, {DType::f64});
  Tensor y = view(x, {6});
  Tensor y4 = narrow(y, 0, 4, 1);
  fill_(y4, 7.0);
  expect_values(x, {0, 0, 0, 0, 7, 0});
}

TEST(Reshape, Errors) {
  Tensor x = iota({2, 3});
  EXPECT_DG_ERROR(reshape(x, {4, 2}), "reshape", "[2, 3]", "6 elements", "[4, 2]");
  EXPECT_DG_ERROR(reshape(x, {-1, -1}), "reshape", "only one dim can be -1");
  EXPECT_DG_ERROR(reshape(x, {4, -1}), "reshape", "[4, -1]");
  EXPECT_DG_ERROR(view(transpose(x, 0, 1), {6}), "view", "[3, 2]", "without a copy");
}

TEST(Reshape, Gradcheck) {
  Tensor x = rand_input({2, 3, 2}, 1);
  EXPECT_GRADCHECK([](const Tensors& in) { return reshape(in[0], {3, 4}); }, {x});
  EXPECT_GRADCHECK([](const Tensors& in) { return reshape(t01(in[0]), {-1}); }, {x});  // copy path
  EXPECT_GRADCHECK([](const Tensors& in) { return view(in[0], {12}); }, {x});
  EXPECT_GRADCHECK([](const Tensors& in) { return flatten(in[0], 1); }, {x});
  EXPECT_GRADCHECK([](const Tensors& in) { return flatten(t01(in[0]), 0, 1); }, {x});
  EXPECT_GRADGRADCHECK([](const Tensors& in) { return reshape(t01(in[0]), {6, 2}); }, {x});
}

TEST(Flatten, Shapes) {
  Tensor x = iota({2, 3, 4});
  EXPECT_EQ(flatten(x).shape(), (Shape{24}));
  EXPECT_EQ(flatten(x, 1).shape(), (Shape{2, 12}));
  EXPECT_EQ(flatten(x, 0, 1).shape(), (Shape{6, 4}));
  EXPECT_DG_ERROR(flatten(x, 2, 1), "flatten", "start_dim");
  EXPECT_DG_ERROR(flatten(x, 3), "flatten", "dim 3 out of range");
}

// --- permute / transpose

TEST(Permute, ValuesAndViews) {
  Tensor x = iota({2, 3, 4});
  Tensor y = permute(x, {2, 0, 1});
  EXPECT_EQ(y.shape(), (Shape{4, 2, 3}));
  EXPECT_TRUE(shares_storage(x, y));
  EXPECT_EQ(contiguous(y).to_vector<double>()[1], 4.0);  // y[0][0][1] = x[0][1][0]
  Tensor t = transpose(x, -1, 0);
  EXPECT_EQ(t.shape(), (Shape{4, 3, 2}));
  EXPECT_FALSE(t.is_contiguous());
}

TEST(Permute, Errors) {
  Tensor x = iota({2, 3, 4});
  EXPECT_DG_ERROR(permute(x, {0, 1}), "permute", "expected 3 dims", "[2, 3, 4]");
  EXPECT_DG_ERROR(permute(x, {0, 1, 1}), "permute", "repeated");
  EXPECT_DG_ERROR(permute(x, {0, 1, 3}), "permute", "dim 3 out of range");
  EXPECT_DG_ERROR(transpose(x, 0, 5), "transpose", "dim 5 out of range");
}

TEST(Permute, Gradcheck) {
  Tensor x = rand_input({2, 3, 4}, 2);
  EXPECT_GRADCHECK([](const Tensors& in) { return permute(in[0], {2, 0, 1}); }, {x});
  EXPECT_GRADCHECK([](const Tensors& in) { return permute(t01(in[0]), {1, 2, 0}); }, {x});
  EXPECT_GRADCHECK([](const Tensors& in) { return transpose(in[0], 1, 2); }, {x});
  EXPECT_GRADGRADCHECK([](const Tensors& in) { return permute(in[0], {2, 0, 1}); }, {x});
}

// --- slice / narrow / select

TEST(Slice, ValuesWithStepAndPythonBounds) {
  Tensor x = iota({10});
  expect_values(slice(x, 0, 1, 8, 3), {1, 4, 7});
  expect_values(slice(x, 0, -3, 100), {7, 8, 9});
  EXPECT_EQ(slice(x, 0, 5, 2).numel(), 0);
  Tensor m = iota({3, 4});
  expect_values(slice(m, 1, 1, 4, 2), {1, 3, 5, 7, 9, 11});
  expect_values(narrow(m, 0, -1, 1), {8, 9, 10, 11});
  expect_values(select(m, 1, -1), {3, 7, 11});
  EXPECT_EQ(select(m, 0, 1).shape(), (Shape{4}));
}

TEST(Slice, SharesStorage) {
  Tensor m = zeros({3, 4}, {DType::f64});
  Tensor col = select(m, 1, 2);
  fill_(col, 5.0);
  expect_values(m, {0, 0, 5, 0, 0, 0, 5, 0, 0, 0, 5, 0});
  Tensor s = slice(m, 0, 0, 3, 2);
  EXPECT_TRUE(shares_storage(m, s));
}

TEST(Slice, Errors) {
  Tensor m = iota({3, 4});
  EXPECT_DG_ERROR(slice(m, 0, 0, 2, 0), "slice", "step must be positive");
  EXPECT_DG_ERROR(slice(m, 2, 0, 1), "slice", "dim 2 out of range");
  EXPECT_DG_ERROR(narrow(m, 1, 2, 3), "narrow", "start 2 + length 3", "size 4");
  EXPECT_DG_ERROR(select(m, 0, 3), "select", "index 3 out of range", "size 3");
  EXPECT_DG_ERROR(select(m, 0, -4), "select", "index -4 out of range");
}

TEST(Slice, Gradcheck) {
  Tensor x = rand_input({4, 5}, 3);
  EXPECT_GRADCHECK([](const Tensors& in) { return slice(in[0], 1, 1, 5, 2); }, {x});
  EXPECT_GRADCHECK([](const Tensors& in) { return slice(t01(in[0]), 0, 0, 4, 3); }, {x});
  EXPECT_GRADCHECK([](const Tensors& in) { return narrow(in[0], 0, 1, 2); }, {x});
  EXPECT_GRADCHECK([](const Tensors& in) { return select(in[0], 1, 3); }, {x});
  EXPECT_GRADCHECK([](const Tensors& in) { return select(t01(in[0]), 1, -1); }, {x});
  EXPECT_GRADGRADCHECK([](const Tensors& in) { return slice(in[0], 1, 0, 5, 2); }, {x});
  EXPECT_GRADGRADCHECK([](const Tensors& in) { return select(in[0], 0, 2); }, {x});
}

// --- expand / squeeze / unsqueeze

TEST(Expand, ValuesStrideZeroAndErrors) {
  Tensor x = iota({3, 1});
  Tensor y = expand(x, {2, -1, 4});
  EXPECT_EQ(y.shape(), (Shape{2, 3, 4}));
  EXPECT_EQ(y.strides()[0], 0);
  EXPECT_EQ(y.strides()[2], 0);
  EXPECT_TRUE(shares_storage(x, y));
  EXPECT_EQ(contiguous(y).to_vector<double>()[5], 1.0);
  EXPECT_DG_ERROR(expand(x, {4, 4}), "expand", "[3, 1]", "[4, 4]");
  EXPECT_DG_ERROR(expand(x, {3}), "expand", "fewer dims");
}

TEST(Expand, Gradcheck) {
  Tensor x = rand_input({3, 1}, 4);
  EXPECT_GRADCHECK([](const Tensors& in) { return expand(in[0], {2, 3, 4}); }, {x});
  EXPECT_GRADCHECK([](const Tensors& in) { return expand(t01(in[0]), {5, 3}); }, {x});
  EXPECT_GRADGRADCHECK([](const Tensors& in) { return expand(in[0], {2, 3, 4}); }, {x});
}

TEST(Squeeze, ShapesAndGradcheck) {
  Tensor x = rand_input({2, 1, 3}, 5);
  EXPECT_EQ(squeeze(x, 1).shape(), (Shape{2, 3}));
  EXPECT_EQ(squeeze(x, 0).shape(), (Shape{2, 1, 3}));  // size 2: unchanged
  EXPECT_EQ(unsqueeze(x, -1).shape(), (Shape{2, 1, 3, 1}));
  EXPECT_EQ(unsqueeze(x, 0).shape(), (Shape{1, 2, 1, 3}));
  EXPECT_DG_ERROR(unsqueeze(x, 4), "unsqueeze", "dim 4 out of range");
  EXPECT_DG_ERROR(squeeze(x, 3), "squeeze", "dim 3 out of range");
  EXPECT_GRADCHECK([](const Tensors& in) { return squeeze(in[0], 1); }, {x});
  EXPECT_GRADCHECK([](const Tensors& in) { return unsqueeze(transpose(in[0], 0, 2), 1); }, {x});
  EXPECT_GRADGRADCHECK([](const Tensors& in) { return unsqueeze(in[0], 3); }, {x});
}

// --- contiguous / clone / to

TEST(Copies, ContiguousCloneTo) {
  Tensor x = iota({2, 3});
  EXPECT_TRUE(contiguous(x).is_same(x));
  Tensor t = contiguous(transpose(x, 0, 1));
  EXPECT_TRUE(t.is_contiguous());
  expect_values(t, {0, 3, 1, 4, 2, 5});
  Tensor c = clone(x);
  EXPECT_FALSE(shares_storage(c, x));
  Tensor f = to(x, DType::f32);
  EXPECT_EQ(f.dtype(), DType::f32);
  expect_values(f, {0, 1, 2, 3, 4, 5});
  EXPECT_EQ(to(x, DType::i64).dtype(), DType::i64);
}

TEST(Copies, Gradcheck) {
  Tensor x = rand_input({3, 2}, 6);
  EXPECT_GRADCHECK([](const Tensors& in) { return contiguous(t01(in[0])); }, {x});
  EXPECT_GRADCHECK([](const Tensors& in) { return clone(t01(in[0])); }, {x});
  EXPECT_GRADCHECK([](const Tensors& in) { return to(to(in[0], DType::f32), DType::f64); },
                   {x}, GradcheckOptions{.eps = 1e-3, .atol = 1e-4, .rtol = 1e-3});
  Tensor i = to(x, DType::i64);
  EXPECT_FALSE(i.requires_grad());
}

// --- cat / stack / split

TEST(Cat, ValuesAndErrors) {
  Tensor a = iota({2, 2}), b = iota({2, 1});
  expect_values(cat({a, b}, 1), {0, 1, 0, 2, 3, 1});
  expect_values(cat({a, transpose(a, 0, 1)}, 0), {0, 1, 2, 3, 0, 2, 1, 3});
  EXPECT_DG_ERROR(cat({a, b}, 0), "cat", "except in dim 0", "[2, 2]", "[2, 1]");
  EXPECT_DG_ERROR(cat({}, 0), "cat", "non-empty");
  EXPECT_DG_ERROR(cat({a, to(b, DType::f32)}, 1), "cat", "dtype mismatch");
  EXPECT_DG_ERROR(cat({a, iota({4})}, 0), "cat", "[2, 2]", "[4]");
}

TEST(Cat, Gradcheck) {
  Tensor a = rand_input({2, 3}, 7), b = rand_input({3, 2}, 8), c = rand_input({2, 1}, 9);
  EXPECT_GRADCHECK([](const Tensors& in) { return cat({in[0], t01(in[1]), in[2]}, 1); }, {a, b, c});
  EXPECT_GRADCHECK([](const Tensors& in) { return cat({in[0], t01(in[1])}, 0); }, {a, b});
  EXPECT_GRADGRADCHECK([](const Tensors& in) { return cat({in[0], in[2]}, -1); }, {a, b, c});
}

TEST(Stack, ValuesGradcheckErrors) {
  Tensor a = iota({2}), b = iota({2});
  Tensor s = stack({a, b}, 1);
  EXPECT_EQ(s.shape(), (Shape{2, 2}));
  expect_values(s, {0, 0, 1, 1});
  EXPECT_DG_ERROR(stack({a, iota({3})}), "stack", "one shape", "[2]", "[3]");
  Tensor x = rand_input({2, 3}, 10), y = rand_input({3, 2}, 11);
  EXPECT_GRADCHECK([](const Tensors& in) { return stack({in[0], t01(in[1])}, 2); }, {x, y});
  EXPECT_GRADGRADCHECK([](const Tensors& in) { return stack({in[0], t01(in[1])}, 0); }, {x, y});
}

TEST(Split, PiecesViewsAndGradcheck) {
  Tensor x = iota({5, 2});
  Tensors p = split(x, 2, 0);
  ASSERT_EQ(p.size(), 3u);
  EXPECT_EQ(p[2].shape(), (Shape{1, 2}));
  expect_values(p[1], {4, 5, 6, 7});
  EXPECT_TRUE(shares_storage(p[0], x));
  Tensors q = split(x, {1, 4}, 0);
  expect_values(q[0], {0, 1});
  EXPECT_DG_ERROR(split(x, {1, 3}, 0), "split", "add up to 5");
  EXPECT_DG_ERROR(split(x, 0, 0), "split", "split_size must be positive");
  Tensor g = rand_input({5, 2}, 12);
  EXPECT_GRADCHECK([](const Tensors& in) { return split(in[0], 2, 0)[1]; }, {g});
  EXPECT_GRADCHECK([](const Tensors& in) { return split(t01(in[0]), {3, 2}, 1)[1]; }, {g});
  // All pieces used: their gradients add up in x.grad.
  EXPECT_GRADCHECK([](const Tensors& in) {
    Tensors s = split(in[0], 2, 0);
    return cat({s[2], s[0], s[1]}, 0);
  }, {g});
}

// --- sum_to

TEST(SumTo, ValuesAndShapes) {
  Tensor g = iota({2, 3, 4});
  expect_values(sum_to(g, {4}), {60, 66, 72, 78});
  expect_values(sum_to(g, {3, 1}), {60, 92, 124});
  expect_values(sum_to(g, {1, 1, 1}), {276});
  EXPECT_TRUE(sum_to(g, {2, 3, 4}).is_same(g));
  Tensor r = sum_to(iota({1, 3}), {3});  // nothing to sum: a reshape
  EXPECT_EQ(r.shape(), (Shape{3}));
  expect_values(sum_to(transpose(g, 0, 2), {1, 3, 2}), {6, 54, 22, 70, 38, 86});
  EXPECT_DG_ERROR(sum_to(g, {5}), "sum_to", "[2, 3, 4]", "[5]");
  EXPECT_DG_ERROR(sum_to(iota({3}), {2, 3}), "sum_to", "more dims");
}

TEST(SumTo, Gradcheck) {
  Tensor g = rand_input({2, 3, 4}, 13);
  EXPECT_GRADCHECK([](const Tensors& in) { return sum_to(in[0], {3, 1}); }, {g});
  EXPECT_GRADCHECK([](const Tensors& in) { return sum_to(transpose(in[0], 0, 2), {4, 1, 2}); }, {g});
  EXPECT_GRADGRADCHECK([](const Tensors& in) { return sum_to(in[0], {1, 4}); }, {g});
}
