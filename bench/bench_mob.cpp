// Mixture-of-Blocks execution costs, at B=16, T=128, C=128, H=4, n=4 blocks,
// D_max=6 (the tiny config), forward + backward of the ponder objective:
//  1. batched executor (grouped by block, one call per (step, block)) against
//     the naive per-token executor of tests/mob_naive.h;
//  2. overhead: MoB time per block application (gate, per-step LM head,
//     grouping, gather/scatter included) against a dense block's time
//     (dense GPT with n layers: step time / n) at the same B, T, C;
//  3. the floor: what MoB must do beyond its block applications under the
//     ponder objective, timed op by op in the same run (alternated with the
//     MoB and dense steps): one block on all N tokens, the LM head + CE on N
//     rows (which the ponder objective runs at every step, on the tokens
//     still active), the gate on N rows. A MoB step at mean depth D applies
//     blocks to N D rows and head, CE and gate to N (D + 1) rows (every token
//     is active at steps 0..its depth), so its floor is
//       D block + (D + 1) (head/CE + gate) + (dense - 4 block - head/CE)
//     (the last term: the embedding and what else the dense step does once);
//     where the tokens spread over the blocks, the grouped floor adds what the
//     n blocks on N/n rows each cost beyond one block on N rows, and the
//     routed floor what they cost with MoB's permutations too (the gather
//     into group order, the attention over rows in that order, the weighted
//     scatter back): MoB minus the routed floor is its gate, head and policy
//     bookkeeping.
// Both gate inits by default: dense-path (every token on the same path: one
// group per step, the batched executor's easiest case) and uniform (random
// gate weights: tokens spread over the blocks, several groups per step).
// Prints markdown tables; medians over --reps. --cpu-time times by the
// process's CPU time (all threads; with --threads 1 it is steadier than wall
// time on a loaded machine).
//
//   env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE build/bench/bench_mob --reps 5 --threads 2
//   build/bench/bench_mob --reps 9 --threads 1 --cpu-time --naive-reps 0
#include <CLI/CLI.hpp>
#include <algorithm>
#include <functional>
#include <string>

#include "bench/bench_clock.h"
#include "models/gpt.h"
#include "models/mob.h"
#include "models/routing.h"
#include "tests/mob_naive.h"

using namespace dg;

namespace {

bool g_cpu_time = false;  // --cpu-time: the process's CPU time (all threads) instead of wall time

double median_ms(int reps, const std::function<void()>& f) {
  return bench::alternated_median_ms(reps, {f}, g_cpu_time).front();
}

}  // namespace

