#pragma once
// Helpers shared by the op families in autograd/ops/*.cpp (not a public header).
//
// The shape of every op:
//
//   Tensor exp(const Tensor& x, Site site) {
//     Tensor y = unary_forward(UnaryOp::exp, x);                 // forward
//     if (should_record({x}))                                      // tape
//       record("exp", site, y, {x}, [y = save_output(y)](const Tensor& g, const Node&) -> Tensors {
//         return {g * y.get()};                                    // backward: d exp = exp
//       });
//     return y;
//   }
//
// Backward bodies are written with differentiable ops, so with create_graph
// they are recorded too (higher-order gradients); otherwise the engine runs
// them in no-grad mode and they record nothing.
#include <memory>
#include <optional>
#include <span>
#include <utility>
#include <vector>

#include "autograd/node.h"
#include "autograd/ops.h"
#include "tensor/backend.h"

namespace dg {

// Grad mode is on and some input requires grad.
inline bool should_record(std::initializer_list<Tensor> inputs) {
  if (!is_grad_enabled()) return false;
  for (const Tensor& t : inputs)
    if (t.defined() && t.requires_grad()) return true;
  return false;
}
inline bool should_record(const Tensors& inputs) {
  if (!is_grad_enabled()) return false;
  for (const Tensor& t : inputs)
    if (t.defined() && t.requires_grad()) return true;
  return false;
}

// Checks the output for NaN/Inf under anomaly mode (names op and site).
void check_anomaly_forward(const char* op, const Site& site, const Tensor& out);

// Records a node for `out` whose backward is `fn(grad_out, node) -> Tensors`
// (one gradient per input, undefined where none). `saved` lists the shapes of
// saved tensors for the printed tape.
template <class F>
void record(const char* name, const Site& site, const Tensor& out, std::initializer_list<Tensor> inputs, F&& fn,
            std::vector<Shape> saved = {}) {
  auto node = std::make_shared<FnNode<std::decay_t<F>>>(name, site, std::forward<F>(fn), std::move(saved));
  attach_node(out, node, inputs);
  if (is_anomaly_enabled()) check_anomaly_forward(name, site, out);
}
template <class F>
void record(const char* name, const Site& site, const Tensor& out, const Tensors& inputs, F&& fn,
            std::vector<Shape> saved = {}) {
  auto node = std::make_shared<FnNode<std::decay_t<F>>>(name, site, std::forward<F>(fn), std::move(saved));
  attach_node(out, node, inputs);
  if (is_anomaly_enabled()) check_anomaly_forward(name, site, out);
}

inline SavedTensor save(const Tensor& t) { return SavedTensor(t); }

// A new contiguous tensor with like's dtype and device.
inline Tensor empty_as(const Shape& shape, const Tensor& like) { return empty(shape, {like.dtype(), like.device()}); }
inline Tensor empty_as(const Shape& shape, DType dtype, const Tensor& like) {
  return empty(shape, {dtype, like.device()});
}

// Error checks shared by many ops; each message names the op and the shapes.
void check_same_dtype(const char* op, const Tensor& a, const Tensor& b);
void check_same_device(const char* op, const Tensor& a, const Tensor& b);
void check_floating(const char* op, const Tensor& x);
void check_defined(const char* op, const Tensor& x, const char* what = "input");
void check_index_tensor(const char* op, const Tensor& index);  // i64 dtype

// The values of an i64 index tensor in host memory: read in place when they
// already are on the host and contiguous (no copy), copied otherwise. Range
// checks never use it (Backend::check_indices checks on the index's device);
// only host-side fast paths that want the values do.
class HostIndex {
 public:
  explicit HostIndex(const Tensor& index);
  std::span<const int64_t> values() const { return values_; }

 private:
  std::vector<int64_t> copy_;
  std::span<const int64_t> values_;
};

// Grouped ops (grouped_linear, grouped_layer_norm): `offsets` has one entry
// per group plus one, runs from 0 to `rows` and never decreases; a dg::Error
// naming op and the offending group otherwise.
void check_group_offsets(const char* op, const std::vector<int64_t>& offsets, size_t groups, int64_t rows);
// The inputs of a grouped op as recorded: x, every weight, every bias.
Tensors grouped_inputs(const Tensor& x, const Tensors& weights, const Tensors& biases);
std::vector<SavedTensor> save_all(const Tensors& ts);

// A view of x broadcast to `shape` (stride 0 on broadcast dims), no autograd.
Tensor broadcast_view(const Tensor& x, const Shape& shape);

}  // namespace dg
