// Configs: checkpoints written before the config tables still load (model and
// Trainer resume), the model config is compared key by key on resume, and
// the training options and data are checked before training, with messages
// naming the flag and the allowed range.
#include <filesystem>
#include <nlohmann/json.hpp>

#include "data/text.h"
#include "models/factory.h"
#include "models/gpt.h"
#include "models/mob.h"
#include "models/mod.h"
#include "nn/checkpoint.h"
#include "testing.h"
#include "train/trainer.h"

using namespace dg;
using namespace dg::testing;

namespace {

// Written by train_lm before the config tables (tests/data/legacy/README.md).
std::string legacy(const std::string& kind) { return std::string(DG_TEST_DATA_DIR) + "/legacy/" + kind + "/ckpt.safetensors"; }

data::TextCorpus small_corpus() {
  std::string text;
  for (int i = 0; i < 200; ++i) text += std::to_string(i * 7919 % 1000) + "+" + std::to_string(i) + "=\n";
  return data::TextCorpus::from_string(text, 0.2, "test");
}

// A fresh folder holding a copy of checkpoint `from` as ckpt.safetensors.
std::string run_dir_with(const std::string& from, const std::string& name) {
  const std::string dir = (std::filesystem::temp_directory_path() / ("dg_configs_" + name)).string();
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  std::filesystem::copy_file(from, dir + "/ckpt.safetensors");
  return dir;
}

train::TrainOptions resume_options(const std::string& dir) {
  train::TrainOptions o;
  o.steps = 4, o.batch = 2, o.block = 16, o.warmup = 1, o.eval_every = 0, o.eval_batches = 1;
  o.out_dir = dir, o.resume = true;
  return o;
}

void expect_gpt_part(const models::GPTConfig& g) {
  EXPECT_EQ(g.n_layer, 2);
  EXPECT_EQ(g.n_head, 2);
  EXPECT_EQ(g.n_embd, 16);
  EXPECT_EQ(g.block_size, 16);
  EXPECT_EQ(g.vocab_size, 256);
  EXPECT_EQ(g.seed, 1337u);
  EXPECT_TRUE(g.tied_head);
  EXPECT_EQ(g.dtype, DType::f32);
}

}  // namespace

TEST(LegacyCheckpoint, EachKindLoadsRunsAndReadsItsConfigBack) {
  for (const std::string kind : {"dense", "mod", "mob"}) {
    SCOPED_TRACE(kind);
    auto model = models::load_model(legacy(kind));
    ASSERT_EQ(model->kind(), kind);
    if (auto* g = dynamic_cast<models::GPT*>(model.get())) expect_gpt_part(g->config());
    if (auto* m = dynamic_cast<models::MoD*>(model.get())) {
      expect_gpt_part(m->mod_config().gpt);
      EXPECT_EQ(m->mod_config().capacity, 0.125);
      EXPECT_EQ(m->mod_config().mod_every, 2);
      EXPECT_EQ(m->mod_config().causal, models::CausalMethod::both);
      EXPECT_EQ(m->mod_config().router_weight, models::RouterWeight::raw);
    }
    if (auto* b = dynamic_cast<models::MoB*>(model.get())) {
      expect_gpt_part(b->mob_config().gpt);
      EXPECT_EQ(b->mob_config().n_blocks, 2);
      EXPECT_EQ(b->mob_config().max_depth, 3);
      EXPECT_EQ(b->mob_config().halting, models::Halting::ponder);
      EXPECT_EQ(b->mob_config().gate_init, models::GateInit::dense_path);
      EXPECT_EQ(b->mob_config().prior, 0.3);
      EXPECT_EQ(b->mob_config().kl, 0.01);
    }
    // The config it writes now is the one in the file, key by key.
    const nn::TensorFile f = nn::load_safetensors(legacy(kind));
    EXPECT_EQ(nlohmann::json::parse(model->config_json()), nlohmann::json::parse(f.metadata.at("model_config")));
    model->eval();
    NoGradGuard ng;
    Tensor logits = model->forward(from_vector<int64_t>({49, 43, 50, 61, 51, 10, 52, 43}, {1, 8}));
    EXPECT_EQ(logits.shape(), Shape({1, 8, 256}));
    for (double v : logits.to_vector<double>()) ASSERT_TRUE(std::isfinite(v));
  }
}

