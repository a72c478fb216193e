// sample_lm: loads a train_lm checkpoint (any model kind) and generates from
// a prompt with the KV cache.
//
//   sample_lm runs/mob/ckpt.safetensors --prompt "347+58=" --tokens 40
//   sample_lm runs/dense/ckpt.safetensors --prompt "In the beginning" --temperature 0.8 --top-k 40
#include <CLI/CLI.hpp>

#include "data/tokenizer.h"
#include "models/factory.h"
#include "models/generate.h"

using namespace dg;

int main(int argc, char** argv) {
  std::string path, prompt = "\n";
  int64_t tokens = 200, top_k = 40, samples = 1;
  double temperature = 0.8;
  uint64_t seed = 0;
  CLI::App app{"Generate text from a train_lm checkpoint."};
  app.add_option("checkpoint", path, "a ckpt.safetensors written by train_lm")->required();
  app.add_option("--prompt", prompt, "text to continue")->capture_default_str();
  app.add_option("--tokens", tokens, "bytes to generate")->check(CLI::PositiveNumber)->capture_default_str();
  app.add_option("--temperature", temperature, "0 = greedy")->check(CLI::NonNegativeNumber)->capture_default_str();
  app.add_option("--top-k", top_k, "keep the k most likely bytes (0 = all)")->check(CLI::NonNegativeNumber)->capture_default_str();
  app.add_option("--samples", samples, "how many samples")->check(CLI::PositiveNumber)->capture_default_str();
  app.add_option("--seed", seed, "sampling seed")->capture_default_str();
  // ---- safety flags ----
  bool allow_nonfinite = false;
  app.add_flag("--allow-nonfinite", allow_nonfinite, "load a checkpoint holding NaN/inf weights (a diverged run)");
  // ---- end safety flags ----
  CLI11_PARSE(app, argc, argv);
  try {
    auto model = models::load_model(path, allow_nonfinite);
    for (int64_t i = 0; i < samples; ++i) {
      models::SampleOptions o{.max_new_tokens = tokens, .temperature = temperature, .top_k = top_k,
                              .seed = seed + static_cast<uint64_t>(i), .stop_token = -1};
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
