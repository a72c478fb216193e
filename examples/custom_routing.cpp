// custom_routing: a routing scheme dyngrad does not ship, in one file on the public API, compared with the
// built-in kinds by compare_routing's driver (train::compare_runs); docs/tour/10_custom_routing.md reads it.
//
// Expert-choice Mixture-of-Blocks (Mixture-of-Recursions style): n blocks, up to D steps. At step d a gate
// scores every active token for every block, s = sigmoid(W·LN(R) + b_d); each block takes the top ceil(c·a)
// of the a active tokens of each sequence; a token no block took stops. The taken ones get
// R += sum_k s_k·Delta_k(R), every block reading the same R, so the gate is on the gradient path.
//
//   custom_routing --seeds 3    # dense-2, dense-1, mob, ec-mob on the synthetic corpus: mean ± sd over 3 seeds
#include <CLI/CLI.hpp>
#include <numeric>

#include "data/synthetic.h"
#include "models/block_on_rows.h"
#include "models/factory.h"
#include "models/mob.h"
#include "models/trace.h"
#include "nn/loss.h"
#include "train/compare.h"

using namespace dg;

// Legend: B = batch, T = time, C = channels, N = B*T tokens, Na = active tokens, n = blocks.
struct ExpertChoiceConfig {
  models::GPTConfig gpt;  // sizes; n_layer is not read
  int64_t n_blocks = 2, max_depth = 3;
  double capacity = 0.5;  // share of a sequence's active tokens each block takes per step
  double aux = 0.01;      // weight of the router BCE (target: taken or not), a causal predictor as in MoD
};

const config::Table<ExpertChoiceConfig>& ec_table() {
  using E = ExpertChoiceConfig;
  static const config::Table<E> t = config::nested(models::gpt_config_table(), &E::gpt) + config::Table<E>{
      config::integer<E>("n_blocks", "", &E::n_blocks, 1, 64, "blocks"),
      config::integer<E>("max_depth", "", &E::max_depth, 1, 64, "steps D"),
      config::real<E>("capacity", "", &E::capacity, {0, 1, true, false}, "share each block takes"),
      config::real<E>("aux", "", &E::aux, {0, config::kInf}, "router BCE weight")};
  return t;
}

class ExpertChoiceMoB : public models::LanguageModel {
 public:
  explicit ExpertChoiceMoB(const ExpertChoiceConfig& c) : cfg_(c), trunk_(c.gpt, c.n_blocks) {
    for (auto& [name, m] : trunk_.modules()) register_module(name, m);
    Generator gen(c.gpt.seed + 1);
    nn::LayerOptions opt{c.gpt.dtype, &gen};
    gate_ln_ = register_module("gate_ln", std::make_shared<nn::LayerNorm>(c.gpt.n_embd, 1e-5, true, opt));
    gate_ = register_module("gate", std::make_shared<nn::Linear>(c.gpt.n_embd, c.n_blocks, false, opt));
    step_bias_ = register_parameter("step_bias", zeros({c.max_depth, c.n_blocks}, {c.gpt.dtype}));
  }

  // idx (B, T) -> logits (B, T, V); the router's BCE is left in aux_.
  Tensor forward(const Tensor& idx) override {
    models::check_tokens("ec-mob", idx, block_size(), vocab_size());
    const int64_t B = idx.size(0), T = idx.size(1), N = B * T, C = cfg_.gpt.n_embd, n = cfg_.n_blocks;
    const Device dev = trunk_.device();
    Tensor R = reshape(trunk_.embed(idx), {N, C});
    trace_.reset(B, T, n, cfg_.max_depth);
    flops_ = 2.0 * C * cfg_.gpt.vocab_size * N;  // the head, every token
    aux_ = Tensor();
    std::vector<int64_t> active(N);  // flat rows b*T + t, ascending
    std::iota(active.begin(), active.end(), 0);
    for (int64_t d = 0; d < cfg_.max_depth && !active.empty(); ++d) {
      const int64_t Na = static_cast<int64_t>(active.size());
      Tensor Ra = models::gather_rows(R, models::Rows(active, dev));
      Tensor logits = gate_->forward(gate_ln_->forward(Ra)) + select(step_bias_, 0, d);
      Tensor s = sigmoid(logits);  // (Na, n)
      flops_ += 2.0 * C * n * Na;
      const std::vector<double> sv = s.to_vector<double>();  // one read per step: the decisions
      const models::ExpertChoiceRows choice = models::expert_choice_rows(sv, n, active, T, cfg_.capacity);  // taken
      std::vector<int64_t> next;
      for (int64_t i = 0; i < Na; ++i) {
        std::vector<models::TraceStep>& path = trace_.tokens[active[i]];
        for (int64_t k = 0; k < n; ++k)
          if (choice.taken[i * n + k] > 0) path.push_back({int32_t(d), int32_t(k), float(sv[i * n + k]), 0.0f});
        if (path.empty() || path.back().step != d) path.push_back({int32_t(d), -1, 0.0f, 1.0f});  // no block took it
        else next.push_back(active[i]);
      }
      Tensor bce = nn::bce_with_logits(logits, from_doubles(choice.taken, {Na, n}, {logits.dtype(), dev}));
      aux_ = aux_.defined() ? aux_ + bce : bce;
      Tensor updated = R;  // every block reads this step's R
      for (int64_t k = 0; k < n; ++k) {
        models::BlockOnRows out = models::block_on_rows(*trunk_.blocks[k], R, choice.rows[k], T);
        Tensor w = index_select(select(s, 1, k), 0, models::Rows(choice.positions[k], dev).ids);  // s_k of those rows
        updated = models::scatter_add_rows(updated, out.rows, out.delta, w);
        flops_ += out.flops;
      }
      R = updated;
      active = next;
    }
    for (int64_t row : active) trace_.tokens[row].push_back({int32_t(cfg_.max_depth), -1, 0.0f, 1.0f});
    flops_ /= static_cast<double>(N);
    return reshape(trunk_.head(R), {B, T, cfg_.gpt.vocab_size});
  }

