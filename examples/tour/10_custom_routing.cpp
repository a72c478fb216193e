// Tour, chapter 10: a routing scheme of your own (docs/tour/10_custom_routing.md).
//
// The smallest routed kind: block 0 runs on every token, block 1 only on the
// tokens at even positions (a fixed rule instead of a gate, so every number
// below can be written down). It is registered by name, counts its FLOPs,
// returns an objective beside its LM loss and a routing trace, and the
// comparison driver reads all of it with no special case.
#include <cmath>
#include <filesystem>
#include <fstream>
#include <numeric>

#include "data/synthetic.h"
#include "examples/tour/check.h"
#include "models/block_on_rows.h"
#include "models/factory.h"
#include "models/trace.h"
#include "models/trunk.h"
#include "train/compare.h"
#include "train/trainer.h"

using namespace dg;

// Legend: B = batch, T = time, C = channels, N = B*T tokens, V = vocabulary.
class EvenSkip : public models::LanguageModel {
 public:
  explicit EvenSkip(const models::GPTConfig& c) : trunk_(c, 2) {
    for (auto& [name, m] : trunk_.modules()) register_module(name, m);
  }
  Tensor forward(const Tensor& idx) override {
    const int64_t B = idx.size(0), T = idx.size(1), N = B * T, C = trunk_.cfg.n_embd;
    Tensor R = reshape(trunk_.embed(idx), {N, C});
    std::vector<int64_t> all(N), even;
    std::iota(all.begin(), all.end(), 0);
    for (int64_t row : all)
      if (row % T % 2 == 0) even.push_back(row);
    trace_.reset(B, T, 2, 2);
    flops_ = 2.0 * C * trunk_.cfg.vocab_size * N;  // the head
    for (int64_t k = 0; k < 2; ++k) {
      const std::vector<int64_t>& rows = k == 0 ? all : even;
      models::BlockOnRows out = models::block_on_rows(*trunk_.blocks[k], R, rows, T);
      R = models::scatter_add_rows(R, out.rows, out.delta, Tensor());
      flops_ += out.flops;
      for (int64_t row : rows) trace_.tokens[row].push_back({int32_t(k), int32_t(k), 1.0f, 0.0f});
    }
    for (int64_t row : all) trace_.tokens[row].push_back({2, -1, 0.0f, 1.0f});
    flops_ /= static_cast<double>(N);
    last_R_ = R;
    return reshape(trunk_.head(R), {B, T, trunk_.cfg.vocab_size});
  }
  models::LossOutput loss(const Tensor& idx, const Tensor& targets) override {
    Tensor lm = models::lm_loss(forward(idx), targets);
    Tensor penalty = mean(last_R_ * last_R_) * 0.01;  // an auxiliary term: trained on, not reported as lm
    return {lm + penalty, lm, {{"depth", trace_.summary().mean_depth}}, {{"penalty", penalty}}};
  }
  std::unique_ptr<models::DecodeState> start_decoding(int64_t) override { throw Error("even-skip: no decoding"); }
  Tensor decode(models::DecodeState&, const Tensor&) override { throw Error("even-skip: no decoding"); }
  int64_t block_size() const override { return trunk_.cfg.block_size; }
  int64_t vocab_size() const override { return trunk_.cfg.vocab_size; }
  double last_forward_flops_per_token() const override { return flops_; }
  const models::RoutingTrace* last_routing_trace() const override { return &trace_; }
  std::string kind() const override { return "even-skip"; }
  std::string config_json() const override { return models::to_json(trunk_.cfg); }

 private:
  models::Trunk trunk_;
  models::RoutingTrace trace_;
  Tensor last_R_;
  double flops_ = 0;
};

