// Optimizer steps on ~1M f32 parameters (one 1024x1024 weight):
//   BM_adamw_step            nn::AdamW::step, the fused backend kernel (one pass)
//   BM_adamw_composite_step  the same update written with ordinary ops (about
//                            ten elementwise kernels and their temporaries),
//                            for the fusion's gain
//   BM_sgd_momentum_step     nn::SGD::step with momentum and weight decay
//
//   DG_NUM_THREADS=2 build-bench/bench/bench_optim --benchmark_repetitions=5 --benchmark_report_aggregates_only=true
//
// Bytes processed count what the fused kernel must touch: read p, g, m, v and
// write p, m, v (7 arrays of 4 bytes per parameter).
#include <benchmark/benchmark.h>

#include <cmath>

#include "autograd/ops.h"
#include "nn/optim.h"

using namespace dg;

namespace {

constexpr int64_t kRows = 1024, kCols = 1024;

Tensor make_param(Generator& gen) {
  Tensor p = randn({kRows, kCols}, {DType::f32}, &gen).set_requires_grad();
  p.set_grad(randn({kRows, kCols}, {DType::f32}, &gen));
  return p;
}

void set_bytes(benchmark::State& st, int arrays) {
  st.SetBytesProcessed(static_cast<int64_t>(st.iterations()) * kRows * kCols * arrays * int64_t{sizeof(float)});
}

void BM_adamw_step(benchmark::State& st) {
  Generator gen(0);
  Tensor p = make_param(gen);
  nn::AdamW opt({p}, 1e-4, 0.9, 0.999, 1e-8, 0.1);
  for (auto _ : st) opt.step();
  set_bytes(st, 7);
}
BENCHMARK(BM_adamw_step)->Unit(benchmark::kMicrosecond);

// p *= 1 - lr*wd; m = b1 m + (1-b1) g; v = b2 v + (1-b2) g^2;
// p -= lr/bc1 * m / (sqrt(v)/sqrt(bc2) + eps), out of place with ops.
void BM_adamw_composite_step(benchmark::State& st) {
  Generator gen(0);
  Tensor p = make_param(gen).detach(), g = randn({kRows, kCols}, {DType::f32}, &gen);
  Tensor m = zeros({kRows, kCols}), v = zeros({kRows, kCols});
  const double lr = 1e-4, b1 = 0.9, b2 = 0.999, eps = 1e-8, wd = 0.1;
  int64_t t = 0;
  for (auto _ : st) {
    ++t;
    const double bc1 = 1 - std::pow(b1, double(t)), bc2 = 1 - std::pow(b2, double(t));
    Tensor p1 = mul(p, 1 - lr * wd);
    m = add(mul(m, b1), mul(g, 1 - b1));
    v = add(mul(v, b2), mul(mul(g, g), 1 - b2));
    p = sub(p1, mul(div(m, add(mul(sqrt(v), 1 / std::sqrt(bc2)), eps)), lr / bc1));
    benchmark::DoNotOptimize(p.raw_data());
  }
  set_bytes(st, 7);
}
BENCHMARK(BM_adamw_composite_step)->Unit(benchmark::kMicrosecond);

void BM_sgd_momentum_step(benchmark::State& st) {
  Generator gen(0);
  Tensor p = make_param(gen);
  nn::SGD opt({p}, 1e-3, 0.9, 0.0, 0.01);
  for (auto _ : st) opt.step();
  set_bytes(st, 5);  // read p, g, b; write p, b
}
BENCHMARK(BM_sgd_momentum_step)->Unit(benchmark::kMicrosecond);

}  // namespace

BENCHMARK_MAIN();
