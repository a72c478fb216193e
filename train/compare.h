#pragma once
// Comparing models at equal compute: the driver behind examples/compare_routing.
// Every run trains on the same data, seed and schedule until its counted
// training FLOPs (3x the forward FLOPs of its actual routing decisions) reach
// one budget — what the first run spends in `steps` steps, measured on one
// probe batch, or a given number — with warmup + cosine on the share of the
// budget spent (train/schedule.h), so a MoB whose depth changes during
// training still ends its schedule at the budget. Each run is then evaluated
// (and, for MoD and the kinds with a routing trace, evaluated for its routing) and becomes one row of
// the results table.
//
//   train::CompareOptions o;  o.out = "runs/cmp";  o.steps = 1500;
//   auto base = [&](const std::string& kind) { return my_config_json(kind); };
//   std::vector<train::RunSpec> runs = {train::parse_run("dense", base),
//                                       train::parse_run("mob-block=mob:attn_scope=block", base)};
//   std::vector<train::RunResult> rows = train::compare_runs(runs, corpus, o);
//   fmt::print("{}", train::results_table(rows));   // also in runs/cmp/table.md and summary.jsonl
//
// Outputs under o.out: <run>/metrics.jsonl and <run>/ckpt.safetensors (the
// Trainer's), <run>/routing.json (kinds with a routing trace: that of the first validation
// window), table.md and summary.jsonl (one JSON object per run).
//
// A run may be of any registered model kind (models::register_model_kind).
#include <array>
#include <cmath>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "data/corpus.h"

namespace dg::train {

// One run: its name (also its folder under the output), a model kind and
// that kind's config JSON.
struct RunSpec {
  std::string name, kind, config;
};

// The config JSON of a kind before a run's overrides.
using BaseConfig = std::function<std::string(const std::string& kind)>;

// NAME=KIND[:KEY=VALUE,...], or KIND alone (named after it): the config is
// base(KIND) with each KEY, which must be a field of it, set to VALUE
// parsed as that field's JSON type. A dg::Error names the spec and the
// problem (an unknown kind or field lists the known ones).
RunSpec parse_run(const std::string& spec, const BaseConfig& base);

enum class Match { flops, steps };

struct CompareOptions {
  std::string out = "runs/compare";
  Match match = Match::flops;   // equal training FLOPs, or equal steps
  int64_t steps = 1500;         // steps of the first run (its FLOPs are the budget)
  double budget = 0;            // training FLOPs per run; 0: what the first run spends in `steps`
  int64_t batch = 16, block = 64, warmup = 100;
  int64_t evals = 6;            // evaluations per run (the loss-vs-FLOPs curve)
  int64_t eval_batches = 8;
  double lr = 3e-3, min_lr = 3e-4, weight_decay = 0.1, grad_clip = 1.0;
  uint64_t seed = 1337;         // data order
  Device device = Device::cpu();  // where every run's model trains
  bool print_progress = true;   // a header per run and a line per evaluation on stdout
};

// One row of the table. NAN where a figure does not apply to the run.
struct RunResult {
  std::string run, kind, config, dir;
  int64_t params = 0, steps = 0;
  double train_flops = 0, flops_per_token = 0, val_loss = 0;
  double answer_accuracy = NAN;                 // NAN when the corpus has no answers
  std::array<double, 4> answer_accuracy_by_level{};
  double tokens_per_s = 0, wall_s = 0;
  // MoD: validation loss and share of tokens routed under causal routing,
  // and the causal predictor's accuracy against top-k.
  double val_loss_causal = NAN, routed_fraction_causal = NAN, predictor_accuracy = NAN;
  // Kinds with a routing trace (MoB, ...): mean depth, depth histogram (shares of tokens, depth 0..D_max) and
  // mean depth of the tokens predicting an answer byte, by level 1..4.
  double mean_depth = NAN;
  std::vector<double> depth_histogram, depth_by_level;
};

// Trains and evaluates every run in order (names must differ); writes the
// outputs listed above and returns the rows.
std::vector<RunResult> compare_runs(const std::vector<RunSpec>& runs, const data::Corpus& corpus,
                                    const CompareOptions& opt);

// The rows as a markdown table (the answers column only when the corpus has answers).
std::string results_table(const std::vector<RunResult>& rows);
// One JSON object per row (the fields above; NAN as null).
std::string summary_jsonl(const std::vector<RunResult>& rows);

}  // namespace dg::train