  // Trains on the LM loss plus the router BCE; reports the LM loss alone as `lm`.
  models::LossOutput loss(const Tensor& idx, const Tensor& targets) override {
    Tensor lm = models::lm_loss(forward(idx), targets);
    Tensor objective = aux_.defined() && cfg_.aux > 0 ? lm + aux_ * cfg_.aux : lm;
    return {objective, lm, {{"depth", trace_.summary().mean_depth}}, {{"router_bce", aux_}}};
  }
  // No incremental decoding: top-k over a whole sequence is not causal.
  std::unique_ptr<models::DecodeState> start_decoding(int64_t) override { throw Error("ec-mob: not causal"); }
  Tensor decode(models::DecodeState&, const Tensor&) override { throw Error("ec-mob: not causal"); }
  int64_t block_size() const override { return cfg_.gpt.block_size; }
  int64_t vocab_size() const override { return cfg_.gpt.vocab_size; }
  double last_forward_flops_per_token() const override { return flops_; }
  const models::RoutingTrace* last_routing_trace() const override { return &trace_; }
  std::string kind() const override { return "ec-mob"; }
  std::string config_json() const override { return config::to_json(ec_table(), cfg_).dump(); }

 private:
  ExpertChoiceConfig cfg_;
  models::Trunk trunk_;
  std::shared_ptr<nn::LayerNorm> gate_ln_;
  std::shared_ptr<nn::Linear> gate_;
  Tensor step_bias_;  // (D, n)
  Tensor aux_;        // the last forward's router BCE, summed over steps
  double flops_ = 0;
  models::RoutingTrace trace_;
};

int main(int argc, char** argv) {
  train::CompareOptions o;
  o.out = "runs/custom_routing", o.steps = 300, o.warmup = 30, o.evals = 4;
  models::GPTConfig gpt{.n_layer = 2, .n_head = 4, .n_embd = 64, .block_size = 64, .seed = 1337};
  CLI::App app{"Expert-choice MoB, a kind registered by this program, against dense and MoB at equal FLOPs."};
  app.add_option("--steps", o.steps, "steps of the first run (its FLOPs are the budget)")->check(CLI::PositiveNumber);
  app.add_option("--seeds", o.seeds, "trainings per run (mean ± sd)")->check(CLI::Range(1, 1000));
  app.add_option("--out", o.out, "output folder");
  CLI11_PARSE(app, argc, argv);
  try {
    o.block = gpt.block_size;
    models::register_model_kind("ec-mob", [](const std::string& json) {
      return std::make_unique<ExpertChoiceMoB>(config::from_json_text(ec_table(), json, "ec-mob config"));
    });
    auto base = [&](const std::string& kind) {
      if (kind == "dense") return models::to_json(gpt);
      if (kind == "mob") return models::to_json(models::MoBConfig{.gpt = gpt, .n_blocks = 2, .max_depth = 3});
      return config::to_json(ec_table(), ExpertChoiceConfig{.gpt = gpt}).dump();
    };
    const auto runs = train::parse_runs({"dense-2=dense", "dense-1=dense:n_layer=1", "mob", "ec-mob"}, base);
    data::SyntheticCorpus corpus(gpt.seed);
    fmt::print("\n{}", train::results_table(train::compare_runs(runs, corpus, o)));
  } catch (const std::exception& e) {
    fmt::print(stderr, "custom_routing: {}\n", e.what());
    return 1;
  }
  return 0;
}
