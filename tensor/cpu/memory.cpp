// CPU memory: a caching allocator, host copies, fill, arange and strided copy.
#include <omp.h>

#include <bit>
#include <cstdlib>
#include <cstring>
#include <map>
#include <mutex>
#include <unordered_map>
#include <vector>

#include "tensor/cpu/cpu_backend.h"
#include "tensor/cpu/loops.h"
#include "tensor/functors.h"

namespace dg::cpu {

// Caching allocator. Freed blocks are kept and handed out again, so a
// training loop that allocates the same shapes every step stops calling
// malloc after its first step. Blocks are 64-byte aligned (one cache line,
// room for AVX-512 loads).
//
// Small requests (under 1 MiB) are rounded up to a power of two and reuse a
// block of exactly that class. Large ones are rounded up to whole MiB and
// take the smallest cached block that holds them, if it is at most twice
// their size (best fit, the same bound on waste as the small classes). Exact
// classes are not enough there: where shapes follow routing (MoE's rows per
// expert, MoB's tokens per block) the large activations differ by a few MiB
// from step to step, and one idle block per size ever seen piled up (MoE
// tiny, 40 steps: 343 MB held for a peak of 150 MB in use). A large block's
// real size is kept while it is in use, since the size freed is the request's.
struct CpuBackend::Cache {
  static constexpr size_t kAlign = 64;
  static constexpr size_t kLarge = size_t{1} << 20;
  static constexpr size_t kMaxCached = size_t{4} << 30;
  std::mutex mu;
  std::unordered_map<size_t, std::vector<void*>> small;  // class -> free blocks
  std::map<size_t, std::vector<void*>> large;            // block size -> free blocks, for best fit
  std::unordered_map<void*, size_t> large_in_use;        // block -> its size
  size_t cached = 0, in_use = 0;

  static size_t round(size_t n) {
    if (n <= kAlign) return kAlign;
    if (n < kLarge) return std::bit_ceil(n);
    return (n + kLarge - 1) & ~(kLarge - 1);
  }
  // A cached block for a request of (rounded) size, or null; its size in *block.
  void* take(size_t size, size_t* block) {
    std::vector<void*>* list = nullptr;
    if (size < kLarge) {
      auto it = small.find(size);
      if (it != small.end()) list = &it->second, *block = size;
    } else if (auto it = large.lower_bound(size); it != large.end() && it->first <= 2 * size) {
      list = &it->second, *block = it->first;
    }
    if (!list || list->empty()) return nullptr;
    void* p = list->back();
    list->pop_back();
    if (size >= kLarge && list->empty()) large.erase(*block);
    cached -= *block;
    return p;
  }
  void release_all() {
    for (auto& [size, list] : small)
      for (void* p : list) std::free(p);
    for (auto& [size, list] : large)
      for (void* p : list) std::free(p);
    small.clear();
    large.clear();
    cached = 0;
  }
};

CpuBackend::CpuBackend() : cache_(new Cache) {
  if (const char* env = std::getenv("DG_NUM_THREADS")) {
    int n = std::atoi(env);
    if (n >= 1) omp_set_num_threads(n);
  }
}

CpuBackend::~CpuBackend() {
  cache_->release_all();
  delete cache_;
}

CpuBackend& cpu_backend() {
  // Never destroyed: tensors in static storage may outlive any static backend.
  static CpuBackend* b = new CpuBackend;
  return *b;
}

void* CpuBackend::allocate(size_t nbytes) {
  const size_t size = Cache::round(nbytes);
  size_t block = size;
  void* p = nullptr;
  {
    std::lock_guard lock(cache_->mu);
    p = cache_->take(size, &block);
  }
  if (!p) p = std::aligned_alloc(Cache::kAlign, size);
  DG_CHECK(p != nullptr, "out of memory: could not allocate {} bytes on the CPU", size);
  std::lock_guard lock(cache_->mu);
  cache_->in_use += block;
  if (block >= Cache::kLarge) cache_->large_in_use.emplace(p, block);
  return p;
}

void CpuBackend::deallocate(void* ptr, size_t nbytes) {
  if (!ptr) return;
  size_t size = Cache::round(nbytes);
  std::lock_guard lock(cache_->mu);
  if (size >= Cache::kLarge) {
    auto it = cache_->large_in_use.find(ptr);
    DG_ASSERT(it != cache_->large_in_use.end(), "CPU deallocate: {} bytes at a block not in use", nbytes);
    size = it->second;
    cache_->large_in_use.erase(it);
  }
  cache_->in_use -= size;
  if (cache_->cached + size > Cache::kMaxCached) {
    std::free(ptr);
    return;
  }
  (size >= Cache::kLarge ? cache_->large[size] : cache_->small[size]).push_back(ptr);
  cache_->cached += size;
}

void CpuBackend::empty_cache() {
  std::lock_guard lock(cache_->mu);
  cache_->release_all();
}

size_t CpuBackend::bytes_in_use() const {
  std::lock_guard lock(cache_->mu);
  return cache_->in_use;
}

size_t CpuBackend::bytes_cached() const {
  std::lock_guard lock(cache_->mu);
  return cache_->cached;
}

void CpuBackend::copy_from_host(const void* src, const Tensor& dst) {
  DG_ASSERT(dst.is_contiguous());
  std::memcpy(dst.raw_data(), src, dst.nbytes());
}

void CpuBackend::copy_to_host(const Tensor& src, void* dst) {
  DG_ASSERT(src.is_contiguous());
  std::memcpy(dst, src.raw_data(), src.nbytes());
}

void CpuBackend::fill(const Tensor& out, double value) {
  visit_dtype(out.dtype(), [&](auto tag) {
    using T = decltype(tag);
    T v = static_cast<T>(value), *o = out.data<T>();
    strided_loop<1>(out.shape(), {out.strides()}, [&](auto off, int64_t n, auto inc) {
      for (int64_t i = 0; i < n; ++i) o[off[0] + i * inc[0]] = v;
    });
  });
}

void CpuBackend::arange(const Tensor& out, double start, double step) {
  DG_ASSERT(out.is_contiguous());
  visit_dtype(out.dtype(), [&](auto tag) {
    using T = decltype(tag);
    T* o = out.data<T>();
    for (int64_t i = 0; i < out.numel(); ++i) o[i] = static_cast<T>(fn::arange_at(i, start, step));
  });
}

void CpuBackend::copy(const Tensor& src, const Tensor& dst) {
  DG_ASSERT(src.shape() == dst.shape(), "copy {} -> {}", src.shape(), dst.shape());
  visit_dtype(src.dtype(), [&](auto stag) {
    using S = decltype(stag);
    visit_dtype(dst.dtype(), [&](auto dtag) {
      using D = decltype(dtag);
      const S* s = src.data<S>();
      D* d = dst.data<D>();
      strided_loop<2>(dst.shape(), {src.strides(), dst.strides()}, [&](auto off, int64_t n, auto inc) {
        const S* sp = s + off[0];
        D* dp = d + off[1];
        if (inc[0] == 1 && inc[1] == 1) {
          for (int64_t i = 0; i < n; ++i) dp[i] = static_cast<D>(sp[i]);
        } else {
          for (int64_t i = 0; i < n; ++i) dp[i * inc[1]] = static_cast<D>(sp[i * inc[0]]);
        }
      });
    });
  });
}

}  // namespace dg::cpu
