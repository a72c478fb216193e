#pragma once
// AutogradMeta: what a tensor carries when it takes part in autograd. tensor/
// holds it as an opaque pointer; only autograd/ looks inside.
#include <functional>
#include <memory>
#include <vector>

#include "tensor/tensor.h"

namespace dg {

class Node;

// A gradient hook: sees the gradient flowing into a tensor; returning a
// defined tensor replaces it.
using GradHook = std::function<Tensor(const Tensor&)>;

struct AutogradMeta {
  bool requires_grad = false;
  Tensor grad;                          // leaves: accumulated by backward()
  std::shared_ptr<Node> grad_fn;        // non-leaves: the node that produced the tensor
  std::weak_ptr<Node> grad_accumulator;  // leaves: their AccumulateGrad node, while a graph uses it
  std::vector<GradHook> hooks;          // leaves' hooks (non-leaf hooks live on grad_fn)
  ~AutogradMeta();                      // releases grad_fn without recursion (see node.h)
};

// The meta of t, created on first use.
AutogradMeta& autograd_meta(const Tensor& t);
inline AutogradMeta* autograd_meta_if(const Tensor& t) { return t.impl()->autograd.get(); }

// Registers a hook on t's gradient (leaf or not).
void register_hook(const Tensor& t, GradHook hook);

}  // namespace dg
