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
// larger ones to a multiple of 2 MiB. A small class keeps a free list of
// blocks of exactly its size. A large request takes the smallest cached
// block that holds it, if that block is at most twice its class (best fit,
// the waste bounded as by the classes): where shapes follow routing (MoE's
// rows per expert, MoB's tokens per block) the large activations change by
// a few MiB from step to step, and exact classes kept one idle block for
// every size ever seen (the CPU allocator had the same pile-up: MoE tiny
// held 343 MB for a peak of 150 MB in use). A large block's own size is
// remembered while it is in use. Freed blocks stay cached until
// empty_cache().
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
#include <map>
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
    size_t block = size;
    void* p = take(size, &block);
    if (!p) {
      p = malloc_(size);
      if (!p) {
        release_cached();
        p = malloc_(size);
      }
      DG_CHECK(p != nullptr, "{}: out of memory allocating {} (in use {}, cached {})", device_,
               format_bytes(nbytes), format_bytes(in_use_), format_bytes(cached_));
    }
    if (block > kSmallLimit) large_in_use_.emplace(p, block);
    in_use_ += block;
    peak_ = std::max(peak_, in_use_);
    return p;
  }

  void deallocate(void* p, size_t nbytes) {
    if (!p) return;
    size_t size = size_class(nbytes);
    std::lock_guard lock(mu_);
    if (size > kSmallLimit) {
      auto it = large_in_use_.find(p);
      DG_ASSERT(it != large_in_use_.end(), "{}: deallocate of {} at a block not in use", device_,
                format_bytes(nbytes));
      size = it->second;
      large_in_use_.erase(it);
      large_free_[size].push_back(p);
    } else {
      small_free_[size].push_back(p);
    }
    in_use_ -= size;
    cached_ += size;
  }

  // Frees every cached block.
  void empty_cache() {
    std::lock_guard lock(mu_);
    release_cached();
  }

  // Statistics in bytes of whole blocks (a request counts its block's size).
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
  // Caller holds mu_. A cached block for a request of class `size` (exact
  // for a small class, best fit within twice it for a large one), its own
  // size in *block; null if none.
  void* take(size_t size, size_t* block) {
    std::vector<void*>* list = nullptr;
    if (size <= kSmallLimit) {
      if (auto it = small_free_.find(size); it != small_free_.end()) list = &it->second, *block = size;
    } else if (auto it = large_free_.lower_bound(size); it != large_free_.end() && it->first <= 2 * size) {
      list = &it->second, *block = it->first;
    }
    if (!list || list->empty()) return nullptr;
    void* p = list->back();
    list->pop_back();
    if (*block > kSmallLimit && list->empty()) large_free_.erase(*block);
    cached_ -= *block;
    return p;
  }

  // Caller holds mu_. Each block leaves the books before it is freed, so a
  // throwing free leaves them consistent.
  template <class Lists>
  void release(Lists& lists) {
    for (auto& [size, list] : lists) {
      while (!list.empty()) {
        void* p = list.back();
        list.pop_back();
        cached_ -= size;
        free_(p);
      }
    }
  }
  void release_cached() {
    release(small_free_);
    release(large_free_);
    large_free_.clear();
  }

  std::string device_;
  Malloc malloc_;
  Free free_;
  mutable std::mutex mu_;
  std::unordered_map<size_t, std::vector<void*>> small_free_;  // class -> free blocks
  std::map<size_t, std::vector<void*>> large_free_;            // block size -> free blocks, for best fit
  std::unordered_map<void*, size_t> large_in_use_;             // large block -> its size
  size_t in_use_ = 0, peak_ = 0, cached_ = 0;
};

}  // namespace dg::cuda
