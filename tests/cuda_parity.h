#pragma once
// Shared by the CPU-vs-CUDA differential tests (test_cuda_parity.cpp: ops,
// test_cuda_model_parity.cpp: models). One description per case: inputs are
// made on the CPU, copied with dg::to_device, run through the same public ops
// on both devices, and outputs and gradients are compared on the host.
//
// The device under test is cuda:0. Without a GPU every test is skipped (ctest
// reports "skipped", never "passed"). DG_PARITY_DEVICE=guarded runs the same
// tests against the guarded test device (the CPU's kernels behind protected
// memory): results must then be bit-identical, and that checks the tests'
// own logic on a machine without a GPU.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <string>
#include <vector>

#include "autograd/ops.h"
#include "tensor/creation.h"

namespace dg::testing {

// The device the parity tests compare the CPU with.
inline Device parity_device() {
  const char* env = std::getenv("DG_PARITY_DEVICE");
  return parse_device(env && *env ? env : "cuda:0");
}

// The fixture of every parity test: skipped (with the reason) when the device
// under test is a GPU this process does not have.
class DeviceParity : public ::testing::Test {
 protected:
  void SetUp() override {
    dev = parity_device();
    if (dev.type == DeviceType::cuda && dg::device_count(dg::DeviceType::cuda) <= dev.index)
      GTEST_SKIP() << "no CUDA device on this machine";
  }
  Device dev = Device::cpu();
};

// Largest |a - b| relative to the largest |b| (normwise): the error measure of
// every float comparison here, so a sum's rounding is judged against the
// magnitude of what was summed, not against a result that cancelled to ~0.
// Shapes and dtypes must match; NaN anywhere fails (returns +inf).
struct Difference {
  double max_abs = 0, max_ref = 0;
  double relative() const { return max_ref > 0 ? max_abs / max_ref : max_abs; }
};

inline Difference difference(const Tensor& got, const Tensor& want) {
  Difference d;
  std::vector<double> a = to_device(got, Device::cpu()).to_vector<double>();
  std::vector<double> b = to_device(want, Device::cpu()).to_vector<double>();
  if (a.size() != b.size()) return {INFINITY, 1};
  for (size_t i = 0; i < a.size(); ++i) {
    if (std::isnan(a[i]) != std::isnan(b[i])) return {INFINITY, 1};
    if (std::isnan(a[i])) continue;
    if (std::isinf(a[i]) || std::isinf(b[i])) {
      if (a[i] != b[i]) return {INFINITY, 1};
      continue;
    }
    d.max_abs = std::max(d.max_abs, std::abs(a[i] - b[i]));
    d.max_ref = std::max(d.max_ref, std::abs(b[i]));
  }
  return d;
}

// got (any device) equals want (CPU) within rtol (normwise, see Difference);
// rtol 0 asks for bitwise equality of the values.
inline ::testing::AssertionResult close(const Tensor& got, const Tensor& want, double rtol, const std::string& what) {
  if (!got.defined() || !want.defined())
    return ::testing::AssertionFailure() << what << ": undefined tensor (got " << got.defined() << ", want "
                                         << want.defined() << ")";
  if (got.shape() != want.shape() || got.dtype() != want.dtype())
    return ::testing::AssertionFailure() << what << ": " << fmt::format("{} {}", got.shape(), got.dtype())
                                         << " vs CPU " << fmt::format("{} {}", want.shape(), want.dtype());
  const Difference d = difference(got, want);
  if (d.relative() <= rtol) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << what << ": max|diff| " << d.max_abs << " of max|cpu| " << d.max_ref
                                       << " = " << d.relative() << " relative > " << rtol;
}

}  // namespace dg::testing
