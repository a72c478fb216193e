#pragma once
// Shapes as text for messages in .cu files. fmt's formatters for dg::Shape
// and dg::Device (tensor/shape.h, dtype.h) format through a generic context whose instantiation
// makes nvcc warn (#20208, "long double is treated as double in device code")
// under --expt-relaxed-constexpr; formatting this string instead does not.
//
//   DG_ASSERT(ok, "reduce {} -> {}", shape_text(x.shape()), shape_text(out.shape()));
#include <string>

#include "tensor/shape.h"

namespace dg::cuda {

inline std::string shape_text(const Shape& s) {
  std::string t = "[";
  for (int64_t i = 0; i < s.size(); ++i) t += (i ? ", " : "") + std::to_string(s[i]);
  return t + "]";
}

}  // namespace dg::cuda
