#include "tensor/tensor.h"

#include <cmath>

#include "tensor/backend.h"
#include "tensor/creation.h"

namespace dg {

Storage::Storage(size_t n, Device d) : nbytes(n), device(d), backend(&backend_for(d)) {
  data = backend->allocate(n);
}

Storage::~Storage() { backend->deallocate(data, nbytes); }

Shape broadcast_shapes(const Shape& a, const Shape& b, const char* op) {
  Shape out;
  int64_t n = std::max(a.size(), b.size());
  out.resize(n);
  for (int64_t i = 0; i < n; ++i) {
    int64_t da = i < n - a.size() ? 1 : a[i - (n - a.size())];
    int64_t db = i < n - b.size() ? 1 : b[i - (n - b.size())];
    DG_CHECK(da == db || da == 1 || db == 1, "{}: shapes {} and {} cannot be broadcast (dim {}: {} vs {})", op, a, b,
             i, da, db);
    out[i] = da == 1 ? db : da;
  }
  return out;
}

int64_t Tensor::size(int64_t d) const { return shape()[wrap_dim(d, dim(), "size")]; }
int64_t Tensor::stride(int64_t d) const { return strides()[wrap_dim(d, dim(), "stride")]; }

bool Tensor::is_contiguous() const {
  int64_t expected = 1;
  for (int64_t i = dim() - 1; i >= 0; --i) {
    if (shape()[i] == 1) continue;
    if (strides()[i] != expected) return false;
    expected *= shape()[i];
  }
  return true;
}

template <class T>
std::vector<T> Tensor::to_vector() const {
  DG_CHECK(defined(), "to_vector: undefined tensor");
  Tensor c = to_contiguous(to_dtype(*this, dtype_of<T>()));
  if constexpr (std::is_same_v<T, bool>) {  // std::vector<bool> has no data()
    std::vector<uint8_t> bytes(static_cast<size_t>(numel()));
    if (!bytes.empty()) backend_of(c).copy_to_host(c, bytes.data());
    return std::vector<bool>(bytes.begin(), bytes.end());
  } else {
    std::vector<T> out(static_cast<size_t>(numel()));
    if (!out.empty()) backend_of(c).copy_to_host(c, out.data());
    return out;
  }
}

template <class T>
T Tensor::item() const {
  DG_CHECK(defined() && numel() == 1, "item: expected a tensor with one element, got shape {}",
           defined() ? shape() : Shape{});
  return to_vector<T>()[0];
}

#define DG_INSTANTIATE(T)                                  \
  template std::vector<T> Tensor::to_vector<T>() const;    \
  template T Tensor::item<T>() const;
DG_INSTANTIATE(float)
DG_INSTANTIATE(double)
DG_INSTANTIATE(int64_t)
DG_INSTANTIATE(int32_t)
DG_INSTANTIATE(bool)
#undef DG_INSTANTIATE

// PyTorch-like printing: nested brackets, a shared number format per tensor,
// and the dtype when it is not f32. Large tensors are summarised with "...".
namespace {

struct Printer {
  std::vector<double> v;
  Shape shape;
  bool floating;
  int precision = 4;
  bool sci = false;
  std::string out;

  void number(double x) {
    if (!floating) out += fmt::format("{}", static_cast<int64_t>(x));
    else if (std::isnan(x)) out += "nan";
    else if (std::isinf(x)) out += x > 0 ? "inf" : "-inf";
    else if (sci) out += fmt::format("{:.{}e}", x, precision);
    else out += fmt::format("{:.{}f}", x, precision);
  }
  void dim(int64_t d, int64_t base, int64_t indent) {
    if (d == shape.size()) return number(v[base]);
    int64_t n = shape[d], stride = 1;
    for (int64_t i = d + 1; i < shape.size(); ++i) stride *= shape[i];
    out += "[";
    bool summarise = v.size() > 1000 && n > 6;
    for (int64_t i = 0; i < n; ++i) {
      if (summarise && i == 3) {
        out += d + 1 == shape.size() ? "..., " : fmt::format("...,\n{:{}}", "", indent + 1);
        i = n - 3;
      }
      dim(d + 1, base + i * stride, indent + 1);
      if (i + 1 < n) out += d + 1 == shape.size() ? ", " : fmt::format(",\n{:{}}", "", indent + 1);
    }
    out += "]";
  }
};

}  // namespace

std::string Tensor::to_string() const {
  if (!defined()) return "tensor(undefined)";
  Printer p{to_vector<double>(), shape(), is_floating(dtype()), 4, false, {}};
  double mx = 0;
  for (double x : p.v)
    if (std::isfinite(x)) mx = std::max(mx, std::abs(x));
  p.sci = p.floating && (mx >= 1e8 || (mx > 0 && mx < 1e-4));
  p.out = "tensor(";
  if (p.v.empty()) p.out += "[]";
  else p.dim(0, 0, 7);
  if (dtype() != DType::f32) p.out += fmt::format(", dtype={}", dtype());
  if (numel() == 0 || dim() > 1) p.out += fmt::format(", shape={}", shape());
  if (!device().is_cpu()) p.out += fmt::format(", device={}", device());
  return p.out + ")";
}

}  // namespace dg
