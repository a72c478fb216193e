#include "autograd/graphviz.h"

#include <algorithm>
#include <unordered_set>

namespace dg {

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
  std::sort(nodes.begin(), nodes.end(), [](const Node* a, const Node* b) { return a->seq() < b->seq(); });
  return nodes;
}

namespace {

std::string saved_text(const Node& n) {
  std::string s;
  for (const Shape& sh : n.saved_shapes()) s += fmt::format("{}{}", s.empty() ? "" : ", ", sh);
  return s;
}

}  // namespace

std::string to_dot(const Tensors& roots) {
  std::string out = "digraph tape {\n  rankdir=BT;\n  node [fontname=\"monospace\", fontsize=10];\n";
  for (const Node* n : tape(roots)) {
    if (n->is_accumulate_grad()) {
      auto meta = static_cast<const AccumulateGrad*>(n)->meta();
      out += fmt::format("  n{} [shape=ellipse, style=filled, fillcolor=lightblue, label=\"leaf\\n{}\"];\n", n->seq(),
                         meta && meta->grad.defined() ? fmt::format("{}", meta->grad.shape()) : std::string("param"));
      continue;
    }
    std::string saved = saved_text(*n);
    out += fmt::format("  n{} [shape=box, label=\"#{} {}\\nout {}{}{}\"];\n", n->seq(), n->seq(), n->name(),
                       n->out_shape(), saved.empty() ? "" : "\\nsaved ", saved);
    for (size_t i = 0; i < n->next().size(); ++i) {
      const Edge& e = n->next()[i];
      if (e.node) out += fmt::format("  n{} -> n{} [label=\"{}\"];\n", e.node->seq(), n->seq(), e.shape);
    }
  }
  return out + "}\n";
}

}  // namespace dg
