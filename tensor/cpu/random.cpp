// Random fills: element i of the output uses Philox counter offset + i; the
// value formulas are in tensor/rng.h (shared with the CUDA backend).
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
  fill_random(out, [&](uint64_t i) { return uniform_at(seed, offset + i, lo, hi); });
}

void CpuBackend::fill_normal(const Tensor& out, double mean, double std, uint64_t seed, uint64_t offset) {
  fill_random(out, [&](uint64_t i) { return normal_at(seed, offset + i, mean, std); });
}

void CpuBackend::fill_bernoulli(const Tensor& out, double p, uint64_t seed, uint64_t offset) {
  fill_random(out, [&](uint64_t i) { return bernoulli_at(seed, offset + i, p); });
}

}  // namespace dg::cpu
