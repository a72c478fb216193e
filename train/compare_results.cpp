// The comparison's results: options checked before anything trains, the
// rows of several seeds folded into one (mean and sample standard deviation),
// differences against the best dense run marked only beyond the noise, and
// the markdown table and JSON lines (train/compare.h).
#include <fmt/ranges.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <nlohmann/json.hpp>

#include "train/compare.h"

namespace dg::train {

// ---------------------------------------------------------------- options
void validate(const CompareOptions& o) {
  DG_CHECK(o.seeds >= 1 && o.seeds <= 1000, "--seeds must be an integer in [1, 1000], got {}", o.seeds);
  for (double b : o.budgets)
    DG_CHECK(std::isfinite(b) && b > 0, "--budgets: every budget must be a positive number of training FLOPs, got {}",
             b);
  DG_CHECK(o.budgets.empty() || o.budget == 0, "--budgets and --budget exclude each other (give one of them)");
  DG_CHECK(o.budgets.empty() || o.match == Match::flops, "--budgets needs --match flops (equal training FLOPs)");
}

std::vector<double> parse_budgets(const std::string& text) {
  const std::string allowed = "positive training-FLOP counts separated by commas, e.g. 1e12,2e12,4e12";
  DG_CHECK(!text.empty(), "--budgets is empty; expected {}", allowed);
  std::vector<double> out;
  size_t start = 0;
  for (int item = 1;; ++item) {
    const size_t comma = text.find(',', start);
    const std::string s = text.substr(start, comma == std::string::npos ? std::string::npos : comma - start);
    DG_CHECK(!s.empty(), "--budgets '{}': item {} is empty; expected {}", text, item, allowed);
    double v = NAN;
    size_t used = 0;
    try {
      v = std::stod(s, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    DG_CHECK(used == s.size() && std::isfinite(v) && v > 0, "--budgets '{}': item {} '{}' is not a positive number; "
             "expected {}", text, item, s, allowed);
    out.push_back(v);
    if (comma == std::string::npos) return out;
    start = comma + 1;
  }
}

// ---------------------------------------------------------------- seeds
namespace {

// Mean and sample standard deviation of the finite values (NAN when there
// are none, sd NAN under two).
struct Spread {
  double mean = NAN, sd = NAN;
};
Spread spread(const std::vector<double>& xs) {
  double sum = 0, n = 0;
  for (double x : xs)
    if (std::isfinite(x)) sum += x, n += 1;
  Spread s;
  if (n == 0) return s;
  s.mean = sum / n;
  if (n < 2) return s;
  double ss = 0;
  for (double x : xs)
    if (std::isfinite(x)) ss += (x - s.mean) * (x - s.mean);
  s.sd = std::sqrt(ss / (n - 1));
  return s;
}

// One field of every seed's row.
template <class Get>
std::vector<double> each(const std::vector<RunResult>& rows, Get get) {
  std::vector<double> v;
  for (const RunResult& r : rows) v.push_back(static_cast<double>(get(r)));
  return v;
}

// Element-wise mean of vectors of possibly different lengths (missing or
// non-finite entries skipped).
template <class Vec>
std::vector<double> mean_of_vectors(const std::vector<RunResult>& rows, Vec RunResult::*field) {
  size_t len = 0;
  for (const RunResult& r : rows) len = std::max(len, (r.*field).size());
  std::vector<double> out(len);
  for (size_t i = 0; i < len; ++i)
    out[i] = spread(each(rows, [&](const RunResult& r) { return i < (r.*field).size() ? (r.*field)[i] : NAN; })).mean;
  return out;
}

}  // namespace

RunResult aggregate_seeds(const std::vector<RunResult>& seeds) {
  DG_CHECK(!seeds.empty(), "aggregate_seeds: no rows");
  const RunResult& first = seeds[0];
  for (const RunResult& s : seeds)
    DG_CHECK(s.run == first.run && s.kind == first.kind && s.budget == first.budget,
             "aggregate_seeds: rows of different runs or budgets ('{}' at {}, '{}' at {})", first.run, first.budget,
             s.run, s.budget);
  RunResult r;
  r.run = first.run, r.kind = first.kind, r.config = first.config, r.budget = first.budget, r.seed = first.seed;
  r.params = first.params;
  r.seeds = static_cast<int64_t>(seeds.size());
  auto mean = [&](auto get) { return spread(each(seeds, get)).mean; };
  r.steps = std::llround(mean([](const RunResult& s) { return s.steps; }));
  r.train_flops = mean([](const RunResult& s) { return s.train_flops; });
  r.flops_per_token = mean([](const RunResult& s) { return s.flops_per_token; });
  r.wall_s = mean([](const RunResult& s) { return s.wall_s; });
  r.val_loss_causal = mean([](const RunResult& s) { return s.val_loss_causal; });
  r.routed_fraction_causal = mean([](const RunResult& s) { return s.routed_fraction_causal; });
  r.predictor_accuracy = mean([](const RunResult& s) { return s.predictor_accuracy; });
  const Spread loss = spread(each(seeds, [](const RunResult& s) { return s.val_loss; }));
  const Spread acc = spread(each(seeds, [](const RunResult& s) { return s.answer_accuracy; }));
  const Spread depth = spread(each(seeds, [](const RunResult& s) { return s.mean_depth; }));
  const Spread speed = spread(each(seeds, [](const RunResult& s) { return s.tokens_per_s; }));
  r.val_loss = loss.mean, r.val_loss_sd = loss.sd;
  r.answer_accuracy = acc.mean, r.answer_accuracy_sd = acc.sd;
  r.mean_depth = depth.mean, r.mean_depth_sd = depth.sd;
  r.tokens_per_s = speed.mean, r.tokens_per_s_sd = speed.sd;
  for (size_t lv = 0; lv < 4; ++lv)
    r.answer_accuracy_by_level[lv] = mean([&](const RunResult& s) { return s.answer_accuracy_by_level[lv]; });
  r.depth_histogram = mean_of_vectors(seeds, &RunResult::depth_histogram);
  r.depth_by_level = mean_of_vectors(seeds, &RunResult::depth_by_level);
  if (seeds.size() > 1) r.per_seed = seeds;
  return r;
}

void mark_noise(std::vector<RunResult>& rows) {
  std::map<double, const RunResult*> best;  // budget -> its best dense row
  for (const RunResult& r : rows) {
    const RunResult*& b = best[r.budget];
    if (r.kind == "dense" && std::isfinite(r.val_loss) && (b == nullptr || r.val_loss < b->val_loss)) b = &r;
  }
  std::map<double, RunResult> reference;  // copies: rows are written below
  for (auto& [budget, b] : best)
    if (b != nullptr) reference[budget] = *b;
  for (RunResult& r : rows) {
    r.vs_run.clear(), r.vs_dense = r.vs_dense_se = NAN, r.beyond_noise = false;
    auto it = reference.find(r.budget);
    if (it == reference.end()) continue;
    const RunResult& d = it->second;
    r.vs_run = d.run;
    r.vs_dense = r.val_loss - d.val_loss;
    if (r.seeds >= 2 && d.seeds >= 2 && std::isfinite(r.val_loss_sd) && std::isfinite(d.val_loss_sd))
      r.vs_dense_se = std::sqrt(r.val_loss_sd * r.val_loss_sd / static_cast<double>(r.seeds) +
                                d.val_loss_sd * d.val_loss_sd / static_cast<double>(d.seeds));
    r.beyond_noise = r.run != d.run && std::isfinite(r.vs_dense_se) &&
                     std::abs(r.vs_dense) > kNoiseSigmas * r.vs_dense_se;
  }
}

// ---------------------------------------------------------------- table
namespace {

std::string num(double x, const char* spec) {
  return std::isfinite(x) ? fmt::format(fmt::runtime(spec), x) : std::string("—");
}

// "1.2345 ± 0.0123", or the mean alone when the sd is unknown.
std::string mean_sd(double mean, double sd, const char* spec, double scale = 1) {
  if (!std::isfinite(mean)) return "—";
  std::string s = fmt::format(fmt::runtime(spec), scale * mean);
  return std::isfinite(sd) ? s + " ± " + fmt::format(fmt::runtime(spec), scale * sd) : s;
}

std::string vs_dense_cell(const RunResult& r) {
  if (r.vs_run.empty()) return "—";
  if (r.vs_run == r.run) return "best dense";
  std::string s = fmt::format("{:+.4f}", r.vs_dense);
  if (std::isfinite(r.vs_dense_se)) s += fmt::format(" ± {:.4f}", r.vs_dense_se);
  return r.beyond_noise ? s + " *" : s;
}

std::string depth_by_level_cell(const RunResult& r) {
  if (r.depth_by_level.empty()) return "—";
  std::vector<std::string> v;
  for (double d : r.depth_by_level) v.push_back(num(d, "{:.2f}"));
  return fmt::format("{}", fmt::join(v, " / "));
}

// The legend under one budget's table: what ± means and the noise criterion.
std::string legend(const std::vector<const RunResult*>& rows) {
  int64_t lo = rows[0]->seeds, hi = rows[0]->seeds;
  std::string best;
  for (const RunResult* r : rows) {
    lo = std::min(lo, r->seeds), hi = std::max(hi, r->seeds);
    if (!r->vs_run.empty()) best = r->vs_run;
  }
  const std::string seeds = lo == hi ? fmt::format("{}", lo) : fmt::format("{}-{}", lo, hi);
  std::string out;
  if (hi >= 2)
    out += fmt::format("Values are mean ± sample standard deviation over {} seeds (data order and initial weights). ",
                       seeds);
  if (best.empty()) return out + "No dense run at this budget: no difference is marked.\n";
  if (lo < 2)
    return out + fmt::format("vs best dense: mean val loss minus that of {}. With one seed the noise is unknown, "
                             "so no difference is marked (--seeds N >= 2 measures it).\n", best);
  return out + fmt::format("vs best dense: mean val loss minus that of {}, ± Welch's standard error "
                           "sqrt(sd_a^2/n_a + sd_b^2/n_b); * marks a difference beyond the noise, "
                           "|diff| > {:g} standard errors.\n", best, kNoiseSigmas);
}

std::string budget_table(const std::vector<const RunResult*>& rows, bool answers) {
  std::string table = fmt::format(
      "| run | params | steps | train FLOPs | MFLOP/token | val loss | vs best dense | val loss (causal) |{} "
      "mean depth | depth by level 1/2/3/4 | tok/s | wall |\n"
      "|---|---:|---:|---:|---:|---:|---:|---:|{}---:|---:|---:|---:|\n",
      answers ? " answers |" : "", answers ? "---:|" : "");
  for (const RunResult* p : rows) {
    const RunResult& r = *p;
    table += fmt::format("| {} | {:.2f}M | {} | {:.3g} | {:.3f} | {} | {} | {} |{} {} | {} | {} | {:.0f} s |\n", r.run,
                         static_cast<double>(r.params) / 1e6, r.steps, r.train_flops, r.flops_per_token / 1e6,
                         mean_sd(r.val_loss, r.val_loss_sd, "{:.4f}"), vs_dense_cell(r),
                         num(r.val_loss_causal, "{:.4f}"),
                         answers ? fmt::format(" {} |", mean_sd(r.answer_accuracy, r.answer_accuracy_sd, "{:.1f}%", 100))
                                 : "",
                         mean_sd(r.mean_depth, r.mean_depth_sd, "{:.2f}"), depth_by_level_cell(r),
                         mean_sd(r.tokens_per_s, r.tokens_per_s_sd, "{:.0f}"), r.wall_s);
  }
  return table + "\n" + legend(rows);
}

nlohmann::json finite_or_null(double x) { return std::isfinite(x) ? nlohmann::json(x) : nlohmann::json(nullptr); }

nlohmann::json row_json(const RunResult& r) {
  nlohmann::json by_level = nlohmann::json::array(), acc_by_level = nlohmann::json::array();
  for (double d : r.depth_by_level) by_level.push_back(finite_or_null(d));
  for (double a : r.answer_accuracy_by_level) acc_by_level.push_back(finite_or_null(a));
  nlohmann::json j = {{"run", r.run},
                      {"kind", r.kind},
                      {"config", nlohmann::json::parse(r.config)},
                      {"budget", r.budget},
                      {"seed", r.seed},
                      {"seeds", r.seeds},
                      {"params", r.params},
                      {"steps", r.steps},
                      {"train_flops", r.train_flops},
                      {"flops_per_token", r.flops_per_token},
                      {"val_loss", r.val_loss},
                      {"val_loss_sd", finite_or_null(r.val_loss_sd)},
                      {"vs_run", r.vs_run.empty() ? nlohmann::json(nullptr) : nlohmann::json(r.vs_run)},
                      {"vs_dense", finite_or_null(r.vs_dense)},
                      {"vs_dense_se", finite_or_null(r.vs_dense_se)},
                      {"beyond_noise", r.beyond_noise},
                      {"val_loss_causal", finite_or_null(r.val_loss_causal)},
                      {"predictor_accuracy", finite_or_null(r.predictor_accuracy)},
                      {"routed_fraction_causal", finite_or_null(r.routed_fraction_causal)},
                      {"answer_acc", finite_or_null(r.answer_accuracy)},
                      {"answer_acc_sd", finite_or_null(r.answer_accuracy_sd)},
                      {"answer_acc_by_level", acc_by_level},
                      {"mean_depth", finite_or_null(r.mean_depth)},
                      {"mean_depth_sd", finite_or_null(r.mean_depth_sd)},
                      {"depth_histogram", r.depth_histogram},
                      {"depth_by_level", by_level},
                      {"tokens_per_s", r.tokens_per_s},
                      {"tokens_per_s_sd", finite_or_null(r.tokens_per_s_sd)},
                      {"wall_s", r.wall_s},
                      {"dir", r.dir}};
  if (!r.per_seed.empty()) {
    j["per_seed"] = nlohmann::json::array();
    for (const RunResult& s : r.per_seed) j["per_seed"].push_back(row_json(s));
  }
  return j;
}

}  // namespace

std::string results_table(const std::vector<RunResult>& rows) {
  if (rows.empty()) return "";
  const bool answers = std::isfinite(rows[0].answer_accuracy);
  std::vector<double> budgets;  // in order of first appearance
  for (const RunResult& r : rows)
    if (std::find(budgets.begin(), budgets.end(), r.budget) == budgets.end()) budgets.push_back(r.budget);
  std::string out;
  for (double b : budgets) {
    std::vector<const RunResult*> group;
    for (const RunResult& r : rows)
      if (r.budget == b) group.push_back(&r);
    if (budgets.size() > 1) out += fmt::format("{}### budget {:.3g} training FLOPs\n\n", out.empty() ? "" : "\n", b);
    out += budget_table(group, answers);
  }
  return out;
}

std::string summary_jsonl(const std::vector<RunResult>& rows) {
  std::string out;
  for (const RunResult& r : rows) out += row_json(r).dump() + '\n';
  return out;
}

}  // namespace dg::train
