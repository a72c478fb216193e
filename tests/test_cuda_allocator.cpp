// The CUDA caching allocator's host logic (cuda/allocator.h) on a fake device:
// size classes, reuse, statistics, and the empty-and-retry path on out of
// memory. Built and run everywhere, with or without CUDA.
#include <cstdlib>
#include <set>

#include "cuda/allocator.h"
#include "testing.h"

namespace dg::cuda {
namespace {

// A device of `capacity` bytes backed by host malloc, which counts its calls.
struct FakeDevice {
  size_t capacity = size_t{1} << 40;
  size_t used = 0;
  int mallocs = 0, frees = 0;
  std::set<void*> live;
  std::unordered_map<void*, size_t> sizes;

  CachingAllocator allocator() {
    return CachingAllocator(
        "fake:0",
        [this](size_t n) -> void* {
          ++mallocs;
          if (used + n > capacity) return nullptr;
          void* p = std::malloc(n);
          used += n, sizes[p] = n;
          live.insert(p);
          return p;
        },
        [this](void* p) {
          ++frees;
          used -= sizes.at(p);
          live.erase(p);
          std::free(p);
        });
  }
};

TEST(CudaAllocator, SizeClasses) {
  EXPECT_EQ(size_class(0), 512u);
  EXPECT_EQ(size_class(1), 512u);
  EXPECT_EQ(size_class(512), 512u);
  EXPECT_EQ(size_class(513), 1024u);
  EXPECT_EQ(size_class(size_t{1} << 20), size_t{1} << 20);
  EXPECT_EQ(size_class((size_t{1} << 20) + 1), size_t{2} << 20);
  EXPECT_EQ(size_class((size_t{2} << 20) + 1), size_t{4} << 20);
  EXPECT_EQ(size_class(size_t{5} << 20), size_t{6} << 20);
}

TEST(CudaAllocator, FormatsBytes) {
  EXPECT_EQ(format_bytes(0), "0 B");
  EXPECT_EQ(format_bytes(512), "512 B");
  EXPECT_EQ(format_bytes(1536), "1.50 KiB");
  EXPECT_EQ(format_bytes(size_t{3} << 29), "1.50 GiB");
  EXPECT_EQ(format_bytes(static_cast<size_t>(10.2 * (1 << 30))), "10.2 GiB");
  EXPECT_EQ(format_bytes(size_t{300} << 20), "300 MiB");
}

TEST(CudaAllocator, ReusesFreedBlocksOfTheSameClass) {
  FakeDevice dev;
  auto a = dev.allocator();
  void* p = a.allocate(1000);
  a.deallocate(p, 1000);
  EXPECT_EQ(a.bytes_cached(), 1024u);
  EXPECT_EQ(a.allocate(600), p);  // class 1024 again: no new malloc
  EXPECT_EQ(dev.mallocs, 1);
  EXPECT_EQ(a.bytes_cached(), 0u);
  void* q = a.allocate(1025);  // class 1536: a new block
  EXPECT_NE(q, p);
  EXPECT_EQ(dev.mallocs, 2);
  EXPECT_EQ(a.bytes_in_use(), 1024u + 1536u);
  a.deallocate(p, 600);
  a.deallocate(q, 1025);
  EXPECT_EQ(a.bytes_in_use(), 0u);
  a.empty_cache();
  EXPECT_EQ(dev.frees, 2);
  EXPECT_TRUE(dev.live.empty());
  EXPECT_EQ(a.bytes_cached(), 0u);
}

TEST(CudaAllocator, TracksPeakUntilReset) {
  FakeDevice dev;
  auto a = dev.allocator();
  void* big = a.allocate(size_t{3} << 20);  // class 4 MiB
  void* small = a.allocate(100);
  EXPECT_EQ(a.peak_bytes_in_use(), (size_t{4} << 20) + 512);
  a.deallocate(big, size_t{3} << 20);
  EXPECT_EQ(a.bytes_in_use(), 512u);
  EXPECT_EQ(a.peak_bytes_in_use(), (size_t{4} << 20) + 512);
  a.reset_peak_bytes_in_use();
  EXPECT_EQ(a.peak_bytes_in_use(), 512u);
  a.deallocate(small, 100);
  a.empty_cache();
}

TEST(CudaAllocator, EmptiesTheCacheAndRetriesWhenOutOfMemory) {
  FakeDevice dev;
  dev.capacity = size_t{8} << 20;
  auto a = dev.allocator();
  void* p = a.allocate(size_t{4} << 20);
  a.deallocate(p, size_t{4} << 20);  // cached, too small for the next request: the device is still 4 MiB full
  void* q = a.allocate(size_t{6} << 20);  // fails once, frees the cache, succeeds
  EXPECT_NE(q, nullptr);
  EXPECT_EQ(dev.mallocs, 3);
  EXPECT_EQ(dev.frees, 1);
  EXPECT_EQ(a.bytes_cached(), 0u);
  EXPECT_EQ(a.bytes_in_use(), size_t{6} << 20);
  a.deallocate(q, size_t{6} << 20);
  a.empty_cache();
}

TEST(CudaAllocator, ReusesALargerLargeBlockBestFitWithinTwiceTheRequest) {
  FakeDevice dev;
  auto a = dev.allocator();
  const size_t MiB = size_t{1} << 20;
  void* p10 = a.allocate(10 * MiB);
  void* p6 = a.allocate(6 * MiB);
  a.deallocate(p10, 10 * MiB);
  a.deallocate(p6, 6 * MiB);
  EXPECT_EQ(a.allocate(7 * MiB / 2), p6);  // class 4 MiB: the 6 MiB block is the smallest that holds it
  EXPECT_EQ(a.bytes_in_use(), 6 * MiB);     // the block's own size
  void* fresh = a.allocate(4 * MiB);        // 10 MiB is more than twice 4: a new block
  EXPECT_NE(fresh, p10);
  EXPECT_EQ(dev.mallocs, 3);
  EXPECT_EQ(a.allocate(9 * MiB), p10);      // class 10 MiB
  a.deallocate(p6, 7 * MiB / 2);            // freed by its request's size, cached by its own
  EXPECT_EQ(a.bytes_cached(), 6 * MiB);
  EXPECT_EQ(a.bytes_in_use(), 14 * MiB);
  a.deallocate(fresh, 4 * MiB);
  a.deallocate(p10, 9 * MiB);
  EXPECT_EQ(a.bytes_in_use(), 0u);
  a.empty_cache();
  EXPECT_TRUE(dev.live.empty());
  EXPECT_EQ(a.bytes_cached(), 0u);
}

// Sizes that follow routing change every step: the cache must not keep a
// block for every size seen (it did with exact large classes).
TEST(CudaAllocator, RoutingDependentSizesDoNotPileUp) {
  FakeDevice dev;
  auto a = dev.allocator();
  const size_t MiB = size_t{1} << 20;
  std::srand(7);
  for (int step = 0; step < 40; ++step) {
    std::vector<std::pair<void*, size_t>> live;
    for (int k = 0; k < 4; ++k) {  // four experts' activations, 20 to 40 MiB each
      const size_t n = (20 + static_cast<size_t>(std::rand() % 21)) * MiB;
      live.emplace_back(a.allocate(n), n);
    }
    for (auto& [p, n] : live) a.deallocate(p, n);
  }
  EXPECT_LE(a.bytes_cached(), 4 * 80 * MiB);  // at most a twice-sized block per live activation
  EXPECT_LT(dev.mallocs, 40);               // exact classes: one new block for almost every new size
  a.empty_cache();
  EXPECT_TRUE(dev.live.empty());
}

TEST(CudaAllocator, OutOfMemoryNamesDeviceAndBytes) {
  FakeDevice dev;
  dev.capacity = size_t{8} << 20;
  auto a = dev.allocator();
  void* held = a.allocate(size_t{6} << 20);
  void* cached = a.allocate(1000);
  a.deallocate(cached, 1000);
  const size_t want = size_t{3} << 29;
  EXPECT_DG_ERROR(a.allocate(want), "fake:0: out of memory allocating 1.50 GiB (in use 6.00 MiB, cached 0 B)");
  EXPECT_EQ(dev.mallocs, 4);  // two blocks, then the request twice
  EXPECT_EQ(dev.frees, 1);    // the cached block, before the retry
  EXPECT_EQ(a.bytes_in_use(), size_t{6} << 20);
  a.deallocate(held, size_t{6} << 20);
  a.empty_cache();
  EXPECT_TRUE(dev.live.empty());
}

}  // namespace
}  // namespace dg::cuda
