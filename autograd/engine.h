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

// For a backward function, while the engine applies its node: the gradient
// already accumulated for the node's input `input` (the sum of what the
// input's other consumers sent so far), when the backward may add its own
// gradient for that input into it in place and return an undefined tensor
// for that input instead. Undefined when it may not: no gradient has arrived
// yet; the engine is not the buffer's only holder (a gradient passed on to
// two inputs, a view, a hook's copy); the buffer is not contiguous; the
// backward is recorded (create_graph) or checked (anomaly mode). A weight
// used at several steps then gets its gradient summed inside the GEMMs
// (beta = 1) and a gathered tensor's rows added where they belong, with no
// temporary gradient and no separate add.
//
//   if (Tensor acc = accumulated_grad(1); acc.defined()) { add g^T x into acc; grads[1] = Tensor(); }
Tensor accumulated_grad(size_t input);

}  // namespace dg
