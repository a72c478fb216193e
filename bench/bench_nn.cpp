// Fused nn kernels, forward and forward+backward, at the two GPT shapes the
// CPU kernels are tuned for (f32):
//   16x128x128:   B = 16, T = 128, C = 128, H = 4  (D = 32)
//   8x256x384:    B = 8,  T = 256, C = 384, H = 6  (D = 64)
// softmax, layer_norm and cross_entropy run on (B*T, C) rows (vocab = C for
// cross_entropy); attention is causal on q, k, v (B, H, T, C/H).
// A _fwd_bwd case is one forward and the gradients of all inputs (dg::grad
// with a fixed random output gradient, or the implied 1 for a scalar loss).
//
//   DG_NUM_THREADS=2 build-bench/bench/bench_nn --benchmark_repetitions=5 --benchmark_report_aggregates_only=true
//
// Benchmark names are BM_<op>_<fwd|fwd_bwd>/<BxTxC> so a PyTorch script can
// print the same cases side by side.
#include <benchmark/benchmark.h>

#include <algorithm>
#include <string>
#include <vector>

#include "autograd/engine.h"
#include "autograd/ops.h"

using namespace dg;

namespace {

struct Size {
  int64_t B, T, C, H;
  std::string name() const { return std::to_string(B) + "x" + std::to_string(T) + "x" + std::to_string(C); }
};
const Size kSizes[] = {{16, 128, 128, 4}, {8, 256, 384, 6}};

// Runs f (the forward) and, with `backward`, dg::grad of its output w.r.t. xs.
// An op that is not available yet (it throws) is reported as skipped.
template <class F>
void run(benchmark::State& st, const Tensors& xs, bool backward, F&& f) {
  Tensor probe;
  try {
    probe = f();
    if (backward) grad({probe}, xs, probe.numel() > 1 ? Tensors{randn(probe.shape())} : Tensors{});
  } catch (const Error& e) {
    st.SkipWithError(e.what());
    return;
  }
  Tensors gy;
  if (probe.numel() > 1) gy.push_back(randn(probe.shape()));
  for (auto _ : st) {
    Tensor y = f();
    if (backward) {
      Tensors g = grad({y}, xs, gy);
      benchmark::DoNotOptimize(g[0].raw_data());
    }
    benchmark::DoNotOptimize(y.raw_data());
  }
}

void softmax_case(benchmark::State& st, Size s, bool backward) {
  Tensor x = randn({s.B * s.T, s.C}).set_requires_grad();
  run(st, {x}, backward, [&] { return softmax(x, -1); });
}

void layer_norm_case(benchmark::State& st, Size s, bool backward) {
  Tensor x = randn({s.B * s.T, s.C}).set_requires_grad();
  Tensor w = randn({s.C}).set_requires_grad(), b = randn({s.C}).set_requires_grad();
  run(st, {x, w, b}, backward, [&] { return layer_norm(x, w, b, 1e-5); });
}

void cross_entropy_case(benchmark::State& st, Size s, bool backward) {
  Tensor x = randn({s.B * s.T, s.C}).set_requires_grad();
  Tensor target = randint(0, s.C, {s.B * s.T});
  run(st, {x}, backward, [&] { return cross_entropy(x, target); });
}

void attention_case(benchmark::State& st, Size s, bool backward) {
  const Shape shape{s.B, s.H, s.T, s.C / s.H};
  Tensor q = randn(shape).set_requires_grad(), k = randn(shape).set_requires_grad(),
         v = randn(shape).set_requires_grad();
  run(st, {q, k, v}, backward, [&] { return scaled_dot_product_attention(q, k, v, /*causal=*/true); });
}

// Registers BM_<op>_fwd/<size> and BM_<op>_fwd_bwd/<size> for every size.
// With --benchmark_repetitions, a "min" aggregate is reported too: on a
// shared machine the fastest repetition is the least disturbed one.
void register_op(const std::string& op, void (*fn)(benchmark::State&, Size, bool)) {
  for (const Size& s : kSizes) {
    for (bool backward : {false, true}) {
      std::string name = "BM_" + op + (backward ? "_fwd_bwd/" : "_fwd/") + s.name();
      benchmark::RegisterBenchmark(name.c_str(), [fn, s, backward](benchmark::State& st) { fn(st, s, backward); })
          ->Unit(benchmark::kMicrosecond)
          ->ComputeStatistics("min", [](const std::vector<double>& v) { return *std::min_element(v.begin(), v.end()); });
    }
  }
}

// Per-op overhead: forward on 16 f32 elements that require grad (output,
// node, edges; the kernel itself is a few ns). Target: well under 0.5 us.
void BM_softmax_overhead16(benchmark::State& st) {
  Tensor x = randn({16}).set_requires_grad();
  for (auto _ : st) benchmark::DoNotOptimize(softmax(x).impl());
}
void BM_layer_norm_overhead16(benchmark::State& st) {
  Tensor x = randn({16}).set_requires_grad(), w = randn({16}).set_requires_grad();
  for (auto _ : st) benchmark::DoNotOptimize(layer_norm(x, w, Tensor()).impl());
}
BENCHMARK(BM_softmax_overhead16);
BENCHMARK(BM_layer_norm_overhead16);

}  // namespace

int main(int argc, char** argv) {
  register_op("softmax", softmax_case);
  register_op("layer_norm", layer_norm_case);
  register_op("cross_entropy", cross_entropy_case);
  register_op("attention", attention_case);
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
