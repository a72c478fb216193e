#pragma once
// Storage: one block of device memory shared by a tensor and all its views.
// `version` counts in-place writes; autograd compares it with the version a
// saved tensor had, to catch in-place changes before backward.
#include <cstddef>
#include <cstdint>
#include <memory>

#include "tensor/dtype.h"

namespace dg {

class Backend;

struct Storage {
  void* data = nullptr;
  size_t nbytes = 0;
  Device device;
  Backend* backend = nullptr;  // frees `data` through this backend's allocator
  uint32_t version = 0;

  Storage(size_t nbytes, Device device);  // allocates through backend_for(device)
  ~Storage();
  Storage(const Storage&) = delete;
  Storage& operator=(const Storage&) = delete;
};

}  // namespace dg
