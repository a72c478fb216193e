#pragma once
// The training loop shared by train_lm, compare_routing and the benchmarks:
// AdamW with warmup + cosine decay, gradient clipping, periodic evaluation,
// metrics as JSON lines, atomic checkpoints, and exact resumption.
//
//   train::TrainOptions opt;  opt.steps = 600;  opt.out_dir = "runs/a";
//   train::Trainer trainer(model, corpus, opt);
//   trainer.run([](const train::StepLog& s) { fmt::print("{} {:.3f}\n", s.step, s.loss); });
//
// Resumption is exact: the checkpoint holds the weights, the AdamW moments,
// the step, the data generator and the default generator (dropout), so
// "20 steps" and "10 steps, save, load in a new process, 10 steps" give the
// same weights bit for bit (same thread count).
#include <functional>
#include <map>
#include <memory>
#include <string>

#include "data/corpus.h"
#include "models/config_table.h"
#include "models/lm.h"
#include "nn/optim.h"
#include "train/evaluate.h"
#include "train/schedule.h"

namespace dg::train {

enum class OnNonfinite { stop, skip };

struct TrainOptions {
  int64_t steps = 500;
  int64_t batch = 16;
  int64_t block = 128;          // T
  double lr = 3e-3;
  double min_lr = 3e-4;
  int64_t warmup = 50;
  double weight_decay = 0.1;    // on 2-D weights only
  double beta1 = 0.9, beta2 = 0.99;
  double grad_clip = 1.0;       // 0: off
  int64_t eval_every = 100;     // 0: only at the end
  int64_t eval_batches = 8;
  uint64_t seed = 1337;         // data order
  std::string out_dir;          // metrics.jsonl + ckpt.safetensors; empty: neither
  bool resume = false;          // continue from out_dir/ckpt.safetensors
  double flop_budget = 0;       // stop once training FLOPs reach it (0: off)
  // With a budget: train until the budget is spent (whatever the steps), and
  // run warmup + cosine on the share of the budget spent, scaled to `steps`
  // (an estimate; train/schedule.h). At most 4 * steps steps.
  bool flop_schedule = false;
  int64_t stop_at = 0;          // stop (checkpointed) at this step, keeping the schedule of `steps` (0: off)
  // A non-finite loss, LM loss or gradient norm: `stop` throws a dg::Error
  // (step, value, first parameter with a non-finite grad; the last good
  // checkpoint is kept); `skip` drops the step (no optimizer or moment
  // update) and counts it (metrics "skipped", Trainer::skipped()).
  OnNonfinite on_nonfinite = OnNonfinite::stop;
  // A fresh run (not resume) into an out_dir that already holds a run
  // (ckpt.safetensors or metrics.jsonl) is an error unless overwrite, which
  // removes our files there (checkpoint, metrics, routing trace, temp files).
  bool overwrite = false;
  // New options go here, each with its row in train_options_table() (train/trainer.cpp).
};

// TrainOptions' fields: JSON keys, flags (--steps, --batch, --lr, ...), ranges.
const config::Table<TrainOptions>& train_options_table();
// The table's ranges and the checks across fields: --min-lr at most --lr, a
// FLOP schedule only with a FLOP budget, and (check_warmup) --warmup at most
// --steps. A one-line dg::Error naming the flags.
void validate(const TrainOptions& o, bool check_warmup = true);
// The corpus has a training and a validation split of at least one window
// (block + 1 bytes) each; a dg::Error naming --block and the split otherwise.
void check_data(const data::Corpus& corpus, int64_t block);

// One optimisation step, for progress displays and logs.
struct StepLog {
  int64_t step = 0, total = 0;
  double loss = 0;        // the objective
  double lm = 0;          // the LM part
  double lr = 0;
  double grad_norm = 0;
  double tokens_per_s = 0;
  double train_flops = 0;  // so far, 3x forward
  double seconds = 0;     // since start
  std::map<std::string, double> stats;
  int64_t skipped = 0;    // steps skipped for a non-finite value so far (this process)
};

struct EvalLog {
  int64_t step = 0;
  EvalResult val;
  double train_flops = 0;
};

class Trainer {
 public:
  // Checks opt (validate, without the warmup order) and the data first.
  Trainer(models::LanguageModel& model, const data::Corpus& corpus, TrainOptions opt);

  using StepFn = std::function<void(const StepLog&)>;
  using EvalFn = std::function<void(const EvalLog&)>;
  // Trains to opt.steps (or the FLOP budget); evaluates every eval_every steps
  // and at the end, checkpointing after each evaluation when out_dir is set.
  void run(const StepFn& on_step = {}, const EvalFn& on_eval = {});

  EvalResult evaluate_now();
  void save(const std::string& path) const;
  // Checks the model kind, and the file's model config against the model's,
  // key by key (a dg::Error naming the first differing key and both values).
  void load(const std::string& path);

  int64_t step() const { return step_; }
  double train_flops() const { return train_flops_; }
  const EvalLog& last_eval() const { return last_eval_; }
  double tokens_per_s() const { return tokens_per_s_; }
  nn::Optimizer& optimizer() { return *opt_; }
  int64_t skipped() const { return skipped_; }  // non-finite steps skipped (OnNonfinite::skip)

 private:
  void write_metrics(const std::string& json_line) const;
  void prepare_out_dir();        // refuse / wipe an existing run, remove stale temp files
  void truncate_metrics_after(int64_t step);  // on resume: drop lines logged after the checkpoint
  // On a non-finite loss / grad norm: throws (stop) or returns true (skip).
  bool nonfinite_step(double loss, double lm, double gnorm);

  models::LanguageModel& model_;
  const data::Corpus& corpus_;
  TrainOptions o_;
  Schedule schedule_;
  std::unique_ptr<nn::Optimizer> opt_;
  Generator data_gen_;
  int64_t step_ = 0;
  int64_t skipped_ = 0;
  int64_t logged_eval_step_ = -1;  // a resumed run's checkpoint step whose eval line is already logged
  double train_flops_ = 0, tokens_per_s_ = 0;
  EvalLog last_eval_;
};

}  // namespace dg::train
