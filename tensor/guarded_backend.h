#pragma once
// The guarded device ("guarded:0"), for tests: the CPU's kernels running on
// memory the host cannot touch. Every allocation is its own page-aligned
// mapping with no access rights, opened only while one of this backend's
// kernels or host copies runs on it. Code above tensor/ that reads or writes a
// tensor's memory directly (data<T>() on a tensor it assumed was on the CPU),
// or hands a kernel a tensor of another device, crashes or fails at once
// instead of working by accident, which is how the CPU-only machines of this
// project prove that the stack works on a device like a GPU.
//
//   Tensor x = dg::randn({4}, {.device = dg::Device::guarded()});
//   auto before = dg::guarded::counters();
//   float s = dg::sum(x).item<float>();   // one copy to the host
//   EXPECT_EQ(dg::guarded::counters().copies_to_host, before.copies_to_host + 1);
//
// Slow (a system call per kernel argument): for tests of tiny models only.
#include <cstdint>

#include "tensor/backend.h"

namespace dg::guarded {

Backend& guarded_backend();

// Calls made so far, process-wide: kernels run, and copies between the host
// and guarded memory (tests bound the host reads a training step makes).
struct Counters {
  uint64_t kernels = 0;
  uint64_t copies_to_host = 0;
  uint64_t copies_from_host = 0;
};
Counters counters();

}  // namespace dg::guarded
