// Training safety: non-finite losses and gradients are caught at the step
// they appear (stop with an error, or skip and count), checkpoints holding
// NaN/inf are never written over a good one and are refused on load, stale
// temporary files of an interrupted save are removed, an output folder that
// holds a run is not silently reused, and a resumed run logs each step once.
#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <limits>
#include <nlohmann/json.hpp>
#include <set>

#include "data/synthetic.h"
#include "models/factory.h"
#include "models/gpt.h"
#include "nn/checkpoint.h"
#include "nn/safetensors.h"
#include "testing.h"
#include "train/trainer.h"

using namespace dg;
namespace fs = std::filesystem;

namespace {

models::GPTConfig tiny_gpt() {
  return {.n_layer = 1, .n_head = 2, .n_embd = 16, .block_size = 16, .vocab_size = 256, .seed = 3};
}

train::TrainOptions tiny_options(const std::string& dir) {
  train::TrainOptions o;
  o.steps = 6, o.batch = 2, o.block = 8, o.warmup = 1, o.eval_every = 2, o.eval_batches = 1, o.out_dir = dir;
  return o;
}

// A fresh empty folder under the test's temporary directory.
std::string fresh_dir(const std::string& name) {
  const std::string dir = (fs::temp_directory_path() / fmt::format("dg_safety_{}_{}", ::getpid(), name)).string();
  fs::remove_all(dir);
  return dir;
}

// A GPT whose training loss is NaN on the chosen training calls (1-based).
class NanOnCalls : public models::GPT {
 public:
  NanOnCalls(const models::GPTConfig& c, std::set<int> calls) : GPT(c), calls_(std::move(calls)) {}
  models::LossOutput loss(const Tensor& idx, const Tensor& targets) override {
    models::LossOutput out = GPT::loss(idx, targets);
    if (is_training() && calls_.count(++n_)) out.objective = out.objective * std::numeric_limits<double>::quiet_NaN();
    return out;
  }

 private:
  std::set<int> calls_;
  int n_ = 0;
};

std::vector<std::vector<double>> snapshot(const nn::Module& m) {
  std::vector<std::vector<double>> out;
  for (auto& [name, p] : m.named_parameters()) out.push_back(to_dtype(p, DType::f64).to_vector<double>());
  return out;
}

std::vector<nlohmann::json> metric_lines(const std::string& dir) {
  std::vector<nlohmann::json> out;
  std::ifstream in(dir + "/metrics.jsonl");
  for (std::string line; std::getline(in, line);) out.push_back(nlohmann::json::parse(line));
  return out;
}

}  // namespace

TEST(Nonfinite, StopThrowsNamingTheStepAndKeepsTheLastCheckpoint) {
  data::SyntheticCorpus corpus(2, 20'000, 4'000);
  const std::string dir = fresh_dir("stop");
  NanOnCalls model(tiny_gpt(), {3});
  train::Trainer trainer(model, corpus, tiny_options(dir));
  try {
    trainer.run();
    FAIL() << "a NaN loss at step 3 did not stop the run";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("step 3: the loss is nan"), std::string::npos) << e.what();
  }
  // The checkpoint of step 2 is the last one and loads.
  models::GPT fresh(tiny_gpt());
  nn::Metadata meta = nn::load_checkpoint(dir + "/ckpt.safetensors", fresh, nullptr);
  EXPECT_EQ(meta.at("step"), "2");
  fs::remove_all(dir);
}

TEST(Nonfinite, GradNormIsCheckedWithClippingOff) {
  data::SyntheticCorpus corpus(2, 20'000, 4'000);
  models::GPT model(tiny_gpt());
  train::TrainOptions o = tiny_options("");
  o.grad_clip = 0;
  train::Trainer trainer(model, corpus, o);
  std::vector<double> norms;
  trainer.run([&](const train::StepLog& s) { norms.push_back(s.grad_norm); });
  ASSERT_EQ(norms.size(), 6u);
  for (double n : norms) EXPECT_GT(n, 0.0);  // the norm is computed, not reported as 0
}

TEST(Nonfinite, SkipDropsTheUpdateAndCountsIt) {
  data::SyntheticCorpus corpus(2, 20'000, 4'000);
  const std::string dir = fresh_dir("skip");
  NanOnCalls model(tiny_gpt(), {2, 4});
  train::TrainOptions o = tiny_options(dir);
  o.on_nonfinite = train::OnNonfinite::skip;
  train::Trainer trainer(model, corpus, o);
  std::vector<std::vector<std::vector<double>>> weights = {snapshot(model)};
  std::map<std::string, Tensor> moments_before_4;
  trainer.run([&](const train::StepLog& s) {
    weights.push_back(snapshot(model));
    if (s.step == 3) moments_before_4 = trainer.optimizer().state_dict();
  });
  EXPECT_EQ(trainer.skipped(), 2);
  EXPECT_EQ(weights[2], weights[1]);  // step 2 skipped: no update (no weight decay either)
  EXPECT_EQ(weights[4], weights[3]);
  EXPECT_NE(weights[3], weights[2]);  // step 3 trained
  std::vector<int64_t> skipped;
  for (auto& j : metric_lines(dir))
    if (j["kind"] == "train") skipped.push_back(j["skipped"].get<int64_t>());
  EXPECT_EQ(skipped, (std::vector<int64_t>{0, 1, 1, 2, 2, 2}));
  fs::remove_all(dir);
}

