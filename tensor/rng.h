#pragma once
// Counter-based random numbers (Philox 4x32-10, Salmon et al. 2011). A
// Generator is just (seed, offset): each random fill takes a fresh range of
// counters, so the numbers are the same on every device and thread count, and
// the state is two integers (easy to checkpoint).
//
//   dg::Generator g(42);
//   Tensor a = dg::randn({3}, {}, &g);
#include <array>
#include <cmath>
#include <cstdint>
#include <numbers>

#include "tensor/host_device.h"

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
DG_HOST_DEVICE inline std::array<uint32_t, 4> philox4x32(uint64_t seed, uint64_t counter) {
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
DG_HOST_DEVICE inline double uniform_from_bits(uint32_t hi, uint32_t lo) {
  uint64_t bits = (static_cast<uint64_t>(hi) << 21) ^ (lo >> 11);
  return static_cast<double>(bits & ((uint64_t{1} << 53) - 1)) * (1.0 / 9007199254740992.0);
}

// The value of element `counter` of each random fill (Backend::fill_uniform,
// fill_normal, fill_bernoulli): one formula for every backend. The affine
// steps are explicit fma calls, so no compiler contracts them differently;
// uniform and bernoulli then use only exactly rounded operations and give the
// same bits everywhere. normal also calls log and cos, whose last bit may
// differ between libm and CUDA for a few f64 values (f32 results, rounded
// from the double, practically never differ).
DG_HOST_DEVICE inline double uniform_at(uint64_t seed, uint64_t counter, double lo, double hi) {
  auto r = philox4x32(seed, counter);
  return std::fma(hi - lo, uniform_from_bits(r[0], r[1]), lo);
}

// Box-Muller on two uniforms; u1 in (0, 1] so the log is finite.
DG_HOST_DEVICE inline double normal_at(uint64_t seed, uint64_t counter, double mean, double stddev) {
  auto r = philox4x32(seed, counter);
  double u1 = 1.0 - uniform_from_bits(r[0], r[1]), u2 = uniform_from_bits(r[2], r[3]);
  return std::fma(stddev * std::sqrt(-2.0 * std::log(u1)), std::cos(2.0 * std::numbers::pi * u2), mean);
}

DG_HOST_DEVICE inline double bernoulli_at(uint64_t seed, uint64_t counter, double p) {
  auto r = philox4x32(seed, counter);
  return uniform_from_bits(r[0], r[1]) < p ? 1.0 : 0.0;
}

}  // namespace dg
