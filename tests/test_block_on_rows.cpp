// models/block_on_rows.h: a block run on chosen rows of a flat residual
// stream equals the block run on each sequence's chosen tokens alone, counts
// the FLOPs it states, passes gradients to the rows it read (f64 finite
// differences), and refuses rows out of order or range.
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
