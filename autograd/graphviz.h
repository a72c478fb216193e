#pragma once
// Looking at the tape: the recorded nodes in sequence order, a Graphviz DOT
// rendering of the graph (`dot -Tsvg graph.dot > graph.svg`), and the part of
// the graph that a gradient actually flows through.
//
//   for (const Node* n : dg::tape({loss})) fmt::print("#{} {}\n", n->seq(), n->name());
//   std::string dot = dg::to_dot({loss});
//   GradientFlow f = dg::gradient_flow({logits}, {one_row});  // what that row depends on
//   std::string part = dg::to_dot(f);
#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "autograd/node.h"

namespace dg {

// Nodes reachable from the roots, in increasing sequence order (the order the
// forward pass ran them); AccumulateGrad nodes (leaves) included.
std::vector<const Node*> tape(const Tensors& roots);

// DOT graph: one box per op (name, sequence number, output shape, saved
// tensors), one ellipse per leaf, edges from inputs to ops.
std::string to_dot(const Tensors& roots);

// The part of a graph that a gradient flows through. A node is kept when a
// gradient with a nonzero element reaches it; an edge (node, i) is kept when
// the node's backward sends a nonzero gradient to its input i.
struct GradientFlow {
  std::vector<const Node*> nodes;                     // in sequence order, leaves included
  std::vector<std::pair<const Node*, size_t>> edges;  // (consumer, input index)
  bool contains(const Node* n) const;
};

// Runs backward from `roots`, seeded with `grad_roots` (one per root, each of
// its root's shape), and records where the gradient is nonzero (exactly: some
// element != 0). Leaves' .grad are not touched and the graph is retained.
// Seeding a single row of a batched output keeps the part of the tape that
// row depends on: nodes shared by many rows stay, but a node whose incoming
// gradient is exactly zero (work done only for other rows) drops out. Each
// node's backward runs twice: once inside a hook, to see its per-input
// gradients, and once by the engine.
GradientFlow gradient_flow(const Tensors& roots, const Tensors& grad_roots);

// Extra text for a node's DOT label, and the cluster (a labelled box) to draw
// it in; empty strings for none.
struct DotLabels {
  std::function<std::string(const Node&)> label;
  std::function<std::string(const Node&)> cluster;
};

// DOT of the kept part only, drawn like to_dot(roots), with `labels` added.
std::string to_dot(const GradientFlow& flow, const DotLabels& labels = {});

}  // namespace dg
