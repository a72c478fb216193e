// One full training step (zero_grad, forward, loss, backward, AdamW step) of
// the dense GPT, MoD, MoB, MoE or MoR, timed like bench/torch_gpt.py times PyTorch:
// random batches from a fixed seed made outside the timed region, median over
// --steps after --warmup. Prints one JSON line; bench/compare_gpt.sh runs it
// beside the PyTorch reference.
//
//   bench_gpt_step --config tiny --steps 20 --warmup 3 --threads 2
//   bench_gpt_step --model mob --config tiny
//   bench_gpt_step --model moe --threads 1 --cpu-time  # process CPU time: steadier on a loaded machine
//   bench_gpt_step --config small --device cuda     # the step on the first GPU (the loss read syncs it)
//   bench_gpt_step --model mod --config tiny --dtype f64 --save-init check.safetensors --steps 0
//
// tiny:  L=4 (n=4 blocks), H=4, C=128, T=128, B=16
// small: L=6 (n=6 blocks), H=6, C=384, T=256, B=8
// gpt2:  L=12 (n=12 blocks), H=12, C=768, T=1024, B=8 (GPT-2 small's shape,
//        byte vocabulary: a GPU config, tools/gpu_check.sh)
//
// Routed configs timed (the library defaults unless named here):
//   mod: capacity 12.5% (k = 16 of 128 / 32 of 256), every other block routed
//        (blocks 1, 3 / 1, 3, 5), router weight raw, causal methods "both": the
//        objective is LM + aux BCE on the router logits + predictor BCE, as in
//        training. The work per step is static (exactly k tokens per sequence).
//   mob: n = L blocks, max_depth 6, ponder halting (eps 0.1, prior 0.3, kl
//        0.01), attention scope step, weight q — and gate_init uniform (the
//        default here, --gate-init): the gate weight is random N(0, 0.02) and
//        the per-step bias zero, so at every step the tokens spread over all
//        n blocks and the benchmark exercises real grouping (n groups per
//        step). With the library's dense-path init every step would send all
//        tokens to one block, which is the dense model plus the gate. Under
//        this init lambda is about 1/(n+1), the surviving mass stays above eps
//        and (almost) every token runs max_depth = 6 blocks (the return is
//        forced at step 6; mean depth 5.997 tiny, 6.00 small on the first
//        batch), so MoB does about 6/4 (tiny) or 6/6 (small) of the dense
//        block work plus the per-step LM head of the ponder objective.
//   moe: 4 experts in every block, top-2 (Mixtral's renormalised gate),
//        capacity factor 1.0 (training drops past ceil(N 2 / 4) per
//        expert), balance 0.01, z-loss 1e-3: twice the dense MLP work per
//        token (less the dropped assignments) plus the router.
//   mor: a cycle of L/2 blocks (2 tiny, 3 small) shared over N_r = 3
//        recursions, expert-choice with capacity 0.5 (the library defaults):
//        per sequence the recursions process T, T/2, T/4 tokens (the top k by
//        router score, hierarchically), 1.75 recursions of L/2 blocks = 0.875 L
//        block applications per token; objective LM + aux BCE. mor-token: the
//        same with the token-choice router (depth argmax up front, balancing
//        loss), whose work per step follows the router.
//
// The JSON line's forward_flops_per_token is the last step's count (as the
// model counts it), timed_forward_flops_per_token its mean over the timed
// steps (they differ where the work follows the router: MoB's depth moves as
// it trains).
//
// --save-init FILE writes, before any update: the initial weights
// (param.<name>), the first batch (x, y, I64; with --batches K also the first
// K batches the timing draws, batches.x / batches.y (K, B, T)), the objective
// and LM loss the model computes on that batch in training mode (objective,
// lm: 0-dim) with the gradient of the objective for every parameter
// (grad.<name>), for MoB the
// routing of every token (route.paths (B*T, max_depth + 1) I64: the block
// chosen at each step, -1 where it returned, -2 after), for MoE the expert of
// every assignment (route.experts (MoE layers, B*T, k) I64, -1 where capacity
// dropped it), and metadata
// model_kind / model_config (the config JSON) / config / dtype / batch / seq.
// MoR: route.paths (B*T, N_r) I64, 1 where the token ran recursion r.
// It prints {"impl":"dyngrad","check":true,"objective":...,"lm":...}.
// bench/torch_gpt.py --check FILE recomputes all of it in PyTorch from the same
// weights and batch; --weights FILE starts its timing from the same weights and
// batches (compare_gpt.sh stores warm-up + steps of them, so both sides train
// on the very same data). --steps 0 writes the file and exits without timing.
#include <sys/resource.h>

