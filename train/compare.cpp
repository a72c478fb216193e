#include "train/compare.h"

#include <fmt/ranges.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "models/factory.h"
#include "models/mod.h"
#include "models/mor.h"
#include "models/trace.h"
#include "models/trace_page.h"
#include "train/evaluate.h"
#include "train/trainer.h"

namespace dg::train {

// ---------------------------------------------------------------- run specs
namespace {

// Sets field `key` of the config j (it must exist) to `value`, parsed as the
// field's current JSON type.
void override_field(nlohmann::json& j, const std::string& key, const std::string& value, const std::string& spec,
                    const std::string& kind) {
  if (!j.contains(key)) {
    std::vector<std::string> keys;
    for (auto& [k, v] : j.items()) keys.push_back(k);
    throw Error(fmt::format("--run '{}': {} has no config field '{}' (fields: {})", spec, kind, key,
                            fmt::join(keys, ", ")));
  }
  try {
    nlohmann::json& field = j[key];
    if (field.is_boolean()) {
      DG_CHECK(value == "true" || value == "false", "not true/false");
      field = value == "true";
    } else if (field.is_number_integer() || field.is_number_unsigned()) {
      size_t used = 0;
      const long long v = std::stoll(value, &used);
      DG_CHECK(used == value.size(), "not an integer");
      field = v;
    } else if (field.is_number()) {
      size_t used = 0;
      const double v = std::stod(value, &used);
      DG_CHECK(used == value.size(), "not a number");
      field = v;
    } else {
      field = value;
    }
  } catch (const std::exception&) {
    throw Error(fmt::format("--run '{}': bad value '{}' for {} (now {})", spec, value, key, j[key].dump()));
  }
}

}  // namespace

RunSpec parse_run(const std::string& spec, const BaseConfig& base) {
  if (models::is_model_kind(spec)) return parse_run(spec + "=" + spec, base);
  const size_t eq = spec.find('='), colon = spec.find(':');
  DG_CHECK(eq != std::string::npos && eq > 0 && (colon == std::string::npos || eq < colon),
           "--run '{}': expected NAME=KIND[:KEY=VALUE,...]", spec);
  RunSpec r;
  r.name = spec.substr(0, eq);
  DG_CHECK(r.name.find_first_of("/\\ ") == std::string::npos && r.name != "." && r.name != "..",
           "--run '{}': the name '{}' must be usable as a folder name", spec, r.name);
  r.kind = spec.substr(eq + 1, colon == std::string::npos ? std::string::npos : colon - eq - 1);
  DG_CHECK(models::is_model_kind(r.kind), "--run '{}': unknown kind '{}' ({})", spec, r.kind,
           fmt::join(models::model_kinds(), ", "));
  nlohmann::json j = nlohmann::json::parse(base(r.kind));
  std::string rest = colon == std::string::npos ? "" : spec.substr(colon + 1);
  while (!rest.empty()) {
    const size_t comma = rest.find(',');
    const std::string kv = rest.substr(0, comma);
    rest = comma == std::string::npos ? "" : rest.substr(comma + 1);
    const size_t e = kv.find('=');
    DG_CHECK(e != std::string::npos && e > 0, "--run '{}': '{}' is not KEY=VALUE", spec, kv);
    override_field(j, kv.substr(0, e), kv.substr(e + 1), spec, r.kind);
  }
  r.config = j.dump();
  return r;
}

std::vector<RunSpec> parse_runs(const std::vector<std::string>& specs, const BaseConfig& base) {
  std::vector<RunSpec> runs;
  for (const std::string& spec : specs) runs.push_back(parse_run(spec, base));
  return runs;
}

// ---------------------------------------------------------------- runs
namespace {

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

// Forward FLOPs per token of the model on one batch, in training mode.
double probe_flops(models::LanguageModel& model, const data::Corpus& corpus, int64_t B, int64_t T) {
  NoGradGuard ng;
  model.train();
  data::Batch b = corpus.eval_batch(0, B, T, data::Split::train);
  const Device device = models::device_of(model);
  model.loss(to_device(b.x, device), to_device(b.y, device));
  return model.last_forward_flops_per_token();
}

// MoD: loss and routed share with causal routing, and the predictor's
// accuracy (top-k mode) over the evaluation windows.
void evaluate_mod(models::MoD& mod, const data::Corpus& corpus, const CompareOptions& o, int64_t windows,
                  RunResult& r) {
  mod.set_routing(models::MoDRouting::causal);
  r.val_loss_causal = evaluate(mod, corpus, o.batch, o.block, o.eval_batches).loss;
  double frac = 0;
  for (double x : mod.last_stats().fraction) frac += x / static_cast<double>(mod.last_stats().fraction.size());
  r.routed_fraction_causal = frac;
  mod.set_routing(models::MoDRouting::topk);
  NoGradGuard ng;
  mod.eval();
  double acc = 0;
  int64_t n = 0;
  for (int64_t i = 0; i < windows; ++i) {
    mod.forward(to_device(corpus.eval_batch(i, o.batch, o.block).x, models::device_of(mod)));
    for (const Tensor& a : mod.last_stats().predictor_accuracy) acc += a.item<double>(), ++n;
  }
  if (n > 0) r.predictor_accuracy = acc / static_cast<double>(n);
}

// MoR with the expert-choice router: validation loss with causal routing (a
// token goes on while its router says so, as in decoding). Token-choice
// routing is causal already.
void evaluate_mor(models::MoR& mor, const data::Corpus& corpus, const CompareOptions& o, RunResult& r) {
  if (mor.mor_config().router != models::MoRRouter::expert) return;
  mor.set_routing(models::MoRRouting::causal);
  r.val_loss_causal = evaluate(mor, corpus, o.batch, o.block, o.eval_batches).loss;
  mor.set_routing(models::MoRRouting::topk);
}

// Models with a routing trace (MoB, and any kind whose last_routing_trace()
// is not null): mean depth, depth histogram and depth by answer level over
// the evaluation windows, and the trace of the first one (dir/routing.json).
// Returns false, touching nothing, when the model keeps no trace.
bool evaluate_depth(models::LanguageModel& model, const data::Corpus& corpus, const CompareOptions& o,
                    int64_t windows, const std::string& dir, RunResult& r) {
  NoGradGuard ng;
  model.eval();
  std::vector<double> hist, level_sum(5, 0.0), level_n(5, 0.0);
  double total = 0, depth_sum = 0;
  for (int64_t i = 0; i < windows; ++i) {
    data::Batch b = corpus.eval_batch(i, o.batch, o.block);
    model.forward(to_device(b.x, models::device_of(model)));
    const models::RoutingTrace* tr = model.last_routing_trace();
    if (tr == nullptr) return false;
    hist.resize(std::max(hist.size(), static_cast<size_t>(tr->max_depth) + 1), 0.0);
    std::vector<int64_t> levels = b.answer_level.to_vector<int64_t>();
    for (int64_t t = 0; t < tr->B * tr->T; ++t) {
      const int64_t depth = tr->depth(t);
      const auto d = static_cast<double>(depth);
      hist.resize(std::max(hist.size(), static_cast<size_t>(depth) + 1), 0.0);
      hist[static_cast<size_t>(depth)] += 1, depth_sum += d, total += 1;
      // The depth spent on an answer byte is that of the token predicting it.
      const int64_t lv = levels[static_cast<size_t>(t)];
      if (lv >= 1 && lv <= 4) level_sum[static_cast<size_t>(lv)] += d, level_n[static_cast<size_t>(lv)] += 1;
    }
    if (i == 0) {
      std::string text = corpus.bytes(data::Split::val).substr(0, static_cast<size_t>(o.block));
      std::ofstream(dir + "/routing.json") << tr->to_json(text, levels);
      std::ofstream(dir + "/routing.html")
          << models::trace_page_html(*tr, text, levels, model.kind() + " routing: " + dir);
    }
  }
  r.mean_depth = depth_sum / std::max(total, 1.0);
  for (double& h : hist) h /= std::max(total, 1.0);
  r.depth_histogram = hist;
  for (size_t lv = 1; lv <= 4; ++lv) r.depth_by_level.push_back(level_n[lv] > 0 ? level_sum[lv] / level_n[lv] : NAN);
  return true;
}

TrainOptions train_options(const CompareOptions& o, int64_t steps, double budget, uint64_t seed,
                           const std::string& dir) {
  TrainOptions t;
  t.steps = steps, t.batch = o.batch, t.block = o.block, t.lr = o.lr, t.min_lr = o.min_lr;
  t.warmup = std::min(o.warmup, steps / 4), t.weight_decay = o.weight_decay, t.grad_clip = o.grad_clip;
  t.eval_every = std::max<int64_t>(1, steps / o.evals), t.eval_batches = o.eval_batches, t.seed = seed;
  t.out_dir = dir, t.flop_budget = o.match == Match::flops ? budget : 0.0, t.flop_schedule = o.match == Match::flops;
  t.overwrite = true;  // a comparison reruns every run from scratch into its folder
  return t;
}

// The config of seed i: its "seed" field (the initial weights), where it has
// one, moved on by i.
std::string config_of_seed(const std::string& config, int64_t i) {
  nlohmann::json j = nlohmann::json::parse(config);
  auto it = j.find("seed");
  if (i == 0 || it == j.end() || !it->is_number_unsigned()) return config;
  *it = it->get<uint64_t>() + static_cast<uint64_t>(i);
  return j.dump();
}

// "1e+12" -> "1e12": a budget as a folder name.
std::string budget_label(double b) {
  std::string s = fmt::format("{:.3g}", b);
  const size_t e = s.find('e');
  if (e == std::string::npos) return s;
  std::string exponent = s.substr(e + 1);
  const bool negative = exponent[0] == '-';
  exponent.erase(0, exponent.find_first_not_of("+-0"));
  return s.substr(0, e) + "e" + (negative ? "-" : "") + (exponent.empty() ? "0" : exponent);
}

// One training of run s with seed index i into out/<rel>, at `budget` (0:
// set here to what this run spends in o.steps steps).
RunResult train_once(const RunSpec& s, int64_t i, const std::string& rel, double& budget, const data::Corpus& corpus,
                     const CompareOptions& o, int64_t windows) {
  const std::string config = config_of_seed(s.config, i);
  const uint64_t seed = o.seed + static_cast<uint64_t>(i);
  auto model = models::make_model(s.kind, config);
  model->to(o.device);
  const double probe = probe_flops(*model, corpus, o.batch, o.block);
  const double step_flops = 3.0 * probe * static_cast<double>(o.batch * o.block);
  if (budget <= 0 && o.match == Match::flops) budget = step_flops * static_cast<double>(o.steps);
  const int64_t steps =
      o.match == Match::steps ? o.steps : std::max<int64_t>(1, std::llround(budget / step_flops));
  const std::string dir = o.out + "/" + rel;
  std::filesystem::create_directories(dir);
  std::filesystem::remove(dir + "/metrics.jsonl");
  std::filesystem::remove(dir + "/routing.json");
  std::filesystem::remove(dir + "/routing.html");
  if (o.print_progress) {
    fmt::print("\n== {} ({}{}): {:.2f}M parameters, {:.3f} MFLOP/token at init, {} steps{}\n", s.name, s.kind,
               o.seeds > 1 ? fmt::format(", seed {}", seed) : "", static_cast<double>(model->num_parameters()) / 1e6,
               probe / 1e6, steps,
               o.match == Match::flops ? fmt::format(" (estimated; budget {:.3g} FLOPs)", budget) : "");
    std::fflush(stdout);
  }
  const auto t0 = std::chrono::steady_clock::now();
  Trainer trainer(*model, corpus, train_options(o, steps, budget, seed, dir));
  trainer.run({}, [&](const EvalLog& e) {
    if (!o.print_progress) return;
    fmt::print("  step {:>5}  val loss {:.4f}  {:.3f} MFLOP/token  train {:.3g} FLOPs\n", e.step, e.val.loss,
               e.val.flops_per_token / 1e6, e.train_flops);
    std::fflush(stdout);
  });
  RunResult r;
  r.wall_s = seconds_since(t0);
  const EvalResult& v = trainer.last_eval().val;
  r.run = s.name, r.kind = s.kind, r.config = config, r.dir = rel, r.budget = o.match == Match::flops ? budget : 0;
  r.seed = seed;
  r.params = model->num_parameters(), r.steps = trainer.step(), r.train_flops = trainer.train_flops();
  r.flops_per_token = v.flops_per_token, r.val_loss = v.loss, r.tokens_per_s = trainer.tokens_per_s();
  if (v.answers_by_level[1] + v.answers_by_level[4] > 0) r.answer_accuracy = v.answer_accuracy;
  for (size_t lv = 1; lv <= 4; ++lv) r.answer_accuracy_by_level[lv - 1] = v.accuracy_by_level[lv];
  if (auto* mod = dynamic_cast<models::MoD*>(model.get())) evaluate_mod(*mod, corpus, o, windows, r);
  if (auto* mor = dynamic_cast<models::MoR*>(model.get())) evaluate_mor(*mor, corpus, o, r);
  evaluate_depth(*model, corpus, o, windows, dir, r);
  return r;
}

}  // namespace

std::vector<RunResult> compare_runs(const std::vector<RunSpec>& runs, const data::Corpus& corpus,
                                    const CompareOptions& o) {
  for (size_t i = 0; i < runs.size(); ++i)
    for (size_t j = 0; j < i; ++j) DG_CHECK(runs[i].name != runs[j].name, "two runs are named '{}'", runs[i].name);
  DG_CHECK(o.evals > 0 && o.steps > 0, "compare_runs: steps {} and evals {} must be positive", o.steps, o.evals);
  validate(o);
  // Every run's config is checked, its model built once, before anything trains.
  for (const RunSpec& s : runs) {
    try {
      models::make_model(s.kind, s.config);
    } catch (const Error& e) {
      throw Error(fmt::format("--run '{}': {}", s.name, e.what()));
    }
  }
  const int64_t windows = std::min(o.eval_batches, corpus.num_eval_batches(o.batch, o.block));
  std::filesystem::create_directories(o.out);
  // Without a sweep: one budget, o.budget or (0) what the first run spends.
  const std::vector<double> budgets = o.budgets.empty() ? std::vector<double>{o.budget} : o.budgets;
  std::vector<RunResult> rows;
  for (double budget : budgets) {
    const std::string under = o.budgets.empty() ? "" : "budget-" + budget_label(budget) + "/";
    for (const RunSpec& s : runs) {
      std::vector<RunResult> seeds;
      for (int64_t i = 0; i < o.seeds; ++i) {
        const std::string rel = under + s.name + (o.seeds > 1 ? fmt::format("/seed{}", i) : "");
        seeds.push_back(train_once(s, i, rel, budget, corpus, o, windows));
      }
      rows.push_back(o.seeds == 1 ? seeds[0] : aggregate_seeds(seeds));
      rows.back().dir = under + s.name;
    }
  }
  mark_noise(rows);
  std::ofstream(o.out + "/table.md") << results_table(rows);
  std::ofstream(o.out + "/summary.jsonl") << summary_jsonl(rows);
  return rows;
}

}  // namespace dg::train