TEST(LegacyCheckpoint, TrainerResumesEachKindAndTrainsOn) {
  data::TextCorpus corpus = small_corpus();
  for (const std::string kind : {"dense", "mod", "mob"}) {
    SCOPED_TRACE(kind);
    const nn::TensorFile f = nn::load_safetensors(legacy(kind));
    auto model = models::make_model(kind, f.metadata.at("model_config"));
    train::Trainer trainer(*model, corpus, resume_options(run_dir_with(legacy(kind), kind)));
    EXPECT_EQ(trainer.step(), 3);
    for (auto& [name, t] : model->state_dict())
      EXPECT_EQ(max_abs_diff(t, f.tensors.at("model." + name)), 0.0) << name;
    trainer.run();
    EXPECT_EQ(trainer.step(), 4);
    EXPECT_TRUE(std::isfinite(trainer.last_eval().val.loss));
  }
}

// The model config is compared parsed: key order and spacing do not matter;
// a differing value is named with both sides.
TEST(LegacyCheckpoint, ResumeComparesTheModelConfigKeyByKey) {
  data::TextCorpus corpus = small_corpus();
  const nn::TensorFile f = nn::load_safetensors(legacy("mob"));
  models::MoBConfig c = models::mob_config_from_json(f.metadata.at("model_config"));
  c.prior = 0.5;
  models::MoB other(c);
  EXPECT_DG_ERROR(train::Trainer(other, corpus, resume_options(run_dir_with(legacy("mob"), "mob_prior"))),
                  "model_config differs at key 'prior': 0.3 in the file but 0.5 in this run");

  // The same config spelled with another key order and spacing resumes.
  models::MoB same(models::mob_config_from_json(f.metadata.at("model_config")));
  const std::string dir = run_dir_with(legacy("mob"), "mob_order");
  nn::Metadata meta = f.metadata;
  nlohmann::ordered_json reordered;
  nlohmann::json j = nlohmann::json::parse(meta.at("model_config"));
  for (auto it = j.rbegin(); it != j.rend(); ++it) reordered[it.key()] = it.value();
  meta["model_config"] = reordered.dump(1);
  ASSERT_NE(meta["model_config"], f.metadata.at("model_config"));
  nn::save_safetensors(dir + "/ckpt.safetensors", f.tensors, meta);
  train::Trainer trainer(same, corpus, resume_options(dir));
  EXPECT_EQ(trainer.step(), 3);
}

// A config can no longer ask for more weights than the checkpoint holds.
TEST(LegacyCheckpoint, ConfigAskingForMoreThanTheFileHoldsIsRefusedBeforeAllocating) {
  nn::TensorFile f = nn::load_safetensors(legacy("dense"));
  nlohmann::json j = nlohmann::json::parse(f.metadata.at("model_config"));
  j["n_embd"] = 4096, j["n_head"] = 1;
  f.metadata["model_config"] = j.dump();
  const std::string path = run_dir_with(legacy("dense"), "dense_big") + "/big.safetensors";
  nn::save_safetensors(path, f.tensors, f.metadata);
  EXPECT_DG_ERROR(models::load_model(path), "load_model", "model_config asks for", "weights in the trunk alone");
}

