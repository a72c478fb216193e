// compare_routing: trains a dense GPT of L layers, one of L/2 layers,
// Mixture-of-Depths and Mixture-of-Blocks on the same data, with the same
// seed and schedule, for the same training-FLOP budget, and prints one table
// (params, FLOPs/token, val loss — MoD with top-k and with causal routing —,
// answer accuracy, MoB's mean depth, tokens/s, wall time). Metrics go to
// <out>/<run>/metrics.jsonl, the table to <out>/summary.jsonl and
// <out>/table.md, MoB routing traces to <out>/<run>/routing.json, and the
// pictures (tools/plot_compare.py, matplotlib) to <out>/*.png.
//
//   compare_routing                                   # defaults, 5-7 minutes on 2 cores
//   compare_routing --data bible.txt --steps 3000     # a text file, a larger budget
//   compare_routing --match steps                     # equal steps instead of equal FLOPs
//   compare_routing --run dense-4=dense --run mob-block=mob:attn_scope=block
//                   --run mob-bias=mob:halting=bias,gate_init=uniform     (one line)
//
// The budget: --steps is the number of steps of the first run (the dense
// L-layer model by default); the budget is what that run spends, measured on
// one probe batch (or --budget FLOPs). Every run trains until its counted
// training FLOPs (3x the forward FLOPs of its actual routing decisions)
// reach the budget, and its warmup + cosine schedule runs on the share of
// the budget spent, so a MoB whose depth changes during training still ends
// its schedule at the budget. The steps shown at the start are estimates
// from the probe (routed models: their routing at initialisation).
//
// A run is NAME=KIND[:KEY=VALUE,...] (or just KIND): KIND is dense, mod or mob, built from
// the model flags below; each KEY is a field of that kind's config JSON (see
// models/*.h: n_layer, capacity, attn_scope, halting, gate_init, prior, ...)
// whose value replaces the flag's.
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "examples/lm_flags.h"
#include "models/evaluate.h"
#include "models/factory.h"
#include "models/training.h"

using namespace dg;

