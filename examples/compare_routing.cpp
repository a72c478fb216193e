// compare_routing: trains a dense GPT of L layers, one of L/2 layers,
// Mixture-of-Depths and Mixture-of-Blocks on the same data, with the same
// seed and schedule, for the same training-FLOP budget, and prints one table
// (params, FLOPs/token, val loss — MoD and expert-choice MoR with top-k and
// with causal routing —, answer accuracy, mean depth, tokens/s, wall time).
// Other kinds (mor, moe, or one a program registers) are added with --run.
// Metrics go to <out>/<run>/metrics.jsonl, the table to <out>/summary.jsonl
// and <out>/table.md, routing traces (MoB, MoR, MoE) to
// <out>/<run>/routing.json with a page to look at them in
// (<out>/<run>/routing.html), and the
// pictures (tools/plot_compare.py, matplotlib) to <out>/*.png.
//
//   compare_routing                                   # defaults, 5-7 minutes on 2 cores
//   compare_routing --data bible.txt --steps 3000     # a text file, a larger budget
//   compare_routing --match steps                     # equal steps instead of equal FLOPs
//   compare_routing --seeds 3                         # mean ± sd over 3 seeds; differences beyond the noise marked
//   compare_routing --budgets 1e12,2e12,4e12 --seeds 3   # isoFLOP sweep: a table per budget, <out>/isoflop.png
//   compare_routing --run dense-4=dense --run mor=mor --run mor-tc=mor:router=token --run moe=moe:top_k=2
//   compare_routing --run dense-4=dense --run mob-block=mob:attn_scope=block
//                   --run mob-bias=mob:halting=bias,gate_init=uniform     (one line)
//
// Noise: --seeds N trains every run N times (seeds --seed + i, for the data
// order and the initial weights) and reports mean ± sample standard deviation;
// a difference against the best dense run is marked (*) only when it exceeds
// twice Welch's standard error (the table's legend says so). --budgets a,b,c
// repeats the whole comparison at each training-FLOP budget.
//
// The budget: --steps is the number of steps of the first run (the dense
// L-layer model by default); the budget is what that run spends, measured on
// one probe batch (or --budget FLOPs). Every run trains until its counted
// training FLOPs (3x the forward FLOPs of its actual routing decisions)
// reach the budget, and its warmup + cosine schedule runs on the share of
// the budget spent, so a MoB whose depth changes during training still ends
// its schedule at the budget. The steps shown at the start are estimates
// from the probe (routed models: their routing at initialisation).
//
// A run is NAME=KIND[:KEY=VALUE,...] (or just KIND): KIND is dense, mod, mob, mor or moe, built from
// the model flags below; each KEY is a field of that kind's config JSON (see
// models/*.h: n_layer, capacity, attn_scope, halting, router, top_k, ...)
// whose value replaces the flag's. The driver itself is a library call,
// train::compare_runs (train/compare.h); this program is its command line.
#include <cstdlib>
#include <filesystem>

#include "examples/device_flag.h"
#include "examples/lm_flags.h"
#include "train/compare.h"
#include "train/trainer.h"

using namespace dg;

namespace {

struct Flags : examples::LMFlags {
  std::vector<std::string> runs;
  std::string match = "flops", out = "runs/compare";
  int64_t steps = 1500, evals = 6;
  double budget = 0;
  // --batch, --lr, --min-lr, --warmup, --weight-decay, --grad-clip, --eval-batches (train::train_options_table()).
  train::TrainOptions train = defaults();
  static train::TrainOptions defaults() {
    train::TrainOptions o;
    o.batch = 16, o.warmup = 100;
    return o;
  }
  int threads = 0;
  bool no_plot = false;
  int64_t seeds = 1;
  std::string budgets;  // "1e12,2e12": parsed by train::parse_budgets
};
// --seeds, checked like the config fields (one line naming the flag and the range).
const config::Table<Flags>& seeds_flag() {
  static const config::Table<Flags> t = {config::integer<Flags>(
      "seeds", "--seeds", &Flags::seeds, 1, 1000, "trainings per run, seeds --seed + i; the table shows mean ± sd")};
  return t;
}
const std::vector<std::string> kTrainFlags = {"--batch",        "--lr",        "--min-lr",      "--warmup",
                                              "--weight-decay", "--grad-clip", "--eval-batches"};

// The default runs: dense-L, dense-L/2 (none when L = 1: it would be dense-L again), MoD, MoB.
std::vector<std::string> default_runs(const Flags& f) {
  const int64_t L = f.gpt.n_layer;
  std::vector<std::string> runs = {fmt::format("dense-{}=dense", L)};
  if (L >= 2) runs.push_back(fmt::format("dense-{}=dense:n_layer={}", L / 2, L / 2));
  runs.insert(runs.end(), {"mod=mod", "mob=mob"});
  return runs;
}

}  // namespace

