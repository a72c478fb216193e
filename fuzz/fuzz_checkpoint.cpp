// libFuzzer target: a checkpoint as a model reads it. The public entry point
// that builds a model from a checkpoint (its metadata's model kind and JSON
// config, then its weights), then the checkpoint loader proper (format, step,
// optimizer state) into that model and an AdamW over it. Any input must give
// a model or a dg::Error.
#include <nlohmann/json.hpp>

#include "fuzz_file.h"
#include "models/factory.h"
#include "nn/checkpoint.h"

namespace {

// Inputs the target skips (returns -1: not kept in the corpus), because they
// reach problems known and left to the model config readers (issue 15, item
// 2): an integer field given as a float (converted to int64 with undefined
// behaviour when out of range), and sizes for which the model is allocated
// before anything checks them against the file (a 40-byte config can ask for
// gigabytes). fuzz/known/ holds one input of each (UBSan: "1e+300 is outside
// the range of representable values of type 'long'"; ASan: out-of-memory).
// Remove this filter when the config readers check their numbers.
bool config_within_known_limits(const std::string& path) {
  const dg::nn::TensorFile f = dg::nn::load_safetensors(path);
  auto it = f.metadata.find("model_config");
  if (it == f.metadata.end()) return true;
  const nlohmann::json j = nlohmann::json::parse(it->second, nullptr, /*allow_exceptions=*/false);
  if (!j.is_object()) return true;
  for (const char* name : {"n_layer", "n_head", "n_embd", "block_size", "vocab_size", "seed", "mod_every",
                           "predictor_hidden", "n_blocks", "max_depth"}) {
    auto v = j.find(name);
    if (v == j.end() || !v->is_number()) continue;
    if (!v->is_number_integer()) return false;
    if (std::string(name) != "seed" && (v->get<int64_t>() > 64 || v->get<int64_t>() < -64)) return false;
  }
  return true;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static dg::fuzz::InputFile input;
  const std::string& path = input.hold(data, size);
  try {
    if (!config_within_known_limits(path)) return -1;
    std::unique_ptr<dg::models::LanguageModel> model = dg::models::load_model(path);
    dg::nn::AdamW opt(model->parameters());
    dg::nn::load_checkpoint(path, *model, &opt);
  } catch (const dg::Error&) {
  }
  return 0;
}