TEST(TrainOptions, RangesAndOrderAreCheckedNamingTheFlag) {
  train::TrainOptions o;
  EXPECT_NO_THROW(train::validate(o));
  auto with = [&](auto set) {
    train::TrainOptions t;
    set(t);
    return t;
  };
  EXPECT_DG_ERROR(train::validate(with([](auto& t) { t.batch = 0; })), "'batch' must be an integer in [1, 1048576], got 0");
  EXPECT_DG_ERROR(train::validate(with([](auto& t) { t.eval_batches = 0; })), "'eval_batches' must be an integer");
  EXPECT_DG_ERROR(train::validate(with([](auto& t) { t.min_lr = 1, t.lr = 0.1; })),
                  "--min-lr 1 must be at most --lr 0.1");
  EXPECT_DG_ERROR(train::validate(with([](auto& t) { t.warmup = 600; })), "--warmup 600 must be at most --steps 500");
  EXPECT_NO_THROW(train::validate(with([](auto& t) { t.warmup = 600; }), /*check_warmup=*/false));
  EXPECT_DG_ERROR(train::validate(with([](auto& t) { t.flop_schedule = true; })), "--flop-schedule needs a --flop-budget");
  EXPECT_DG_ERROR(train::validate(with([](auto& t) { t.weight_decay = -1; })), "'weight_decay' must be a number >= 0");
  // A flag's text goes through the same field: integers are integers.
  const auto& batch = config::field(train::train_options_table(), "batch");
  EXPECT_DG_ERROR(config::set_from_text(batch, o, "0"), "--batch must be an integer in [1, 1048576], got 0");
  EXPECT_DG_ERROR(config::set_from_text(batch, o, "2.5"), "--batch must be an integer", "got 2.5");
  EXPECT_DG_ERROR(config::set_from_text(batch, o, "many"), "--batch must be an integer", "got \"many\"");
  config::set_from_text(batch, o, "7");
  EXPECT_EQ(o.batch, 7);
  // The table round-trips through JSON.
  train::TrainOptions back;
  config::read_json(train::train_options_table(), config::to_json(train::train_options_table(), o), back, "test");
  EXPECT_EQ(config::to_json(train::train_options_table(), back), config::to_json(train::train_options_table(), o));
}

TEST(TrainOptions, DataTooShortForOneWindowIsRefusedBeforeTraining) {
  data::TextCorpus corpus = data::TextCorpus::from_string(std::string(100, 'a'), 0.2, "short");
  EXPECT_NO_THROW(train::check_data(corpus, 19));
  EXPECT_DG_ERROR(train::check_data(corpus, 20), "validation split has 20 bytes", "--block 20 plus 1 (21 bytes");
  models::GPT m({.n_layer = 1, .n_head = 1, .n_embd = 8, .block_size = 32});
  train::TrainOptions o;
  o.block = 32;
  EXPECT_DG_ERROR(train::Trainer(m, corpus, o), "validation split", "--block 32");
}

TEST(MoBConfig, RangesAndCrossFieldChecksNameTheKey) {
  const std::string base = models::to_json(models::MoBConfig{});
  auto with = [&](const std::string& key, nlohmann::json v) {
    nlohmann::json j = nlohmann::json::parse(base);
    j[key] = v;
    return j.dump();
  };
  EXPECT_NO_THROW(models::mob_config_from_json(base));
  EXPECT_DG_ERROR(models::mob_config_from_json(with("kl", -5)), "MoB config: 'kl' must be a number >= 0, got -5");
  EXPECT_DG_ERROR(models::mob_config_from_json(with("prior", 1)), "'prior' must be a number in (0, 1)");
  EXPECT_DG_ERROR(models::mob_config_from_json(with("max_depth", 0)), "'max_depth' must be an integer in [1, 1024]");
  EXPECT_DG_ERROR(models::mob_config_from_json(with("halting", "sometimes")), "'halting' must be one of ponder | bias");
  EXPECT_DG_ERROR(models::mob_config_from_json(with("depth_target", 9)), "depth_target (--depth-target) 9",
                  "max_depth (--max-depth) 6");
  nlohmann::json eps = nlohmann::json::parse(with("explore", "epsilon"));
  eps["explore_param"] = 1.5;
  EXPECT_DG_ERROR(models::mob_config_from_json(eps.dump()), "explore_param (--explore-param)", "[0, 1], got 1.5");
  EXPECT_DG_ERROR(models::mod_config_from_json(models::to_json(models::MoDConfig{}).replace(1, 0, "\"capacity_\":1,")),
                  "MoD config: unknown key 'capacity_'");
}

// The fuzzer's two findings in the config readers (now seeds of fuzz_checkpoint):
// refused with a dg::Error, no float-to-int conversion, no allocation.
TEST(LegacyCheckpoint, FuzzFindingsAreErrors) {
  const std::string dir = std::string(DG_SOURCE_DIR) + "/fuzz/corpus/checkpoint/";
  EXPECT_DG_ERROR(models::load_model(dir + "n_layer_1e300"), "'n_layer' must be an integer in [1, 1024], got 1e+300");
  EXPECT_DG_ERROR(models::load_model(dir + "n_embd_100000"), "model_config asks for", "the file holds 300");
}
