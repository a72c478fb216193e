// Packed variable-length causal attention against the padded batch it
// replaces (f32), forward and forward+backward:
//   varlen: attention_varlen on q, k, v (H, N, D), S = 16 sequences of random
//           lengths in [1, 128] (fixed seed), N = the sum of the lengths;
//   padded: scaled_dot_product_attention, causal, on (B = 16, H, T = 128, D),
//           every sequence padded to the longest possible length.
//   qkv:      attention_qkv on fused (N, 3C) projections, 16 full sequences
//             of 128 (N = 2048), read in place (a dense block's attention);
//   qkv_rows: the same with the tokens in a MoB step's row order
//             (attention_qkv_rows): each token at a random one of 4 groups,
//             rows in group order; the difference to qkv is what reading
//             the sequences out of group order costs.
// H = 4, D = 32 (the 16x128x128 GPT shape of bench_nn). A _fwd_bwd case is
// one forward and dg::grad of its inputs with a fixed random output gradient.
//
//   DG_NUM_THREADS=2 build/bench/bench_varlen --benchmark_repetitions=5 --benchmark_report_aggregates_only=true
#include <benchmark/benchmark.h>

#include <algorithm>
#include <string>
#include <vector>

#include "autograd/engine.h"
#include "autograd/ops.h"

using namespace dg;

namespace {

constexpr int64_t kSeqs = 16, kMaxLen = 128, kH = 4, kD = 32;

// cu_seqlens (S + 1) of kSeqs lengths drawn uniformly from [1, kMaxLen].
Tensor random_cu_seqlens() {
  Generator gen(1234);
  std::vector<int64_t> lengths = randint(1, kMaxLen + 1, {kSeqs}, &gen).to_vector<int64_t>(), cu{0};
  for (int64_t len : lengths) cu.push_back(cu.back() + len);
  return from_vector<int64_t>(cu, {kSeqs + 1});
}

// One forward f() per iteration and, with `backward`, the gradients of q, k, v.
template <class F>
void run(benchmark::State& st, const Tensors& qkv, bool backward, F&& f) {
  Tensor gy = randn(f().shape());
  for (auto _ : st) {
    Tensor y = f();
    if (backward) {
      Tensors g = grad({y}, qkv, {gy});
      benchmark::DoNotOptimize(g[0].raw_data());
    }
    benchmark::DoNotOptimize(y.raw_data());
  }
}

void varlen_case(benchmark::State& st, bool backward) {
  Tensor cu = random_cu_seqlens();
  const int64_t N = cu.to_vector<int64_t>().back();
  Tensor q = randn({kH, N, kD}).set_requires_grad(), k = randn({kH, N, kD}).set_requires_grad(),
         v = randn({kH, N, kD}).set_requires_grad();
  run(st, {q, k, v}, backward, [&] { return attention_varlen(q, k, v, cu); });
  st.counters["tokens"] = static_cast<double>(N);
}

void padded_case(benchmark::State& st, bool backward) {
  const Shape shape{kSeqs, kH, kMaxLen, kD};
  Tensor q = randn(shape).set_requires_grad(), k = randn(shape).set_requires_grad(),
         v = randn(shape).set_requires_grad();
  run(st, {q, k, v}, backward, [&] { return scaled_dot_product_attention(q, k, v, /*causal=*/true); });
  st.counters["tokens"] = static_cast<double>(kSeqs * kMaxLen);
}

void qkv_case(benchmark::State& st, bool backward, bool in_group_order) {
  const int64_t N = kSeqs * kMaxLen, C = kH * kD;
  std::vector<int64_t> cu(kSeqs + 1);
  for (int64_t s = 0; s <= kSeqs; ++s) cu[s] = s * kMaxLen;
  const Tensor cu_t = from_vector<int64_t>(cu, {kSeqs + 1});
  Tensor qkv = randn({N, 3 * C}).set_requires_grad();
  if (!in_group_order) {
    run(st, {qkv}, backward, [&] { return attention_qkv(qkv, kH, cu_t); });
  } else {
    // Sequence-order token j sits at row rows[j]: the tokens of group 0
    // first, then group 1, ... (each group in sequence order).
    Generator gen(99);
    const std::vector<int64_t> group = randint(0, 4, {N}, &gen).to_vector<int64_t>();
    std::vector<int64_t> rows(N);
    int64_t next = 0;
    for (int64_t k = 0; k < 4; ++k)
      for (int64_t j = 0; j < N; ++j)
        if (group[j] == k) rows[j] = next++;
    const Tensor rows_t = from_vector<int64_t>(rows, {N});
    run(st, {qkv}, backward, [&] { return attention_qkv_rows(qkv, kH, cu_t, rows_t); });
  }
  st.counters["tokens"] = static_cast<double>(N);
}
void qkv_in_place(benchmark::State& st, bool backward) { qkv_case(st, backward, false); }
void qkv_rows(benchmark::State& st, bool backward) { qkv_case(st, backward, true); }

// BM_attention_<varlen|padded|qkv|qkv_rows>_<fwd|fwd_bwd>, with a "min" aggregate under
// --benchmark_repetitions (the least disturbed run on a shared machine).
void register_case(const char* name, void (*fn)(benchmark::State&, bool)) {
  for (bool backward : {false, true}) {
    std::string full = std::string("BM_attention_") + name + (backward ? "_fwd_bwd" : "_fwd");
    benchmark::RegisterBenchmark(full.c_str(), [fn, backward](benchmark::State& st) { fn(st, backward); })
        ->Unit(benchmark::kMicrosecond)
        ->ComputeStatistics("min", [](const std::vector<double>& v) { return *std::min_element(v.begin(), v.end()); });
  }
}

}  // namespace

int main(int argc, char** argv) {
  register_case("varlen", varlen_case);
  register_case("padded", padded_case);
  register_case("qkv", qkv_in_place);
  register_case("qkv_rows", qkv_rows);
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
