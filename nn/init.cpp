#include "nn/init.h"

#include <cmath>

#include "autograd/grad_mode.h"
#include "autograd/ops.h"

namespace dg::nn::init {

namespace {

struct Fans {
  double in, out;
};

Fans fans(const Tensor& t, const char* op) {
  DG_CHECK(t.dim() >= 2, "{}: needs a weight with at least 2 dims, got shape {}", op, t.shape());
  double receptive = 1;
  for (int64_t d = 2; d < t.dim(); ++d) receptive *= static_cast<double>(t.size(d));
  return {static_cast<double>(t.size(1)) * receptive, static_cast<double>(t.size(0)) * receptive};
}

void assign(Tensor& t, const Tensor& values) {
  NoGradGuard no_grad;
  copy_(t, values);
}

}  // namespace

void normal_(Tensor& t, double mean, double std, Generator* gen) {
  DG_CHECK(is_floating(t.dtype()), "init::normal_: tensor must be floating, got {} {}", t.dtype(), t.shape());
  Tensor r = randn(t.shape(), {t.dtype(), t.device()}, gen);
  assign(t, mean == 0.0 && std == 1.0 ? r : add(mul(r, std), mean));
}

void uniform_(Tensor& t, double lo, double hi, Generator* gen) {
  DG_CHECK(is_floating(t.dtype()), "init::uniform_: tensor must be floating, got {} {}", t.dtype(), t.shape());
  Tensor r = rand(t.shape(), {t.dtype(), t.device()}, gen);
  assign(t, add(mul(r, hi - lo), lo));
}

void constant_(Tensor& t, double value) {
  NoGradGuard no_grad;
  fill_(t, value);
}

void xavier_uniform_(Tensor& t, double gain, Generator* gen) {
  Fans f = fans(t, "init::xavier_uniform_");
  const double a = gain * std::sqrt(6.0 / (f.in + f.out));
  uniform_(t, -a, a, gen);
}

void kaiming_uniform_(Tensor& t, double gain, Generator* gen) {
  Fans f = fans(t, "init::kaiming_uniform_");
  const double b = gain * std::sqrt(3.0 / f.in);
  uniform_(t, -b, b, gen);
}

}  // namespace dg::nn::init
