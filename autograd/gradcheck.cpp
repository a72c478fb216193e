#include "autograd/gradcheck.h"

#include <cmath>

#include "autograd/engine.h"
#include "autograd/ops.h"

namespace dg {

namespace {

double dot(const Tensor& a, const std::vector<double>& w) {
  std::vector<double> v = a.to_vector<double>();
  double s = 0;
  for (size_t i = 0; i < v.size(); ++i) s += v[i] * w[i];
  return s;
}

// An f64 tensor of `shape` on `device` holding v; shape {} is 0-dim (from_vector would make it 1-D).
Tensor f64_tensor(const std::vector<double>& v, const Shape& shape, Device device) {
  return shape.empty() ? scalar_tensor(v.at(0), {DType::f64, device}) : from_vector<double>(v, shape, device);
}

// The analytic J^T w for every input that requires grad (zeros where unused).
Tensors analytic(const DiffFn& fn, const Tensors& inputs, const std::vector<size_t>& wrt, const Tensor& w) {
  Tensor out = fn(inputs);
  Tensors xs;
  for (size_t i : wrt) xs.push_back(inputs[i]);
  // An output that does not require grad claims to be constant in the inputs
  // (the second derivative of a linear op, for one): its analytic gradient is
  // zero, and the finite differences below check that claim.
  Tensors g = out.requires_grad() ? grad({out}, xs, {w}, false, false, /*allow_unused=*/true) : Tensors(xs.size());
  for (size_t k = 0; k < g.size(); ++k)
    if (!g[k].defined()) g[k] = zeros(xs[k].shape(), {DType::f64, xs[k].device()});
  return g;
}

}  // namespace

GradcheckResult gradcheck(const DiffFn& fn, const Tensors& inputs, GradcheckOptions opt) {
  std::vector<size_t> wrt;
  for (size_t i = 0; i < inputs.size(); ++i) {
    if (!inputs[i].defined() || !inputs[i].requires_grad()) continue;
    DG_CHECK(inputs[i].dtype() == DType::f64, "gradcheck: input {} has dtype {}; finite differences need f64", i,
             inputs[i].dtype());
    wrt.push_back(i);
  }
  DG_CHECK(!wrt.empty(), "gradcheck: no input requires grad");

  Tensor out0 = fn(inputs);
  DG_CHECK(out0.dtype() == DType::f64, "gradcheck: the function returned {}; it must compute in f64", out0.dtype());
  Generator gen(opt.seed);
  // The same weights on every device (counter-based RNG): results compare across devices.
  Tensor w = randn(out0.shape(), {DType::f64, out0.device()}, &gen);
  std::vector<double> wv = w.to_vector<double>();

  Tensors g1 = analytic(fn, inputs, wrt, w);
  Tensors g2 = analytic(fn, inputs, wrt, w);
  for (size_t k = 0; k < wrt.size(); ++k) {
    if (g1[k].to_vector<double>() != g2[k].to_vector<double>())
      return {false, fmt::format("gradcheck: backward is not reentrant: two runs gave different gradients for input {}",
                                 wrt[k])};
  }

  for (size_t k = 0; k < wrt.size(); ++k) {
    size_t i = wrt[k];
    const Tensor& x = inputs[i];
    std::vector<double> xv = x.to_vector<double>(), ga = g1[k].to_vector<double>();
    for (size_t j = 0; j < xv.size(); ++j) {
      auto eval = [&](double delta) {
        std::vector<double> p = xv;
        p[j] += delta;
        Tensors in = inputs;
        in[i] = f64_tensor(p, x.shape(), x.device()).set_requires_grad(true);
        return dot(fn(in), wv);
      };
      double numeric = (eval(opt.eps) - eval(-opt.eps)) / (2 * opt.eps);
      double err = std::abs(ga[j] - numeric);
      if (!(err <= opt.atol + opt.rtol * std::abs(numeric))) {
        return {false, fmt::format("gradcheck: input {} (shape {}), element {}: analytic {:.10g} vs numeric {:.10g} "
                                   "(|diff| {:.3g} > atol {} + rtol {} * |numeric|)",
                                   i, x.shape(), j, ga[j], numeric, err, opt.atol, opt.rtol)};
      }
    }
  }
  return {};
}

GradcheckResult gradgradcheck(const DiffFn& fn, const Tensors& inputs, GradcheckOptions opt) {
  // x -> (J^T w)(x), flattened and concatenated; its own gradcheck exercises
  // the backward of every node the first backward recorded.
  Tensor probe = fn(inputs);
  Generator gen(opt.seed + 1);
  Tensor w = randn(probe.shape(), {DType::f64, probe.device()}, &gen);
  DiffFn first = [&fn, w](const Tensors& xs) {
    Tensor out = fn(xs);
    Tensors wrt;
    for (const Tensor& x : xs)
      if (x.defined() && x.requires_grad()) wrt.push_back(x);
    Tensors g = grad({out}, wrt, {w}, /*retain_graph=*/true, /*create_graph=*/true, /*allow_unused=*/true);
    Tensors flat;
    for (size_t k = 0; k < g.size(); ++k)
      flat.push_back(reshape(g[k].defined() ? g[k] : zeros(wrt[k].shape(), {DType::f64, wrt[k].device()}), {-1}));
    return cat(flat, 0);
  };
  return gradcheck(first, inputs, opt);
}

}  // namespace dg
