// Mixture-of-Blocks execution costs, at B=16, T=128, C=128, H=4, n=4 blocks,
// D_max=6 (the tiny config), forward + backward of the ponder objective:
//  1. batched executor (grouped by block, one call per (step, block)) against
//     the naive per-token executor of tests/mob_naive.h;
//  2. overhead: MoB time per block application (gate, per-step LM head,
//     grouping, gather/scatter included) against a dense block's time
//     (dense GPT with n layers: step time / n) at the same B, T, C.
// Both gate inits by default: dense-path (every token on the same path: one
// group per step, the batched executor's easiest case) and uniform (random
// gate weights: tokens spread over the blocks, several groups per step).
// Prints a markdown table; medians over --reps.
//
//   env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE build/bench/bench_mob --reps 5 --threads 2
#include <CLI/CLI.hpp>
#include <algorithm>
#include <chrono>
#include <functional>

#include "models/gpt.h"
#include "models/mob.h"
#include "tests/mob_naive.h"

using namespace dg;

namespace {

double time_ms(const std::function<void()>& f) {
  const auto t0 = std::chrono::steady_clock::now();
  f();
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
}

double median(std::vector<double> t) {
  std::sort(t.begin(), t.end());
  return t[t.size() / 2];
}

double median_ms(int reps, const std::function<void()>& f) {
  std::vector<double> t;
  f();  // warm-up
  for (int i = 0; i < reps; ++i) t.push_back(time_ms(f));
  return median(t);
}

// Medians of a and b timed alternately (a, b, a, b, ...), so that a change
// in the machine's load hits both alike.
std::pair<double, double> paired_median_ms(int reps, const std::function<void()>& a, const std::function<void()>& b) {
  std::vector<double> ta, tb;
  a(), b();  // warm-up
  for (int i = 0; i < reps; ++i) ta.push_back(time_ms(a)), tb.push_back(time_ms(b));
  return {median(ta), median(tb)};
}

}  // namespace

int main(int argc, char** argv) {
  int reps = 5, threads = 2, naive_reps = 1;
  std::string gate_init = "both";
  int64_t B = 16, T = 128, C = 128;
  CLI::App app{"Mixture-of-Blocks: batched vs naive executor, and per-application overhead vs a dense block."};
  app.add_option("--reps", reps, "timed repetitions (median)")->capture_default_str();
  app.add_option("--naive-reps", naive_reps, "timed repetitions of the (slow) naive executor")->capture_default_str();
  app.add_option("--threads", threads, "CPU threads")->capture_default_str();
  app.add_option("--gate-init", gate_init, "dense-path | uniform | both")
      ->check(CLI::IsMember({"dense-path", "uniform", "both"}))->capture_default_str();
  app.add_option("--batch", B)->capture_default_str();
  app.add_option("--block", T)->capture_default_str();
  app.add_option("--embd", C)->capture_default_str();
  CLI11_PARSE(app, argc, argv);
  set_num_threads(threads);
  std::vector<std::string> inits = gate_init == "both" ? std::vector<std::string>{"dense-path", "uniform"}
                                                         : std::vector<std::string>{gate_init};
  models::GPTConfig g{.n_layer = 4, .n_head = 4, .n_embd = C, .block_size = T};
  Generator gen(3);
  Tensor x = randint(0, 256, {B, T}, &gen), y = randint(0, 256, {B, T}, &gen);
  models::GPT dense(g);
  dense.train();
  auto dense_step = [&] {
    dense.zero_grad();
    dense.loss(x, y).objective.backward();
  };
  fmt::print("MoB forward+backward of the ponder objective, B={} T={} C={} H=4 n=4 D_max=6, {} threads; the dense "
             "GPT (4 blocks) timed alternately with each MoB\n\n",
             B, T, C, threads);
  fmt::print("| gate init | mean depth | groups/step | naive per-token | batched | speed-up | dense block | batched per "
             "block application | vs a dense block |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|\n");
  for (const std::string& init : inits) {
    models::MoBConfig cfg;
    cfg.gpt = g;
    cfg.n_blocks = 4;
    cfg.gate_init = init == "uniform" ? models::GateInit::uniform : models::GateInit::dense_path;
    models::MoB mob(cfg);
    mob.train();
    auto batched = [&] {
      mob.zero_grad();
      mob.loss(x, y).objective.backward();
    };
    const auto [t_batched, t_dense] = paired_median_ms(reps, batched, dense_step);
    const double per_dense_block = t_dense / 4.0;
    const models::TraceSummary sum = mob.last_trace().summary();
    int64_t groups = 0, steps = 0;
    for (const auto& per_block : sum.usage) {
      int64_t used = 0;
      for (int64_t a : per_block) used += a > 0 ? 1 : 0;
      groups += used, steps += used > 0 ? 1 : 0;
    }
    auto naive = [&] {
      mob.zero_grad();
      dg::testing::naive_mob_objective(mob, x, y, nullptr).backward();
    };
    const double t_naive = median_ms(naive_reps, naive);
    const double per_app = t_batched / std::max(sum.mean_depth, 1e-9);
    fmt::print("| {} | {:.2f} | {:.1f} | {:.0f} ms | {:.1f} ms | {:.1f}x | {:.2f} ms | {:.2f} ms | {:.2f}x |\n", init,
               sum.mean_depth, static_cast<double>(groups) / static_cast<double>(std::max<int64_t>(steps, 1)), t_naive,
               t_batched, t_naive / t_batched, per_dense_block, per_app, per_app / per_dense_block);
  }
  return 0;
}
