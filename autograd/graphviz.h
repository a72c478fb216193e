#pragma once
// Looking at the tape: the recorded nodes in sequence order, and a Graphviz
// DOT rendering of the graph (`dot -Tsvg graph.dot > graph.svg`).
//
//   for (const Node* n : dg::tape({loss})) fmt::print("#{} {}\n", n->seq(), n->name());
//   std::string dot = dg::to_dot({loss});
#include <string>
#include <vector>

#include "autograd/node.h"

namespace dg {

// Nodes reachable from the roots, in increasing sequence order (the order the
// forward pass ran them); AccumulateGrad nodes (leaves) included.
std::vector<const Node*> tape(const Tensors& roots);

// DOT graph: one box per op (name, sequence number, output shape, saved
// tensors), one ellipse per leaf, edges from inputs to ops.
std::string to_dot(const Tensors& roots);

}  // namespace dg
