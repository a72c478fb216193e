#pragma once
// Building a model by kind ("dense", "mod", "mob"), from a config or from a
// checkpoint (which stores the kind and the config as JSON).
//
//   auto model = models::make_model("mod", mod_config_json);
//   auto trained = models::load_model("runs/a/ckpt.safetensors");   // weights loaded
#include <memory>
#include <string>

#include "models/lm.h"

namespace dg::models {

// kind: dense | mod | mob; config_json as written by to_json of that kind.
std::unique_ptr<LanguageModel> make_model(const std::string& kind, const std::string& config_json);

// The model a checkpoint holds, weights loaded (optimizer state ignored).
// A dg::Error names the file and what is wrong.
std::unique_ptr<LanguageModel> load_model(const std::string& checkpoint_path);

}  // namespace dg::models
