// Gradients of the routing primitives of models/routing.h, by f64 central
// differences (gradcheck) and double backward (gradgradcheck), in every input
// that carries one: the residual stream x, the block outputs delta and the
// router weights w. The row versions are checked on both of their paths:
// a general selection (out of order, with a repeated row for gather_rows) and
// every row in order, where gather_rows returns x itself and an unweighted
// scatter_add_rows is a plain add (a weighted one is index_add_rows). The
// token versions with several sequences and k < T.
//
// Legend: N rows of a flat (N, C) stream, n selected rows; B sequences of
// length T, k kept tokens per sequence.
#include "models/routing.h"
#include "testing.h"

using namespace dg;
using dg::testing::max_abs_diff;
using dg::testing::rand_input;

namespace {

models::Rows rows_of(const std::vector<int64_t>& r) { return models::Rows(r, Device::cpu()); }

constexpr int64_t N = 5, C = 3;

}  // namespace

TEST(RoutingGrad, GatherRows) {
  Tensor x = rand_input({N, C}, 1);
  models::Rows rows = rows_of({3, 0, 3, 4});  // out of order, row 3 twice: its gradient is the sum of both
  auto fn = [&](const Tensors& in) { return models::gather_rows(in[0], rows); };
  EXPECT_GRADCHECK(fn, {x});
  EXPECT_GRADGRADCHECK(fn, {x});
}

TEST(RoutingGrad, GatherRowsEveryRowInOrderIsXItself) {
  Tensor x = rand_input({N, C}, 2);
  models::Rows rows = rows_of({0, 1, 2, 3, 4});
  Tensor y = models::gather_rows(x, rows);
  EXPECT_EQ(y.impl(), x.impl()) << "the identity shortcut returns x, not a copy";
  auto fn = [&](const Tensors& in) { return models::gather_rows(in[0] * in[0], rows); };
  EXPECT_GRADCHECK(fn, {x});
  EXPECT_GRADGRADCHECK(fn, {x});
}

TEST(RoutingGrad, ScatterAddRows) {
  Tensor x = rand_input({N, C}, 3), delta = rand_input({3, C}, 4), w = rand_input({3}, 5);
  models::Rows rows = rows_of({4, 1, 2});
  auto fn = [&](const Tensors& in) { return models::scatter_add_rows(in[0], rows, in[1], in[2]); };
  EXPECT_GRADCHECK(fn, {x, delta, w});
  EXPECT_GRADGRADCHECK(fn, {x, delta, w});
  // without a weight: x[rows[j]] += delta[j]
  auto unweighted = [&](const Tensors& in) { return models::scatter_add_rows(in[0], rows, in[1], Tensor()); };
  EXPECT_GRADCHECK(unweighted, {x, delta});
}

TEST(RoutingGrad, ScatterAddRowsEveryRowInOrderIsAPlainAdd) {
  Tensor x = rand_input({N, C}, 6), delta = rand_input({N, C}, 7), w = rand_input({N}, 8);
  models::Rows rows = rows_of({0, 1, 2, 3, 4});
  Tensor y = models::scatter_add_rows(x, rows, delta, Tensor());
  ASSERT_NE(y.grad_fn(), nullptr);
  EXPECT_STREQ(y.grad_fn()->name(), "add") << "the unweighted identity shortcut is x + delta, not an index_add";
  EXPECT_LE(max_abs_diff(y, x + delta), 0.0);
  // Weighted, in any order: one fused index_add_rows, x + w * delta up to the
  // rounding of a fused multiply-add.
  Tensor yw = models::scatter_add_rows(x, rows, delta, w);
  ASSERT_NE(yw.grad_fn(), nullptr);
  EXPECT_STREQ(yw.grad_fn()->name(), "index_add_rows");
  EXPECT_LE(max_abs_diff(yw, x + delta * unsqueeze(w, 1)), 1e-15);
  auto fn = [&](const Tensors& in) { return models::scatter_add_rows(in[0], rows, in[1], in[2]); };
  EXPECT_GRADCHECK(fn, {x, delta, w});
  EXPECT_GRADGRADCHECK(fn, {x, delta, w});
}

// The shortcut and the general path agree, values and gradients: the same
// rows given out of order take index_add.
TEST(RoutingGrad, ScatterAddRowsShortcutMatchesIndexAdd) {
  Tensor x = rand_input({N, C}, 9), delta = rand_input({N, C}, 10), w = rand_input({N}, 11);
  models::Rows in_order = rows_of({0, 1, 2, 3, 4}), permuted = rows_of({4, 3, 2, 1, 0});
  Tensor delta_rev = index_select(delta, 0, permuted.ids), w_rev = index_select(w, 0, permuted.ids);
  Tensor a = models::scatter_add_rows(x, in_order, delta, w);
  Tensor b = models::scatter_add_rows(x, permuted, delta_rev, w_rev);
  EXPECT_LE(max_abs_diff(a, b), 1e-15);
  Tensor wa = rand_input({N, C}, 12);
  Tensors ga = grad({sum(a * wa)}, {x, delta, w}), gb = grad({sum(b * wa)}, {x, delta, w});
  for (size_t i = 0; i < ga.size(); ++i) EXPECT_LE(max_abs_diff(ga[i], gb[i]), 1e-15) << "input " << i;
}

TEST(RoutingGrad, GatherTokens) {
  Tensor x = rand_input({2, 6, C}, 13);
  Tensor idx = from_vector<int64_t>({0, 2, 5, 1, 3, 4}, {2, 3});
  auto fn = [&](const Tensors& in) { return models::gather_tokens(in[0], idx); };
  EXPECT_GRADCHECK(fn, {x});
  EXPECT_GRADGRADCHECK(fn, {x});
}

TEST(RoutingGrad, ScatterAddTokens) {
  Tensor x = rand_input({2, 6, C}, 14), delta = rand_input({2, 3, C}, 15), w = rand_input({2, 3}, 16);
  Tensor idx = from_vector<int64_t>({0, 2, 5, 1, 3, 4}, {2, 3});
  auto fn = [&](const Tensors& in) { return models::scatter_add_tokens(in[0], idx, in[1], in[2]); };
  EXPECT_GRADCHECK(fn, {x, delta, w});
  EXPECT_GRADGRADCHECK(fn, {x, delta, w});
}

// Gather then scatter, as MoD does: the block's rows go out and come back
// weighted; a nonlinear block between them makes the gradient depend on x.
TEST(RoutingGrad, GatherBlockScatterRoundTrip) {
  Tensor x = rand_input({2, 6, C}, 17), w = rand_input({2, 3}, 18);
  Tensor idx = from_vector<int64_t>({1, 2, 4, 0, 3, 5}, {2, 3});
  auto fn = [&](const Tensors& in) {
    Tensor delta = tanh(models::gather_tokens(in[0], idx));
    return models::scatter_add_tokens(in[0], idx, delta, in[1]);
  };
  EXPECT_GRADCHECK(fn, {x, w});
  EXPECT_GRADGRADCHECK(fn, {x, w});
}
