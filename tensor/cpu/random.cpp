// Random fills: element i of the output uses Philox counter offset + i.
#include <cmath>
#include <numbers>

#include "tensor/cpu/cpu_backend.h"
#include "tensor/rng.h"

namespace dg::cpu {

namespace {

template <class F>
void fill_random(const Tensor& out, F&& value_at) {
  DG_ASSERT(out.is_contiguous());
  visit_dtype(out.dtype(), [&](auto tag) {
    using T = decltype(tag);
    T* o = out.data<T>();
    const int64_t n = out.numel();
#pragma omp parallel for schedule(static) if (n >= 16384)
    for (int64_t i = 0; i < n; ++i) o[i] = static_cast<T>(value_at(static_cast<uint64_t>(i)));
  });
}

}  // namespace

void CpuBackend::fill_uniform(const Tensor& out, double lo, double hi, uint64_t seed, uint64_t offset) {
  fill_random(out, [&](uint64_t i) {
    auto r = philox4x32(seed, offset + i);
    return lo + (hi - lo) * uniform_from_bits(r[0], r[1]);
  });
}

void CpuBackend::fill_normal(const Tensor& out, double mean, double std, uint64_t seed, uint64_t offset) {
  // Box-Muller on two uniforms; u1 in (0, 1] so the log is finite.
  fill_random(out, [&](uint64_t i) {
    auto r = philox4x32(seed, offset + i);
    double u1 = 1.0 - uniform_from_bits(r[0], r[1]), u2 = uniform_from_bits(r[2], r[3]);
    return mean + std * std::sqrt(-2.0 * std::log(u1)) * std::cos(2.0 * std::numbers::pi * u2);
  });
}

void CpuBackend::fill_bernoulli(const Tensor& out, double p, uint64_t seed, uint64_t offset) {
  fill_random(out, [&](uint64_t i) {
    auto r = philox4x32(seed, offset + i);
    return uniform_from_bits(r[0], r[1]) < p ? 1.0 : 0.0;
  });
}

}  // namespace dg::cpu
