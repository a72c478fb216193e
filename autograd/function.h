#pragma once
// Custom differentiable functions: write forward and backward yourself, for
// ops the library does not have (a new routing scheme, a fused trick).
//
//   struct Cube : dg::Function<Cube> {
//     static constexpr const char* name = "Cube";
//     static Tensor forward(dg::FunctionCtx& ctx, const Tensor& x) {
//       ctx.save_for_backward({x});
//       return x * x * x;                  // runs without recording
//     }
//     static Tensors backward(dg::FunctionCtx& ctx, const Tensor& g) {
//       const Tensor& x = ctx.saved()[0];
//       return {3.0 * (g * x * x)};        // one gradient per Tensor argument
//     }
//   };
//   Tensor y = Cube::apply(x);
//
// forward runs in no-grad mode; apply records one node whose inputs are the
// Tensor arguments, in order (other arguments are passed through).
// backward is written with differentiable ops, so it supports create_graph.
#include <any>
#include <map>
#include <string>
#include <type_traits>

#include "autograd/ops/common.h"

namespace dg {

class FunctionCtx {
 public:
  void save_for_backward(const Tensors& ts) {
    saved_.clear();
    for (const Tensor& t : ts) saved_.emplace_back(t);
  }
  // The saved tensors; a dg::Error if one was modified in place since.
  Tensors saved() const {
    Tensors out;
    for (const SavedTensor& s : saved_) out.push_back(s.get());
    return out;
  }
  bool needs_input_grad(size_t i) const { return i < needs_.size() && needs_[i]; }
  // Anything else backward needs (sizes, flags): ctx.data["k"] = 3; std::any_cast<int>(ctx.data["k"]).
  std::map<std::string, std::any> data;

 private:
  template <class D>
  friend struct Function;
  std::vector<SavedTensor> saved_;
  std::vector<bool> needs_;
};

template <class Derived>
struct Function {
  template <class... Args>
  static Tensor apply(const Args&... args) {
    auto ctx = std::make_shared<FunctionCtx>();
    Tensors inputs;
    (collect(inputs, args), ...);
    Tensor out;
    {
      NoGradGuard no_grad;
      out = Derived::forward(*ctx, args...);
    }
    if (!should_record(inputs)) return out;
    // The output must be a fresh handle: forward may return an input as is.
    out = as_strided(out, out.shape(), out.strides(), out.offset());
    for (const Tensor& t : inputs) ctx->needs_.push_back(t.requires_grad());
    size_t n = inputs.size();
    record(op_name(), Site::current(), out, inputs, [ctx, n](const Tensor& g, const Node& node) -> Tensors {
      Tensors grads = Derived::backward(*ctx, g);
      DG_CHECK(grads.size() == n, "{}: backward returned {} gradients for {} tensor inputs", op_name(), grads.size(), n);
      return grads;
    });
    return out;
  }

 private:
  static const char* op_name() {
    if constexpr (requires { Derived::name; }) return Derived::name;
    else return "CustomFunction";
  }
  template <class T>
  static void collect(Tensors& inputs, const T& arg) {
    if constexpr (std::is_same_v<std::decay_t<T>, Tensor>) inputs.push_back(arg);
  }
};

}  // namespace dg
