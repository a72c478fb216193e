#pragma once
// Devices for parameterised tests: every test written over all_devices() runs
// on the CPU, on the guarded test device (CPU kernels on memory the host
// cannot touch: a host read of device data crashes) and on the first GPU.
// Where a device is missing the test is reported as skipped, never passed:
//
//   class Ops : public DeviceTest {};
//   TEST_P(Ops, Add) { Tensor x = dg::randn({3}, {.device = device()}); ... }
//   INSTANTIATE_TEST_SUITE_P(Devices, Ops, ::testing::ValuesIn(all_devices()), device_test_name);
#include <gtest/gtest.h>

#include <cstring>
#include <string>
#include <vector>

#include "tensor/backend.h"
#include "testing.h"

namespace dg {
// How gtest prints a Device parameter ("guarded:0", not its bytes).
inline void PrintTo(Device d, std::ostream* os) { *os << fmt::format("{}", d); }
}  // namespace dg

namespace dg::testing {

inline std::vector<Device> all_devices() { return {Device::cpu(), Device::guarded(), Device::cuda(0)}; }

// Marks the running test skipped when `d` is not usable in this process.
// Called from a fixture's SetUp() (DeviceTest below), the test body then does
// not run; called from a body, return right after when IsSkipped().
inline void skip_unless_available(Device d) {
  if (d.index >= device_count(d.type)) GTEST_SKIP() << "no CUDA device on this machine";
}

// The fixture of device-parameterised tests: GetParam() is the device, and
// the test is skipped before its body where the device is missing.
class DeviceTest : public ::testing::TestWithParam<Device> {
 protected:
  void SetUp() override { skip_unless_available(GetParam()); }
  Device device() const { return GetParam(); }
};

// Readable test names: Cpu, Guarded, Cuda0.
inline std::string device_name(Device d) {
  switch (d.type) {
    case DeviceType::cpu: return "Cpu";
    case DeviceType::guarded: return "Guarded";
    case DeviceType::cuda: return "Cuda" + std::to_string(d.index);
  }
  return "Unknown";
}
inline std::string device_test_name(const ::testing::TestParamInfo<Device>& info) { return device_name(info.param); }

// An f64 leaf on `device` with values from a fixed seed in [lo, hi)
// (rand_input's values, so every device gets the same numbers).
inline Tensor leaf(const Shape& shape, uint64_t seed, Device device, double lo = -1.0, double hi = 1.0) {
  return to_device(rand_input(shape, seed, lo, hi).detach(), device).set_requires_grad();
}
inline Tensor index_on(const std::vector<int64_t>& v, const Shape& shape, Device device) {
  return from_vector<int64_t>(v, shape, device);
}

// `got` (computed on `device`) against `cpu` (the same computation on the
// CPU): bitwise equal on the guarded device (the same kernels), within 1e-10
// (f64) or 1e-5 (f32) relative on CUDA.
inline void expect_match(const Tensor& got, const Tensor& cpu, Device device, const std::string& what) {
  ASSERT_TRUE(got.defined() && cpu.defined()) << what;
  ASSERT_EQ(got.device(), device) << what << ": the result is not on the inputs' device";
  ASSERT_EQ(got.shape(), cpu.shape()) << what;
  ASSERT_EQ(got.dtype(), cpu.dtype()) << what;
  Tensor host = to_contiguous(to_device(got, Device::cpu())), ref = to_contiguous(cpu);
  if (device.type != DeviceType::cuda) {
    EXPECT_EQ(std::memcmp(host.raw_data(), ref.raw_data(), ref.nbytes()), 0) << what << ": not bitwise equal";
    return;
  }
  std::vector<double> a = host.to_vector<double>(), b = ref.to_vector<double>();
  const double tol = got.dtype() == DType::f32 ? 1e-5 : 1e-10;
  for (size_t i = 0; i < a.size(); ++i) EXPECT_NEAR(a[i], b[i], tol * (1 + std::abs(b[i]))) << what << ", element " << i;
}

}  // namespace dg::testing
