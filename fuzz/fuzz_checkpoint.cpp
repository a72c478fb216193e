// libFuzzer target: a checkpoint as a model reads it. The public entry point
// that builds a model from a checkpoint (its metadata's model kind and JSON
// config, then its weights), then the checkpoint loader proper (format, step,
// optimizer state) into that model and an AdamW over it. Any input must give
// a model or a dg::Error. The seeds include two configs that once reached
// undefined behaviour or unbounded allocation (corpus/checkpoint/n_layer_1e300: a
// float-to-int conversion out of range; n_embd_100000: a 40-byte
// config asking for gigabytes); the config tables refuse both now.
#include "fuzz_file.h"
#include "models/factory.h"
#include "nn/checkpoint.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static dg::fuzz::InputFile input;
  const std::string& path = input.hold(data, size);
  try {
    std::unique_ptr<dg::models::LanguageModel> model = dg::models::load_model(path);
    dg::nn::AdamW opt(model->parameters());
    dg::nn::load_checkpoint(path, *model, &opt);
  } catch (const dg::Error&) {
  }
  return 0;
}
