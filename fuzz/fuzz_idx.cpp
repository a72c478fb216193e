// libFuzzer target: the idx reader (data/fashion_mnist.h), plain or gzip.
// Any input must give tensors or a dg::Error; images come out in [0, 1] and
// labels in 0..9.
#include "data/fashion_mnist.h"
#include "fuzz_file.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static dg::fuzz::InputFile input;
  const std::string& path = input.hold(data, size);
  try {
    const dg::Tensor images = dg::data::read_idx_images(path);
    dg::fuzz::require(images.dim() == 2);
    for (float v : images.to_vector<float>()) dg::fuzz::require(v >= 0.0f && v <= 1.0f);
  } catch (const dg::Error&) {
  }
  try {
    const dg::Tensor labels = dg::data::read_idx_labels(path);
    dg::fuzz::require(labels.dim() == 1);
    for (int64_t v : labels.to_vector<int64_t>()) dg::fuzz::require(v >= 0 && v < dg::data::kFashionMnistClasses);
  } catch (const dg::Error&) {
  }
  try {
    dg::data::read_idx(path, 2);
  } catch (const dg::Error&) {
  }
  return 0;
}
