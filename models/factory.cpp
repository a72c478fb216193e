#include "models/factory.h"

#include <fmt/ranges.h>

#include <nlohmann/json.hpp>
#include <utility>

#include "models/gpt.h"
#include "models/mob.h"
#include "models/mod.h"
#include "models/moe.h"
#include "models/mor.h"
#include "nn/checkpoint.h"

namespace dg::models {

namespace {

using Registry = std::vector<std::pair<std::string, ModelFactory>>;

Registry& registry() {
  static Registry r = {
      {"dense", [](const std::string& j) { return std::make_unique<GPT>(gpt_config_from_json(j)); }},
      {"mod", [](const std::string& j) { return std::make_unique<MoD>(mod_config_from_json(j)); }},
      {"mob", [](const std::string& j) { return std::make_unique<MoB>(mob_config_from_json(j)); }},
      {"moe", [](const std::string& j) { return std::make_unique<MoE>(moe_config_from_json(j)); }},
      {"mor", [](const std::string& j) { return std::make_unique<MoR>(mor_config_from_json(j)); }},
  };
  return r;
}

// The weights the trunk of a built-in config needs (trunk_parameters, and an
// MoE's experts: expert_parameters), or 0
// when the config does not say (then its parser reports what is wrong). Only
// non-negative integers are read, never converted from floats.
double trunk_weights_claimed(const std::string& config_json) {
  const nlohmann::json j = nlohmann::json::parse(config_json, nullptr, /*allow_exceptions=*/false);
  if (!j.is_object()) return 0;
  auto size = [&](const char* key) -> int64_t {
    auto it = j.find(key);
    if (it == j.end() || !it->is_number_unsigned() || it->get<uint64_t>() > (1ull << 40)) return 0;
    return static_cast<int64_t>(it->get<uint64_t>());
  };
  GPTConfig c{.n_embd = size("n_embd"), .block_size = size("block_size"), .vocab_size = size("vocab_size")};
  auto tied = j.find("tied_head");
  c.tied_head = tied == j.end() || !tied->is_boolean() || tied->get<bool>();
  double claimed = trunk_parameters(c, j.contains("n_blocks") ? size("n_blocks") : size("n_layer"));  // MoB: n_blocks
  if (j.contains("n_experts") && size("moe_every") > 0) {  // MoE: the experts beyond the trunk
    MoEConfig m{.gpt = c, .n_experts = std::max<int64_t>(size("n_experts"), 1), .moe_every = size("moe_every")};
    m.gpt.n_layer = size("n_layer");
    claimed += expert_parameters(m);
  }
  return claimed;
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
  // A few bytes of config can ask for gigabytes: the file must hold at least
  // the trunk's weights before anything is allocated.
  double held = 0;
  for (auto& [name, t] : f.tensors)
    if (name.rfind("model.", 0) == 0) held += static_cast<double>(t.numel());
  const double claimed = trunk_weights_claimed(cfg->second);
  DG_CHECK(claimed <= held, "load_model: {}: model_config asks for {:.4g} weights in the trunk{} alone, but the file "
           "holds {:.4g} (a truncated or mismatched checkpoint)", path, claimed,
           cfg->second.find("\"n_experts\"") != std::string::npos ? " and experts" : "", held);
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
