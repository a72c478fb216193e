#pragma once
// The caching device allocator's host-side logic, free of CUDA so that CPU
// tests can drive it with a fake malloc/free (tests/test_cuda_allocator.cpp).
// cuda/backend.cu gives it cudaMalloc and cudaFree.
//
//   CachingAllocator a("cuda:0", [](size_t n) { return try_cuda_malloc(n); }, [](void* p) { cudaFree(p); });
//   void* p = a.allocate(1000);   // a 1024-byte block of class 1024
//   a.deallocate(p, 1000);        // back on class 1024's free list
//   a.allocate(600);              // the same block again, no cudaMalloc
//
// Size classes: requests up to 1 MiB are rounded up to a multiple of 512 B,
// larger ones to a multiple of 2 MiB; each class keeps a free list of blocks
// of exactly its size. Freed blocks stay cached until empty_cache().
//
// Stream order: a device has one stream and every kernel runs on it, in the
// order the host enqueues them. So a block freed by the host while kernels
// that use it are still queued may be handed out at once for later work: that
// work is queued behind them on the same stream and cannot start before they
// finish. Nothing here waits for the device.
//
// Out of memory: when malloc fails (returns null) the cache is emptied and
// the allocation retried once; if it fails again, a dg::Error names the
// device, the bytes requested, the bytes in use and the bytes cached.
#include <fmt/format.h>

#include <algorithm>
#include <cstddef>
#include <functional>
#include <mutex>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "tensor/error.h"

namespace dg::cuda {

inline constexpr size_t kSmallGranule = 512;
inline constexpr size_t kLargeGranule = size_t{2} << 20;
inline constexpr size_t kSmallLimit = size_t{1} << 20;

// The size class of a request of n bytes (n = 0 gets the smallest class).
inline size_t size_class(size_t n) {
  const size_t granule = n <= kSmallLimit ? kSmallGranule : kLargeGranule;
  return std::max<size_t>(1, (n + granule - 1) / granule) * granule;
}

// "512 B", "1.50 KiB", "10.2 GiB": three significant digits above 1 KiB.
inline std::string format_bytes(size_t n) {
  if (n < 1024) return fmt::format("{} B", n);
  const char* units[] = {"KiB", "MiB", "GiB", "TiB"};
  double v = static_cast<double>(n) / 1024;
  int u = 0;
  while (v >= 1024 && u < 3) v /= 1024, ++u;
  return fmt::format("{:.{}f} {}", v, v < 10 ? 2 : v < 100 ? 1 : 0, units[u]);
}

class CachingAllocator {
 public:
  // malloc returns null when the device is out of memory (other failures
  // throw); free returns a block to the device.
  using Malloc = std::function<void*(size_t)>;
  using Free = std::function<void(void*)>;

  CachingAllocator(std::string device, Malloc malloc, Free free)
      : device_(std::move(device)), malloc_(std::move(malloc)), free_(std::move(free)) {}
  CachingAllocator(const CachingAllocator&) = delete;
  CachingAllocator& operator=(const CachingAllocator&) = delete;

  void* allocate(size_t nbytes) {
    const size_t size = size_class(nbytes);
    std::lock_guard lock(mu_);
    void* p = nullptr;
    if (auto it = free_lists_.find(size); it != free_lists_.end() && !it->second.empty()) {
      p = it->second.back();
      it->second.pop_back();
      cached_ -= size;
    } else {
      p = malloc_(size);
      if (!p) {
        release_cached();
        p = malloc_(size);
      }
      DG_CHECK(p != nullptr, "{}: out of memory allocating {} (in use {}, cached {})", device_,
               format_bytes(nbytes), format_bytes(in_use_), format_bytes(cached_));
    }
    in_use_ += size;
    peak_ = std::max(peak_, in_use_);
    return p;
  }

  void deallocate(void* p, size_t nbytes) {
    if (!p) return;
    const size_t size = size_class(nbytes);
    std::lock_guard lock(mu_);
    in_use_ -= size;
    free_lists_[size].push_back(p);
    cached_ += size;
  }

  // Frees every cached block.
  void empty_cache() {
    std::lock_guard lock(mu_);
    release_cached();
  }

  // Statistics in bytes of whole blocks (requests rounded to their class).
  size_t bytes_in_use() const {
    std::lock_guard lock(mu_);
    return in_use_;
  }
  size_t peak_bytes_in_use() const {
    std::lock_guard lock(mu_);
    return peak_;
  }
  void reset_peak_bytes_in_use() {
    std::lock_guard lock(mu_);
    peak_ = in_use_;
  }
  size_t bytes_cached() const {
    std::lock_guard lock(mu_);
    return cached_;
  }

 private:
  // Caller holds mu_. Each block leaves the books before it is freed, so a
  // throwing free leaves them consistent.
  void release_cached() {
    for (auto& [size, list] : free_lists_) {
      while (!list.empty()) {
        void* p = list.back();
        list.pop_back();
        cached_ -= size;
        free_(p);
      }
    }
  }

  std::string device_;
  Malloc malloc_;
  Free free_;
  mutable std::mutex mu_;
  std::unordered_map<size_t, std::vector<void*>> free_lists_;
  size_t in_use_ = 0, peak_ = 0, cached_ = 0;
};

}  // namespace dg::cuda
