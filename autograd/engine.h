#pragma once
// The engine: runs backward over the nodes reachable from the roots, in
// reverse sequence order (a max-heap of ready nodes, with dependency counts),
// iteratively. Gradients reaching a node are accumulated (+=); gradients
// along an edge are summed back to the input's shape if broadcast, and their
// shape and dtype are asserted.
//
//   loss.backward();                                  // accumulates into leaves' .grad
//   Tensors g = dg::grad({loss}, {x, w});             // returns the gradients instead
//   Tensors gg = dg::grad({loss}, {x}, {}, /*retain_graph=*/true, /*create_graph=*/true);
#include "autograd/node.h"

namespace dg {

// Accumulates d(sum roots·grads)/d(leaf) into every reachable leaf's .grad.
// Root grads default to ones for scalar roots.
void backward(const Tensors& roots, const Tensors& grad_roots = {}, bool retain_graph = false,
              bool create_graph = false);

// create_graph records the backward itself (higher-order gradients) and
// implies retain_graph, as in PyTorch.
//
// Returns d(sum outputs·grad_outputs)/d(inputs) without touching any .grad.
// An input the outputs do not depend on is an error unless allow_unused (then
// its gradient is undefined).
Tensors grad(const Tensors& outputs, const Tensors& inputs, const Tensors& grad_outputs = {},
             bool retain_graph = false, bool create_graph = false, bool allow_unused = false);

}  // namespace dg
