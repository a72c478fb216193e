#include <gtest/gtest.h>

#include "tensor/backend.h"
#include "tensor/creation.h"

using namespace dg;

TEST(Tensor, CreationAndCopies) {
  Tensor t = from_vector<float>({1, 2, 3, 4, 5, 6}, {2, 3});
  EXPECT_EQ(t.shape(), (Shape{2, 3}));
  EXPECT_EQ(t.strides(), (Shape{3, 1}));
  EXPECT_TRUE(t.is_contiguous());
  EXPECT_EQ(t.to_vector<double>(), (std::vector<double>{1, 2, 3, 4, 5, 6}));
  Tensor tt = as_strided(t, {3, 2}, {1, 3}, 0);  // transpose view
  EXPECT_FALSE(tt.is_contiguous());
  EXPECT_EQ(tt.to_vector<float>(), (std::vector<float>{1, 4, 2, 5, 3, 6}));
  EXPECT_EQ(zeros({3}, {DType::i64}).to_vector<int64_t>(), (std::vector<int64_t>{0, 0, 0}));
  EXPECT_EQ(arange(4).to_vector<float>(), (std::vector<float>{0, 1, 2, 3}));
  EXPECT_EQ(full({1}, 2.5, {DType::f64}).item<double>(), 2.5);
}