namespace {

struct Flags : examples::LMFlags {
  std::vector<std::string> runs;
  std::string match = "flops", out = "runs/compare";
  int64_t steps = 1500, batch = 16, warmup = 100, evals = 6, eval_batches = 8;
  double lr = 3e-3, min_lr = 3e-4, weight_decay = 0.1, grad_clip = 1.0, budget = 0;
  int threads = 0;
  bool no_plot = false;
};

struct RunSpec {
  std::string name, kind, config;  // config: the model's JSON after the overrides
};

// The default runs: dense-L, dense-L/2, MoD, MoB.
std::vector<std::string> default_runs(const Flags& f) {
  const int64_t half = std::max<int64_t>(1, f.layers / 2);
  return {fmt::format("dense-{}=dense", f.layers), fmt::format("dense-{}=dense:n_layer={}", half, half), "mod=mod",
          "mob=mob"};
}

// NAME=KIND[:KEY=VALUE,...] -> the run, its config built from the flags with
// the overrides applied (each key must exist; its value keeps the field's type).
RunSpec parse_run(const std::string& spec, const Flags& f) {
  RunSpec r;
  if (spec == "dense" || spec == "mod" || spec == "mob") return parse_run(spec + "=" + spec, f);
  const size_t eq = spec.find('='), colon = spec.find(':');
  DG_CHECK(eq != std::string::npos && eq > 0 && (colon == std::string::npos || eq < colon),
           "--run '{}': expected NAME=KIND[:KEY=VALUE,...]", spec);
  r.name = spec.substr(0, eq);
  DG_CHECK(r.name.find_first_of("/\\ ") == std::string::npos && r.name != "." && r.name != "..",
           "--run '{}': the name '{}' must be usable as a folder name", spec, r.name);
  r.kind = spec.substr(eq + 1, colon == std::string::npos ? std::string::npos : colon - eq - 1);
  DG_CHECK(r.kind == "dense" || r.kind == "mod" || r.kind == "mob",
           "--run '{}': unknown kind '{}' (dense, mod or mob)", spec, r.kind);
  nlohmann::json j = nlohmann::json::parse(examples::model_config(f, r.kind));
  std::string rest = colon == std::string::npos ? "" : spec.substr(colon + 1);
  while (!rest.empty()) {
    const size_t comma = rest.find(',');
    const std::string kv = rest.substr(0, comma);
    rest = comma == std::string::npos ? "" : rest.substr(comma + 1);
    const size_t e = kv.find('=');
    DG_CHECK(e != std::string::npos && e > 0, "--run '{}': '{}' is not KEY=VALUE", spec, kv);
    const std::string key = kv.substr(0, e), value = kv.substr(e + 1);
    if (!j.contains(key)) {
      std::string keys;
      for (auto& [k, v] : j.items()) keys += (keys.empty() ? "" : ", ") + k;
      throw Error(fmt::format("--run '{}': {} has no config field '{}' (fields: {})", spec, r.kind,
                              key, keys));
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
      throw Error(fmt::format("--run '{}': bad value '{}' for {} (now {})", spec, value, key,
                              j[key].dump()));
    }
  }
  r.config = j.dump();
  return r;
}

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

// Forward FLOPs per token of the model on one batch, in training mode.
double probe_flops(models::LanguageModel& model, const data::Corpus& corpus, int64_t B, int64_t T) {
  NoGradGuard ng;
  model.train();
  data::Batch b = corpus.eval_batch(0, B, T, data::Split::train);
  model.loss(b.x, b.y);
  return model.last_forward_flops_per_token();
}

struct RoutedEval {
  double causal_loss = NAN, predictor_accuracy = NAN, routed_fraction = NAN;  // MoD
  double mean_depth = NAN;                                                     // MoB
  std::vector<double> depth_histogram, depth_by_level;                         // MoB (shares; level 1..4)
};

// MoD: loss with causal routing and the predictor's accuracy (top-k mode);
// MoB: mean depth, depth histogram and depth by answer level over the
// evaluation windows, and the routing trace of the first window.
RoutedEval evaluate_routing(models::LanguageModel& model, const data::Corpus& corpus, const Flags& f,
                            const std::string& dir) {
  RoutedEval r;
  const int64_t nb = std::min(f.eval_batches, corpus.num_eval_batches(f.batch, f.block));
  if (auto* mod = dynamic_cast<models::MoD*>(&model)) {
    mod->set_routing(models::MoDRouting::causal);
    r.causal_loss = models::evaluate(*mod, corpus, f.batch, f.block, f.eval_batches).loss;
    double frac = 0;
    for (double x : mod->last_stats().fraction) frac += x / static_cast<double>(mod->last_stats().fraction.size());
    r.routed_fraction = frac;
    mod->set_routing(models::MoDRouting::topk);
    NoGradGuard ng;
    mod->eval();
    double acc = 0;
    int64_t n = 0;
    for (int64_t i = 0; i < nb; ++i) {
      mod->forward(corpus.eval_batch(i, f.batch, f.block).x);
      for (double a : mod->last_stats().predictor_accuracy) acc += a, ++n;
    }
    if (n > 0) r.predictor_accuracy = acc / static_cast<double>(n);
  }
  if (auto* mob = dynamic_cast<models::MoB*>(&model)) {
    NoGradGuard ng;
    mob->eval();
    const auto D = static_cast<size_t>(mob->mob_config().max_depth);
    std::vector<double> hist(D + 1, 0.0), level_sum(5, 0.0), level_n(5, 0.0);
    double total = 0, depth_sum = 0;
    for (int64_t i = 0; i < nb; ++i) {
      data::Batch b = corpus.eval_batch(i, f.batch, f.block);
      mob->forward(b.x);
      const models::RoutingTrace& tr = mob->last_trace();
      std::vector<int64_t> levels = b.answer_level.to_vector<int64_t>();
      for (int64_t t = 0; t < tr.B * tr.T; ++t) {
        const auto d = static_cast<double>(tr.depth(t));
        hist[static_cast<size_t>(tr.depth(t))] += 1, depth_sum += d, total += 1;
        // The depth spent on an answer byte is that of the token predicting it.
        const int64_t lv = levels[static_cast<size_t>(t)];
        if (lv >= 1 && lv <= 4) level_sum[static_cast<size_t>(lv)] += d, level_n[static_cast<size_t>(lv)] += 1;
      }
      if (i == 0) {
        std::string text = corpus.bytes(data::Split::val).substr(0, static_cast<size_t>(f.block));
        std::ofstream(dir + "/routing.json") << tr.to_json(text, levels);
      }
    }
    r.mean_depth = depth_sum / std::max(total, 1.0);
    for (double& h : hist) h /= std::max(total, 1.0);
    r.depth_histogram = hist;
    for (size_t lv = 1; lv <= 4; ++lv) r.depth_by_level.push_back(level_n[lv] > 0 ? level_sum[lv] / level_n[lv] : NAN);
  }
  return r;
}

std::string num(double x, const char* spec) {
  return std::isfinite(x) ? fmt::format(fmt::runtime(spec), x) : std::string("—");
}

nlohmann::json finite_or_null(double x) { return std::isfinite(x) ? nlohmann::json(x) : nlohmann::json(nullptr); }

}  // namespace

