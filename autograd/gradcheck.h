#pragma once
// Gradient checking by central finite differences in f64.
//
//   Tensor x = dg::randn({3, 4}, {.dtype = DType::f64}).set_requires_grad();
//   auto r = dg::gradcheck([](const Tensors& in) { return dg::tanh(in[0]); }, {x});
//   if (!r) fmt::print("{}\n", r.message);
//
// For each input that requires grad, the analytic vector-Jacobian product
// J^T w (from dg::grad, for a fixed random w) is compared with the numeric
// one, (f(x + eps e_i) - f(x - eps e_i)) · w / (2 eps), element by element:
// |analytic - numeric| <= atol + rtol * |numeric|. Backward is also run twice
// and must give bitwise-equal results (reentrancy).
// Works on any device: inputs stay on theirs, perturbed copies are made there,
// and values are read on the host through to_vector (the weights w come from
// the counter-based RNG, so they are the same numbers on every device).
#include <functional>
#include <string>

#include "tensor/tensor.h"

namespace dg {

struct GradcheckOptions {
  double eps = 1e-6;
  double atol = 1e-5;
  double rtol = 1e-3;
  uint64_t seed = 0;
};

struct GradcheckResult {
  bool ok = true;
  std::string message;  // on failure: input, element, analytic vs numeric
  explicit operator bool() const { return ok; }
};

using DiffFn = std::function<Tensor(const Tensors&)>;

// fn maps the inputs to one output tensor (any shape). Inputs must be f64.
GradcheckResult gradcheck(const DiffFn& fn, const Tensors& inputs, GradcheckOptions opt = {});

// Checks second derivatives: gradcheck of x -> dg::grad(fn(x)·w, x, create_graph).
GradcheckResult gradgradcheck(const DiffFn& fn, const Tensors& inputs, GradcheckOptions opt = {});

}  // namespace dg
