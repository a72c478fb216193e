#include "models/factory.h"

#include "models/gpt.h"
#include "models/mob.h"
#include "models/mod.h"
#include "nn/checkpoint.h"

namespace dg::models {

std::unique_ptr<LanguageModel> make_model(const std::string& kind, const std::string& config_json) {
  if (kind == "dense") return std::make_unique<GPT>(gpt_config_from_json(config_json));
  if (kind == "mod") return std::make_unique<MoD>(mod_config_from_json(config_json));
  if (kind == "mob") return std::make_unique<MoB>(mob_config_from_json(config_json));
  throw Error(fmt::format("make_model: unknown model kind '{}' (dense, mod or mob)", kind));
}

std::unique_ptr<LanguageModel> load_model(const std::string& path) {
  nn::TensorFile f = nn::load_safetensors(path);
  auto kind = f.metadata.find("model_kind"), cfg = f.metadata.find("model_config");
  DG_CHECK(kind != f.metadata.end() && cfg != f.metadata.end(),
           "load_model: {} has no model_kind / model_config metadata (not a dyngrad training checkpoint)", path);
  auto model = make_model(kind->second, cfg->second);
  nn::NamedTensors targets, weights;
  for (auto& [name, t] : model->state_dict()) targets.emplace(name, t);
  for (auto& [name, t] : f.tensors)
    if (name.rfind("model.", 0) == 0) weights.emplace(name.substr(6), t);
  nn::load_into(nn::TensorFile{weights, {}}, targets, /*strict=*/true, path);
  return model;
}

}  // namespace dg::models