int main(int argc, char** argv) {
  Flags f;
  CLI::App app{"Train dense, dense-half, Mixture-of-Depths and Mixture-of-Blocks for the same training-FLOP budget "
               "and compare them in one table."};
  app.option_defaults()->multi_option_policy(CLI::MultiOptionPolicy::TakeLast);
  app.add_option("--run", f.runs,
                 "a run NAME=KIND[:KEY=VALUE,...] (repeatable; default: dense-L, dense-L/2, mod, mob); "
                 "KEYs are config fields, e.g. mob-block=mob:attn_scope=block")
      ->multi_option_policy(CLI::MultiOptionPolicy::TakeAll);
  app.add_option("--steps", f.steps, "steps of the first run; its FLOPs are every run's budget")
      ->check(CLI::PositiveNumber)->capture_default_str();
  app.add_option("--budget", f.budget, "training FLOPs per run (0: what the first run spends in --steps steps)")
      ->check(CLI::NonNegativeNumber)->capture_default_str();
  app.add_option("--match", f.match, "flops (equal training FLOPs) | steps (equal steps)")
      ->check(CLI::IsMember({"flops", "steps"}))->capture_default_str();
  app.add_option("--batch", f.batch, "sequences per step (B)")->check(CLI::PositiveNumber)->capture_default_str();
  app.add_option("--lr", f.lr, "peak learning rate (AdamW)")->check(CLI::PositiveNumber)->capture_default_str();
  app.add_option("--min-lr", f.min_lr, "learning rate at the end of the cosine decay")->capture_default_str();
  app.add_option("--warmup", f.warmup, "linear warmup steps")->check(CLI::NonNegativeNumber)->capture_default_str();
  app.add_option("--weight-decay", f.weight_decay, "AdamW decoupled weight decay on 2-D weights")->capture_default_str();
  app.add_option("--grad-clip", f.grad_clip, "clip the global gradient norm (0: off)")->capture_default_str();
  app.add_option("--evals", f.evals, "evaluations per run (the loss-vs-FLOPs curve)")->check(CLI::PositiveNumber)->capture_default_str();
  app.add_option("--eval-batches", f.eval_batches, "validation batches per evaluation")->check(CLI::PositiveNumber)->capture_default_str();
  app.add_option("--out", f.out, "output folder (each run's previous metrics there are replaced)")->capture_default_str();
  app.add_option("--threads", f.threads, "CPU threads (0: DG_NUM_THREADS or all cores)")->capture_default_str();
  app.add_flag("--no-plot", f.no_plot, "do not run tools/plot_compare.py");
  examples::add_model_flags(app, f);
  CLI11_PARSE(app, argc, argv);

  try {
    if (f.threads > 0) set_num_threads(f.threads);
    if (f.runs.empty()) f.runs = default_runs(f);
    std::vector<RunSpec> specs;
    for (const std::string& s : f.runs) {
      specs.push_back(parse_run(s, f));
      for (size_t i = 0; i + 1 < specs.size(); ++i)
        DG_CHECK(specs[i].name != specs.back().name, "two runs are named '{}'", specs.back().name);
    }
    auto corpus = examples::load_corpus(f.data, f.seed);
    const double tokens_per_step = static_cast<double>(f.batch * f.block);
    std::filesystem::create_directories(f.out);
    fmt::print("compare_routing: data {} (train {} bytes, val {}; unigram entropy {:.3f}, bigram {:.3f} nats/byte), "
               "B={} T={}, match {}\n",
               corpus->source(), corpus->size(data::Split::train), corpus->size(data::Split::val),
               corpus->unigram_entropy(), corpus->bigram_entropy(), f.batch, f.block, f.match);

    double budget = 0;
    std::vector<nlohmann::json> rows;
    for (size_t i = 0; i < specs.size(); ++i) {
      const RunSpec& s = specs[i];
      auto model = models::make_model(s.kind, s.config);
      const double probe = probe_flops(*model, *corpus, f.batch, f.block);
      const double step_flops = 3.0 * probe * tokens_per_step;
      if (i == 0) budget = f.budget > 0 ? f.budget : step_flops * static_cast<double>(f.steps);
      const int64_t steps = f.match == "steps" ? f.steps : std::max<int64_t>(1, std::llround(budget / step_flops));
      const std::string dir = f.out + "/" + s.name;
      std::filesystem::create_directories(dir);
      std::filesystem::remove(dir + "/metrics.jsonl");
      std::filesystem::remove(dir + "/routing.json");
      models::TrainOptions o;
      o.steps = steps, o.batch = f.batch, o.block = f.block, o.lr = f.lr, o.min_lr = f.min_lr;
      o.warmup = std::min(f.warmup, steps / 4), o.weight_decay = f.weight_decay, o.grad_clip = f.grad_clip;
      o.eval_every = std::max<int64_t>(1, steps / f.evals), o.eval_batches = f.eval_batches, o.seed = f.seed;
      o.out_dir = dir, o.flop_budget = f.match == "flops" ? budget : 0.0, o.flop_schedule = f.match == "flops";
      fmt::print("\n== {} ({}): {:.2f}M parameters, {:.3f} MFLOP/token at init, {} steps{}\n", s.name, s.kind,
                 static_cast<double>(model->num_parameters()) / 1e6, probe / 1e6, steps,
                 f.match == "flops" ? fmt::format(" (estimated; budget {:.3g} FLOPs)", budget) : "");
      std::fflush(stdout);
      const auto t0 = std::chrono::steady_clock::now();
      models::Trainer trainer(*model, *corpus, o);
      trainer.run({}, [&](const models::EvalLog& e) {
        fmt::print("  step {:>5}  val loss {:.4f}  {:.3f} MFLOP/token  train {:.3g} FLOPs\n", e.step, e.val.loss,
                   e.val.flops_per_token / 1e6, e.train_flops);
        std::fflush(stdout);
      });
      const double wall = seconds_since(t0);
      const models::EvalResult& v = trainer.last_eval().val;
      RoutedEval re = evaluate_routing(*model, *corpus, f, dir);
      nlohmann::json row = {{"run", s.name},
                            {"kind", s.kind},
                            {"config", nlohmann::json::parse(s.config)},
                            {"params", model->num_parameters()},
                            {"steps", trainer.step()},
                            {"train_flops", trainer.train_flops()},
                            {"flops_per_token", v.flops_per_token},
                            {"val_loss", v.loss},
                            {"val_loss_causal", finite_or_null(re.causal_loss)},
                            {"predictor_accuracy", finite_or_null(re.predictor_accuracy)},
                            {"routed_fraction_causal", finite_or_null(re.routed_fraction)},
                            {"answer_acc", v.answers_by_level[1] + v.answers_by_level[4] > 0
                                               ? nlohmann::json(v.answer_accuracy) : nlohmann::json(nullptr)},
                            {"answer_acc_by_level", {v.accuracy_by_level[1], v.accuracy_by_level[2],
                                                     v.accuracy_by_level[3], v.accuracy_by_level[4]}},
                            {"mean_depth", finite_or_null(re.mean_depth)},
                            {"depth_histogram", re.depth_histogram},
                            {"tokens_per_s", trainer.tokens_per_s()},
                            {"wall_s", wall},
                            {"dir", s.name}};
      nlohmann::json lv = nlohmann::json::array();
      for (double d : re.depth_by_level) lv.push_back(finite_or_null(d));
      row["depth_by_level"] = lv;
      rows.push_back(row);
    }

    // The table, printed and written (markdown), and the rows as JSON lines.
    const bool answers = !rows.empty() && !rows[0]["answer_acc"].is_null();
    std::string table = fmt::format(
        "| run | params | steps | train FLOPs | MFLOP/token | val loss | val loss (causal) |{} mean depth | tok/s | wall |\n"
        "|---|---:|---:|---:|---:|---:|---:|{}---:|---:|---:|\n",
        answers ? " answers |" : "", answers ? "---:|" : "");
    auto get = [](const nlohmann::json& j) { return j.is_null() ? NAN : j.get<double>(); };
    for (const nlohmann::json& r : rows) {
      table += fmt::format("| {} | {:.2f}M | {} | {:.3g} | {:.3f} | {:.4f} | {} |{} {} | {:.0f} | {:.0f} s |\n",
                           r["run"].get<std::string>(), r["params"].get<double>() / 1e6, r["steps"].get<int64_t>(),
                           r["train_flops"].get<double>(), r["flops_per_token"].get<double>() / 1e6,
                           r["val_loss"].get<double>(), num(get(r["val_loss_causal"]), "{:.4f}"),
                           answers ? " " + num(100 * get(r["answer_acc"]), "{:.1f}%") + " |" : "",
                           num(get(r["mean_depth"]), "{:.2f}"), r["tokens_per_s"].get<double>(),
                           r["wall_s"].get<double>());
    }
    fmt::print("\n{}", table);
    std::ofstream(f.out + "/table.md") << table;
    {
      std::ofstream js(f.out + "/summary.jsonl");
      for (const nlohmann::json& r : rows) js << r.dump() << '\n';
    }
    fmt::print("\nresults: {0}/table.md, {0}/summary.jsonl, {0}/<run>/metrics.jsonl\n", f.out);
    if (!f.no_plot) {
      const std::string script = "tools/plot_compare.py";
      if (!std::filesystem::exists(script) || !std::filesystem::exists("/usr/bin/python3")) {
        fmt::print("pictures: run /usr/bin/python3 {} {} from the repository root\n", script, f.out);
      } else if (std::system(fmt::format("/usr/bin/python3 {} '{}'", script, f.out).c_str()) != 0) {
        fmt::print(stderr, "compare_routing: {} failed (is python3-matplotlib installed?); the results are kept\n",
                   script);
      }
    }
  } catch (const std::exception& e) {  // dg::Error included
    fmt::print(stderr, "compare_routing: {}\n", e.what());
    return 1;
  }
  return 0;
}
