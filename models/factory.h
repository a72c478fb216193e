#pragma once
// Building a model by kind ("dense", "mod", "mob", or a kind a program
// registers), from a config or from a checkpoint (which stores the kind and
// the config as JSON).
//
//   auto model = models::make_model("mod", mod_config_json);
//   auto trained = models::load_model("runs/a/ckpt.safetensors");   // weights loaded
//
// A program adds its own kind once, before using it (train::compare_runs,
// load_model and make_model then know it by name):
//
//   models::register_model_kind("mymodel", [](const std::string& json) {
//     return std::make_unique<MyModel>(my_config_from_json(json));
//   });
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "models/lm.h"

namespace dg::models {

// Builds a model of one kind from its config JSON (a dg::Error on a bad config).
using ModelFactory = std::function<std::unique_ptr<LanguageModel>(const std::string& config_json)>;

// Adds a kind, or replaces the factory of a kind already there. "dense",
// "mod" and "mob" are registered from the start. Not thread-safe: register
// at start-up.
void register_model_kind(const std::string& kind, ModelFactory make);
// The registered kinds in registration order (dense, mod, mob first).
std::vector<std::string> model_kinds();
bool is_model_kind(const std::string& kind);

// config_json as written by to_json of that kind. An unknown kind is a
// dg::Error listing the registered ones.
std::unique_ptr<LanguageModel> make_model(const std::string& kind, const std::string& config_json);

// The model a checkpoint holds, weights loaded (optimizer state ignored).
// A dg::Error names the file and what is wrong.
std::unique_ptr<LanguageModel> load_model(const std::string& checkpoint_path, bool allow_nonfinite = false);

}  // namespace dg::models
