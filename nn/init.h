#pragma once
// Parameter initialisation, in place (under no-grad; the tensor keeps its
// identity, so optimizers holding it stay valid). Random ones draw from `gen`
// (the default generator when null), so a seed fixes every weight.
//
//   nn::init::normal_(linear.weight, 0.0, 0.02);
//   nn::init::xavier_uniform_(w);          // U(-a, a), a = sqrt(6 / (fan_in + fan_out))
//   nn::init::kaiming_uniform_(w);         // U(-b, b), b = sqrt(6 / fan_in)  (ReLU gain)
//
// fan_in / fan_out of a (out, in, ...) weight: in * receptive field, out * receptive field.
#include "tensor/creation.h"

namespace dg::nn::init {

void normal_(Tensor& t, double mean = 0.0, double std = 1.0, Generator* gen = nullptr);
void uniform_(Tensor& t, double lo = 0.0, double hi = 1.0, Generator* gen = nullptr);
void constant_(Tensor& t, double value);
inline void zeros_(Tensor& t) { constant_(t, 0.0); }
inline void ones_(Tensor& t) { constant_(t, 1.0); }
void xavier_uniform_(Tensor& t, double gain = 1.0, Generator* gen = nullptr);
void kaiming_uniform_(Tensor& t, double gain = 1.4142135623730951, Generator* gen = nullptr);

}  // namespace dg::nn::init
