// sample_lm: loads a train_lm checkpoint (any model kind) and generates from
// a prompt with the KV cache; past the model's context the window slides
// (each further byte is predicted from the last block_size bytes).
//
//   sample_lm runs/mob/ckpt.safetensors --prompt "347+58=" --tokens 40
//   sample_lm runs/dense/ckpt.safetensors --prompt "In the beginning" --temperature 0.8 --top-k 40
//   sample_lm runs/mob/ckpt.safetensors --device cuda     # the weights loaded onto the GPU
#include <CLI/CLI.hpp>

#include "data/tokenizer.h"
#include "examples/config_flags.h"
#include "examples/device_flag.h"
#include "models/factory.h"
#include "models/generate.h"

using namespace dg;

int main(int argc, char** argv) {
  std::string path, prompt = "\n";
  int64_t samples = 1;
  // --tokens, --temperature, --top-k, --seed (models::sample_options_table()).
  models::SampleOptions opt{.max_new_tokens = 200, .temperature = 0.8, .top_k = 40, .seed = 0, .stop_token = -1};
  CLI::App app{"Generate text from a train_lm checkpoint."};
  app.option_defaults()->multi_option_policy(CLI::MultiOptionPolicy::TakeLast);
  app.add_option("checkpoint", path, "a ckpt.safetensors written by train_lm")->required();
  app.add_option("--prompt", prompt, "text to continue (its last block_size bytes when longer)")->capture_default_str();
  examples::add_flags(app, models::sample_options_table(), opt);
  app.add_option("--samples", samples, "how many samples")->check(CLI::Range(int64_t{1}, int64_t{1} << 20))->capture_default_str();
  std::string device = "cpu";
  examples::add_device_flag(app, device);
  bool allow_nonfinite = false;
  app.add_flag("--allow-nonfinite", allow_nonfinite, "load a checkpoint holding NaN/inf weights (a diverged run)");
  CLI11_PARSE(app, argc, argv);
  try {
    const Device d = examples::open_device(device);
    auto model = models::load_model(path, allow_nonfinite);
    model->to(d);
    for (int64_t i = 0; i < samples; ++i) {
      models::SampleOptions o = opt;
      o.seed = opt.seed + static_cast<uint64_t>(i);
      std::vector<int64_t> out = models::generate(*model, data::encode(prompt), o);
      fmt::print("{}{}\n", prompt, data::decode(out));
      if (i + 1 < samples) fmt::print("---\n");
    }
  } catch (const std::exception& e) {
    fmt::print(stderr, "sample_lm: {}\n", e.what());
    return 1;
  }
  return 0;
}