int main() try {
  tour::Checks check;
  const int64_t B = 2, T = 16, C = 16, V = 256;
  models::GPTConfig gpt{.n_layer = 2, .n_head = 2, .n_embd = C, .block_size = T, .seed = 3};
  models::register_model_kind("even-skip", [](const std::string& json) {
    return std::make_unique<EvenSkip>(models::gpt_config_from_json(json));
  });
  auto model = models::make_model("even-skip", models::to_json(gpt));
  check.expect(model->kind() == "even-skip", "a registered kind is built by name (models::make_model)");

  // 1. FLOPs: the head on every token, block 0 on all T tokens of each sequence, block 1 on its T/2 even ones.
  data::SyntheticCorpus corpus(2, 20'000, 4'000);
  data::Batch b = corpus.eval_batch(0, B, T);
  models::LossOutput out = model->loss(b.x, b.y);
  auto block = [&](double L) { return 24.0 * C * C * L + 2.0 * C * L * (L + 1); };  // one sequence of L tokens
  const double want = 2.0 * C * V + (block(T) + block(T / 2.0)) / T;
  fmt::print("forward FLOPs per token: {:.0f} (formula {:.0f})\n", model->last_forward_flops_per_token(), want);
  check.expect(std::abs(model->last_forward_flops_per_token() - want) < 1e-9 * want,
               "last_forward_flops_per_token counts the work of the routing actually taken");

  // 2. The objective is what training minimises; lm is the plain cross-entropy, comparable across kinds.
  const double objective = out.objective.item<double>(), lm = out.lm.item<double>();
  check.expect(objective > lm && std::abs(objective - lm - out.device_stats["penalty"].item<double>()) < 1e-6,
               "objective = lm + the model's auxiliary term; the term is also a device stat");

  // 3. Training counts 3x the forward FLOPs of each step's routing.
  train::TrainOptions t;
  t.steps = 1, t.batch = B, t.block = T, t.warmup = 0, t.eval_every = 0, t.eval_batches = 1;
  train::Trainer trainer(*model, corpus, t);
  trainer.run();
  check.expect(std::abs(trainer.train_flops() - 3.0 * want * B * T) < 1e-9 * trainer.train_flops(),
               "one training step adds 3 x forward FLOPs/token x B x T");

  // 4. The trace: depth 2 at even positions, 1 at odd ones; the driver reports it with no special case.
  model->forward(b.x);
  const models::RoutingTrace& tr = *model->last_routing_trace();
  check.expect(tr.depth(0) == 2 && tr.depth(1) == 1 && tr.summary().mean_depth == 1.5,
               "the routing trace holds each token's path (depth 2 even, 1 odd)");
  train::CompareOptions o;
  o.out = "tour10_compare", o.steps = 4, o.batch = B, o.block = T, o.warmup = 1, o.evals = 1, o.eval_batches = 1;
  o.seeds = 2, o.print_progress = false;
  auto base = [&](const std::string&) { return models::to_json(gpt); };
  std::vector<train::RunResult> rows =
      train::compare_runs({train::parse_run("dense", base), train::parse_run("even-skip", base)}, corpus, o);
  fmt::print("{}", train::results_table(rows));
  check.expect(rows[1].mean_depth == 1.5 && std::isnan(rows[0].mean_depth) && rows[1].per_seed.size() == 2,
               "compare_runs: the kind's mean depth over 2 seeds, per-seed rows kept");
  check.expect(std::filesystem::exists("tour10_compare/even-skip/seed0/routing.json"),
               "compare_runs writes the kind's routing.json (per seed)");
  check.expect(rows[1].vs_run == "dense" && rows[1].beyond_noise ==
                   (std::abs(rows[1].vs_dense) > 2 * std::hypot(rows[0].val_loss_sd, rows[1].val_loss_sd) / std::sqrt(2.0)),
               "a difference against the best dense run is marked only beyond 2 Welch standard errors");
  return check.exit_code();
} catch (const std::exception& e) {
  fmt::print(stderr, "tour_10_custom_routing: {}\n", e.what());
  return 1;
}
