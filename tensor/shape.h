#pragma once
// Shape and strides: a small fixed-capacity vector of int64 (at most kMaxDims
// dims), stored inline so creating a tensor never allocates for its metadata.
//
//   Shape s{2, 3};  s.numel() == 6;  contiguous_strides(s) == Shape{3, 1}
#include <fmt/format.h>

#include <algorithm>
#include <cstdint>
#include <initializer_list>
#include <span>
#include <vector>

#include "tensor/error.h"

namespace dg {

inline constexpr int kMaxDims = 8;

class Shape {
 public:
  Shape() = default;
  Shape(std::initializer_list<int64_t> dims) { assign(dims.begin(), dims.end()); }
  explicit Shape(std::span<const int64_t> dims) { assign(dims.begin(), dims.end()); }
  Shape(const std::vector<int64_t>& dims) { assign(dims.begin(), dims.end()); }  // NOLINT: implicit on purpose

  int64_t size() const { return n_; }
  bool empty() const { return n_ == 0; }
  int64_t& operator[](int64_t i) { return d_[i]; }
  int64_t operator[](int64_t i) const { return d_[i]; }
  int64_t back() const { return d_[n_ - 1]; }
  int64_t* begin() { return d_; }
  int64_t* end() { return d_ + n_; }
  const int64_t* begin() const { return d_; }
  const int64_t* end() const { return d_ + n_; }
  const int64_t* data() const { return d_; }

  void push_back(int64_t v) {
    DG_CHECK(n_ < kMaxDims, "tensors have at most {} dims", kMaxDims);
    d_[n_++] = v;
  }
  void insert(int64_t pos, int64_t v) {
    DG_CHECK(n_ < kMaxDims, "tensors have at most {} dims", kMaxDims);
    for (int64_t i = n_; i > pos; --i) d_[i] = d_[i - 1];
    d_[pos] = v;
    ++n_;
  }
  void erase(int64_t pos) {
    for (int64_t i = pos; i + 1 < n_; ++i) d_[i] = d_[i + 1];
    --n_;
  }
  void resize(int64_t n, int64_t fill = 0) {
    DG_CHECK(n >= 0 && n <= kMaxDims, "tensors have at most {} dims, asked for {}", kMaxDims, n);
    for (int64_t i = n_; i < n; ++i) d_[i] = fill;
    n_ = static_cast<uint8_t>(n);
  }
  std::vector<int64_t> vec() const { return {begin(), end()}; }

  // Product of the dims (1 for a 0-dim shape).
  int64_t numel() const {
    int64_t p = 1;
    for (int64_t i = 0; i < n_; ++i) p *= d_[i];
    return p;
  }

  friend bool operator==(const Shape& a, const Shape& b) {
    return a.n_ == b.n_ && std::equal(a.begin(), a.end(), b.begin());
  }

 private:
  template <class It>
  void assign(It first, It last) {
    int64_t n = std::distance(first, last);
    DG_CHECK(n <= kMaxDims, "tensors have at most {} dims, got {}", kMaxDims, n);
    std::copy(first, last, d_);
    n_ = static_cast<uint8_t>(n);
  }
  int64_t d_[kMaxDims] = {};
  uint8_t n_ = 0;
};

using Strides = Shape;

// Row-major strides of a contiguous tensor of this shape.
inline Strides contiguous_strides(const Shape& s) {
  Strides st;
  st.resize(s.size());
  int64_t acc = 1;
  for (int64_t i = s.size() - 1; i >= 0; --i) {
    st[i] = acc;
    acc *= s[i];
  }
  return st;
}

// For kernels indexed along `dim` (index_select, gather, scatter_add, ...):
// `strides` with the entry for `dim` replaced (the index supplies that
// coordinate), and `shape` with dim collapsed to 1 (a loop over it then
// covers every non-dim coordinate once, and the kernel walks dim itself).
inline Strides with_stride(Strides st, int64_t dim, int64_t v) {
  st[dim] = v;
  return st;
}
inline Shape without_dim(Shape s, int64_t dim) {
  s[dim] = 1;
  return s;
}

// Wraps a possibly negative dim into [0, ndim); a dg::Error names `op` otherwise.
inline int64_t wrap_dim(int64_t dim, int64_t ndim, const char* op) {
  int64_t lo = ndim == 0 ? -1 : -ndim, hi = ndim == 0 ? 0 : ndim - 1;
  DG_CHECK(dim >= lo && dim <= hi, "{}: dim {} out of range for a tensor with {} dims", op, dim, ndim);
  return dim < 0 ? dim + std::max<int64_t>(ndim, 1) : dim;
}

// NumPy broadcasting of two shapes; dg::Error naming `op` if incompatible.
Shape broadcast_shapes(const Shape& a, const Shape& b, const char* op);

}  // namespace dg

template <>
struct fmt::formatter<dg::Shape> {
  constexpr auto parse(fmt::format_parse_context& ctx) { return ctx.begin(); }
  template <class Ctx>
  auto format(const dg::Shape& s, Ctx& ctx) const {
    auto out = fmt::format_to(ctx.out(), "[");
    for (int64_t i = 0; i < s.size(); ++i) out = i ? fmt::format_to(out, ", {}", s[i]) : fmt::format_to(out, "{}", s[i]);
    return fmt::format_to(out, "]");
  }
};
