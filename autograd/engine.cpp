// The backward engine. One run:
//  1. find the nodes reachable from the roots (iterative DFS) and count, for
//     each, the edges that point to it from other reachable nodes;
//  2. seed the roots' gradient buffers;
//  3. repeatedly take the ready node with the highest sequence number (a
//     max-heap: reverse tape order), apply its hooks and backward, sum each
//     input gradient back to the input's shape, and add it into the next
//     node's buffer (or the backward has already added it there in place:
//     accumulated_grad); a node is ready when all its consumers have run.
// Nothing recurses, so a 10^5-op chain needs no stack.
#include "autograd/engine.h"

#include <queue>
#include <unordered_map>

#include "autograd/ops.h"
#include "autograd/ops/common.h"

namespace dg {

void set_current_node(const Node* n);  // node.cpp

namespace {

thread_local bool t_engine_running = false;
// The node being applied, when its backward may accumulate in place
// (accumulated_grad); null otherwise.
thread_local Node* t_accumulating = nullptr;

struct BySeq {
  bool operator()(const Node* a, const Node* b) const { return a->seq() < b->seq(); }
};

void check_finite_grad(const Node& node, const Tensor& g, size_t input) {
  if (!g.defined() || !is_floating(g.dtype())) return;
  for (double v : g.to_vector<double>()) {
    DG_CHECK(std::isfinite(v), "anomaly: the backward of '{}' (created at {}:{}) returned a non-finite value ({}) "
             "in the gradient for input {} of shape {}", node.name(), node.site().file_name(), node.site().line(), v,
             input, g.shape());
  }
}

Tensor run_hooks(const std::vector<GradHook>& hooks, Tensor g) {
  for (const GradHook& h : hooks) {
    Tensor r = h(g);
    if (r.defined()) {
      DG_CHECK(r.shape() == g.shape(), "gradient hook: returned shape {} for a gradient of shape {}", r.shape(),
               g.shape());
      g = std::move(r);
    }
  }
  return g;
}

Node* root_node(const Tensor& t, const char* who) {
  DG_CHECK(t.defined(), "{}: undefined output tensor", who);
  DG_CHECK(t.requires_grad(), "{}: the output (shape {}) does not require grad: no input that requires grad "
           "was used to compute it, or it was computed under NoGradGuard", who, t.shape());
  AutogradMeta& m = autograd_meta(t);
  if (m.grad_fn) return m.grad_fn.get();
  std::shared_ptr<Node> acc = m.grad_accumulator.lock();
  if (!acc) {
    acc = std::make_shared<AccumulateGrad>(t.impl()->autograd);
    m.grad_accumulator = acc;
  }
  return acc.get();
}

struct Run {
  bool retain_graph, create_graph, accumulate;
  // dg::grad: node -> slot of the input whose gradient is captured there.
  std::unordered_map<const Node*, size_t> capture;
  Tensors captured;
  std::vector<std::shared_ptr<Node>> keep_alive;  // root accumulators made for leaf roots

