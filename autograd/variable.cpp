// The autograd members of Tensor (declared in tensor/tensor.h) and hooks.
#include "autograd/variable.h"

#include "autograd/engine.h"
#include "autograd/node.h"
#include "autograd/ops.h"
#include "tensor/creation.h"

namespace dg {

AutogradMeta& autograd_meta(const Tensor& t) {
  DG_CHECK(t.defined(), "autograd: undefined tensor");
  auto& m = t.impl()->autograd;
  if (!m) m = std::make_shared<AutogradMeta>();
  return *m;
}

bool Tensor::requires_grad() const {
  const AutogradMeta* m = impl()->autograd.get();
  return m && m->requires_grad;
}

Tensor& Tensor::set_requires_grad(bool enabled) {
  DG_CHECK(defined(), "set_requires_grad: undefined tensor");
  AutogradMeta* m = impl()->autograd.get();
  DG_CHECK(!(m && m->grad_fn), "set_requires_grad: only leaf tensors can change requires_grad; this one was "
                               "produced by '{}' (use detach() first)", m ? m->grad_fn->name() : "");
  DG_CHECK(!enabled || is_floating(dtype()), "set_requires_grad: only floating tensors can require grad, got {}",
           dtype());
  if (enabled || m) autograd_meta(*this).requires_grad = enabled;
  return *this;
}

Tensor Tensor::grad() const {
  const AutogradMeta* m = impl()->autograd.get();
  return m ? m->grad : Tensor();
}

void Tensor::set_grad(const Tensor& g) {
  DG_CHECK(!g.defined() || g.shape() == shape(), "set_grad: gradient of shape {} for a tensor of shape {}",
           g.shape(), shape());
  autograd_meta(*this).grad = g;
}

void Tensor::zero_grad() {
  if (AutogradMeta* m = impl()->autograd.get()) m->grad = Tensor();
}

bool Tensor::is_leaf() const {
  const AutogradMeta* m = impl()->autograd.get();
  return !m || !m->grad_fn;
}

std::shared_ptr<Node> Tensor::grad_fn() const {
  const AutogradMeta* m = impl()->autograd.get();
  return m ? m->grad_fn : nullptr;
}

void Tensor::backward(const Tensor& gradient, bool retain_graph, bool create_graph) const {
  dg::backward({*this}, gradient.defined() ? Tensors{gradient} : Tensors{}, retain_graph, create_graph);
}

Tensor Tensor::to(Device device) const { return dg::to(*this, device); }

Tensor Tensor::detach() const { return as_strided(*this, shape(), strides(), offset()); }

void register_hook(const Tensor& t, GradHook hook) {
  DG_CHECK(t.requires_grad(), "register_hook: the tensor (shape {}) does not require grad", t.shape());
  AutogradMeta& m = autograd_meta(t);
  if (m.grad_fn) m.grad_fn->pre_hooks.push_back(std::move(hook));
  else m.hooks.push_back(std::move(hook));
}

}  // namespace dg
