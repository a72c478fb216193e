#pragma once
// Fashion-MNIST (Xiao et al. 2017) from idx files: 28x28 grey images of 10
// kinds of clothing, 60000 train and 10000 test. The files come with the
// Debian package dataset-fashion-mnist (apt-get install dataset-fashion-mnist),
// in /usr/share/datasets/fashion-mnist:
//   train-images-idx3-ubyte.gz  train-labels-idx1-ubyte.gz
//   t10k-images-idx3-ubyte.gz   t10k-labels-idx1-ubyte.gz
// Plain (uncompressed) files without ".gz" are read too.
//
// idx format (all integers big-endian):
//   bytes 0-1  zero
//   byte  2    element type, 0x08 = uint8 (the only one read here)
//   byte  3    number of dims d (3 for images, 1 for labels)
//   then d uint32 sizes (images: N, rows, cols; labels: N), then the
//   N*rows*cols (or N) uint8 values, row-major. So the magic number is
//   0x00000803 for images and 0x00000801 for labels.
//
//   dg::data::FashionMnist test = dg::data::load_fashion_mnist(dg::data::kFashionMnistDir, dg::data::Split::val);
//   test.images  // (10000, 784) f32 in [0, 1]
//   test.labels  // (10000) i64 in 0..9
#include <cstdint>
#include <string>
#include <vector>

#include "data/corpus.h"
#include "tensor/tensor.h"

namespace dg::data {

inline constexpr const char* kFashionMnistDir = "/usr/share/datasets/fashion-mnist";
constexpr int64_t kFashionMnistClasses = 10, kFashionMnistSide = 28;

// A uint8 idx file: its dims and values, after checking the magic number and
// that the file holds exactly the values its header announces, at most
// kMaxIdxValues (1 GiB; Fashion-MNIST's largest file holds 47 MB). Only the
// data the file really has is ever held, so neither a header that announces
// more nor a gzip stream that decompresses to more can exhaust memory.
inline constexpr int64_t kMaxIdxValues = int64_t{1} << 30;
struct IdxFile {
  std::vector<int64_t> dims;
  std::vector<uint8_t> values;
};
// expected_dims: the d in the magic number that the caller needs (3 or 1).
IdxFile read_idx(const std::string& path, int expected_dims);

// Images (N, rows*cols) f32 scaled to [0, 1] (rows, cols: required sizes, 0 =
// any); labels (N) i64, each checked to be in [0, num_classes).
Tensor read_idx_images(const std::string& path, int64_t rows = 0, int64_t cols = 0);
Tensor read_idx_labels(const std::string& path, int64_t num_classes = kFashionMnistClasses);

struct FashionMnist {
  Tensor images;  // (N, 784) f32 in [0, 1]
  Tensor labels;  // (N) i64 in 0..9
};

// Split::train reads train-*, Split::val the t10k-* test files, preferring
// "<name>.gz" and falling back to "<name>". Checks 28x28 images and that the
// image and label counts agree.
FashionMnist load_fashion_mnist(const std::string& dir = kFashionMnistDir, Split split = Split::train);

}  // namespace dg::data
