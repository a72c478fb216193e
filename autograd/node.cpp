#include "autograd/node.h"

#include <vector>

#include "autograd/ops.h"

namespace dg {

namespace {
std::atomic<uint64_t> g_next_seq{0};
thread_local const Node* t_current_node = nullptr;
}  // namespace

Node::Node(const char* name, Site site)
    : name_(name), seq_(g_next_seq.fetch_add(1, std::memory_order_relaxed)), site_(site) {}

Node::~Node() {
  for (Edge& e : next_) release_node(std::move(e.node));
}

void release_node(std::shared_ptr<Node>&& node) {
  thread_local std::vector<std::shared_ptr<Node>> pending;
  thread_local bool draining = false;
  if (!node) return;
  if (node.use_count() > 1) {  // not the last reference: nothing gets destroyed
    node.reset();
    return;
  }
  pending.push_back(std::move(node));
  if (draining) return;
  draining = true;
  while (!pending.empty()) {
    std::shared_ptr<Node> n = std::move(pending.back());
    pending.pop_back();
    n.reset();  // ~Node pushes its own last-reference edges onto `pending`
  }
  draining = false;
}

AutogradMeta::~AutogradMeta() { release_node(std::move(grad_fn)); }

const Node* current_node() { return t_current_node; }
void set_current_node(const Node* n) { t_current_node = n; }

SavedTensor::SavedTensor(const Tensor& t) : t_(t), version_(t.defined() ? t.version() : 0) {}

const Tensor& SavedTensor::get() const {
  if (t_.defined() && t_.version() != version_) {
    const Node* n = current_node();
    throw Error(fmt::format(
        "{}: a tensor of shape {} saved for backward was modified in place (version {} when saved, now {}); "
        "the gradient would be wrong. Node created at {}:{}. Clone the tensor before modifying it.",
        n ? n->name() : "backward", t_.shape(), version_, t_.version(), n ? n->site().file_name() : "?",
        n ? n->site().line() : 0));
  }
  return t_;
}

SavedTensor save_output(const Tensor& out) { return SavedTensor(as_strided(out, out.shape(), out.strides(), out.offset())); }

void throw_released(const Node& node) {
  throw Error(fmt::format(
      "{}: backward through this part of the graph a second time, but its saved tensors were freed after the "
      "first backward. Pass retain_graph=true to the first backward() if you need to go through it again.",
      node.name()));
}

AccumulateGrad::AccumulateGrad(std::shared_ptr<AutogradMeta> meta)
    : Node("AccumulateGrad", Site::current()), meta_(meta) {}

Tensors AccumulateGrad::apply(const Tensor& grad) {
  std::shared_ptr<AutogradMeta> meta = meta_.lock();
  if (!meta || !grad.defined()) return {};
  if (is_grad_enabled()) {  // create_graph: keep the gradient's own history
    meta->grad = meta->grad.defined() ? add(meta->grad, grad) : grad;
  } else if (!meta->grad.defined()) {
    // Own the gradient: a view, or a tensor someone else still holds, is
    // copied so that later in-place accumulation writes into no one else's data.
    bool owned = grad.impl_ptr().use_count() == 1 && grad.storage_ptr().use_count() == 1 && grad.is_contiguous() &&
                 !grad.requires_grad();
    meta->grad = owned ? grad : copy_of(grad);
  } else {
    add_(meta->grad, grad);
  }
  return {};
}

namespace {

Edge edge_to(const Tensor& t) {
  Edge e;
  if (!t.defined()) return e;
  e.shape = t.shape();
  e.dtype = t.dtype();
  e.device = t.device();
  AutogradMeta* m = autograd_meta_if(t);
  if (!m || !m->requires_grad) return e;
  if (m->grad_fn) {
    e.node = m->grad_fn;
  } else {
    e.node = m->grad_accumulator.lock();
    if (!e.node) {
      e.node = std::make_shared<AccumulateGrad>(t.impl()->autograd);
      m->grad_accumulator = e.node;
    }
  }
  return e;
}

template <class Range>
void attach(const Tensor& out, const std::shared_ptr<Node>& node, const Range& inputs, std::vector<Edge>& next,
            uint64_t& seq) {
  next.reserve(inputs.size());
  for (const Tensor& t : inputs) next.push_back(edge_to(t));
  // Numbered after its inputs' nodes (a leaf's AccumulateGrad may have just
  // been made above), so sequence order is always a topological order.
  seq = g_next_seq.fetch_add(1, std::memory_order_relaxed);
  AutogradMeta& m = autograd_meta(out);
  m.requires_grad = true;
  m.grad_fn = node;
}

}  // namespace

void attach_node(const Tensor& out, const std::shared_ptr<Node>& node, std::initializer_list<Tensor> inputs) {
  node->out_shape_ = out.shape();
  node->out_dtype_ = out.dtype();
  attach(out, node, inputs, node->next_, node->seq_);
}

void attach_node(const Tensor& out, const std::shared_ptr<Node>& node, const Tensors& inputs) {
  node->out_shape_ = out.shape();
  node->out_dtype_ = out.dtype();
  attach(out, node, inputs, node->next_, node->seq_);
}

}  // namespace dg
