// The training package's pieces that need no long run: the learning-rate
// schedule, run specs of the comparison driver, model kinds registered by a
// program, and one tiny equal-FLOP comparison including such a kind.
#include <cmath>
#include <filesystem>
#include <fstream>
#include <sstream>
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

TEST(Compare, ParseRunsKeepsTheOrderAndNamesABadSpec) {
  std::vector<train::RunSpec> runs =
      train::parse_runs({"dense", "half=dense:n_layer=1", "wet=dense:dropout=0.5"}, base_config);
  ASSERT_EQ(runs.size(), 3u);
  EXPECT_EQ(runs[0].name, "dense");
  EXPECT_EQ(runs[1].name, "half");
  EXPECT_EQ(nlohmann::json::parse(runs[1].config)["n_layer"], 1);
  EXPECT_EQ(runs[2].name, "wet");
  EXPECT_EQ(nlohmann::json::parse(runs[2].config)["dropout"], 0.5);
  EXPECT_TRUE(train::parse_runs({}, base_config).empty());
  EXPECT_DG_ERROR(train::parse_runs({"dense", "x=dense:nope=1"}, base_config), "--run 'x=dense:nope=1'", "nope");
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

// ---------------------------------------------------------------- seeds and noise
namespace {

// A hand-made row of one seed.
train::RunResult seed_row(const std::string& run, const std::string& kind, double val_loss, double budget = 1e9) {
  train::RunResult r;
  r.run = run, r.kind = kind, r.config = "{}", r.budget = budget, r.val_loss = val_loss;
  return r;
}

// A hand-made row of n seeds with the given mean and sample sd.
train::RunResult seeds_row(const std::string& run, const std::string& kind, double mean, double sd, int64_t n,
                           double budget = 1e9) {
  train::RunResult r = seed_row(run, kind, mean, budget);
  r.seeds = n, r.val_loss_sd = sd;
  return r;
}

}  // namespace

TEST(CompareSeeds, AggregateIsMeanAndSampleSd) {
  std::vector<train::RunResult> seeds = {seed_row("mob", "mob", 1.0), seed_row("mob", "mob", 1.2),
                                         seed_row("mob", "mob", 1.7)};
  const std::vector<double> acc = {0.1, 0.2, 0.6}, depth = {2.0, 3.0, 4.0};
  const std::vector<int64_t> steps = {10, 11, 13};
  for (size_t i = 0; i < 3; ++i) {
    seeds[i].answer_accuracy = acc[i], seeds[i].mean_depth = depth[i], seeds[i].steps = steps[i];
    seeds[i].seed = 7 + i;
    seeds[i].depth_by_level = {depth[i], NAN, 1.0 + static_cast<double>(i), 5.0};
  }
  train::RunResult r = train::aggregate_seeds(seeds);
  EXPECT_EQ(r.seeds, 3);
  EXPECT_EQ(r.seed, 7u);
  EXPECT_EQ(r.per_seed.size(), 3u);
  EXPECT_NEAR(r.val_loss, 1.3, 1e-12);
  // Sample sd (n - 1): deviations -0.3, -0.1, 0.4 -> sqrt(0.26 / 2).
  EXPECT_NEAR(r.val_loss_sd, std::sqrt(0.13), 1e-12);
  EXPECT_NEAR(r.answer_accuracy, 0.3, 1e-12);
  EXPECT_NEAR(r.answer_accuracy_sd, std::sqrt(0.14 / 2), 1e-12);
  EXPECT_NEAR(r.mean_depth_sd, 1.0, 1e-12);
  EXPECT_EQ(r.steps, 11);  // 34 / 3 rounded
  ASSERT_EQ(r.depth_by_level.size(), 4u);
  EXPECT_NEAR(r.depth_by_level[0], 3.0, 1e-12);
  EXPECT_TRUE(std::isnan(r.depth_by_level[1]));  // no seed had tokens of that level
  EXPECT_NEAR(r.depth_by_level[2], 2.0, 1e-12);
  EXPECT_TRUE(std::isnan(r.val_loss_causal));    // NAN in every seed stays NAN
  // One seed: its own row, no sd.
  train::RunResult one = train::aggregate_seeds({seeds[0]});
  EXPECT_EQ(one.seeds, 1);
  EXPECT_TRUE(std::isnan(one.val_loss_sd));
  EXPECT_TRUE(one.per_seed.empty());
  seeds[1].run = "other";
  EXPECT_DG_ERROR(train::aggregate_seeds(seeds), "different runs");
}

// Welch: se = sqrt(sd_a^2/n_a + sd_b^2/n_b); marked when |diff| > 2 se. With
// sd 0.03 over 3 seeds on both sides, 2 se = 2 * 0.03 * sqrt(2/3) = 0.04899.
TEST(CompareSeeds, DifferencesAreMarkedOnlyBeyondTwoStandardErrors) {
  const double sd = 0.03, two_se = 2 * sd * std::sqrt(2.0 / 3.0);
  std::vector<train::RunResult> rows = {
      seeds_row("dense-4", "dense", 2.00, sd, 3), seeds_row("dense-2", "dense", 2.10, sd, 3),
      seeds_row("mob", "mob", 2.00 - 0.0495, sd, 3),   // just beyond: better than dense, marked
      seeds_row("mod", "mod", 2.00 + 0.0485, sd, 3),   // just inside: not marked
      seeds_row("noisy", "mob", 1.90, 0.2, 3),         // a larger gap, but a noisier run
      seeds_row("mob", "mob", 1.50, sd, 3, 2e9),       // another budget, without a dense run
  };
  train::mark_noise(rows);
  EXPECT_EQ(rows[0].vs_run, "dense-4");
  EXPECT_FALSE(rows[0].beyond_noise);  // the reference itself
  EXPECT_TRUE(rows[1].beyond_noise);
  EXPECT_NEAR(rows[1].vs_dense, 0.10, 1e-12);
  EXPECT_NEAR(rows[2].vs_dense_se * 2, two_se, 1e-12);
  EXPECT_TRUE(rows[2].beyond_noise);
  EXPECT_FALSE(rows[3].beyond_noise);
  EXPECT_NEAR(rows[4].vs_dense_se, std::sqrt(0.04 / 3 + 0.0009 / 3), 1e-12);
  EXPECT_FALSE(rows[4].beyond_noise);  // 0.10 < 2 * 0.1167
  EXPECT_TRUE(rows[5].vs_run.empty());
  EXPECT_TRUE(std::isnan(rows[5].vs_dense));
  const std::string table = train::results_table(rows);
  EXPECT_NE(table.find("| mob | 0.00M | 0 | 0 | 0.000 | 1.9505 ± 0.0300 | -0.0495 ± 0.0245 * |"), std::string::npos)
      << table;
  EXPECT_NE(table.find("| mod | 0.00M | 0 | 0 | 0.000 | 2.0485 ± 0.0300 | +0.0485 ± 0.0245 |"), std::string::npos)
      << table;
  EXPECT_NE(table.find("| best dense |"), std::string::npos) << table;
  EXPECT_NE(table.find("|diff| > 2 standard errors"), std::string::npos) << table;
  EXPECT_NE(table.find("### budget 2e+09 training FLOPs"), std::string::npos) << table;
  EXPECT_NE(table.find("No dense run at this budget"), std::string::npos) << table;
  // The JSON lines carry the same marks.
  std::istringstream lines(train::summary_jsonl(rows));
  std::vector<nlohmann::json> js;
  for (std::string line; std::getline(lines, line);) js.push_back(nlohmann::json::parse(line));
  ASSERT_EQ(js.size(), rows.size());
  EXPECT_EQ(js[2]["vs_run"], "dense-4");
  EXPECT_EQ(js[2]["beyond_noise"], true);
  EXPECT_EQ(js[3]["beyond_noise"], false);
  EXPECT_NEAR(js[2]["vs_dense_se"].get<double>(), two_se / 2, 1e-12);
  EXPECT_TRUE(js[5]["vs_run"].is_null());
}

TEST(CompareSeeds, OneSeedMarksNothingAndSaysTheNoiseIsUnknown) {
  std::vector<train::RunResult> rows = {seed_row("dense", "dense", 2.0), seed_row("mob", "mob", 1.0)};
  train::mark_noise(rows);
  EXPECT_NEAR(rows[1].vs_dense, -1.0, 1e-12);
  EXPECT_TRUE(std::isnan(rows[1].vs_dense_se));
  EXPECT_FALSE(rows[1].beyond_noise);  // a whole nat, but one seed: unknown noise
  const std::string table = train::results_table(rows);
  EXPECT_NE(table.find("| -1.0000 |"), std::string::npos) << table;
  EXPECT_EQ(table.find('*'), std::string::npos) << table;
  EXPECT_EQ(table.find(" ± "), std::string::npos) << table;
  EXPECT_NE(table.find("the noise is unknown"), std::string::npos) << table;
}

TEST(CompareSeeds, BadSeedsAndBudgetsAreRefusedNamingTheFlag) {
  EXPECT_EQ(train::parse_budgets("1e12,2.5e12,4000"), (std::vector<double>{1e12, 2.5e12, 4000}));
  EXPECT_DG_ERROR(train::parse_budgets("1e12,,2e12"), "--budgets '1e12,,2e12': item 2 is empty", "e.g. 1e12,2e12");
  EXPECT_DG_ERROR(train::parse_budgets("1e12,"), "item 2 is empty");
  EXPECT_DG_ERROR(train::parse_budgets(""), "--budgets is empty", "positive training-FLOP counts");
  EXPECT_DG_ERROR(train::parse_budgets("1e12,lots"), "item 2 'lots' is not a positive number");
  EXPECT_DG_ERROR(train::parse_budgets("1e12x"), "item 1 '1e12x' is not a positive number");
  EXPECT_DG_ERROR(train::parse_budgets("0"), "item 1 '0' is not a positive number");
  EXPECT_DG_ERROR(train::parse_budgets("-1e12"), "item 1 '-1e12' is not a positive number");
  EXPECT_DG_ERROR(train::parse_budgets("inf"), "item 1 'inf' is not a positive number");
  train::CompareOptions o;
  o.seeds = 0;
  EXPECT_DG_ERROR(train::validate(o), "--seeds must be an integer in [1, 1000], got 0");
  o.seeds = 2, o.budgets = {1e12}, o.budget = 5e11;
  EXPECT_DG_ERROR(train::validate(o), "--budgets and --budget exclude each other");
  o.budget = 0, o.match = train::Match::steps;
  EXPECT_DG_ERROR(train::validate(o), "--budgets needs --match flops");
  o.match = train::Match::flops, o.budgets = {1e12, -1};
  EXPECT_DG_ERROR(train::validate(o), "every budget must be a positive number", "got -1");
  // compare_runs checks them before anything trains (no folder is made).
  data::SyntheticCorpus corpus(2, 20'000, 4'000);
  o.out = (std::filesystem::temp_directory_path() / "dg_test_compare_refused").string();
  std::filesystem::remove_all(o.out);
  EXPECT_DG_ERROR(train::compare_runs({train::parse_run("dense", base_config)}, corpus, o), "--budgets");
  EXPECT_FALSE(std::filesystem::exists(o.out));
  // A config its kind refuses (checks across fields) stops the comparison before the first run trains.
  o.budgets.clear();
  const std::vector<train::RunSpec> runs = {train::parse_run("dense", base_config),
                                            train::parse_run("h=dense:n_head=3", base_config)};
  EXPECT_DG_ERROR(train::compare_runs(runs, corpus, o),
                  "--run 'h'", "n_head (--heads) 3 must divide n_embd (--embd) 16");
  EXPECT_FALSE(std::filesystem::exists(o.out));
}
