// Tour, chapter 1: a Tensor and its Storage (docs/tour/01_tensor.md).
//
// A Tensor is a handle to (Storage, shape, strides, offset, dtype). Views
// share the Storage; so does its version counter, which in-place writes bump.
#include <fmt/ranges.h>

#include "autograd/ops.h"
#include "examples/tour/check.h"

using namespace dg;

int main() try {
  tour::Checks check;
  // a = [[0, 1, 2],
  //      [3, 4, 5]]            shape (2, 3), strides (3, 1): element (i, j) at 3i + j
  Tensor a = from_vector<float>({0, 1, 2, 3, 4, 5}, {2, 3});
  fmt::print("a: shape {} strides {} offset {}\n", a.shape(), a.strides(), a.offset());
  check.expect(a.strides() == Strides{3, 1} && a.is_contiguous(), "a is row-major: strides (3, 1)");

  // A transpose is a view: new shape and strides, the same Storage.
  Tensor t = transpose(a, 0, 1);  // (3, 2), strides (1, 3)
  fmt::print("t = a^T: shape {} strides {} contiguous {}\n", t.shape(), t.strides(), t.is_contiguous());
  check.expect(t.storage_ptr() == a.storage_ptr(), "the transpose shares a's Storage (no copy)");
  check.expect(t.strides() == Strides{1, 3} && !t.is_contiguous(), "its strides are swapped: (1, 3)");

  // A slice is a view with an offset: row 1 of a starts at element 3.
  Tensor row1 = select(a, 0, 1);  // (3), offset 3
  Tensor col2 = select(a, 1, 2);  // (2), offset 2, stride 3
  fmt::print("row1: offset {} strides {}; col2: offset {} strides {}\n", row1.offset(), row1.strides(),
             col2.offset(), col2.strides());
  check.expect(row1.offset() == 3 && col2.offset() == 2 && col2.strides() == Strides{3},
               "select(a, 0, 1) starts at element 3; select(a, 1, 2) at 2 with stride 3");

  // A write through one view is seen through every other, and bumps the
  // version counter that lives in the shared Storage.
  const uint32_t v0 = a.version();
  mul_(row1, 10.0);  // row 1 of a, in place: [30, 40, 50]
  fmt::print("after mul_(row1, 10): a = {}\n", a);
  check.expect(a.to_vector<float>() == std::vector<float>{0, 1, 2, 30, 40, 50}, "a sees the write made through row1");
  check.expect(t.to_vector<float>() == std::vector<float>{0, 30, 1, 40, 2, 50}, "so does the transpose");
  check.expect(a.version() == v0 + 1 && t.version() == a.version(),
               "the version counter went up by one, for every view of the Storage");

  // Reshape is a view when the strides allow it, a copy otherwise.
  Tensor flat = reshape(a, {6});
  Tensor flat_t = reshape(t, {6});  // a^T is not contiguous: its elements are not in memory order
  check.expect(flat.storage_ptr() == a.storage_ptr(), "reshape of the contiguous a is a view");
  check.expect(flat_t.storage_ptr() != a.storage_ptr() && flat_t.is_contiguous(),
               "reshape of the transpose must copy (a new, contiguous Storage)");
  Tensor c = contiguous(t);
  check.expect(c.storage_ptr() != t.storage_ptr() && c.to_vector<float>() == t.to_vector<float>(),
               "contiguous(t) copies into memory order; same values");
  mul_(c, 0.0);
  check.expect(a.to_vector<float>()[1] == 1.0f && a.version() == v0 + 1,
               "writing the copy changes neither a nor a's version");

  // expand broadcasts with stride 0: three rows that are one row in memory.
  Tensor bias = from_vector<float>({1, 2, 3});
  Tensor rows = expand(unsqueeze(bias, 0), {4, 3});
  fmt::print("expand: shape {} strides {}\n", rows.shape(), rows.strides());
  check.expect(rows.strides() == Strides{0, 1} && rows.storage_ptr() == bias.storage_ptr(),
               "expand to (4, 3) is a stride-0 view of the same 3 numbers");
  return check.exit_code();
} catch (const dg::Error& e) {
  fmt::print(stderr, "error: {}\n", e.what());
  return 1;
}
