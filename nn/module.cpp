#include "nn/module.h"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <set>

#include "autograd/grad_mode.h"
#include "autograd/ops.h"
#include "tensor/creation.h"

namespace dg::nn {

Tensor Module::register_parameter(std::string name, Tensor t) {
  DG_CHECK(t.defined(), "register_parameter: '{}' is undefined", name);
  if (!t.requires_grad()) t.set_requires_grad(true);
  params_.emplace_back(std::move(name), t);
  return t;
}

Tensor Module::register_buffer(std::string name, Tensor t) {
  buffers_.emplace_back(std::move(name), t);
  return t;
}

void Module::collect(const std::string& prefix, NamedTensorList& out, bool buffers) const {
  for (const auto& [name, t] : buffers ? buffers_ : params_) out.emplace_back(prefix + name, t);
  for (const auto& [name, child] : children_) child->collect(prefix + name + ".", out, buffers);
}

NamedTensorList Module::named_parameters() const {
  NamedTensorList out;
  collect("", out, false);
  return out;
}

NamedTensorList Module::named_buffers() const {
  NamedTensorList out;
  collect("", out, true);
  return out;
}

std::vector<Tensor> Module::parameters() const {
  std::vector<Tensor> out;
  for (auto& [name, t] : named_parameters()) out.push_back(t);
  return out;
}

int64_t Module::num_parameters() const {
  int64_t n = 0;
  for (auto& [name, t] : named_parameters()) n += t.numel();
  return n;
}

std::map<std::string, Tensor> Module::state_dict() const {
  std::map<std::string, Tensor> out;
  for (auto& [name, t] : named_parameters()) out.emplace(name, t);
  for (auto& [name, t] : named_buffers()) out.emplace(name, t);
  return out;
}

void Module::load_state_dict(const std::map<std::string, Tensor>& state, bool strict) {
  std::map<std::string, Tensor> mine = state_dict();
  std::vector<std::string> missing, unexpected;
  for (auto& [name, t] : mine)
    if (!state.count(name)) missing.push_back(name);
  for (auto& [name, t] : state)
    if (!mine.count(name)) unexpected.push_back(name);
  DG_CHECK(!strict || (missing.empty() && unexpected.empty()),
           "load_state_dict: missing keys [{}], unexpected keys [{}]", fmt::join(missing, ", "),
           fmt::join(unexpected, ", "));
  // Check everything before writing anything, so a bad state leaves the model unchanged.
  for (auto& [name, src] : state) {
    auto it = mine.find(name);
    if (it == mine.end()) continue;
    DG_CHECK(src.shape() == it->second.shape() && src.dtype() == it->second.dtype(),
             "load_state_dict: '{}' has shape {} {} in the state but {} {} in the model", name, src.shape(),
             src.dtype(), it->second.shape(), it->second.dtype());
  }
  NoGradGuard no_grad;
  for (auto& [name, src] : state) {
    auto it = mine.find(name);
    if (it == mine.end()) continue;
    Tensor dst = it->second;
    if (dst.is_same(src)) continue;
    copy_(dst, src);
  }
}

void Module::train(bool on) {
  training_ = on;
  for (auto& [name, child] : children_) child->train(on);
}

// Swaps the storage under the TensorImpl: every handle sees the moved tensor.
Module& Module::to(Device device) {
  NamedTensorList all = named_parameters();
  NamedTensorList buffers = named_buffers();
  all.insert(all.end(), buffers.begin(), buffers.end());
  for (auto& [name, t] : all) {
    if (t.device() == device) continue;
    Tensor moved = to_device(t, device);  // contiguous, offset 0
    const uint32_t version = t.version();
    t.zero_grad();
    TensorImpl* impl = t.impl();
    impl->storage = moved.storage_ptr();
    impl->strides = moved.strides();
    impl->offset = moved.offset();
    impl->storage->version = version + 1;
  }
  return *this;
}

void Module::zero_grad() {
  for (auto& [name, t] : named_parameters()) t.zero_grad();
}

}  // namespace dg::nn
