#include "nn/checkpoint.h"

#include <charconv>
#include <cmath>
#include <nlohmann/json.hpp>

#include "autograd/grad_mode.h"
#include "autograd/ops.h"

namespace dg::nn {

namespace {

constexpr const char* kFormat = "dyngrad-checkpoint-1";

uint64_t parse_u64(const Metadata& meta, const std::string& key, const std::string& path) {
  auto it = meta.find(key);
  DG_CHECK(it != meta.end(), "checkpoint {}: metadata has no '{}'", path, key);
  uint64_t v = 0;
  const std::string& s = it->second;
  auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  DG_CHECK(ec == std::errc() && end == s.data() + s.size(),
           "checkpoint {}: metadata '{}' = '{}' is not an integer in [0, 2^64)", path, key, excerpt(s));
  return v;
}

// Tensors of the file whose names start with prefix, with the prefix removed.
std::map<std::string, Tensor> with_prefix(const NamedTensors& all, const std::string& prefix) {
  std::map<std::string, Tensor> out;
  for (auto& [name, t] : all)
    if (name.rfind(prefix, 0) == 0) out.emplace(name.substr(prefix.size()), t);
  return out;
}

// Whether the file's value `got` of metadata `key` matches `want`: equal
// strings, or two JSON objects (a model config) equal key by key whatever
// their key order and number spelling (2 and 2.0); a dg::Error naming the
// first differing key and both values when they are objects that differ.
bool same_value(const std::string& path, const std::string& key, const std::string& got, const std::string& want) {
  if (got == want) return true;
  const nlohmann::json a = nlohmann::json::parse(got, nullptr, false), b = nlohmann::json::parse(want, nullptr, false);
  if (!a.is_object() || !b.is_object()) return false;
  auto shown = [](const nlohmann::json& j, const std::string& k) {
    return j.contains(k) ? excerpt(j.at(k).dump(), 64) : std::string("(missing)");
  };
  for (const nlohmann::json* j : {&a, &b})
    for (auto& [k, v] : j->items())
      DG_CHECK(a.contains(k) && b.contains(k) && a.at(k) == b.at(k),
               "checkpoint {}: {} differs at key '{}': {} in the file but {} in this run", path, key, excerpt(k, 64),
               shown(a, k), shown(b, k));
  return true;
}

}  // namespace

bool all_finite(const Tensor& t) {
  if (!is_floating(t.dtype()) || t.numel() == 0) return true;
  NoGradGuard no_grad;
  // A sum in f64 of f32/f64 values is non-finite iff some value is (no f32
  // sum overflows f64; f64 sums of huge finite values could, and then the
  // weights are unusable anyway).
  return std::isfinite(sum(to_dtype(t, DType::f64)).item<double>());
}

std::string first_nonfinite(const NamedTensors& tensors) {
  for (auto& [name, t] : tensors)
    if (!all_finite(t)) return name;
  return "";
}

void put_generator(Metadata& meta, const std::string& prefix, const Generator& gen) {
  meta[prefix + ".seed"] = std::to_string(gen.seed());
  meta[prefix + ".offset"] = std::to_string(gen.offset());
}

void get_generator(const Metadata& meta, const std::string& prefix, Generator& gen, const std::string& path) {
  gen.set_state(parse_u64(meta, prefix + ".seed", path), parse_u64(meta, prefix + ".offset", path));
}

void save_checkpoint(const std::string& path, const Module& model, const Optimizer* opt, int64_t step,
                     const Metadata& metadata) {
  NamedTensors tensors;
  for (auto& [name, t] : model.state_dict()) tensors.emplace("model." + name, t);
  if (opt)
    for (auto& [name, t] : opt->state_dict()) tensors.emplace("optim." + name, t);
  const std::string bad = first_nonfinite(tensors);
  DG_CHECK(bad.empty(),
           "save_checkpoint {}: tensor '{}' holds NaN or infinity; not written (the previous checkpoint is kept)",
           path, bad);
  Metadata meta = metadata;
  meta["format"] = kFormat;
  meta["step"] = std::to_string(step);
  meta["has_optimizer"] = std::to_string(opt != nullptr ? 1 : 0);
  save_safetensors(path, tensors, meta);
}

Metadata load_checkpoint(const std::string& path, Module& model, Optimizer* opt, const Metadata& expect,
                         bool allow_nonfinite) {
  TensorFile f = load_safetensors(path);
  if (!allow_nonfinite) {
    const std::string bad = first_nonfinite(f.tensors);
    DG_CHECK(bad.empty(), "checkpoint {}: tensor '{}' holds NaN or infinity (a diverged run; allow_nonfinite / "
             "--allow-nonfinite loads it anyway)", path, bad);
  }
  auto fmt_it = f.metadata.find("format");
  DG_CHECK(fmt_it != f.metadata.end() && fmt_it->second == kFormat,
           "checkpoint {}: not a dyngrad checkpoint (metadata 'format' is '{}', expected '{}')", path,
           fmt_it == f.metadata.end() ? "missing" : excerpt(fmt_it->second), kFormat);
  for (auto& [key, want] : expect) {
    auto it = f.metadata.find(key);
    DG_CHECK(it != f.metadata.end(), "checkpoint {}: metadata has no '{}' (expected '{}')", path, key, want);
    DG_CHECK(same_value(path, key, it->second, want), "checkpoint {}: '{}' is '{}' in the file but '{}' in this run", path, key,
             excerpt(it->second, 400), excerpt(want, 400));
  }
  const uint64_t step = parse_u64(f.metadata, "step", path);
  DG_CHECK(step <= static_cast<uint64_t>(INT64_MAX), "checkpoint {}: metadata 'step' = {} is out of range", path,
           step);
  std::map<std::string, Tensor> model_state = with_prefix(f.tensors, "model.");
  std::map<std::string, Tensor> optim_state = with_prefix(f.tensors, "optim.");
  if (opt) DG_CHECK(f.metadata.count("has_optimizer") && f.metadata.at("has_optimizer") == "1",
                    "checkpoint {}: holds no optimizer state", path);
  NamedTensors targets;
  for (auto& [name, t] : model.state_dict()) targets.emplace(name, t);
  NamedTensors model_file(model_state.begin(), model_state.end());
  // All or nothing: if the optimizer part turns out bad after the model was
  // written, the model (and optimizer) are restored from copies.
  NamedTensors model_backup;
  std::map<std::string, Tensor> optim_backup;
  {
    NoGradGuard no_grad;
    for (auto& [name, t] : targets) model_backup.emplace(name, clone(t));
    if (opt)
      for (auto& [name, t] : opt->state_dict()) optim_backup.emplace(name, clone(t));
  }
  try {
    load_into(TensorFile{model_file, {}}, targets, /*strict=*/true, path);
    if (opt) opt->load_state_dict(optim_state);
  } catch (const Error& e) {
    load_into(TensorFile{model_backup, {}}, targets, /*strict=*/true, path);
    if (opt && !optim_backup.empty()) opt->load_state_dict(optim_backup);
    throw Error(fmt::format("checkpoint {}: {}", path, e.what()));
  }
  return f.metadata;
}

}  // namespace dg::nn
