#include "tensor/creation.h"

#include "tensor/backend.h"

namespace dg {

Generator& default_generator() {
  static Generator g(0);
  return g;
}

void manual_seed(uint64_t seed) { default_generator().set_state(seed, 0); }

Tensor empty(const Shape& shape, Options opt) {
  for (int64_t d : shape) DG_CHECK(d >= 0, "empty: negative dimension in shape {}", shape);
  auto impl = std::make_shared<TensorImpl>();
  impl->storage = std::make_shared<Storage>(static_cast<size_t>(shape.numel()) * itemsize(opt.dtype), opt.device);
  impl->shape = shape;
  impl->strides = contiguous_strides(shape);
  impl->dtype = opt.dtype;
  return Tensor(std::move(impl));
}

Tensor full(const Shape& shape, double value, Options opt) {
  Tensor t = empty(shape, opt);
  backend_of(t).fill(t, value);
  return t;
}
Tensor zeros(const Shape& shape, Options opt) { return full(shape, 0.0, opt); }
Tensor ones(const Shape& shape, Options opt) { return full(shape, 1.0, opt); }
Tensor scalar_tensor(double value, Options opt) { return full(Shape{}, value, opt); }
Tensor empty_like(const Tensor& t) { return empty(t.shape(), {t.dtype(), t.device()}); }
Tensor zeros_like(const Tensor& t) { return zeros(t.shape(), {t.dtype(), t.device()}); }
Tensor ones_like(const Tensor& t) { return ones(t.shape(), {t.dtype(), t.device()}); }

Tensor arange(double start, double end, double step, Options opt) {
  DG_CHECK(step != 0, "arange: step must be nonzero");
  double n = std::ceil((end - start) / step);
  Tensor t = empty({std::max<int64_t>(0, static_cast<int64_t>(n))}, opt);
  backend_of(t).arange(t, start, step);
  return t;
}

template <class T>
Tensor from_vector(const std::vector<T>& v, const Shape& shape, Device device) {
  Shape s = shape.empty() ? Shape{static_cast<int64_t>(v.size())} : shape;
  DG_CHECK(s.numel() == static_cast<int64_t>(v.size()), "from_vector: {} values do not fill shape {}", v.size(), s);
  Tensor t = empty(s, {dtype_of<T>(), device});
  if constexpr (std::is_same_v<T, bool>) {
    std::vector<uint8_t> bytes(v.begin(), v.end());
    if (!bytes.empty()) backend_of(t).copy_from_host(bytes.data(), t);
  } else {
    if (!v.empty()) backend_of(t).copy_from_host(v.data(), t);
  }
  return t;
}
template Tensor from_vector<float>(const std::vector<float>&, const Shape&, Device);
template Tensor from_vector<double>(const std::vector<double>&, const Shape&, Device);
template Tensor from_vector<int64_t>(const std::vector<int64_t>&, const Shape&, Device);
template Tensor from_vector<int32_t>(const std::vector<int32_t>&, const Shape&, Device);
template Tensor from_vector<bool>(const std::vector<bool>&, const Shape&, Device);

Tensor from_doubles(const std::vector<double>& v, const Shape& shape, Options opt) {
  return to_dtype(from_vector<double>(v, shape, opt.device), opt.dtype);
}

Tensor rand(const Shape& shape, Options opt, Generator* gen) {
  Generator& g = gen ? *gen : default_generator();
  Tensor t = empty(shape, opt);
  backend_of(t).fill_uniform(t, 0.0, 1.0, g.seed(), g.take(static_cast<uint64_t>(t.numel())));
  return t;
}

Tensor randn(const Shape& shape, Options opt, Generator* gen) {
  Generator& g = gen ? *gen : default_generator();
  Tensor t = empty(shape, opt);
  backend_of(t).fill_normal(t, 0.0, 1.0, g.seed(), g.take(static_cast<uint64_t>(t.numel())));
  return t;
}

Tensor bernoulli(const Shape& shape, double p, Options opt, Generator* gen) {
  DG_CHECK(p >= 0 && p <= 1, "bernoulli: probability {} outside [0, 1]", p);
  Generator& g = gen ? *gen : default_generator();
  Tensor t = empty(shape, opt);
  backend_of(t).fill_bernoulli(t, p, g.seed(), g.take(static_cast<uint64_t>(t.numel())));
  return t;
}

Tensor randint(int64_t lo, int64_t hi, const Shape& shape, Generator* gen, Device device) {
  DG_CHECK(lo < hi, "randint: empty range [{}, {})", lo, hi);
  // Uniform doubles scaled to the range: exact for ranges far below 2^53.
  // min(hi - 1, lo + trunc(u * (hi - lo))), computed on the device.
  Tensor u = rand(shape, {DType::f64, device}, gen);
  Backend& b = backend_for(device);
  Strides broadcast;
  broadcast.resize(shape.size(), 0);
  auto scalar = [&](double v, DType dt) { return as_strided(full({}, v, {dt, device}), shape, broadcast, 0); };
  Tensor scaled = empty(shape, {DType::f64, device});
  b.binary(BinaryOp::mul, u, scalar(static_cast<double>(hi - lo), DType::f64), scaled);
  Tensor whole = to_dtype(scaled, DType::i64);  // truncates, like static_cast
  Tensor shifted = empty(shape, {DType::i64, device}), out = empty(shape, {DType::i64, device});
  b.binary(BinaryOp::add, whole, scalar(static_cast<double>(lo), DType::i64), shifted);
  b.binary(BinaryOp::minimum, shifted, scalar(static_cast<double>(hi - 1), DType::i64), out);
  return out;
}

Tensor as_strided(const Tensor& t, const Shape& shape, const Strides& strides, int64_t offset) {
  auto impl = std::make_shared<TensorImpl>();
  impl->storage = t.storage_ptr();
  impl->shape = shape;
  impl->strides = strides;
  impl->offset = offset;
  impl->dtype = t.dtype();
  return Tensor(std::move(impl));
}

Tensor copy_of(const Tensor& t) {
  Tensor out = empty_like(t);
  backend_of(t).copy(t, out);
  return out;
}

Tensor to_contiguous(const Tensor& t) { return t.is_contiguous() ? t : copy_of(t); }

Tensor to_dtype(const Tensor& t, DType dt) {
  if (t.dtype() == dt) return t;
  Tensor out = empty(t.shape(), {dt, t.device()});
  backend_of(t).copy(t, out);
  return out;
}

Tensor to_device(const Tensor& t, Device d) {
  if (t.device() == d) return t;
  // Between two devices that are not the host: through the host.
  if (!t.device().is_cpu() && !d.is_cpu()) return to_device(to_device(t, Device::cpu()), d);
  Tensor src = to_contiguous(t);
  Tensor out = empty(t.shape(), {t.dtype(), d});
  if (src.numel() == 0) return out;
  if (d.is_cpu()) {
    backend_of(src).copy_to_host(src, out.raw_data());
  } else {
    backend_for(d).copy_from_host(src.raw_data(), out);
  }
  return out;
}

// A reshape is a view when each group of old dims that maps onto a group of
// new dims is itself contiguous (PyTorch's computeStride rule).
bool view_strides(const Tensor& t, const Shape& new_shape, Strides& out) {
  const Shape& old = t.shape();
  const Strides& st = t.strides();
  out.resize(new_shape.size());
  if (old.numel() == 0 || old.size() == 0) {
    out = contiguous_strides(new_shape);
    return true;
  }
  int64_t view_d = new_shape.size() - 1;
  int64_t chunk_base_stride = st[old.size() - 1];
  int64_t tensor_numel = 1, view_numel = 1;
  for (int64_t d = old.size() - 1; d >= 0; --d) {
    tensor_numel *= old[d];
    if (d == 0 || (old[d - 1] != 1 && st[d - 1] != tensor_numel * chunk_base_stride)) {
      while (view_d >= 0 && (view_numel < tensor_numel || new_shape[view_d] == 1)) {
        out[view_d] = view_numel * chunk_base_stride;
        view_numel *= new_shape[view_d];
        --view_d;
      }
      if (view_numel != tensor_numel) return false;
      if (d > 0) {
        chunk_base_stride = st[d - 1];
        tensor_numel = 1;
        view_numel = 1;
      }
    }
  }
  return view_d == -1;
}

}  // namespace dg
