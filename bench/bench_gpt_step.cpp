// One full training step (zero_grad, forward, loss, backward, AdamW step) of
// the dense GPT, MoD or MoB, timed like bench/torch_gpt.py times PyTorch:
// random batches from a fixed seed made outside the timed region, median over
// --steps after --warmup. Prints one JSON line; bench/compare_gpt.sh runs it
// beside the PyTorch reference.
//
//   bench_gpt_step --config tiny --steps 20 --warmup 3 --threads 2
//   bench_gpt_step --model mob --config tiny
//
// tiny:  L=4 (n=4 blocks), H=4, C=128, T=128, B=16
// small: L=6 (n=6 blocks), H=6, C=384, T=256, B=8
#include <sys/resource.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <chrono>

#include "models/factory.h"
#include "models/gpt.h"
#include "models/mob.h"
#include "models/mod.h"
#include "nn/optim.h"

using namespace dg;

int main(int argc, char** argv) {
  std::string config = "tiny", model_kind = "dense", weights;
  int64_t steps = 20, warmup = 3;
  int threads = 2;
  CLI::App app{"Time a GPT / MoD / MoB training step (forward, backward, AdamW)."};
  app.add_option("--config", config, "tiny | small")->check(CLI::IsMember({"tiny", "small"}))->capture_default_str();
  app.add_option("--model", model_kind, "dense | mod | mob")->check(CLI::IsMember({"dense", "mod", "mob"}))->capture_default_str();
  app.add_option("--steps", steps, "timed steps")->capture_default_str();
  app.add_option("--warmup", warmup, "untimed steps first")->capture_default_str();
  app.add_option("--threads", threads, "CPU threads")->capture_default_str();
  CLI11_PARSE(app, argc, argv);
  try {
    set_num_threads(threads);
    const bool tiny = config == "tiny";
    models::GPTConfig g{.n_layer = tiny ? 4 : 6, .n_head = tiny ? 4 : 6, .n_embd = tiny ? 128 : 384,
                        .block_size = tiny ? 128 : 256};
    const int64_t B = tiny ? 16 : 8, T = g.block_size;
    std::string cfg_json;
    if (model_kind == "dense") {
      cfg_json = models::to_json(g);
    } else if (model_kind == "mod") {
      models::MoDConfig c;
      c.gpt = g;
      cfg_json = models::to_json(c);
    } else {
      models::MoBConfig c;
      c.gpt = g;
      c.n_blocks = g.n_layer;
      cfg_json = models::to_json(c);
    }
    auto model = models::make_model(model_kind, cfg_json);
    model->train();
    nn::AdamW opt(nn::decay_groups(model->parameters(), 0.1), 1e-3, 0.9, 0.95, 1e-8);
    Generator gen(1234);
    std::vector<double> times;
    double loss = 0;
    for (int64_t s = 0; s < warmup + steps; ++s) {
      Tensor x = randint(0, 256, {B, T}, &gen), y = randint(0, 256, {B, T}, &gen);
      const auto t0 = std::chrono::steady_clock::now();
      opt.zero_grad();
      models::LossOutput out = model->loss(x, y);
      out.objective.backward();
      opt.step();
      loss = out.lm.item<double>();
      const double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
      if (s >= warmup) times.push_back(ms);
    }
    std::sort(times.begin(), times.end());
    const double median = times.empty() ? 0.0 : times[times.size() / 2];
    rusage ru{};
    getrusage(RUSAGE_SELF, &ru);
    fmt::print("{{\"impl\":\"dyngrad\",\"model\":\"{}\",\"config\":\"{}\",\"median_step_ms\":{:.3f},"
               "\"tokens_per_s\":{:.1f},\"peak_rss_mb\":{:.1f},\"steps\":{},\"threads\":{},\"final_loss\":{:.6f},"
               "\"forward_flops_per_token\":{:.1f}}}\n",
               model_kind, config, median, static_cast<double>(B * T) / (median / 1e3),
               static_cast<double>(ru.ru_maxrss) / 1024.0, steps, threads, loss,
               model->last_forward_flops_per_token());
  } catch (const Error& e) {
    fmt::print(stderr, "bench_gpt_step: {}\n", e.what());
    return 1;
  }
  return 0;
}
