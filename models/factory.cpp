#include "models/factory.h"

#include <fmt/ranges.h>

#include <utility>

#include "models/gpt.h"
#include "models/mob.h"
#include "models/mod.h"
#include "nn/checkpoint.h"

namespace dg::models {

namespace {

using Registry = std::vector<std::pair<std::string, ModelFactory>>;

Registry& registry() {
  static Registry r = {
      {"dense", [](const std::string& j) { return std::make_unique<GPT>(gpt_config_from_json(j)); }},
      {"mod", [](const std::string& j) { return std::make_unique<MoD>(mod_config_from_json(j)); }},
      {"mob", [](const std::string& j) { return std::make_unique<MoB>(mob_config_from_json(j)); }},
  };
  return r;
}

}  // namespace

void register_model_kind(const std::string& kind, ModelFactory make) {
  DG_CHECK(!kind.empty() && make, "register_model_kind: needs a kind name and a factory (kind '{}')", kind);
  for (auto& [name, f] : registry())
    if (name == kind) {
      f = std::move(make);
      return;
    }
  registry().emplace_back(kind, std::move(make));
}

std::vector<std::string> model_kinds() {
  std::vector<std::string> kinds;
  for (auto& [name, f] : registry()) kinds.push_back(name);
  return kinds;
}

bool is_model_kind(const std::string& kind) {
  for (auto& [name, f] : registry())
    if (name == kind) return true;
  return false;
}

std::unique_ptr<LanguageModel> make_model(const std::string& kind, const std::string& config_json) {
  for (auto& [name, make] : registry())
    if (name == kind) return make(config_json);
  throw Error(fmt::format("make_model: unknown model kind '{}' (registered: {})", kind, fmt::join(model_kinds(), ", ")));
}

std::unique_ptr<LanguageModel> load_model(const std::string& path, bool allow_nonfinite) {
  nn::TensorFile f = nn::load_safetensors(path);
  auto kind = f.metadata.find("model_kind"), cfg = f.metadata.find("model_config");
  DG_CHECK(kind != f.metadata.end() && cfg != f.metadata.end(),
           "load_model: {} has no model_kind / model_config metadata (not a dyngrad training checkpoint)", path);
  auto model = make_model(kind->second, cfg->second);
  nn::NamedTensors targets, weights;
  for (auto& [name, t] : model->state_dict()) targets.emplace(name, t);
  for (auto& [name, t] : f.tensors)
    if (name.rfind("model.", 0) == 0) weights.emplace(name.substr(6), t);
  if (!allow_nonfinite) {
    const std::string bad = nn::first_nonfinite(weights);
    DG_CHECK(bad.empty(), "load_model: {}: tensor 'model.{}' holds NaN or infinity (a diverged run; "
             "--allow-nonfinite loads it anyway)", path, bad);
  }
  nn::load_into(nn::TensorFile{weights, {}}, targets, /*strict=*/true, path);
  return model;
}

}  // namespace dg::models
