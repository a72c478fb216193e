#pragma once
// Counter-based random numbers (Philox 4x32-10, Salmon et al. 2011). A
// Generator is just (seed, offset): each random fill takes a fresh range of
// counters, so the numbers are the same on every device and thread count, and
// the state is two integers (easy to checkpoint).
//
//   dg::Generator g(42);
//   Tensor a = dg::randn({3}, {}, &g);
#include <array>
#include <cstdint>

namespace dg {

class Generator {
 public:
  explicit Generator(uint64_t seed = 0) : seed_(seed) {}
  uint64_t seed() const { return seed_; }
  uint64_t offset() const { return offset_; }
  void set_state(uint64_t seed, uint64_t offset) { seed_ = seed, offset_ = offset; }
  // Reserves n counters and returns the first one.
  uint64_t take(uint64_t n) {
    uint64_t o = offset_;
    offset_ += (n + 3) & ~uint64_t{3};
    return o;
  }

 private:
  uint64_t seed_;
  uint64_t offset_ = 0;
};

Generator& default_generator();
void manual_seed(uint64_t seed);

// Philox 4x32-10: four 32-bit random words for (key = seed, counter).
#if defined(__CUDACC__)
__host__ __device__
#endif
inline std::array<uint32_t, 4> philox4x32(uint64_t seed, uint64_t counter) {
  uint32_t c0 = static_cast<uint32_t>(counter), c1 = static_cast<uint32_t>(counter >> 32), c2 = 0, c3 = 0;
  uint32_t k0 = static_cast<uint32_t>(seed), k1 = static_cast<uint32_t>(seed >> 32);
  for (int r = 0; r < 10; ++r) {
    uint64_t p0 = uint64_t{0xD2511F53} * c0, p1 = uint64_t{0xCD9E8D57} * c2;
    uint32_t n0 = static_cast<uint32_t>(p1 >> 32) ^ c1 ^ k0, n2 = static_cast<uint32_t>(p0 >> 32) ^ c3 ^ k1;
    c1 = static_cast<uint32_t>(p1), c3 = static_cast<uint32_t>(p0), c0 = n0, c2 = n2;
    k0 += 0x9E3779B9, k1 += 0xBB67AE85;
  }
  return {c0, c1, c2, c3};
}

// Uniform double in [0, 1) from two random words (53 bits).
#if defined(__CUDACC__)
__host__ __device__
#endif
inline double uniform_from_bits(uint32_t hi, uint32_t lo) {
  uint64_t bits = (static_cast<uint64_t>(hi) << 21) ^ (lo >> 11);
  return static_cast<double>(bits & ((uint64_t{1} << 53) - 1)) * (1.0 / 9007199254740992.0);
}

}  // namespace dg