int main(int argc, char** argv) {
  Flags f;
  CLI::App app{"Train dense, dense-half, Mixture-of-Depths and Mixture-of-Blocks for the same training-FLOP budget "
               "and compare them in one table."};
  app.option_defaults()->multi_option_policy(CLI::MultiOptionPolicy::TakeLast);
  app.add_option("--run", f.runs,
                 "a run NAME=KIND[:KEY=VALUE,...] (repeatable; default: dense-L, dense-L/2, mod, mob); "
                 "KEYs are config fields, e.g. mob-block=mob:attn_scope=block")
      ->multi_option_policy(CLI::MultiOptionPolicy::TakeAll);
  app.add_option("--steps", f.steps, "steps of the first run; its FLOPs are every run's budget")
      ->check(CLI::PositiveNumber)->capture_default_str();
  app.add_option("--budget", f.budget, "training FLOPs per run (0: what the first run spends in --steps steps)")
      ->check(CLI::NonNegativeNumber)->capture_default_str();
  examples::add_flags(app, seeds_flag(), f);
  app.add_option("--budgets", f.budgets,
                 "isoFLOP sweep: training-FLOP budgets separated by commas, e.g. 1e12,2e12,4e12 (every run at each)");
  app.add_option("--match", f.match, "flops (equal training FLOPs) | steps (equal steps)")
      ->check(CLI::IsMember({"flops", "steps"}))->capture_default_str();
  examples::add_flags(app, train::train_options_table(), f.train, kTrainFlags);
  app.add_option("--evals", f.evals, "evaluations per run (the loss-vs-FLOPs curve)")->check(CLI::PositiveNumber)->capture_default_str();
  app.add_option("--out", f.out, "output folder (each run's previous metrics there are replaced)")->capture_default_str();
  app.add_option("--threads", f.threads, "CPU threads (0: DG_NUM_THREADS or all cores)")->capture_default_str();
  app.add_flag("--no-plot", f.no_plot, "do not run tools/plot_compare.py");
  std::string device = "cpu";
  examples::add_device_flag(app, device);
  examples::add_model_flags(app, f);
  CLI11_PARSE(app, argc, argv);

  try {
    // Everything that can be checked before a model is built or a step runs.
    f.train.steps = f.steps, f.train.block = f.gpt.block_size, f.train.seed = f.gpt.seed;
    examples::fit_default_warmup(app, f.train);
    train::validate(f.train);
    std::vector<double> budgets;
    if (app.count("--budgets") > 0) budgets = train::parse_budgets(f.budgets);
    const Device d = examples::open_device(device);
    if (f.threads > 0) set_num_threads(f.threads);
    if (f.runs.empty()) f.runs = default_runs(f);
    const std::vector<train::RunSpec> specs =
        train::parse_runs(f.runs, [&](const std::string& kind) { return examples::model_config(f, kind); });
    const train::TrainOptions& t = f.train;
    train::CompareOptions o;
    o.out = f.out, o.match = f.match == "steps" ? train::Match::steps : train::Match::flops, o.steps = f.steps;
    o.budget = f.budget, o.batch = t.batch, o.block = t.block, o.warmup = t.warmup, o.evals = f.evals;
    o.eval_batches = t.eval_batches, o.lr = t.lr, o.min_lr = t.min_lr, o.weight_decay = t.weight_decay;
    o.grad_clip = t.grad_clip, o.seed = t.seed, o.device = d, o.seeds = f.seeds, o.budgets = budgets;
    train::validate(o);  // before the corpus is read or a model built
    auto corpus = examples::load_corpus(f.data, f.gpt.seed);
    train::check_data(*corpus, f.gpt.block_size);
    fmt::print("compare_routing: data {} (train {} bytes, val {}; unigram entropy {:.3f}, bigram {:.3f} nats/byte), "
               "B={} T={}, match {}\n",
               corpus->source(), corpus->size(data::Split::train), corpus->size(data::Split::val),
               corpus->unigram_entropy(), corpus->bigram_entropy(), f.train.batch, f.gpt.block_size, f.match);
    std::vector<train::RunResult> rows = train::compare_runs(specs, *corpus, o);
    fmt::print("\n{}", train::results_table(rows));
    fmt::print("\nresults: {0}/table.md, {0}/summary.jsonl, {0}/<run>/metrics.jsonl\n", f.out);
    if (!f.no_plot) {
      const std::string script = "tools/plot_compare.py";
      if (!std::filesystem::exists(script) || !std::filesystem::exists("/usr/bin/python3")) {
        fmt::print("pictures: run /usr/bin/python3 {} {} from the repository root\n", script, f.out);
      } else if (std::system(fmt::format("/usr/bin/python3 {} '{}'", script, f.out).c_str()) != 0) {
        fmt::print(stderr, "compare_routing: {} failed (is python3-matplotlib installed?); the results are kept\n",
                   script);
      }
    }
  } catch (const std::exception& e) {  // dg::Error included
    fmt::print(stderr, "compare_routing: {}\n", e.what());
    return 1;
  }
  return 0;
}
