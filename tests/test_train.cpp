// The training package's pieces that need no long run: the learning-rate
// schedule, run specs of the comparison driver, model kinds registered by a
// program, and one tiny equal-FLOP comparison including such a kind.
#include <cmath>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "data/synthetic.h"
#include "models/factory.h"
#include "models/gpt.h"
#include "nn/optim.h"
#include "testing.h"
#include "train/compare.h"
#include "train/schedule.h"

using namespace dg;

namespace {

models::GPTConfig tiny_gpt(int64_t layers) {
  return {.n_layer = layers, .n_head = 2, .n_embd = 16, .block_size = 16, .vocab_size = 256, .seed = 3};
}

std::string base_config(const std::string& kind) {
  DG_CHECK(kind == "dense" || kind == "wide", "base_config: no kind {}", kind);
  return models::to_json(tiny_gpt(2));
}

// A kind of the test's own: a dense GPT built with twice the layers asked for.
void register_wide() {
  models::register_model_kind("wide", [](const std::string& json) {
    models::GPTConfig c = models::gpt_config_from_json(json);
    c.n_layer *= 2;
    return std::make_unique<models::GPT>(c);
  });
}

}  // namespace

TEST(Schedule, StepsAndFlopShare) {
  train::Schedule s{.lr = 1e-2, .min_lr = 1e-3, .warmup = 10, .steps = 100};
  for (int64_t step : {0, 5, 10, 50, 99, 100})
    EXPECT_EQ(s.lr_at(step, 1e9), nn::warmup_cosine_lr(step, 10, 100, 1e-2, 1e-3)) << step;
  // On a budget, the FLOPs spent decide, whatever the step.
  s.flop_budget = 1000;
  EXPECT_EQ(s.lr_at(7, 500), nn::warmup_cosine_lr(50'000, 10'000, 100'000, 1e-2, 1e-3));
  EXPECT_EQ(s.lr_at(0, 2000), 1e-3);  // past the budget: the end of the decay
  EXPECT_LT(s.lr_at(0, 10), s.lr_at(0, 100));  // still warming up at 1 % of the budget
}

TEST(Compare, ParseRunOverridesFieldsWithTheirTypes) {
  train::RunSpec r = train::parse_run("half=dense:n_layer=1,dropout=0.25,tied_head=false", base_config);
  EXPECT_EQ(r.name, "half");
  EXPECT_EQ(r.kind, "dense");
  nlohmann::json j = nlohmann::json::parse(r.config);
  EXPECT_EQ(j["n_layer"], 1);
  EXPECT_EQ(j["dropout"], 0.25);
  EXPECT_EQ(j["tied_head"], false);
  EXPECT_EQ(train::parse_run("dense", base_config).name, "dense");
  EXPECT_DG_ERROR(train::parse_run("x=dense:nope=1", base_config), "no config field 'nope'", "n_layer");
  EXPECT_DG_ERROR(train::parse_run("x=dense:n_layer=1.5", base_config), "bad value '1.5'", "n_layer");
  EXPECT_DG_ERROR(train::parse_run("x=unknown", base_config), "unknown kind 'unknown'", "dense, mod, mob");
  EXPECT_DG_ERROR(train::parse_run("a/b=dense", base_config), "folder name");
}

TEST(Compare, RegisteredKindIsBuiltByName) {
  register_wide();
  EXPECT_TRUE(models::is_model_kind("wide"));
  EXPECT_EQ(models::model_kinds().back(), "wide");
  auto m = models::make_model("wide", models::to_json(tiny_gpt(1)));
  EXPECT_EQ(dynamic_cast<models::GPT&>(*m).config().n_layer, 2);
  EXPECT_DG_ERROR(models::make_model("nothing", "{}"), "unknown model kind 'nothing'", "wide");
  EXPECT_EQ(train::parse_run("w=wide", base_config).kind, "wide");
}

// Two runs, the second of a registered kind with twice the layers: equal
// budgets, so it takes fewer steps in proportion; the files hold the rows.
TEST(Compare, EqualFlopsAcrossKindsIncludingARegisteredOne) {
  register_wide();
  data::SyntheticCorpus corpus(2, 20'000, 4'000);
  train::CompareOptions o;
  o.out = (std::filesystem::temp_directory_path() / "dg_test_compare").string();
  std::filesystem::remove_all(o.out);
  o.steps = 8, o.batch = 2, o.block = 16, o.warmup = 2, o.evals = 2, o.eval_batches = 1, o.print_progress = false;
  std::vector<train::RunSpec> runs = {train::parse_run("dense", base_config), train::parse_run("w=wide", base_config)};
  std::vector<train::RunResult> rows = train::compare_runs(runs, corpus, o);
  ASSERT_EQ(rows.size(), 2u);
  EXPECT_EQ(rows[0].steps, 8);
  const double wide_over_dense = models::dense_flops_per_token(4, 16, 256, 16) / models::dense_flops_per_token(2, 16, 256, 16);
  EXPECT_DOUBLE_EQ(rows[1].flops_per_token / rows[0].flops_per_token, wide_over_dense);
  EXPECT_NEAR(static_cast<double>(rows[1].steps), 8.0 / wide_over_dense, 1.0);
  for (const train::RunResult& r : rows) {
    EXPECT_GT(r.val_loss, 0.0);
    EXPECT_LE(r.train_flops, rows[0].train_flops + r.train_flops / static_cast<double>(r.steps) * 1.0001) << r.run;
    EXPECT_TRUE(std::isnan(r.mean_depth));
  }
  std::ifstream summary(o.out + "/summary.jsonl");
  std::string line;
  int n = 0;
  while (std::getline(summary, line)) {
    nlohmann::json j = nlohmann::json::parse(line);
    EXPECT_EQ(j["run"], rows[n].run);
    EXPECT_EQ(j["steps"], rows[n].steps);
    EXPECT_TRUE(j["mean_depth"].is_null());
    ++n;
  }
  EXPECT_EQ(n, 2);
  const std::string table = train::results_table(rows);
  EXPECT_NE(table.find("| dense |"), std::string::npos) << table;
  EXPECT_NE(table.find("| w |"), std::string::npos) << table;
  EXPECT_TRUE(std::filesystem::exists(o.out + "/w/metrics.jsonl"));
  std::filesystem::remove_all(o.out);
}
