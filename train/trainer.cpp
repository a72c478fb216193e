#include "train/trainer.h"

#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <limits>
#include <nlohmann/json.hpp>

#include "autograd/grad_mode.h"
#include "autograd/ops.h"
#include "nn/checkpoint.h"
#include "nn/safetensors.h"

namespace dg::train {

namespace {

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

nlohmann::json eval_json(const EvalResult& r) {
  nlohmann::json j = {{"val_loss", r.loss}, {"val_flops_per_token", r.flops_per_token}};
  if (r.answers_by_level[1] + r.answers_by_level[2] + r.answers_by_level[3] + r.answers_by_level[4] > 0) {
    j["answer_acc"] = r.answer_accuracy;
    j["answer_acc_by_level"] = {r.accuracy_by_level[1], r.accuracy_by_level[2], r.accuracy_by_level[3],
                                r.accuracy_by_level[4]};
  }
  return j;
}

}  // namespace

const config::Table<TrainOptions>& train_options_table() {
  using O = TrainOptions;
  using config::kInf;
  static const config::Table<O> t = {
      config::integer<O>("steps", "--steps", &O::steps, 0, INT64_MAX, "training steps (total, also when resuming)"),
      config::integer<O>("batch", "--batch", &O::batch, 1, 1 << 20, "sequences per step (B)"),
      config::integer<O>("block", "", &O::block, 1, 1 << 20, "sequence length T"),
      config::real<O>("lr", "--lr", &O::lr, {0, kInf, true}, "peak learning rate (AdamW)"),
      config::real<O>("min_lr", "--min-lr", &O::min_lr, {0, kInf}, "learning rate at the end of the cosine decay"),
      config::integer<O>("warmup", "--warmup", &O::warmup, 0, INT64_MAX, "linear warmup steps (at most --steps)"),
      config::real<O>("weight_decay", "--weight-decay", &O::weight_decay, {0, kInf},
                      "AdamW decoupled weight decay on 2-D weights"),
      config::real<O>("beta1", "--beta1", &O::beta1, {0, 1, false, true}, "AdamW beta1"),
      config::real<O>("beta2", "--beta2", &O::beta2, {0, 1, false, true}, "AdamW beta2"),
      config::real<O>("grad_clip", "--grad-clip", &O::grad_clip, {0, kInf}, "clip the global gradient norm (0: off)"),
      config::integer<O>("eval_every", "--eval-every", &O::eval_every, 0, INT64_MAX,
                         "evaluate (and checkpoint) every N steps; 0: only at the end"),
      config::integer<O>("eval_batches", "--eval-batches", &O::eval_batches, 1, 1 << 20,
                         "validation batches per evaluation"),
      config::seed<O>("seed", "", &O::seed, "seed of the data order"),
      config::text<O>("out_dir", "--out", &O::out_dir, "output folder: metrics.jsonl, ckpt.safetensors"),
      config::boolean<O>("resume", "--resume", &O::resume, "continue from <out>/ckpt.safetensors (same model flags)"),
      config::real<O>("flop_budget", "--flop-budget", &O::flop_budget, {0, kInf},
                      "stop once training FLOPs reach it (0: off)"),
      config::boolean<O>("flop_schedule", "--flop-schedule", &O::flop_schedule,
                         "run warmup + cosine on the share of --flop-budget spent"),
      config::integer<O>("stop_at", "--stop-at", &O::stop_at, 0, INT64_MAX,
                         "stop (with a checkpoint) at this step; the schedule still spans --steps (0: off)"),
      config::choice<O>("on_nonfinite", "--on-nonfinite", &O::on_nonfinite,
                        config::EnumNames<OnNonfinite>{{{OnNonfinite::stop, "stop"}, {OnNonfinite::skip, "skip"}}},
                        "a NaN/inf loss or gradient norm: stop (error, exit 1) or skip the step (counted)"),
      config::boolean<O>("overwrite", "--overwrite", &O::overwrite,
                         "start over in an --out folder that already holds a run (removes it)"),
      // New options: one row each here (and the member in TrainOptions).
  };
  return t;
}

void validate(const TrainOptions& o, bool check_warmup) {
  config::check_ranges(train_options_table(), o, "train");
  DG_CHECK(o.min_lr <= o.lr, "train: --min-lr {} must be at most --lr {}", o.min_lr, o.lr);
  DG_CHECK(!check_warmup || o.warmup <= o.steps, "train: --warmup {} must be at most --steps {}", o.warmup, o.steps);
  DG_CHECK(!o.flop_schedule || o.flop_budget > 0, "train: --flop-schedule needs a --flop-budget above 0");
}

void check_data(const data::Corpus& corpus, int64_t block) {
  for (data::Split s : {data::Split::train, data::Split::val})
    DG_CHECK(corpus.size(s) >= block + 1,
             "data {}: the {} split has {} bytes, fewer than one window of --block {} plus 1 ({} bytes needed)",
             corpus.source(), s == data::Split::train ? "training" : "validation", corpus.size(s), block, block + 1);
}

Trainer::Trainer(models::LanguageModel& model, const data::Corpus& corpus, TrainOptions opt)
    : model_(model),
      corpus_(corpus),
      o_(std::move(opt)),
      schedule_{o_.lr, o_.min_lr, o_.warmup, o_.steps, o_.flop_schedule ? o_.flop_budget : 0.0},
      data_gen_(o_.seed) {
  validate(o_, /*check_warmup=*/false);
  DG_CHECK(o_.block <= model.block_size(), "train: --block {} exceeds the model's block_size {}", o_.block,
           model.block_size());
  check_data(corpus, o_.block);
  opt_ = std::make_unique<nn::AdamW>(nn::decay_groups(model.parameters(), o_.weight_decay), o_.lr, o_.beta1,
                                     o_.beta2, 1e-8);
  DG_CHECK(!(o_.resume && o_.overwrite), "train: --resume and --overwrite exclude each other");
  prepare_out_dir();
  if (o_.resume) {
    const std::string path = o_.out_dir + "/ckpt.safetensors";
    DG_CHECK(!o_.out_dir.empty() && std::filesystem::exists(path),
             "train: --resume needs a checkpoint at {} (none found)", path.empty() ? "<no --out>" : path);
    load(path);
    truncate_metrics_after(step_);
  }
}

void Trainer::prepare_out_dir() {
  namespace fs = std::filesystem;
  if (o_.out_dir.empty()) return;
  fs::create_directories(o_.out_dir);
  const std::string ckpt = o_.out_dir + "/ckpt.safetensors", metrics = o_.out_dir + "/metrics.jsonl";
  nn::remove_stale_temp_files(ckpt);
  if (o_.resume) return;
  const bool has_run = fs::exists(ckpt) || fs::exists(metrics);
  DG_CHECK(!has_run || o_.overwrite,
           "train: {} already holds a run (ckpt.safetensors or metrics.jsonl); pass --resume to continue it or "
           "--overwrite to start over",
           o_.out_dir);
  for (const char* ours : {"ckpt.safetensors", "metrics.jsonl", "routing.json", "routing.html"})
    fs::remove(o_.out_dir + "/" + ours);
}

// A run killed after logging steps past its last checkpoint would log them
// again after resuming: keep only the lines of steps <= the checkpoint's.
void Trainer::truncate_metrics_after(int64_t step) {
  const std::string path = o_.out_dir + "/metrics.jsonl";
  std::ifstream in(path);
  if (!in) return;
  std::string kept, line;
  while (std::getline(in, line)) {
    nlohmann::json j = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
    if (j.is_discarded() || !j.is_object() || !j.contains("step") || !j["step"].is_number_integer())
      continue;  // a line cut by the kill
    const int64_t s = j["step"].get<int64_t>();
    if (s > step) continue;
    if (s == step && j.value("kind", "") == "eval") logged_eval_step_ = step;
    kept += line + '\n';
  }
  in.close();
  const std::string tmp = path + ".resume";
  std::ofstream(tmp, std::ios::trunc) << kept;
  std::filesystem::rename(tmp, path);
}

bool Trainer::nonfinite_step(double loss, double lm, double gnorm) {
  if (std::isfinite(loss) && std::isfinite(lm) && std::isfinite(gnorm)) return false;
  if (o_.on_nonfinite == OnNonfinite::skip) {
    opt_->zero_grad();
    ++skipped_;
    return true;
  }
  const char* what = !std::isfinite(loss) ? "the loss" : !std::isfinite(lm) ? "the LM loss" : "the gradient norm";
  const double value = !std::isfinite(loss) ? loss : !std::isfinite(lm) ? lm : gnorm;
  std::string first_bad;  // in parameter order
  for (auto& [name, p] : model_.named_parameters())
    if (p.grad().defined() && !nn::all_finite(p.grad())) {
      first_bad = fmt::format("; first non-finite gradient: '{}'", name);
      break;
    }
  throw Error(fmt::format("train: step {}: {} is {} (diverged{}); stopped, the last good checkpoint {} is kept "
                          "(--on-nonfinite skip skips such steps instead)",
                          step_ + 1, what, value, first_bad,
                          o_.out_dir.empty() ? "<no --out>" : o_.out_dir + "/ckpt.safetensors"));
}

void Trainer::write_metrics(const std::string& line) const {
  if (o_.out_dir.empty()) return;
  std::ofstream f(o_.out_dir + "/metrics.jsonl", std::ios::app);
  f << line << '\n';
}

EvalResult Trainer::evaluate_now() { return evaluate(model_, corpus_, o_.batch, o_.block, o_.eval_batches); }

void Trainer::save(const std::string& path) const {
  nn::Metadata meta = {{"model_kind", model_.kind()},
                       {"model_config", model_.config_json()},
                       {"train_flops", fmt::format("{:.17g}", train_flops_)},
                       {"data_source", corpus_.source()}};
  nn::put_generator(meta, "rng.data", data_gen_);
  nn::put_generator(meta, "rng.default", default_generator());
  nn::save_checkpoint(path, model_, opt_.get(), step_, meta);
}

void Trainer::load(const std::string& path) {
  nn::Metadata meta =
      nn::load_checkpoint(path, model_, opt_.get(), {{"model_kind", model_.kind()}, {"model_config", model_.config_json()}});
  step_ = std::stoll(meta.at("step"));
  train_flops_ = meta.count("train_flops") ? std::stod(meta.at("train_flops")) : 0.0;
  nn::get_generator(meta, "rng.data", data_gen_, path);
  nn::get_generator(meta, "rng.default", default_generator(), path);
}

void Trainer::run(const StepFn& on_step, const EvalFn& on_eval) {
  const auto t0 = std::chrono::steady_clock::now();
  const double tokens = static_cast<double>(o_.batch * o_.block);
  auto do_eval = [&] {
    last_eval_ = {step_, evaluate_now(), train_flops_};
    nlohmann::json j = eval_json(last_eval_.val);
    j["step"] = step_, j["train_flops"] = train_flops_, j["kind"] = "eval";
    if (step_ != logged_eval_step_) write_metrics(j.dump());
    if (on_eval) on_eval(last_eval_);
    DG_CHECK(std::isfinite(last_eval_.val.loss),
             "train: step {}: the validation loss is {} (the weights diverged); stopped, the last good checkpoint {} "
             "is kept",
             step_, last_eval_.val.loss, o_.out_dir.empty() ? "<no --out>" : o_.out_dir + "/ckpt.safetensors");
    if (!o_.out_dir.empty()) save(o_.out_dir + "/ckpt.safetensors");
  };
  double busy_s = 0;  // time in training steps (evaluation excluded)
  int64_t run_steps = 0;
  const int64_t end = o_.flop_schedule ? 4 * o_.steps : o_.steps;
  const int64_t last = o_.stop_at > 0 ? std::min(o_.stop_at, end) : end;
  auto more = [&] { return step_ < last && (o_.flop_budget <= 0 || train_flops_ < o_.flop_budget); };
  while (more()) {
    const auto ts = std::chrono::steady_clock::now();
    model_.train();
    const double lr = schedule_.lr_at(step_, train_flops_);
    opt_->set_lr(lr);
    opt_->zero_grad();
    data::Batch b = corpus_.sample(data::Split::train, o_.batch, o_.block, data_gen_);
    const Device device = models::device_of(model_);  // batches are made on the host, then moved
    models::LossOutput out = model_.loss(to_device(b.x, device), to_device(b.y, device));
    out.objective.backward();
    // The global norm every step (clipping off: an infinite bound, nothing scaled).
    const double gnorm =
        nn::clip_grad_norm(opt_->params(), o_.grad_clip > 0 ? o_.grad_clip : std::numeric_limits<double>::infinity());
    // The step's one read of the loss: objective, LM loss and the model's stats in one copy.
    const models::LossValues values = models::read_values(out);
    const double loss = values.objective, lm = values.lm;
    const bool skip = nonfinite_step(loss, lm, gnorm);
    if (!skip) opt_->step();
    ++step_;
    // Backward costs about twice the forward: 3x forward FLOPs per token.
    train_flops_ += 3.0 * model_.last_forward_flops_per_token() * tokens;
    const double dt = seconds_since(ts);
    busy_s += dt, ++run_steps;
    tokens_per_s_ = tokens * static_cast<double>(run_steps) / busy_s;
    StepLog log{step_,       o_.steps, loss, lm, lr, gnorm, tokens / dt, train_flops_, seconds_since(t0),
                values.stats, skipped_};
    // JSON has no NaN: a skipped step's non-finite values are logged as null.
    auto num = [](double v) { return std::isfinite(v) ? nlohmann::json(v) : nlohmann::json(nullptr); };
    nlohmann::json j = {{"kind", "train"}, {"step", step_},         {"loss", num(loss)},
                        {"lm", num(lm)},    {"lr", lr},              {"grad_norm", num(gnorm)},
                        {"tokens_per_s", log.tokens_per_s},          {"train_flops", train_flops_},
                        {"skipped", skipped_}};
    for (auto& [k, v] : values.stats) j[k] = v;
    write_metrics(j.dump());
    if (on_step) on_step(log);
    if (o_.eval_every > 0 && step_ % o_.eval_every == 0 && more()) do_eval();
  }
  do_eval();
}

}  // namespace dg::train