TEST(Nonfinite, CheckpointWithNanIsNotWrittenAndNotLoaded) {
  const std::string dir = fresh_dir("ckpt");
  fs::create_directories(dir);
  const std::string path = dir + "/ckpt.safetensors";
  models::GPT model(tiny_gpt());
  nn::save_checkpoint(path, model, nullptr, 1);
  std::ifstream before_f(path, std::ios::binary);
  const std::string before((std::istreambuf_iterator<char>(before_f)), {});
  Tensor w = model.named_parameters().at(0).second;
  {
    NoGradGuard ng;
    fill_(w, std::numeric_limits<double>::infinity());
  }
  EXPECT_DG_ERROR(nn::save_checkpoint(path, model, nullptr, 2), "holds NaN or infinity; not written");
  std::ifstream after_f(path, std::ios::binary);
  EXPECT_EQ(std::string((std::istreambuf_iterator<char>(after_f)), {}), before);
  // A hand-made bad file: refused naming file and tensor, loaded when allowed.
  nn::NamedTensors t;
  for (auto& [name, p] : model.state_dict()) t.emplace("model." + name, p);
  nn::save_safetensors(path, t, {{"format", "dyngrad-checkpoint-1"}, {"step", "1"}, {"has_optimizer", "0"},
                                 {"model_kind", model.kind()}, {"model_config", model.config_json()}});
  models::GPT target(tiny_gpt());
  const std::string name = model.named_parameters().at(0).first;
  const std::string want = "tensor 'model." + name + "' holds NaN or infinity";
  EXPECT_DG_ERROR(nn::load_checkpoint(path, target, nullptr), path.c_str(), want.c_str());
  EXPECT_DG_ERROR(models::load_model(path), path.c_str(), want.c_str());
  EXPECT_NO_THROW(nn::load_checkpoint(path, target, nullptr, {}, /*allow_nonfinite=*/true));
  EXPECT_NO_THROW(models::load_model(path, /*allow_nonfinite=*/true));
  fs::remove_all(dir);
}

TEST(CrashSafety, StaleTempFilesOfDeadWritersAreRemovedAndNothingElse) {
  const std::string dir = fresh_dir("tmp");
  fs::create_directories(dir);
  const std::string ckpt = dir + "/ckpt.safetensors";
  const std::string dead = ckpt + ".tmp.999999999.3";  // no such process (above pid_max)
  const std::vector<std::string> kept = {ckpt + ".tmp." + std::to_string(::getpid()) + ".0",  // a live writer
                                         ckpt + ".tmp.abc.1", ckpt + ".tmp.999999999", dir + "/other.tmp.999999999.1",
                                         dir + "/notes.txt"};
  for (const std::string& p : kept) std::ofstream(p) << "x";
  std::ofstream(dead) << "x";
  EXPECT_EQ(nn::remove_stale_temp_files(ckpt), 1);
  EXPECT_FALSE(fs::exists(dead));
  for (const std::string& p : kept) EXPECT_TRUE(fs::exists(p)) << p;
  // A save removes them too, and steps over a name taken by an earlier process with our pid.
  std::ofstream(dead) << "x";
  nn::save_safetensors(ckpt, {{"a", zeros({2})}});
  EXPECT_FALSE(fs::exists(dead));
  EXPECT_TRUE(fs::exists(kept[0]));
  EXPECT_EQ(nn::load_safetensors(ckpt).tensors.size(), 1u);
  fs::remove_all(dir);
}

TEST(CrashSafety, ExistingRunIsRefusedUnlessOverwriteOrResume) {
  data::SyntheticCorpus corpus(2, 20'000, 4'000);
  const std::string dir = fresh_dir("exists");
  {
    models::GPT model(tiny_gpt());
    train::Trainer(model, corpus, tiny_options(dir)).run();
  }
  models::GPT model(tiny_gpt());
  EXPECT_DG_ERROR(train::Trainer(model, corpus, tiny_options(dir)), "already holds a run", "--overwrite");
  train::TrainOptions o = tiny_options(dir);
  o.overwrite = true;
  std::ofstream(dir + "/ckpt.safetensors.tmp.999999999.0") << "x";
  train::Trainer fresh(model, corpus, o);
  EXPECT_FALSE(fs::exists(dir + "/ckpt.safetensors"));
  EXPECT_FALSE(fs::exists(dir + "/metrics.jsonl"));
  EXPECT_FALSE(fs::exists(dir + "/ckpt.safetensors.tmp.999999999.0"));
  fs::remove_all(dir);
}

TEST(CrashSafety, ResumeLogsEveryStepOnce) {
  data::SyntheticCorpus corpus(2, 20'000, 4'000);
  const std::string dir = fresh_dir("once");
  train::TrainOptions o = tiny_options(dir);
  o.steps = 15, o.eval_every = 5, o.stop_at = 10;
  {
    models::GPT model(tiny_gpt());
    train::Trainer(model, corpus, o).run();
  }
  // A run killed after logging steps 11..13 (and a half-written line) past its checkpoint at 10.
  {
    std::ofstream m(dir + "/metrics.jsonl", std::ios::app);
    for (int s = 11; s <= 13; ++s) m << nlohmann::json{{"kind", "train"}, {"step", s}, {"loss", 1.0}}.dump() << '\n';
    m << "{\"kind\": \"tra";
  }
  o.stop_at = 0, o.resume = true;
  models::GPT model(tiny_gpt());
  train::Trainer(model, corpus, o).run();
  std::vector<int64_t> train_steps, eval_steps;
  for (auto& j : metric_lines(dir))
    (j["kind"] == "train" ? train_steps : eval_steps).push_back(j["step"].get<int64_t>());
  std::vector<int64_t> want(15);
  for (int i = 0; i < 15; ++i) want[i] = i + 1;
  EXPECT_EQ(train_steps, want);
  EXPECT_EQ(eval_steps, (std::vector<int64_t>{5, 10, 15}));
  fs::remove_all(dir);
}