#include <CLI/CLI.hpp>
#include <algorithm>

#include "bench/bench_clock.h"
#include "examples/device_flag.h"
#include "models/factory.h"
#include "models/gpt.h"
#include "models/mob.h"
#include "models/mod.h"
#include "models/moe.h"
#include "models/mor.h"
#include "nn/optim.h"
#include "nn/safetensors.h"

using namespace dg;

namespace {

// The state-dict file described in the header, for the first batch (x, y).
void save_init(const std::string& path, models::LanguageModel& model, const std::string& config, DType dtype,
               const std::vector<std::pair<Tensor, Tensor>>& batches) {
  const Tensor &x = batches.front().first, &y = batches.front().second;
  nn::NamedTensors out;
  for (auto& [name, p] : model.named_parameters()) out.emplace("param." + name, clone(p.detach()));
  model.zero_grad();
  models::LossOutput loss = model.loss(x, y);
  loss.objective.backward();
  for (auto& [name, p] : model.named_parameters()) {
    DG_CHECK(p.grad().defined(), "bench_gpt_step: parameter {} got no gradient on the first batch", name);
    out.emplace("grad." + name, clone(p.grad()));
  }
  model.zero_grad();
  out.emplace("x", x);
  out.emplace("y", y);
  if (batches.size() > 1) {
    Tensors xs, ys;
    for (auto& [bx, by] : batches) xs.push_back(unsqueeze(bx, 0)), ys.push_back(unsqueeze(by, 0));
    out.emplace("batches.x", cat(xs, 0));
    out.emplace("batches.y", cat(ys, 0));
  }
  out.emplace("objective", loss.objective.detach());
  out.emplace("lm", loss.lm.detach());
  if (auto* mob = dynamic_cast<models::MoB*>(&model)) {
    const models::RoutingTrace& tr = mob->last_trace();
    const int64_t N = tr.B * tr.T, D1 = tr.max_depth + 1;
    std::vector<int64_t> paths(N * D1, -2);
    for (int64_t i = 0; i < N; ++i)
      for (const models::TraceStep& s : tr.tokens[i]) {
        DG_CHECK(s.step >= 0 && s.step < D1, "bench_gpt_step: trace step {} outside 0..{}", s.step, D1 - 1);
        paths[i * D1 + s.step] = s.block;
      }
    out.emplace("route.paths", from_vector<int64_t>(paths, {N, D1}));
  }
  if (auto* moe = dynamic_cast<models::MoE*>(&model)) {
    const std::vector<models::MoERoutes>& routes = moe->last_routes();
    std::vector<int64_t> experts;
    for (const models::MoERoutes& r : routes)
      for (size_t a = 0; a < r.choice.size(); ++a) experts.push_back(r.kept[a] ? r.choice[a] : -1);
    const int64_t N = routes.front().N, k = routes.front().k;
    out.emplace("route.experts", from_vector<int64_t>(experts, {static_cast<int64_t>(routes.size()), N, k}));
  }
  if (auto* mor = dynamic_cast<models::MoR*>(&model)) {
    const models::RoutingTrace& tr = *mor->last_routing_trace();
    const int64_t N = tr.B * tr.T, R = mor->mor_config().n_recursions;
    std::vector<int64_t> paths(N * R, 0);
    for (int64_t i = 0; i < N; ++i)
      for (const models::TraceStep& s : tr.tokens[i])
        if (s.block >= 0) paths[i * R + s.step] = 1;
    out.emplace("route.paths", from_vector<int64_t>(paths, {N, R}));
  }
  nn::Metadata meta = {{"model_kind", model.kind()},      {"model_config", model.config_json()},
                       {"config", config},                {"dtype", std::string(dtype_name(dtype))},
                       {"batch", std::to_string(x.size(0))}, {"seq", std::to_string(x.size(1))},
                       {"generator", "bench/bench_gpt_step --save-init"}};
  nn::save_safetensors(path, out, meta);
  fmt::print("{{\"impl\":\"dyngrad\",\"check\":true,\"model\":\"{}\",\"config\":\"{}\",\"dtype\":\"{}\","
             "\"objective\":{:.17g},\"lm\":{:.17g},\"file\":\"{}\"}}\n",
             model.kind(), config, dtype_name(dtype), loss.objective.item<double>(), loss.lm.item<double>(), path);
}

}  // namespace

