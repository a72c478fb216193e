#pragma once
// Creating tensors, and the few non-differentiable helpers kernels need.
//
//   Tensor z = dg::zeros({2, 3});                         // f32 on the CPU
//   Tensor x = dg::randn({4}, {.dtype = DType::f64});     // default generator
//   Tensor v = dg::from_vector<float>({1, 2, 3, 4}, {2, 2});
//   dg::manual_seed(0);                                   // reproducible rand/randn
#include <vector>

#include "tensor/rng.h"
#include "tensor/tensor.h"

namespace dg {

struct Options {
  DType dtype = DType::f32;
  Device device = Device::cpu();
};

Tensor empty(const Shape& shape, Options opt = {});  // uninitialised
Tensor zeros(const Shape& shape, Options opt = {});
Tensor ones(const Shape& shape, Options opt = {});
Tensor full(const Shape& shape, double value, Options opt = {});
Tensor arange(double start, double end, double step = 1.0, Options opt = {});
inline Tensor arange(int64_t n, Options opt = {}) { return arange(0.0, static_cast<double>(n), 1.0, opt); }
Tensor scalar_tensor(double value, Options opt = {});  // 0-dim
Tensor empty_like(const Tensor& t);
Tensor zeros_like(const Tensor& t);
Tensor ones_like(const Tensor& t);

// Copies host values into a new tensor of dtype_of<T>() and the given shape
// (1-D of v.size() when the shape is left empty; scalar_tensor() makes 0-dim).
template <class T>
Tensor from_vector(const std::vector<T>& v, const Shape& shape = {}, Device device = Device::cpu());
// Values converted to opt.dtype.
Tensor from_doubles(const std::vector<double>& v, const Shape& shape, Options opt = {});

// Random tensors from a counter-based generator (the default one unless given).
Tensor rand(const Shape& shape, Options opt = {}, Generator* gen = nullptr);   // U[0, 1)
Tensor randn(const Shape& shape, Options opt = {}, Generator* gen = nullptr);  // N(0, 1)
Tensor bernoulli(const Shape& shape, double p, Options opt = {}, Generator* gen = nullptr);  // 1 with prob p
Tensor randint(int64_t lo, int64_t hi, const Shape& shape, Generator* gen = nullptr, Device device = Device::cpu());

// --- non-differentiable helpers (autograd/ wraps them where gradients flow)
Tensor as_strided(const Tensor& t, const Shape& shape, const Strides& strides, int64_t offset);  // a view
Tensor to_contiguous(const Tensor& t);      // t itself if already contiguous
Tensor to_dtype(const Tensor& t, DType dt);  // t itself if already that dtype
Tensor to_device(const Tensor& t, Device d);
Tensor copy_of(const Tensor& t);            // a fresh contiguous copy
// Strides for viewing t with new_shape without copying, or false if impossible.
bool view_strides(const Tensor& t, const Shape& new_shape, Strides& out);

}  // namespace dg
