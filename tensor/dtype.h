#pragma once
// Element types and devices.
//
//   DType::f32, f64 (floating), i64, i32 (integer), b8 (bool, one byte).
//   visit_dtype(t.dtype(), [&](auto tag) { using T = decltype(tag); ... });
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "tensor/error.h"

namespace dg {

enum class DType : uint8_t { f32, f64, i64, i32, b8 };

constexpr size_t itemsize(DType t) {
  switch (t) {
    case DType::f32: return 4;
    case DType::f64: return 8;
    case DType::i64: return 8;
    case DType::i32: return 4;
    case DType::b8: return 1;
  }
  return 0;
}

constexpr std::string_view dtype_name(DType t) {
  switch (t) {
    case DType::f32: return "f32";
    case DType::f64: return "f64";
    case DType::i64: return "i64";
    case DType::i32: return "i32";
    case DType::b8: return "bool";
  }
  return "?";
}

constexpr bool is_floating(DType t) { return t == DType::f32 || t == DType::f64; }
constexpr bool is_integral(DType t) { return t == DType::i64 || t == DType::i32; }

template <class T> constexpr DType dtype_of();
template <> constexpr DType dtype_of<float>() { return DType::f32; }
template <> constexpr DType dtype_of<double>() { return DType::f64; }
template <> constexpr DType dtype_of<int64_t>() { return DType::i64; }
template <> constexpr DType dtype_of<int32_t>() { return DType::i32; }
template <> constexpr DType dtype_of<bool>() { return DType::b8; }

// Calls f with a value of the C++ type matching `t` (float, double, int64_t,
// int32_t, bool). All branches must return the same type.
template <class F>
decltype(auto) visit_dtype(DType t, F&& f) {
  switch (t) {
    case DType::f32: return f(float{});
    case DType::f64: return f(double{});
    case DType::i64: return f(int64_t{});
    case DType::i32: return f(int32_t{});
    case DType::b8: return f(bool{});
  }
  return f(float{});
}

// Same, floating types only; any other dtype is a dg::Error naming `op`.
template <class F>
decltype(auto) visit_floating(DType t, std::string_view op, F&& f) {
  if (t == DType::f64) return f(double{});
  DG_CHECK(t == DType::f32, "{}: expected a floating dtype (f32 or f64), got {}", op, dtype_name(t));
  return f(float{});
}

// guarded: a test device (tensor/guarded_backend.h), the CPU's kernels on
// memory the host cannot read, which proves code device-agnostic without a GPU.
enum class DeviceType : uint8_t { cpu, cuda, guarded };

struct Device {
  DeviceType type = DeviceType::cpu;
  int index = 0;
  static constexpr Device cpu() { return {DeviceType::cpu, 0}; }
  static constexpr Device cuda(int i = 0) { return {DeviceType::cuda, i}; }
  static constexpr Device guarded() { return {DeviceType::guarded, 0}; }
  bool is_cpu() const { return type == DeviceType::cpu; }
  friend constexpr bool operator==(Device a, Device b) { return a.type == b.type && a.index == b.index; }
};

}  // namespace dg

template <>
struct fmt::formatter<dg::DType> : fmt::formatter<std::string_view> {
  template <class Ctx>
  auto format(dg::DType t, Ctx& ctx) const { return fmt::formatter<std::string_view>::format(dg::dtype_name(t), ctx); }
};
template <>
struct fmt::formatter<dg::Device> : fmt::formatter<std::string_view> {
  template <class Ctx>
  auto format(dg::Device d, Ctx& ctx) const {
    switch (d.type) {
      case dg::DeviceType::cpu: return fmt::format_to(ctx.out(), "cpu");
      case dg::DeviceType::cuda: return fmt::format_to(ctx.out(), "cuda:{}", d.index);
      case dg::DeviceType::guarded: return fmt::format_to(ctx.out(), "guarded:{}", d.index);
    }
    return fmt::format_to(ctx.out(), "?");
  }
};