int main(int argc, char** argv) {
  std::string config = "tiny", model_kind = "dense", dtype = "f32", gate_init = "uniform", init_path;
  int64_t steps = 20, warmup = 3, n_batches = 1;
  int threads = 2;
  bool cpu_time = false;
  CLI::App app{"Time a GPT / MoD / MoB / MoE / MoR training step (forward, backward, AdamW)."};
  app.add_option("--config", config, "tiny | small | gpt2")
      ->check(CLI::IsMember({"tiny", "small", "gpt2"}))
      ->capture_default_str();
  app.add_option("--model", model_kind, "dense | mod | mob | moe | mor | mor-token")
      ->check(CLI::IsMember({"dense", "mod", "mob", "moe", "mor", "mor-token"}))
      ->capture_default_str();
  app.add_option("--steps", steps, "timed steps (0: only --save-init)")
      ->check(CLI::NonNegativeNumber)->capture_default_str();
  app.add_option("--warmup", warmup, "untimed steps first")->check(CLI::NonNegativeNumber)->capture_default_str();
  app.add_option("--threads", threads, "CPU threads")->check(CLI::PositiveNumber)->capture_default_str();
  app.add_option("--dtype", dtype, "f32 (timing) | f64 (the same-loss check)")
      ->check(CLI::IsMember({"f32", "f64"}))->capture_default_str();
  app.add_option("--gate-init", gate_init,
                 "MoB gate init: uniform (random gate, tokens spread over blocks) | dense-path")
      ->check(CLI::IsMember({"uniform", "dense-path"}))->capture_default_str();
  app.add_option("--save-init", init_path,
                 "write initial weights, first batch, its loss and gradients to this safetensors file");
  app.add_option("--batches", n_batches,
                 "with --save-init: also store this many batches (batches.x/y: the ones the timing draws)")
      ->check(CLI::PositiveNumber)->capture_default_str();
  app.add_flag("--cpu-time", cpu_time,
               "time each step by the process's CPU time (all threads) instead of wall time: steadier on a loaded "
               "machine (use with --threads 1)");
  std::string device = "cpu";
  examples::add_device_flag(app, device);
  CLI11_PARSE(app, argc, argv);
  if (steps == 0 && init_path.empty()) {
    fmt::print(stderr, "bench_gpt_step: --steps 0 only makes sense with --save-init FILE\n");
    return 1;
  }
  try {
    set_num_threads(threads);
    const DType dt = dtype == "f64" ? DType::f64 : DType::f32;
    // config -> (L, C, T, B); H = L in all three.
    struct Size {
      int64_t L, C, T, B;
    };
    const Size z = config == "tiny" ? Size{4, 128, 128, 16} : config == "small" ? Size{6, 384, 256, 8}
                                                                                 : Size{12, 768, 1024, 8};
    models::GPTConfig g{.n_layer = z.L, .n_head = z.L, .n_embd = z.C, .block_size = z.T, .dtype = dt};
    const int64_t B = z.B, T = g.block_size;
    std::string cfg_json;
    if (model_kind == "dense") {
      cfg_json = models::to_json(g);
    } else if (model_kind == "mod") {
      models::MoDConfig c;
      c.gpt = g;
      cfg_json = models::to_json(c);
    } else if (model_kind == "moe") {
      models::MoEConfig c;
      c.gpt = g;
      c.n_experts = 4;
      c.top_k = 2;
      c.capacity_factor = 1.0;
      cfg_json = models::to_json(c);
    } else if (model_kind == "mor" || model_kind == "mor-token") {
      models::MoRConfig c;
      c.gpt = g;
      c.cycle = g.n_layer / 2;
      c.router = model_kind == "mor" ? models::MoRRouter::expert : models::MoRRouter::token;
      cfg_json = models::to_json(c);
    } else {
      models::MoBConfig c;
      c.gpt = g;
      c.n_blocks = g.n_layer;
      c.gate_init = gate_init == "uniform" ? models::GateInit::uniform : models::GateInit::dense_path;
      cfg_json = models::to_json(c);
    }
    const Device d = examples::open_device(device);
    auto model = models::make_model(model_kind == "mor-token" ? "mor" : model_kind, cfg_json);
    model->to(d);
    model->train();
    Generator gen(1234);
    auto next_batch = [&] {  // drawn on the host (the same numbers on every device), then moved
      Tensor x = randint(0, 256, {B, T}, &gen), y = randint(0, 256, {B, T}, &gen);
      return std::pair{x.to(d), y.to(d)};
    };
    // The first batches are drawn up front (the same draws as in the loop).
    std::vector<std::pair<Tensor, Tensor>> saved;
    for (int64_t i = 0; i < (init_path.empty() ? 1 : n_batches); ++i) saved.push_back(next_batch());
    if (!init_path.empty()) save_init(init_path, *model, config, dt, saved);
    if (steps == 0) return 0;
    nn::AdamW opt(nn::decay_groups(model->parameters(), 0.1), 1e-3, 0.9, 0.95, 1e-8);
    std::vector<double> times;
    double flops_sum = 0;  // forward FLOPs per token, summed over the timed steps (MoB's change as it trains)
    double loss = 0;
    for (int64_t s = 0; s < warmup + steps; ++s) {
      auto [x, y] = s < static_cast<int64_t>(saved.size()) ? saved[s] : next_batch();
      const double t0 = bench::now_ms(cpu_time);
      opt.zero_grad();
      models::LossOutput out = model->loss(x, y);
      out.objective.backward();
      opt.step();
      loss = out.lm.item<double>();
      const double ms = bench::now_ms(cpu_time) - t0;
      if (s >= warmup) times.push_back(ms), flops_sum += model->last_forward_flops_per_token();
    }
    std::sort(times.begin(), times.end());
    const double median = times[times.size() / 2];
    rusage ru{};
    getrusage(RUSAGE_SELF, &ru);
    fmt::print("{{\"impl\":\"dyngrad\",\"model\":\"{}\",\"config\":\"{}\",\"median_step_ms\":{:.3f},"
               "\"tokens_per_s\":{:.1f},\"peak_rss_mb\":{:.1f},\"steps\":{},\"threads\":{},\"final_loss\":{:.6f},"
               "\"forward_flops_per_token\":{:.1f},\"timed_forward_flops_per_token\":{:.1f},\"dtype\":\"{}\","
               "\"device\":\"{}\",\"clock\":\"{}\"}}\n",
               model_kind, config, median, static_cast<double>(B * T) / (median / 1e3),
               static_cast<double>(ru.ru_maxrss) / 1024.0, steps, threads, loss, model->last_forward_flops_per_token(),
               flops_sum / static_cast<double>(steps), dtype, d, cpu_time ? "cpu" : "wall");
  } catch (const Error& e) {
    fmt::print(stderr, "bench_gpt_step: {}\n", e.what());
    return 1;
  }
  return 0;
}
