#pragma once
// Node: one recorded op on the tape. A node holds what its backward needs
// (saved tensors), one Edge per input (to the node that produced that input,
// or to a leaf's AccumulateGrad), and an increasing sequence number: read in
// sequence order, the nodes reachable from a loss *are* the tape of what ran.
//
// Ops create nodes with record() (autograd/ops/common.h); users see them as
// t.grad_fn() and in the DOT export.
#include <atomic>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "autograd/grad_mode.h"
#include "autograd/site.h"
#include "autograd/variable.h"

namespace dg {

struct Edge {
  std::shared_ptr<Node> node;  // null: this input needs no gradient
  Shape shape;                 // the input's shape, dtype and device: every
  DType dtype = DType::f32;    // gradient sent along the edge must match them
  Device device;
};

class Node {
 public:
  Node(const char* name, Site site);
  virtual ~Node();
  Node(const Node&) = delete;
  Node& operator=(const Node&) = delete;

  const char* name() const { return name_; }
  uint64_t seq() const { return seq_; }
  const Site& site() const { return site_; }
  const std::vector<Edge>& next() const { return next_; }
  // Whether the i-th input needs a gradient (backward may skip the others).
  bool needs_grad(size_t i) const { return i < next_.size() && next_[i].node != nullptr; }
  const Shape& out_shape() const { return out_shape_; }
  DType out_dtype() const { return out_dtype_; }

  // Gradients for each input, given the gradient of the output. An undefined
  // tensor means "no gradient" (zero). Shapes may be broadcast: the engine
  // sums them back to each input's shape.
  virtual Tensors apply(const Tensor& grad) = 0;
  // Drops saved tensors after backward (unless retain_graph).
  virtual void release() {}
  virtual bool released() const { return false; }
  // Shapes of the saved tensors, for the tape printout and DOT export.
  virtual std::vector<Shape> saved_shapes() const { return {}; }
  virtual bool is_accumulate_grad() const { return false; }

  std::vector<GradHook> pre_hooks;  // hooks on the output tensor's gradient

  // --- engine bookkeeping (valid only during a backward run)
  Tensor grad_buffer;
  int64_t pending = 0;

 protected:
  friend void attach_node(const Tensor& out, const std::shared_ptr<Node>& node, std::initializer_list<Tensor> inputs);
  friend void attach_node(const Tensor& out, const std::shared_ptr<Node>& node, const Tensors& inputs);
  const char* name_;
  uint64_t seq_;
  Site site_;
  std::vector<Edge> next_;
  Shape out_shape_;
  DType out_dtype_ = DType::f32;
};

// Releases a node reference without recursion: destroying the last reference
// to a 10^5-node chain would otherwise recurse once per node. Nodes freed
// while another is being freed are queued and freed in a loop.
void release_node(std::shared_ptr<Node>&& node);

// A tensor saved for backward, with the version its storage had. get() fails
// with a dg::Error naming the op if the tensor was modified in place since.
class SavedTensor {
 public:
  SavedTensor() = default;
  explicit SavedTensor(const Tensor& t);
  const Tensor& get() const;
  const Tensor& unchecked() const { return t_; }
  bool defined() const { return t_.defined(); }

 private:
  Tensor t_;
  uint32_t version_ = 0;
};

// Save an op's own output: a detached alias (same storage and version
// counter, no autograd meta) so the node does not own itself through it.
SavedTensor save_output(const Tensor& out);

// The node being applied by the engine on this thread (for error messages).
const Node* current_node();

// Leaves that require grad reach the graph through this node, which adds the
// incoming gradient into the leaf's .grad.
class AccumulateGrad final : public Node {
 public:
  explicit AccumulateGrad(std::shared_ptr<AutogradMeta> meta);
  Tensors apply(const Tensor& grad) override;
  bool is_accumulate_grad() const override { return true; }
  std::shared_ptr<AutogradMeta> meta() const { return meta_.lock(); }

 private:
  std::weak_ptr<AutogradMeta> meta_;
};

// A node whose backward is a callable (usually a lambda holding SavedTensors).
template <class F>
class FnNode final : public Node {
 public:
  FnNode(const char* name, Site site, F&& fn, std::vector<Shape> saved)
      : Node(name, site), fn_(std::move(fn)), saved_(std::move(saved)) {}
  Tensors apply(const Tensor& grad) override;
  void release() override { fn_.reset(); }
  bool released() const override { return !fn_.has_value(); }
  std::vector<Shape> saved_shapes() const override { return saved_; }

 private:
  std::optional<F> fn_;
  std::vector<Shape> saved_;
};

[[noreturn]] void throw_released(const Node& node);

template <class F>
Tensors FnNode<F>::apply(const Tensor& grad) {
  if (!fn_) throw_released(*this);
  return (*fn_)(grad, static_cast<const Node&>(*this));
}

// Links `out` to `node`: edges from node to each input, out.grad_fn = node.
void attach_node(const Tensor& out, const std::shared_ptr<Node>& node, std::initializer_list<Tensor> inputs);
void attach_node(const Tensor& out, const std::shared_ptr<Node>& node, const Tensors& inputs);

}  // namespace dg
