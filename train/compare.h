#pragma once
// Comparing models at equal compute: the driver behind examples/compare_routing.
// Every run trains on the same data, seed and schedule until its counted
// training FLOPs (3x the forward FLOPs of its actual routing decisions) reach
// one budget — what the first run spends in `steps` steps, measured on one
// probe batch, or a given number — with warmup + cosine on the share of the
// budget spent (train/schedule.h), so a MoB whose depth changes during
// training still ends its schedule at the budget. Each run is then evaluated
// (and, for MoD, expert-choice MoR and the kinds with a routing trace, evaluated for its routing) and becomes one row of
// the results table.
//
// Noise: with `seeds` = N > 1 every run trains N times, with seeds seed + i
// for the data order and for the model's initial weights (its config's
// "seed" field), and its row holds the mean and sample standard deviation
// over the seeds; a run's difference of mean val loss against the best dense
// run (kind "dense", lowest mean) is marked beyond the noise only when it
// exceeds twice Welch's standard error, sqrt(sd_a^2/n_a + sd_b^2/n_b). With
// one seed the noise is unknown and nothing is marked.
//
// IsoFLOP sweep: with `budgets` every run trains at every budget (x seeds);
// the rows carry their budget and the table has one section per budget.
//
//   train::CompareOptions o;  o.out = "runs/cmp";  o.steps = 1500;  o.seeds = 3;
//   auto base = [&](const std::string& kind) { return my_config_json(kind); };
//   std::vector<train::RunSpec> runs = train::parse_runs({"dense", "mob-block=mob:attn_scope=block"}, base);
//   std::vector<train::RunResult> rows = train::compare_runs(runs, corpus, o);
//   fmt::print("{}", train::results_table(rows));   // also in runs/cmp/table.md and summary.jsonl
//
// Outputs under o.out: <run>/metrics.jsonl and <run>/ckpt.safetensors (the
// Trainer's), <run>/routing.json (kinds with a routing trace: that of the first validation
// window), table.md and summary.jsonl (one JSON object per run). With seeds
// the run's files are in <run>/seed<i>/, and with budgets under
// budget-<B>/<run>/ (B as in "1e12").
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
// parse_run of every spec, in order: the runs of a --run flag given several
// times, or of a program's own list.
std::vector<RunSpec> parse_runs(const std::vector<std::string>& specs, const BaseConfig& base);

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
  int64_t seeds = 1;            // trainings per run, seeds seed + i (data order and initial weights)
  std::vector<double> budgets;  // isoFLOP sweep: every run at each of these training-FLOP budgets
};

// The checks on the options compare_runs makes before anything trains (seeds
// >= 1, budgets positive and finite, not both budget and budgets, budgets
// only with Match::flops); a dg::Error names the flag.
void validate(const CompareOptions& o);

// "1e12,2e12,4e12" -> the budgets; a dg::Error naming --budgets, the bad item
// and what is allowed (positive FLOP counts separated by commas).
std::vector<double> parse_budgets(const std::string& text);

// One row of the table. NAN where a figure does not apply to the run. A row
// of several seeds holds the means over them (val loss, accuracies, depths,
// FLOPs, tok/s, wall time; steps rounded), the sample standard deviations in
// the *_sd fields, and each seed's own row in per_seed.
struct RunResult {
  std::string run, kind, config, dir;
  double budget = 0;  // the training-FLOP budget of the row (0 when matching steps)
  uint64_t seed = 0;  // the data-order seed (of the first seed in a row of several)
  int64_t params = 0, steps = 0;
  double train_flops = 0, flops_per_token = 0, val_loss = 0;
  double answer_accuracy = NAN;                 // NAN when the corpus has no answers
  std::array<double, 4> answer_accuracy_by_level{};
  double tokens_per_s = 0, wall_s = 0;
  // MoD and expert-choice MoR: validation loss under causal routing; MoD
  // also the share of tokens routed that way and the causal predictor's
  // accuracy against top-k.
  double val_loss_causal = NAN, routed_fraction_causal = NAN, predictor_accuracy = NAN;
  // Kinds with a routing trace (MoB, ...): mean depth, depth histogram (shares of tokens, depth 0..D_max) and
  // mean depth of the tokens predicting an answer byte, by level 1..4.
  double mean_depth = NAN;
  std::vector<double> depth_histogram, depth_by_level;
  // Over seeds: their number, the sample standard deviations (NAN with one
  // seed), and each seed's row (empty with one seed).
  int64_t seeds = 1;
  double val_loss_sd = NAN, answer_accuracy_sd = NAN, mean_depth_sd = NAN, tokens_per_s_sd = NAN;
  std::vector<RunResult> per_seed;
  // Against the best dense run of the same budget (mark_noise): the
  // difference of mean val loss (this - dense), Welch's standard error, and
  // whether |diff| > kNoiseSigmas * se. NAN / false where unknown.
  std::string vs_run;
  double vs_dense = NAN, vs_dense_se = NAN;
  bool beyond_noise = false;
};

// A difference is beyond the noise when larger than this many standard errors.
inline constexpr double kNoiseSigmas = 2.0;

// One row from the rows of one run's seeds (same run, kind and budget).
RunResult aggregate_seeds(const std::vector<RunResult>& seeds);
// Sets vs_run, vs_dense, vs_dense_se and beyond_noise of every row against
// the best dense row (kind "dense", lowest mean val loss) of its budget; rows
// of a budget without a dense run are left unmarked.
void mark_noise(std::vector<RunResult>& rows);

// Trains and evaluates every run in order (names must differ): with budgets,
// every run at the first budget, then at the next, ...; with seeds, each run
// N times in a row. Before anything trains, the options are validated and
// every run's model is built once from its config, so a config its kind
// refuses is a dg::Error naming the run. Writes the outputs listed above and
// returns the rows (one per run and budget, in that order).
std::vector<RunResult> compare_runs(const std::vector<RunSpec>& runs, const data::Corpus& corpus,
                                    const CompareOptions& opt);

// The rows as markdown: one table per budget (the answers column only when
// the corpus has answers), each followed by its legend (what ± means, the
// noise criterion, or that the noise is unknown with one seed).
std::string results_table(const std::vector<RunResult>& rows);
// One JSON object per row (the fields above, per-seed values under "per_seed"; NAN as null).
std::string summary_jsonl(const std::vector<RunResult>& rows);

}  // namespace dg::train
