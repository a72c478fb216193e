// Mixture-of-Experts execution costs, forward + backward, at the tiny config
// (B=16, T=128, C=128, H=4, L=4) with E=4 experts, k = 1 and 2, dropless and
// capacity factor 1.0:
//  1. per application: one MoE layer (router, host top-k, grouping, one
//     grouped_linear per MLP layer over all experts, gather and weighted
//     scatter) on N = B*T rows, per expert application (its time / k), against
//     the dense MLP on the same rows (x + mlp(ln2(x)));
//  2. training step: the MoE model's loss forward + backward against the dense
//     GPT's of the same width and depth, beside the ratio of their FLOPs.
// Each pair is timed alternately (MoE, dense, MoE, dense, ...) so that the
// machine's load hits both alike; medians over --reps. Prints a markdown table.
//
//   env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE build/bench/bench_moe --reps 9 --threads 2
//   build/bench/bench_moe --threads 1 --cpu-time     # steadier on a loaded machine
#include <CLI/CLI.hpp>
#include <algorithm>
#include <functional>

#include "bench/bench_clock.h"
#include "models/gpt.h"
#include "models/moe.h"

using namespace dg;

namespace {

bool g_cpu_time = false;  // --cpu-time: the process's CPU time (all threads) instead of wall time

// Medians of a and b timed alternately, after one warm-up call of each.
std::pair<double, double> paired_median_ms(int reps, const std::function<void()>& a, const std::function<void()>& b) {
  const std::vector<double> m = bench::alternated_median_ms(reps, {a, b}, g_cpu_time);
  return {m[0], m[1]};
}

}  // namespace

int main(int argc, char** argv) {
  int reps = 9, threads = 2;
  int64_t B = 16, T = 128, C = 128, E = 4;
  CLI::App app{"Mixture-of-Experts: an MoE layer per expert application vs a dense MLP, and the step vs dense."};
  app.add_option("--reps", reps, "timed repetitions (median)")->capture_default_str();
  app.add_option("--threads", threads, "CPU threads")->capture_default_str();
  app.add_option("--batch", B)->capture_default_str();
  app.add_option("--block", T)->capture_default_str();
  app.add_option("--embd", C)->capture_default_str();
  app.add_option("--experts", E)->capture_default_str();
  app.add_flag("--cpu-time", g_cpu_time,
               "time with the process's CPU time (all threads) instead of wall time: steadier on a loaded machine");
  CLI11_PARSE(app, argc, argv);
  set_num_threads(threads);
  const int64_t N = B * T;
  models::GPTConfig g{.n_layer = 4, .n_head = 4, .n_embd = C, .block_size = T};
  Generator gen(3);
  Tensor idx = randint(0, 256, {B, T}, &gen), tgt = randint(0, 256, {B, T}, &gen);
  Tensor rows = randn({N, C}, {}, &gen), w = randn({N, C}, {}, &gen);
  nn::Block block(C, 4, 0.0, {DType::f32, &gen});
  models::GPT dense(g);
  dense.train();
  // The dense MLP step on the same rows: x + mlp(ln2(x)), forward and backward.
  auto dense_mlp = [&] {
    Tensor x = rows.detach().set_requires_grad();
    sum((x + block.mlp->forward(block.ln2->forward(x))) * w).backward();
  };
  auto dense_step = [&] {
    dense.zero_grad();
    dense.loss(idx, tgt).objective.backward();
  };
  fmt::print("MoE forward+backward, B={} T={} C={} H=4 L=4, E={} experts in every block, {} threads; each MoE timing "
             "alternates with its dense counterpart (medians of {}, {} time)\n\n",
             B, T, C, E, threads, reps, g_cpu_time ? "CPU" : "wall");
  fmt::print("| k | capacity factor | dropped | dense MLP on N rows | MoE layer | per expert application | vs the dense MLP "
             "| dense step | MoE step | step ratio | FLOP ratio |\n|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n");
  for (int64_t k : {1, 2})
    for (double cf : {0.0, 1.0}) {
      models::MoELayer layer(block, E, k, {DType::f32, &gen}, 0.02 / std::sqrt(8.0));
      double dropped = 0;
      auto moe_layer = [&] {
        Tensor x = rows.detach().set_requires_grad();
        models::MoELayer::Output o = layer.forward(x, block.ln2->forward(x), cf);
        sum(o.out * w).backward();
        dropped = static_cast<double>(o.routes.dropped()) / static_cast<double>(N * k);
      };
      const auto [t_layer, t_mlp] = paired_median_ms(reps, moe_layer, dense_mlp);
      models::MoEConfig mc;
      mc.gpt = g;
      mc.n_experts = E, mc.top_k = k, mc.capacity_factor = cf;
      models::MoE moe(mc);
      moe.train();
      auto moe_step = [&] {
        moe.zero_grad();
        moe.loss(idx, tgt).objective.backward();
      };
      const auto [t_moe, t_dense] = paired_median_ms(reps, moe_step, dense_step);
      const double flop_ratio = moe.last_forward_flops_per_token() / dense.last_forward_flops_per_token();
      const double per_app = t_layer / static_cast<double>(k);
      fmt::print("| {} | {} | {:.1f}% | {:.2f} ms | {:.2f} ms | {:.2f} ms | {:.2f}x | {:.1f} ms | {:.1f} ms | {:.2f} | "
                 "{:.2f} |\n",
                 k, cf, 100 * dropped, t_mlp, t_layer, per_app, per_app / t_mlp, t_dense, t_moe, t_moe / t_dense,
                 flop_ratio);
    }
  return 0;
}
