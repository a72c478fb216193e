// Op-level benchmarks: what one op costs when it does almost nothing (the
// framework's overhead: allocation, dispatch, recording the node), a tiny
// forward+backward graph, and the big kernel where the FLOPs are (GEMM).
// bench/torch_ops.py measures the same cases in PyTorch; bench/compare.sh
// runs both and prints the side-by-side table.
//
//   build-bench/bench/bench_ops --benchmark_repetitions=10 --benchmark_report_aggregates_only=true
//
// Threads: DG_NUM_THREADS (compare.sh sets 2, like torch.set_num_threads(2)).
#include <benchmark/benchmark.h>
#include <fmt/format.h>

#include <functional>
#include <iterator>
#include <vector>

#include "autograd/ops.h"

using namespace dg;

namespace {

// Runs f once; an op that is not available yet (it throws) skips the case.
template <class F>
bool available(benchmark::State& st, F&& f) {
  try {
    f();
    return true;
  } catch (const Error& e) {
    st.SkipWithError(e.what());
    return false;
  }
}

// `a + b` on 16 f32 elements that require grad, forward only: the output
// tensor, its node (with edges to both leaves) and their release each
// iteration. Target: <= 0.5 us.
void BM_AddOverhead16(benchmark::State& st) {
  Tensor a = randn({16}).set_requires_grad();
  Tensor b = randn({16}).set_requires_grad();
  if (!available(st, [&] { return a + b; })) return;
  for (auto _ : st) {
    Tensor c = a + b;
    benchmark::DoNotOptimize(c.impl());
  }
}
BENCHMARK(BM_AddOverhead16);

// Forward and backward of sum(tanh(x*x + x)) on 16 f32 elements: 4 ops
// recorded, 4 backward nodes run, x.grad written and dropped again.
// Target: <= 5 us.
void BM_TinyForwardBackward16(benchmark::State& st) {
  Tensor x = randn({16}).set_requires_grad();
  if (!available(st, [&] { sum(tanh(x * x + x)).backward(); x.zero_grad(); })) return;
  for (auto _ : st) {
    Tensor loss = sum(tanh(x * x + x));
    loss.backward();
    benchmark::DoNotOptimize(x.grad().impl());
    x.zero_grad();
  }
}
BENCHMARK(BM_TinyForwardBackward16);

// C = A B with A, B (N, N) f32, no autograd: 2 N^3 FLOPs per iteration.
void BM_Matmul(benchmark::State& st) {
  const int64_t n = st.range(0);
  Tensor a = randn({n, n});
  Tensor b = randn({n, n});
  if (!available(st, [&] { return matmul(a, b); })) return;
  for (auto _ : st) {
    Tensor c = matmul(a, b);
    benchmark::DoNotOptimize(c.raw_data());
  }
  st.counters["GFLOP/s"] = benchmark::Counter(2.0 * n * n * n / 1e9, benchmark::Counter::kIsIterationInvariantRate);
}
BENCHMARK(BM_Matmul)->Arg(1024)->Unit(benchmark::kMillisecond);

// The GEMMs of one tiny GPT training step (B*T = 2048 rows, C = 128), f32,
// no autograd, as a Linear layer issues them: forward x W^T (NT), input
// gradient g W (NN), weight gradient x^T g (TN). Arg: the case; label: its
// shape. DG_GEMM_SPLIT=0 times OpenBLAS's own threading instead of the row
// bands of tensor/cpu/matmul.cpp.
struct GemmCase {
  const char* name;
  int64_t M, N, K;
  char kind;  // 'f' x W^T, 'd' g W, 'w' x^T g
};
constexpr GemmCase kGemmCases[] = {
    {"qkv fwd", 2048, 384, 128, 'f'}, {"proj fwd", 2048, 128, 128, 'f'}, {"fc fwd", 2048, 512, 128, 'f'},
    {"fc2 fwd", 2048, 128, 512, 'f'}, {"qkv dx", 2048, 128, 384, 'd'},  {"fc2 dx", 2048, 512, 128, 'd'},
    {"qkv dW", 384, 128, 2048, 'w'},  {"proj dW", 128, 128, 2048, 'w'}, {"fc2 dW", 128, 512, 2048, 'w'},
};
void BM_GemmShapes(benchmark::State& st) {
  const GemmCase& c = kGemmCases[st.range(0)];
  Tensor a, b;
  std::function<Tensor()> run;
  if (c.kind == 'f') {  // (M, K) @ W^T, W (N, K)
    a = randn({c.M, c.K});
    b = randn({c.N, c.K});
    run = [&] { return matmul(a, transpose(b, 0, 1)); };
  } else if (c.kind == 'd') {  // (M, K) @ (K, N)
    a = randn({c.M, c.K});
    b = randn({c.K, c.N});
    run = [&] { return matmul(a, b); };
  } else {  // x (K, M)^T @ g (K, N)
    a = randn({c.K, c.M});
    b = randn({c.K, c.N});
    run = [&] { return matmul(transpose(a, 0, 1), b); };
  }
  if (!available(st, run)) return;
  for (auto _ : st) {
    Tensor out = run();
    benchmark::DoNotOptimize(out.raw_data());
  }
  st.SetLabel(fmt::format("{} M{} N{} K{}", c.name, c.M, c.N, c.K));
  st.counters["GFLOP/s"] =
      benchmark::Counter(2.0 * c.M * c.N * c.K / 1e9, benchmark::Counter::kIsIterationInvariantRate);
}
BENCHMARK(BM_GemmShapes)->DenseRange(0, std::size(kGemmCases) - 1)->Unit(benchmark::kMicrosecond);

// Every Linear-layer GEMM of one dense GPT training step, back to back, and
// nothing else: the step's matrix-product floor on this machine. Arg 0 is the
// tiny config (L=4, C=128, B*T=2048), 1 the small one (L=6, C=384, B*T=2048);
// vocab 256, tied head. Per layer qkv (C -> 3C), proj (C -> C), fc (C -> 4C),
// fc2 (4C -> C), then the head (C -> 256); each as forward x W^T, input
// gradient g W and weight gradient g^T x, as nn::Linear issues them. Biases,
// attention and every memory-bound pass are left out, so a full step
// (bench_gpt_step) minus this time is what the rest of the step costs.
void BM_GptStepGemms(benchmark::State& st) {
  const bool tiny = st.range(0) == 0;
  const int64_t L = tiny ? 4 : 6, C = tiny ? 128 : 384, rows = tiny ? 16 * 128 : 8 * 256, vocab = 256;
  struct Layer {
    Tensor w, x, g;  // W (out, in), input (rows, in), output gradient (rows, out)
  };
  std::vector<Layer> layers;
  auto add = [&](int64_t in, int64_t out) { layers.push_back({randn({out, in}), randn({rows, in}), randn({rows, out})}); };
  for (int64_t l = 0; l < L; ++l) {
    add(C, 3 * C);
    add(C, C);
    add(C, 4 * C);
    add(4 * C, C);
  }
  add(C, vocab);
  double flops = 0;
  for (const Layer& l : layers) flops += 3 * 2.0 * l.w.numel() * rows;
  auto step = [&] {
    for (const Layer& l : layers) {
      benchmark::DoNotOptimize(matmul(l.x, transpose(l.w, 0, 1)).raw_data());
      benchmark::DoNotOptimize(matmul(l.g, l.w).raw_data());
      benchmark::DoNotOptimize(matmul(transpose(l.g, 0, 1), l.x).raw_data());
    }
  };
  if (!available(st, step)) return;
  for (auto _ : st) step();
  st.SetLabel(fmt::format("{} config, {} GEMMs, {:.2f} GFLOP", tiny ? "tiny" : "small", 3 * layers.size(), flops / 1e9));
  st.counters["GFLOP/s"] = benchmark::Counter(flops / 1e9, benchmark::Counter::kIsIterationInvariantRate);
}
BENCHMARK(BM_GptStepGemms)->Arg(0)->Arg(1)->Unit(benchmark::kMillisecond);

// gelu (tanh approximation) forward+backward on the MLP activation of a GPT
// block, (B*T, 4C) = (2048, 512) f32: an elementwise kernel's throughput.
void BM_GeluForwardBackward(benchmark::State& st) {
  Tensor x = randn({2048, 512}).set_requires_grad();
  Tensor w = randn({2048, 512});
  if (!available(st, [&] { gelu(x).backward(w); x.zero_grad(); })) return;
  for (auto _ : st) {
    Tensor y = gelu(x);
    y.backward(w);
    benchmark::DoNotOptimize(x.grad().raw_data());
    x.zero_grad();
  }
  st.SetBytesProcessed(st.iterations() * x.nbytes() * 5);  // read x, write y; read x, g, write dx
}
BENCHMARK(BM_GeluForwardBackward)->Unit(benchmark::kMicrosecond);

}  // namespace

BENCHMARK_MAIN();