  void execute(const Tensors& roots, const Tensors& grad_roots, const char* who);
};

void Run::execute(const Tensors& roots, const Tensors& grad_roots, const char* who) {
  DG_CHECK(!t_engine_running, "{}: called while another backward is running on this thread (from a hook or a "
           "custom backward?); compute it after the outer backward returns", who);
  DG_CHECK(grad_roots.empty() || grad_roots.size() == roots.size(),
           "{}: {} outputs but {} gradients for them", who, roots.size(), grad_roots.size());
  t_engine_running = true;
  struct Reset {
    ~Reset() {
      t_engine_running = false;
      t_accumulating = nullptr;
      set_current_node(nullptr);
    }
  } reset;

  // 1. Reachable nodes and dependency counts.
  std::vector<Node*> root_nodes;
  for (const Tensor& r : roots) {
    root_nodes.push_back(root_node(r, who));
    if (root_nodes.back()->is_accumulate_grad()) keep_alive.push_back(autograd_meta(r).grad_accumulator.lock());
  }
  std::vector<Node*> visited, stack(root_nodes.begin(), root_nodes.end());
  for (Node* n : root_nodes) n->pending = -1;  // -1 marks "seen" during the DFS
  visited.insert(visited.end(), root_nodes.begin(), root_nodes.end());
  while (!stack.empty()) {
    Node* n = stack.back();
    stack.pop_back();
    for (const Edge& e : n->next()) {
      Node* m = e.node.get();
      if (!m) continue;
      if (m->pending == 0) {  // first visit
        m->pending = -1;
        visited.push_back(m);
        stack.push_back(m);
      }
    }
  }
  for (Node* n : visited) n->pending = 0;
  for (Node* n : visited)
    for (const Edge& e : n->next())
      if (e.node) ++e.node->pending;
  struct Clear {  // leave no buffers or counts behind, even on error
    std::vector<Node*>& nodes;
    ~Clear() {
      for (Node* n : nodes) n->grad_buffer = Tensor(), n->pending = 0;
    }
  } clear{visited};

  // 2. Seed the roots.
  GradModeGuard mode(create_graph);
  for (size_t i = 0; i < roots.size(); ++i) {
    const Tensor& r = roots[i];
    Tensor g;
    if (!grad_roots.empty() && grad_roots[i].defined()) {
      g = grad_roots[i];
      DG_CHECK(g.shape() == r.shape(), "{}: gradient of shape {} for an output of shape {}", who, g.shape(),
               r.shape());
      DG_CHECK(g.dtype() == r.dtype(), "{}: gradient of dtype {} for an output of dtype {}", who, g.dtype(),
               r.dtype());
      DG_CHECK(g.device() == r.device(), "{}: tensors on different devices: {} and {} (the gradient and the output "
               "of shape {})", who, g.device(), r.device(), r.shape());
    } else {
      DG_CHECK(r.numel() == 1, "{}: the output has shape {}; gradients can only be implied for outputs with one "
               "element (pass the output's gradient explicitly)", who, r.shape());
      g = ones(r.shape(), {r.dtype(), r.device()});
    }
    Node* n = root_nodes[i];
    n->grad_buffer = n->grad_buffer.defined() ? add(n->grad_buffer, g) : g;
  }

  // 3. Reverse sequence order over ready nodes.
  std::priority_queue<Node*, std::vector<Node*>, BySeq> ready;
  for (Node* n : root_nodes)
    if (n->pending == 0) {
      n->pending = -1;  // queued
      ready.push(n);
    }
  while (!ready.empty()) {
    Node* n = ready.top();
    ready.pop();
    Tensor g = std::move(n->grad_buffer);
    n->grad_buffer = Tensor();
    set_current_node(n);
    Tensors grads;
    if (g.defined()) {
      if (n->is_accumulate_grad()) {
        std::shared_ptr<AutogradMeta> meta = static_cast<AccumulateGrad*>(n)->meta();
        if (meta) g = run_hooks(meta->hooks, std::move(g));
      } else {
        g = run_hooks(n->pre_hooks, std::move(g));
      }
      if (auto it = capture.find(n); it != capture.end()) captured[it->second] = g;
      if (n->is_accumulate_grad()) {
        if (accumulate) n->apply(g);
      } else {
        t_accumulating = create_graph || is_anomaly_enabled() ? nullptr : n;
        grads = n->apply(g);
        t_accumulating = nullptr;
        DG_ASSERT(grads.size() <= n->next().size(), "backward of '{}' returned {} gradients for {} inputs",
                  n->name(), grads.size(), n->next().size());
        if (!retain_graph) n->release();
      }
    } else if (!retain_graph) {
      n->release();
    }
    g = Tensor();
    for (size_t i = 0; i < n->next().size(); ++i) {
      const Edge& e = n->next()[i];
      Node* m = e.node.get();
      if (!m) continue;
      if (i < grads.size() && grads[i].defined()) {
        Tensor gi = std::move(grads[i]);
        if (!(gi.shape() == e.shape)) gi = sum_to(gi, e.shape);
        DG_ASSERT(gi.shape() == e.shape && gi.dtype() == e.dtype && gi.device() == e.device,
                  "backward of '{}' produced a gradient of shape {} ({}, {}) for input {} of shape {} ({}, {})",
                  n->name(), gi.shape(), gi.dtype(), gi.device(), i, e.shape, e.dtype, e.device);
        if (is_anomaly_enabled()) check_finite_grad(*n, gi, i);
        m->grad_buffer = m->grad_buffer.defined() ? add(m->grad_buffer, gi) : std::move(gi);
      }
      if (--m->pending == 0) {
        m->pending = -1;
        ready.push(m);
      }
    }
  }
}

}  // namespace

Tensor accumulated_grad(size_t input) {
  const Node* n = t_accumulating;
  if (!n || input >= n->next().size() || !n->next()[input].node) return Tensor();
  const Edge& e = n->next()[input];
  const Tensor& b = e.node->grad_buffer;
  const bool owned = b.defined() && b.impl_ptr().use_count() == 1 && b.storage_ptr().use_count() == 1 &&
                     !b.impl()->autograd && b.is_contiguous() && b.shape() == e.shape && b.dtype() == e.dtype &&
                     b.device() == e.device;
  return owned ? b : Tensor();
}

void backward(const Tensors& roots, const Tensors& grad_roots, bool retain_graph, bool create_graph) {
  // As in PyTorch, create_graph implies retain_graph: the new graph still
  // points into the old one.
  Run run{retain_graph || create_graph, create_graph, /*accumulate=*/true, {}, {}, {}};
  run.execute(roots, grad_roots, "backward");
}

Tensors grad(const Tensors& outputs, const Tensors& inputs, const Tensors& grad_outputs, bool retain_graph,
             bool create_graph, bool allow_unused) {
  Run run{retain_graph || create_graph, create_graph, /*accumulate=*/false, {}, Tensors(inputs.size()), {}};
  std::vector<std::shared_ptr<Node>> input_nodes;
  for (size_t i = 0; i < inputs.size(); ++i) {
    const Tensor& x = inputs[i];
    DG_CHECK(x.defined() && x.requires_grad(), "grad: input {} (shape {}) does not require grad", i,
             x.defined() ? x.shape() : Shape{});
    AutogradMeta& m = autograd_meta(x);
    std::shared_ptr<Node> n = m.grad_fn ? m.grad_fn : m.grad_accumulator.lock();
    if (n) {
      DG_CHECK(!run.capture.contains(n.get()), "grad: input {} appears twice", i);
      run.capture[n.get()] = i;
      input_nodes.push_back(std::move(n));
    }
  }
  run.execute(outputs, grad_outputs, "grad");
  for (size_t i = 0; i < inputs.size(); ++i) {
    DG_CHECK(allow_unused || run.captured[i].defined(),
             "grad: input {} (shape {}) was not used to compute the outputs (pass allow_unused=true to get an "
             "undefined gradient instead)", i, inputs[i].shape());
  }
  return run.captured;
}

}  // namespace dg