int main(int argc, char** argv) {
  int reps = 5, threads = 2, naive_reps = 1;
  std::string gate_init = "both";
  int64_t B = 16, T = 128, C = 128;
  double return_bias = 0.0;
  CLI::App app{"Mixture-of-Blocks: batched vs naive executor, and per-application overhead vs a dense block."};
  app.add_option("--reps", reps, "timed repetitions (median)")->capture_default_str();
  app.add_option("--naive-reps", naive_reps, "timed repetitions of the (slow) naive executor (0: not timed)")
      ->capture_default_str();
  app.add_option("--threads", threads, "CPU threads")->capture_default_str();
  app.add_option("--gate-init", gate_init, "dense-path | uniform | both")
      ->check(CLI::IsMember({"dense-path", "uniform", "both"}))->capture_default_str();
  app.add_option("--batch", B)->capture_default_str();
  app.add_option("--block", T)->capture_default_str();
  app.add_option("--embd", C)->capture_default_str();
  app.add_option("--return-bias", return_bias,
                 "MoB return_bias beta (+ beta d on the return logit): with the uniform gate, tokens then halt at "
                 "different steps, as in training")
      ->capture_default_str();
  app.add_flag("--cpu-time", g_cpu_time,
               "time with the process's CPU time (all threads) instead of wall time: steadier on a loaded machine");
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
  fmt::print("MoB forward+backward of the ponder objective, B={} T={} C={} H=4 n=4 D_max=6, {} threads, {} time; the "
             "dense GPT (4 blocks) and the floor's ops timed alternately with each MoB\n\n",
             B, T, C, threads, g_cpu_time ? "CPU" : "wall");
  std::vector<std::string> floor_rows, ratio_rows;
  fmt::print("| gate init | mean depth | groups/step | naive per-token | batched | speed-up | dense block | batched per "
             "block application | vs a dense block |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|\n");
  for (const std::string& init : inits) {
    models::MoBConfig cfg;
    cfg.gpt = g;
    cfg.n_blocks = 4;
    cfg.return_bias = return_bias;
    cfg.gate_init = init == "uniform" ? models::GateInit::uniform : models::GateInit::dense_path;
    models::MoB mob(cfg);
    mob.train();
    auto batched = [&] {
      mob.zero_grad();
      mob.loss(x, y).objective.backward();
    };
    // The floor's ops on N = B T rows, through MoB's own layers.
    const int64_t N = B * T;
    Tensor xb = randn({B, T, C}).set_requires_grad(), xr = randn({N, C}).set_requires_grad();
    Tensor yr = reshape(y, {N}), g_block = randn({B, T, C}), w_rows = rand({N});
    auto block_step = [&] {
      mob.zero_grad();
      mob.trunk().blocks[0]->forward(xb).backward(g_block);
    };
    auto head_ce_step = [&] {  // as a ponder step charges it: sum h * CE
      mob.zero_grad();
      sum(w_rows * cross_entropy(mob.trunk().head(xr), yr, -100, 0.0, Reduction::none)).backward();
    };
    // The n blocks on N / n rows each, as one step of the batched executor runs
    // them (grouped ops, packed attention over B sequences of T) but without
    // its permutations into group order and back.
    std::vector<int64_t> offsets;
    for (int64_t k = 0; k <= 4; ++k) offsets.push_back(k * N / 4);
    Tensor cu = arange(0.0, static_cast<double>(N + 1), static_cast<double>(T), {DType::i64}), g_rows = randn({N, C});
    auto grouped_step = [&] {
      mob.zero_grad();
      nn::block_delta(nn::GroupedBlocks(mob.trunk().blocks, offsets), xr,
                      mob.trunk().blocks[0]->attn->packed_kernel(cu)).backward(g_rows);
    };
    // The same n blocks as one MoB step runs them when the tokens spread: each
    // token at a random one of the n blocks (fixed seed), gathered from the
    // rows into group order, the attention over the rows in that order
    // (attention_qkv_rows) and the weighted deltas added back
    // (scatter_add_rows): MoB's step without its gate, head and policy.
    Generator route_gen(11);
    const std::vector<int64_t> choice = randint(0, 4, {N}, &route_gen).to_vector<int64_t>();
    const models::Groups groups_of = models::group_by_choice(choice, 4);
    std::vector<int64_t> inv(N);
    for (int64_t i = 0; i < N; ++i) inv[groups_of.perm[i]] = i;
    const models::Rows to_groups(groups_of.perm, x.device()), to_sequences(inv, x.device());
    auto routed_step = [&] {
      mob.zero_grad();
      auto attend = [&](const Tensor& qkv) { return attention_qkv_rows(qkv, 4, cu, to_sequences.ids); };
      Tensor delta = nn::block_delta(nn::GroupedBlocks(mob.trunk().blocks, groups_of.offsets),
                                     models::gather_rows(xr, to_groups), attend);
      models::scatter_add_rows(xr, to_groups, delta, w_rows).backward(g_rows);
    };
    auto gate_step = [&] {
      mob.zero_grad();
      Tensor p = softmax(mob.gate_logits(xr, 1), -1);
      sum(select(p, 1, 4) * w_rows).backward();
    };
    const std::vector<double> t =
        bench::alternated_median_ms(reps, {batched, dense_step, block_step, head_ce_step, gate_step, grouped_step,
                                           routed_step},
                                    g_cpu_time);
    const double t_batched = t[0], t_dense = t[1], t_block = t[2], t_head = t[3], t_gate = t[4], t_grouped = t[5],
                 t_routed = t[6];
    const double per_dense_block = t_dense / 4.0;
    const models::TraceSummary sum = mob.last_trace().summary();
    int64_t groups = 0, steps = 0;
    for (const auto& per_block : sum.usage) {
      int64_t used = 0;
      for (int64_t a : per_block) used += a > 0 ? 1 : 0;
      groups += used, steps += used > 0 ? 1 : 0;
    }
    const double groups_per_step = static_cast<double>(groups) / static_cast<double>(std::max<int64_t>(steps, 1));
    auto naive = [&] {
      mob.zero_grad();
      dg::testing::naive_mob_objective(mob, x, y, nullptr).backward();
    };
    const double t_naive = naive_reps > 0 ? median_ms(naive_reps, naive) : 0.0;  // --naive-reps 0: not timed
    const std::string naive_ms = naive_reps > 0 ? fmt::format("{:.0f} ms", t_naive) : "—",
                      speed_up = naive_reps > 0 ? fmt::format("{:.1f}x", t_naive / t_batched) : "—";
    const double per_app = t_batched / std::max(sum.mean_depth, 1e-9);
    fmt::print("| {} | {:.2f} | {:.1f} | {} | {:.1f} ms | {} | {:.2f} ms | {:.2f} ms | {:.2f}x |\n", init,
               sum.mean_depth, groups_per_step, naive_ms,
               t_batched, speed_up, per_dense_block, per_app, per_app / per_dense_block);
    const double D = sum.mean_depth, rest = t_dense - 4.0 * t_block - t_head;
    const double floor = D * t_block + (D + 1.0) * (t_head + t_gate) + rest;
    // Where the tokens spread over the blocks (several groups a step), each
    // application runs the n blocks on N/n rows each: the grouped floor
    // charges that instead of one block on N rows (GEMMs on a quarter of the
    // rows each; the permutations still not included).
    const bool spread = groups_per_step > 1.5;
    const double grouped_floor = floor + (spread ? D * (t_grouped - t_block) : 0.0);
    // The routed floor charges the permutations too: D (routed - block).
    const double routed_floor = floor + (spread ? D * (t_routed - t_block) : 0.0);
    dense.loss(x, y);  // the dense model's forward FLOPs (it counts them per call)
    const double flop_ratio = mob.last_forward_flops_per_token() / dense.last_forward_flops_per_token();
    ratio_rows.push_back(fmt::format("| {} | {:.1f} ms | {:.3f} | {:.3f} | {:.3f} | {:.3f} | {:.3f} | {:.3f} |", init,
                                     t_dense, flop_ratio, flop_ratio + 0.10, floor / t_dense, grouped_floor / t_dense,
                                     routed_floor / t_dense, t_batched / t_dense));
    floor_rows.push_back(fmt::format(
        "| {} | {:.2f} | {:.2f} ms | {:.2f} ms | {:.2f} ms | {:.2f} ms | {:.2f} ms | {:.2f} ms | {:.1f} ms | {:.1f} ms | "
        "{:.2f}x | {:.2f}x | {:.2f}x |",
        init, D, t_block, t_grouped, t_routed, t_head, t_gate, rest, floor, t_batched, floor / D / per_dense_block,
        per_app / per_dense_block, t_batched / floor));
  }
  fmt::print("\nThe floor, from the same run's op timings: D block + (D + 1) (head/CE + gate) + rest, with rest = "
             "dense - 4 block - head/CE (4 groups: the 4 blocks on N/4 rows each, grouped, no permutation; routed: the "
             "same with tokens at random blocks, gathered into group order, attention over the rows in that order, "
             "deltas added back; neither in the floor)\n\n| "
             "gate init | mean depth D | block | 4 groups | routed | head + CE | gate | rest | floor | "
             "MoB | floor per application vs a dense block | MoB per application vs a dense block | MoB / floor "
             "|\n|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n");
  for (const std::string& row : floor_rows) fmt::print("{}\n", row);
  fmt::print("\nAgainst the dense step (forward + backward, same run): issue 14's step-time target is MoB / dense <= "
             "FLOP ratio + 0.10 (bench/routed_vs_dense.sh, with AdamW); the grouped floor adds, where the tokens "
             "spread over the blocks, D (4 groups - block), the routed floor D (routed - block): all that the batched "
             "executor moves but for the gate, head and policy\n\n| gate init | dense step | FLOP ratio | target | "
             "floor / dense | grouped floor / dense | routed floor / dense | MoB / dense "
             "|\n|---|---:|---:|---:|---:|---:|---:|---:|\n");
  for (const std::string& row : ratio_rows) fmt::print("{}\n", row);
  return 0;
}
