#include "autograd/graphviz.h"

#include <algorithm>
#include <map>
#include <set>
#include <unordered_set>

#include "autograd/engine.h"

namespace dg {

namespace {

bool before(const Node* a, const Node* b) { return a->seq() < b->seq(); }  // tape order

}  // namespace

std::vector<const Node*> tape(const Tensors& roots) {
  std::vector<const Node*> nodes, stack;
  std::unordered_set<const Node*> seen;
  for (const Tensor& r : roots) {
    const Node* n = r.defined() ? r.grad_fn().get() : nullptr;
    if (n && seen.insert(n).second) stack.push_back(n);
  }
  while (!stack.empty()) {  // iterative DFS: graphs can be 10^5 nodes deep
    const Node* n = stack.back();
    stack.pop_back();
    nodes.push_back(n);
    for (const Edge& e : n->next())
      if (e.node && seen.insert(e.node.get()).second) stack.push_back(e.node.get());
  }
  std::sort(nodes.begin(), nodes.end(), before);
  return nodes;
}

namespace {

std::string saved_text(const Node& n) {
  std::string s;
  for (const Shape& sh : n.saved_shapes()) s += fmt::format("{}{}", s.empty() ? "" : ", ", sh);
  return s;
}

// One node's DOT line: an ellipse for a leaf, a box for an op; `extra` is
// appended to the label on lines of its own.
std::string dot_node(const Node& n, const std::string& extra) {
  const std::string more = extra.empty() ? "" : "\\n" + extra;
  if (n.is_accumulate_grad()) {
    auto meta = static_cast<const AccumulateGrad&>(n).meta();
    return fmt::format("  n{} [shape=ellipse, style=filled, fillcolor=lightblue, label=\"leaf\\n{}{}\"];\n", n.seq(),
                       meta && meta->grad.defined() ? fmt::format("{}", meta->grad.shape()) : std::string("param"),
                       more);
  }
  std::string saved = saved_text(n);
  return fmt::format("  n{} [shape=box, label=\"#{} {}\\nout {}{}{}{}\"];\n", n.seq(), n.seq(), n.name(), n.out_shape(),
                     saved.empty() ? "" : "\\nsaved ", saved, more);
}

std::string dot_edge(const Node& n, size_t input) {
  const Edge& e = n.next()[input];
  return fmt::format("  n{} -> n{} [label=\"{}\"];\n", e.node->seq(), n.seq(), e.shape);
}

constexpr const char* kDotHeader = "digraph tape {\n  rankdir=BT;\n  node [fontname=\"monospace\", fontsize=10];\n";

}  // namespace

std::string to_dot(const Tensors& roots) {
  std::string out = kDotHeader;
  for (const Node* n : tape(roots)) {
    out += dot_node(*n, "");
    if (n->is_accumulate_grad()) continue;
    for (size_t i = 0; i < n->next().size(); ++i)
      if (n->next()[i].node) out += dot_edge(*n, i);
  }
  return out + "}\n";
}

bool GradientFlow::contains(const Node* n) const {
  return std::binary_search(nodes.begin(), nodes.end(), n, before);
}

namespace {

bool any_nonzero(const Tensor& t) {
  if (!t.defined()) return false;
  for (double v : t.to_vector<double>())
    if (v != 0.0) return true;
  return false;
}

}  // namespace

GradientFlow gradient_flow(const Tensors& roots, const Tensors& grad_roots) {
  std::set<const Node*> kept;
  std::vector<std::pair<const Node*, size_t>> edges;
  // A hook on every op node sees the gradient that reached it and, by running
  // the node's backward once more, the gradient it sends to each input.
  std::vector<Node*> hooked;
  for (const Node* cn : tape(roots)) {
    if (cn->is_accumulate_grad()) continue;  // leaves: reached through kept edges
    Node* n = const_cast<Node*>(cn);         // tape() hands out const pointers; the nodes are not const
    n->pre_hooks.push_back([n, &kept, &edges](const Tensor& g) -> Tensor {
      if (!any_nonzero(g)) return Tensor();
      kept.insert(n);
      Tensors grads = n->apply(g);
      for (size_t i = 0; i < grads.size() && i < n->next().size(); ++i)
        if (n->next()[i].node && any_nonzero(grads[i])) {
          edges.emplace_back(n, i);
          kept.insert(n->next()[i].node.get());
        }
      return Tensor();
    });
    hooked.push_back(n);
  }
  struct Unhook {  // the hooks go, even when backward throws
    std::vector<Node*>& nodes;
    ~Unhook() {
      for (Node* n : nodes) n->pre_hooks.pop_back();
    }
  } unhook{hooked};
  grad(roots, {}, grad_roots, /*retain_graph=*/true, /*create_graph=*/false, /*allow_unused=*/true);

  GradientFlow flow;
  flow.nodes.assign(kept.begin(), kept.end());
  std::sort(flow.nodes.begin(), flow.nodes.end(), before);
  auto by_seq = [](const auto& e) { return std::pair(e.first->seq(), e.second); };
  std::sort(edges.begin(), edges.end(), [&](const auto& a, const auto& b) { return by_seq(a) < by_seq(b); });
  flow.edges = std::move(edges);
  return flow;
}

std::string to_dot(const GradientFlow& flow, const DotLabels& labels) {
  std::string out = kDotHeader;
  std::map<std::string, std::string> clusters;  // name -> its nodes' lines
  for (const Node* n : flow.nodes) {
    std::string line = dot_node(*n, labels.label ? labels.label(*n) : "");
    std::string cluster = labels.cluster ? labels.cluster(*n) : "";
    if (cluster.empty()) out += line;
    else clusters[cluster] += "  " + line;
  }
  int id = 0;
  for (const auto& [name, lines] : clusters)
    out += fmt::format("  subgraph cluster_{} {{\n    label=\"{}\";\n{}  }}\n", id++, name, lines);
  for (const auto& [n, i] : flow.edges) out += dot_edge(*n, i);
  return out + "}\n";
}

}  // namespace dg
