// models/block_on_rows.h: a block run on chosen rows of a flat residual
// stream equals the block run on each sequence's chosen tokens alone, counts
// the FLOPs it states, passes gradients to the rows it read (f64 finite
// differences), and refuses rows out of order or range; expert choice takes
// each column's top share of every sequence's active rows.
#include "autograd/gradcheck.h"
#include "models/block_on_rows.h"
#include "testing.h"

using namespace dg;

namespace {

constexpr int64_t kT = 6, kC = 8;

std::shared_ptr<nn::Block> block(DType dtype) {
  Generator gen(5);
  return std::make_shared<nn::Block>(kC, 2, 0.0, nn::LayerOptions{dtype, &gen});
}

}  // namespace

TEST(PackedSeqlens, OneBoundaryPerSequenceUpToTheLast) {
  // Rows of sequences 0 and 2 (T = 6); sequence 1 has none: an empty sequence.
  EXPECT_EQ(models::packed_seqlens({0, 3, 4, 13, 17}, kT), (std::vector<int64_t>{0, 3, 3, 5}));
  EXPECT_EQ(models::packed_seqlens({7}, kT), (std::vector<int64_t>{0, 0, 1}));
  EXPECT_EQ(models::packed_seqlens({}, kT), (std::vector<int64_t>{0}));
}

// Rows {1, 2, 4} of sequence 0 and {6, 9} of sequence 1 of a (2 x 6) stream:
// the same deltas as the block on (1, 3, C) and (1, 2, C) gathered tokens.
TEST(BlockOnRows, EqualsTheBlockOnEachSequencesChosenTokens) {
  auto b = block(DType::f64);
  Tensor R = randn({2 * kT, kC}, {.dtype = DType::f64});
  const std::vector<int64_t> rows = {1, 2, 4, 6, 9};
  models::BlockOnRows out = models::block_on_rows(*b, R, rows, kT);
  ASSERT_EQ(out.delta.shape(), Shape({5, kC}));
  auto seq = [&](std::vector<int64_t> r) {
    Tensor x = index_select(R, 0, from_vector<int64_t>(r, {static_cast<int64_t>(r.size())}));
    return reshape(b->forward(unsqueeze(x, 0)), {static_cast<int64_t>(r.size()), kC});
  };
  Tensor want = cat({seq({1, 2, 4}), seq({6, 9})}, 0);
  EXPECT_LT(dg::testing::max_rel_diff(out.delta, want), 1e-12);
  // 24 C^2 per row, and 2 C L (L + 1) per sequence of L rows (L = 3, 2).
  EXPECT_DOUBLE_EQ(out.flops, 24.0 * kC * kC * 5 + 2.0 * kC * (3 * 4 + 2 * 3));
  EXPECT_EQ(out.rows.ids.to_vector<int64_t>(), rows);
  EXPECT_FALSE(models::block_on_rows(*b, R, {}, kT).delta.defined());
}

TEST(BlockOnRows, GradientsReachTheRowsItRead) {
  auto b = block(DType::f64);
  Tensor R = randn({2 * kT, kC}, {.dtype = DType::f64}).set_requires_grad();
  auto r = gradcheck(
      [&](const Tensors& in) {
        models::BlockOnRows o = models::block_on_rows(*b, in[0], {0, 2, 3, 8}, kT);
        return models::scatter_add_rows(in[0], o.rows, o.delta, Tensor());
      },
      {R});
  EXPECT_TRUE(r) << r.message;
}

TEST(BlockOnRows, RefusesRowsOutOfOrderOrRange) {
  auto b = block(DType::f32);
  Tensor R = randn({2 * kT, kC});
  EXPECT_DG_ERROR(models::block_on_rows(*b, R, {3, 1}, kT), "ascending and in [0, 12)", "got 1 at position 1");
  EXPECT_DG_ERROR(models::block_on_rows(*b, R, {0, 12}, kT), "got 12 at position 1");
  EXPECT_DG_ERROR(models::block_on_rows(*b, R, {2, 2}, kT), "ascending");
  EXPECT_DG_ERROR(models::block_on_rows(*b, reshape(R, {2, kT, kC}), {0}, kT), "(N, C)");
}

// Active rows {0, 2, 3} of sequence 0, {5} of sequence 0 too, {6, 8} of
// sequence 1 and {13} of sequence 2 (T = 6): a = 4, 2, 1, so share 0.5 takes
// ceil(2) = 2, ceil(1) = 1 and ceil(0.5) = 1 rows per column. Rows 5 and 6 are
// neighbours but in different sequences: they never compete.
TEST(ExpertChoiceRows, EachColumnTakesTheTopShareOfEverySequence) {
  const std::vector<int64_t> rows = {0, 2, 3, 5, 6, 8, 13};
  const std::vector<double> scores = {  // (7, 2): column 0, column 1
      0.1, 0.9,                         // row 0
      0.8, 0.2,                         // row 2
      0.3, 0.7,                         // row 3
      0.9, 0.1,                         // row 5
      0.2, 0.4,                         // row 6
      0.6, 0.3,                         // row 8
      0.0, 0.5};                        // row 13
  models::ExpertChoiceRows c = models::expert_choice_rows(scores, 2, rows, kT, 0.5);
  // Column 0: rows 5, 2 of sequence 0; row 8 of 1; row 13 of 2. Column 1: rows 0, 3; row 6; row 13.
  EXPECT_EQ(c.taken, (std::vector<double>{0, 1, 1, 0, 0, 1, 1, 0, 0, 1, 1, 0, 1, 1}));
  EXPECT_EQ(c.positions, (std::vector<std::vector<int64_t>>{{1, 3, 5, 6}, {0, 2, 4, 6}}));
  EXPECT_EQ(c.rows, (std::vector<std::vector<int64_t>>{{2, 5, 8, 13}, {0, 3, 6, 13}}));
  // Share 1 takes every row for every column; no rows, no choice.
  models::ExpertChoiceRows all = models::expert_choice_rows(scores, 2, rows, kT, 1.0);
  EXPECT_EQ(all.taken, std::vector<double>(14, 1.0));
  EXPECT_EQ(all.rows[1], rows);
  models::ExpertChoiceRows none = models::expert_choice_rows({}, 2, {}, kT, 0.5);
  EXPECT_TRUE(none.taken.empty());
  EXPECT_EQ(none.rows, (std::vector<std::vector<int64_t>>{{}, {}}));
}

TEST(ExpertChoiceRows, RefusesBadSizesSharesAndRows) {
  EXPECT_DG_ERROR(models::expert_choice_rows({0.1, 0.2, 0.3}, 2, {0, 1}, kT, 0.5), "(Na, E) = (2, 2)", "got 3 values");
  EXPECT_DG_ERROR(models::expert_choice_rows({0.1, 0.2}, 1, {0, 1}, kT, 0.0), "share in (0, 1]", "share = 0");
  EXPECT_DG_ERROR(models::expert_choice_rows({0.1, 0.2}, 1, {0, 1}, kT, 1.5), "share = 1.5");
  EXPECT_DG_ERROR(models::expert_choice_rows({0.1, 0.2}, 1, {3, 1}, kT, 0.5), "ascending", "got 1 at position 1");
  EXPECT_DG_ERROR(models::expert_choice_rows({0.1, 0.2}, 1, {-1, 1}, kT, 0.5), "got -1 at position 0");
}
