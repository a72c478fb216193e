#include "train/trainer.h"

#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "autograd/ops.h"
#include "nn/checkpoint.h"

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

Trainer::Trainer(models::LanguageModel& model, const data::Corpus& corpus, TrainOptions opt)
    : model_(model),
      corpus_(corpus),
      o_(std::move(opt)),
      schedule_{o_.lr, o_.min_lr, o_.warmup, o_.steps, o_.flop_schedule ? o_.flop_budget : 0.0},
      data_gen_(o_.seed) {
  DG_CHECK(o_.steps >= 0 && o_.batch > 0 && o_.block > 0, "train: steps {} batch {} block {} must be positive",
           o_.steps, o_.batch, o_.block);
  DG_CHECK(o_.block <= model.block_size(), "train: --block {} exceeds the model's block_size {}", o_.block,
           model.block_size());
  DG_CHECK(!o_.flop_schedule || o_.flop_budget > 0, "train: a FLOP schedule needs a FLOP budget");
  DG_CHECK(o_.warmup >= 0 && o_.lr > 0 && o_.min_lr >= 0, "train: lr {} / min_lr {} / warmup {} out of range", o_.lr,
           o_.min_lr, o_.warmup);
  opt_ = std::make_unique<nn::AdamW>(nn::decay_groups(model.parameters(), o_.weight_decay), o_.lr, o_.beta1,
                                     o_.beta2, 1e-8);
  if (!o_.out_dir.empty()) std::filesystem::create_directories(o_.out_dir);
  if (o_.resume) {
    const std::string path = o_.out_dir + "/ckpt.safetensors";
    DG_CHECK(!o_.out_dir.empty() && std::filesystem::exists(path),
             "train: --resume needs a checkpoint at {} (none found)", path.empty() ? "<no --out>" : path);
    load(path);
  }
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
    write_metrics(j.dump());
    if (on_eval) on_eval(last_eval_);
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
    models::LossOutput out = model_.loss(b.x, b.y);
    out.objective.backward();
    const double gnorm = o_.grad_clip > 0 ? nn::clip_grad_norm(opt_->params(), o_.grad_clip) : 0.0;
    if (std::isfinite(gnorm)) opt_->step();
    ++step_;
    // Backward costs about twice the forward: 3x forward FLOPs per token.
    train_flops_ += 3.0 * model_.last_forward_flops_per_token() * tokens;
    const double dt = seconds_since(ts);
    busy_s += dt, ++run_steps;
    tokens_per_s_ = tokens * static_cast<double>(run_steps) / busy_s;
    StepLog log{step_, o_.steps, out.objective.item<double>(), out.lm.item<double>(), lr, gnorm,
                tokens / dt, train_flops_, seconds_since(t0), out.stats};
    nlohmann::json j = {{"kind", "train"}, {"step", step_},         {"loss", log.loss},
                        {"lm", log.lm},     {"lr", lr},              {"grad_norm", gnorm},
                        {"tokens_per_s", log.tokens_per_s},          {"train_flops", train_flops_}};
    for (auto& [k, v] : out.stats) j[k] = v;
    write_metrics(j.dump());
    if (on_step) on_step(log);
    if (o_.eval_every > 0 && step_ % o_.eval_every == 0 && more()) do_eval();
  }
  do_eval();
}

}  // namespace dg::train
