#pragma once
// Sampling from any LanguageModel with its KV caches: the prompt is fed in one
// decode() call, then one token per call.
//
//   models::SampleOptions opt{.max_new_tokens = 200, .temperature = 0.8, .top_k = 40, .seed = 1};
//   std::vector<int64_t> out = models::generate(model, data::encode("12+7="), opt);
//
// temperature 0 means greedy (argmax). top_k 0 keeps the whole vocabulary.
// Generation stops at max_new_tokens or after a token equal to stop_token
// (if >= 0). The model sees at most its block_size last tokens (learned
// positions end there): a longer prompt is cut to its end, and once the
// context is full the window slides — each further token is predicted from a
// fresh decode of the last block_size tokens (at positions 0..block_size-1).
#include <cstdint>
#include <vector>

#include "models/config_table.h"
#include "models/lm.h"

namespace dg::models {

struct SampleOptions {
  int64_t max_new_tokens = 100;
  double temperature = 1.0;
  int64_t top_k = 0;
  uint64_t seed = 0;
  int64_t stop_token = -1;
};
// SampleOptions' fields: flags --tokens, --temperature, --top-k, --seed; ranges.
const config::Table<SampleOptions>& sample_options_table();

// Returns only the new tokens. The model is put in eval mode (and left so).
std::vector<int64_t> generate(LanguageModel& model, const std::vector<int64_t>& prompt, const SampleOptions& opt);

// Picks a token from one row of logits (V) with temperature and top-k,
// drawing the uniform number `u` in [0, 1) (from the caller's generator).
int64_t sample_token(const std::vector<double>& logits, double temperature, int64_t top_k, double u);

}  // namespace dg::models
