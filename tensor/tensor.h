#pragma once
// Tensor: a cheap, shared handle to (Storage, shape, strides, offset, dtype)
// plus an opaque AutogradMeta that only autograd/ looks inside.
//
//   Tensor a = dg::randn({2, 3});               // tensor/creation.h
//   Tensor b = dg::transpose(a, 0, 1);           // a view: same storage
//   std::vector<float> v = b.to_vector<float>(); // copies to the host, row-major
//
// Copying a Tensor copies the handle, never the data (use clone()).
#include <memory>
#include <string>
#include <vector>

#include "tensor/dtype.h"
#include "tensor/shape.h"
#include "tensor/storage.h"

namespace dg {

struct AutogradMeta;  // defined in autograd/variable.h; tensor/ never looks inside
class Node;

struct TensorImpl {
  std::shared_ptr<Storage> storage;
  Shape shape;
  Strides strides;
  int64_t offset = 0;  // in elements
  DType dtype = DType::f32;
  std::shared_ptr<AutogradMeta> autograd;  // null unless the tensor takes part in autograd
};

class Tensor {
 public:
  Tensor() = default;
  explicit Tensor(std::shared_ptr<TensorImpl> impl) : impl_(std::move(impl)) {}

  bool defined() const { return impl_ != nullptr; }
  TensorImpl* impl() const { return impl_.get(); }
  const std::shared_ptr<TensorImpl>& impl_ptr() const { return impl_; }
  bool is_same(const Tensor& o) const { return impl_ == o.impl_; }

  const Shape& shape() const { return impl_->shape; }
  const Strides& strides() const { return impl_->strides; }
  int64_t dim() const { return impl_->shape.size(); }
  int64_t size(int64_t d) const;  // negative d counts from the end
  int64_t stride(int64_t d) const;
  int64_t numel() const { return impl_->shape.numel(); }
  int64_t offset() const { return impl_->offset; }
  DType dtype() const { return impl_->dtype; }
  Device device() const { return impl_->storage->device; }
  Storage& storage() const { return *impl_->storage; }
  const std::shared_ptr<Storage>& storage_ptr() const { return impl_->storage; }
  bool is_contiguous() const;
  size_t nbytes() const { return static_cast<size_t>(numel()) * itemsize(dtype()); }

  // Pointer to the first element (offset applied). CPU tensors only for
  // dereferencing; the dtype must match T.
  template <class T>
  T* data() const {
    DG_CHECK(dtype_of<T>() == dtype(), "data<{}>(): tensor has dtype {}", dtype_name(dtype_of<T>()), dtype());
    return static_cast<T*>(raw_data());
  }
  void* raw_data() const {
    return static_cast<char*>(impl_->storage->data) + impl_->offset * static_cast<int64_t>(itemsize(dtype()));
  }

  // Host copies. to_vector() converts to T from any dtype; item() needs numel()==1.
  template <class T>
  std::vector<T> to_vector() const;
  template <class T>
  T item() const;

  uint32_t version() const { return impl_->storage->version; }
  void bump_version() const { ++impl_->storage->version; }

  // Readable, PyTorch-like text (values, shape, dtype).
  std::string to_string() const;

  // --- autograd accessors: declared here for convenience, defined in
  // autograd/variable.cpp (link dyngrad or dg_autograd to use them). tensor/
  // itself never calls them.
  bool requires_grad() const;
  Tensor& set_requires_grad(bool enabled = true);  // leaves only
  Tensor grad() const;                              // undefined until backward wrote one
  void set_grad(const Tensor& g);
  void zero_grad();                                 // drops the gradient
  bool is_leaf() const;
  std::shared_ptr<Node> grad_fn() const;
  void backward(const Tensor& gradient = Tensor(), bool retain_graph = false, bool create_graph = false) const;
  Tensor detach() const;  // shares storage, no autograd history
  // A copy on `device`, or this tensor when it already is there. Differentiable:
  // the gradient goes back to this tensor's device (dg::to in autograd/ops.h).
  //   Tensor g = dg::randn({2, 3}).to(dg::Device::guarded());
  Tensor to(Device device) const;

 private:
  std::shared_ptr<TensorImpl> impl_;
};

using Tensors = std::vector<Tensor>;

}  // namespace dg

template <>
struct fmt::formatter<dg::Tensor> : fmt::formatter<std::string_view> {
  template <class Ctx>
  auto format(const dg::Tensor& t, Ctx& ctx) const { return fmt::format_to(ctx.out(), "{}", t.to_string()); }
};
