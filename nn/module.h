#pragma once
// nn::Module: a tree of named parameters, buffers and submodules.
//
//   struct Net : nn::Module {
//     std::shared_ptr<nn::Linear> fc;
//     Net() { fc = register_module("fc", std::make_shared<nn::Linear>(4, 2)); }
//     Tensor forward(const Tensor& x) { return fc->forward(x); }
//   };
//   Net net;
//   for (auto& [name, p] : net.named_parameters()) ...   // "fc.weight", "fc.bias"
//   auto sd = net.state_dict();                           // name -> tensor (shared, not copied)
//   net.load_state_dict(sd);                              // copies values in place, checks shapes
//
// A parameter is a leaf tensor that requires grad; a module keeps a handle to
// it (a Tensor shares its TensorImpl), so the member `fc->weight` and the entry
// in named_parameters() are the same tensor. Loading writes into that tensor
// in place and never replaces it, so optimizers holding the handles stay valid.
// Names are dotted paths in registration order; a list of blocks is just
// modules registered as "blocks.0", "blocks.1", ...
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "tensor/tensor.h"

namespace dg::nn {

using NamedTensorList = std::vector<std::pair<std::string, Tensor>>;

class Module {
 public:
  Module() = default;
  virtual ~Module() = default;
  Module(const Module&) = delete;
  Module& operator=(const Module&) = delete;

  // Parameters of this module and every submodule, depth first, dotted names.
  NamedTensorList named_parameters() const;
  std::vector<Tensor> parameters() const;
  NamedTensorList named_buffers() const;
  int64_t num_parameters() const;

  // Parameters and buffers by name; the tensors are shared, not copied.
  std::map<std::string, Tensor> state_dict() const;
  // Copies each entry into the same-named parameter or buffer (shape and dtype
  // must match). strict: a missing or unexpected name is an error listing them.
  void load_state_dict(const std::map<std::string, Tensor>& state, bool strict = true);

  // Training mode (dropout on, ...) for this module and its submodules.
  void train(bool on = true);
  void eval() { train(false); }
  bool is_training() const { return training_; }

  void zero_grad();  // drops every parameter's gradient

  // Moves every parameter and buffer to `device` in place: each tensor keeps
  // its identity (the TensorImpl that optimizers and members hold) and gets
  // a contiguous copy of its values on `device` as its storage. Gradients are
  // dropped and storage versions bumped (a graph recorded before the move
  // refuses to backward). Returns *this; a no-op for tensors already there.
  //   model.to(dg::Device::cuda(0));
  Module& to(Device device);

  const std::vector<std::pair<std::string, std::shared_ptr<Module>>>& children() const { return children_; }

 protected:
  // Registers t as a parameter (made a leaf that requires grad) and returns it.
  Tensor register_parameter(std::string name, Tensor t);
  Tensor register_buffer(std::string name, Tensor t);
  template <class M>
  std::shared_ptr<M> register_module(std::string name, std::shared_ptr<M> m) {
    children_.emplace_back(std::move(name), m);
    return m;
  }

 private:
  void collect(const std::string& prefix, NamedTensorList& out, bool buffers) const;

  NamedTensorList params_, buffers_;
  std::vector<std::pair<std::string, std::shared_ptr<Module>>> children_;
  bool training_ = true;
};

}  // namespace dg::nn
