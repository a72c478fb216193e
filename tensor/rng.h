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

// log and cos for normal_at, written with exactly rounded operations only
// (+, -, *, /, fma, frexp, floor; every product that meets an addition is an
// explicit fma), so the host and CUDA compute the same bits: libm's and
// CUDA's own log and cos differ in the last bit for some f64 values. Both
// are within 2 ulp of the exact values on the ranges used here (tests:
// Random.PortableLogAndCosMatchLibm).
//
// log x for x in (0, 1]: x = m 2^e with m in [sqrt(1/2), sqrt(2)), and
// log m = 2 atanh(s) = 2 (s + s^3/3 + s^5/5 + ...), s = (m - 1)/(m + 1),
// |s| <= 0.1716: the series to s^23 leaves 2e-20.
DG_HOST_DEVICE inline double portable_log(double x) {
  constexpr double kInvOdd[12] = {1.0, 0.3333333333333333, 0.2, 0.14285714285714285, 0.1111111111111111,
                                  0.09090909090909091, 0.07692307692307693, 0.06666666666666667,
                                  0.058823529411764705, 0.05263157894736842, 0.047619047619047616,
                                  0.043478260869565216};  // 1 / (2k + 1)
  constexpr double kLn2Hi = 0.6931471805599453, kLn2Lo = 2.3190468138462996e-17;  // ln 2 = hi + lo
  int e = 0;
  double m = std::frexp(x, &e);  // [0.5, 1)
  if (m < 0.7071067811865476) m *= 2.0, --e;
  const double s = (m - 1.0) / (m + 1.0), s2 = s * s;
  double p = kInvOdd[11];
  for (int k = 10; k >= 1; --k) p = std::fma(p, s2, kInvOdd[k]);
  const double log_m = std::fma((2.0 * s) * s2, p, 2.0 * s);
  const double de = static_cast<double>(e);
  return std::fma(de, kLn2Hi, std::fma(de, kLn2Lo, log_m));
}

// cos(2 pi t) for t in [0, 1): t = q/4 + r_t with q = round(4t) and
// |r_t| <= 1/8 (both exact), r = 2 pi r_t in [-pi/4, pi/4], and
// cos(q pi/2 + r) is cos r, -sin r, -cos r or sin r; Taylor series to r^20
// and r^19 leave under 4e-21.
DG_HOST_DEVICE inline double portable_cos_turns(double t) {
  constexpr double kCos[11] = {1.0, -0.5, 0.041666666666666664, -0.001388888888888889, 2.48015873015873e-05,
                               -2.755731922398589e-07, 2.08767569878681e-09, -1.1470745597729725e-11,
                               4.779477332387385e-14, -1.5619206968586225e-16, 4.110317623312165e-19};
  constexpr double kSin[10] = {1.0, -0.16666666666666666, 0.008333333333333333, -0.0001984126984126984,
                               2.7557319223985893e-06, -2.505210838544172e-08, 1.6059043836821613e-10,
                               -7.647163731819816e-13, 2.8114572543455206e-15, -8.22063524662433e-18};
  const double q = std::floor(4.0 * t + 0.5), r = (t - 0.25 * q) * (2.0 * std::numbers::pi), r2 = r * r;
  const int quadrant = static_cast<int>(q) & 3;
  if (quadrant == 0 || quadrant == 2) {
    double p = kCos[10];
    for (int k = 9; k >= 0; --k) p = std::fma(p, r2, kCos[k]);
    return quadrant == 0 ? p : -p;
  }
  double p = kSin[9];
  for (int k = 8; k >= 1; --k) p = std::fma(p, r2, kSin[k]);
  const double sin_r = std::fma(r * r2, p, r);
  return quadrant == 3 ? sin_r : -sin_r;
}

// The value of element `counter` of each random fill (Backend::fill_uniform,
// fill_normal, fill_bernoulli): one formula for every backend. The affine
// steps are explicit fma calls, so no compiler contracts them differently;
// every operation is exactly rounded (normal's log and cos are the portable
// ones above), so the bits are the same on every backend.
DG_HOST_DEVICE inline double uniform_at(uint64_t seed, uint64_t counter, double lo, double hi) {
  auto r = philox4x32(seed, counter);
  return std::fma(hi - lo, uniform_from_bits(r[0], r[1]), lo);
}

// Box-Muller on two uniforms; u1 in (0, 1] so the log is finite.
DG_HOST_DEVICE inline double normal_at(uint64_t seed, uint64_t counter, double mean, double stddev) {
  auto r = philox4x32(seed, counter);
  double u1 = 1.0 - uniform_from_bits(r[0], r[1]), u2 = uniform_from_bits(r[2], r[3]);
  return std::fma(stddev * std::sqrt(-2.0 * portable_log(u1)), portable_cos_turns(u2), mean);
}

DG_HOST_DEVICE inline double bernoulli_at(uint64_t seed, uint64_t counter, double p) {
  auto r = philox4x32(seed, counter);
  return uniform_from_bits(r[0], r[1]) < p ? 1.0 : 0.0;
}

}  // namespace dg
