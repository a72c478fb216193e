#include "nn/loss.h"

namespace dg::nn {

namespace {

Tensor reduce(const Tensor& per_element, Reduction reduction) {
  switch (reduction) {
    case Reduction::none: return per_element;
    case Reduction::sum: return sum(per_element);
    case Reduction::mean: return mean(per_element);
  }
  return per_element;
}

}  // namespace

Tensor mse_loss(const Tensor& input, const Tensor& target, Reduction reduction) {
  return reduce(square(input - target), reduction);
}

// With pos_weight p, PyTorch's form: (1 - y) x + (1 + (p - 1) y) * softplus(-x),
// softplus(-x) = log(1 + exp(-|x|)) + max(-x, 0). For p = 1 this is the plain
// max(x, 0) - x y + log(1 + exp(-|x|)).
Tensor bce_with_logits(const Tensor& logits, const Tensor& target, Reduction reduction, const Tensor& pos_weight) {
  DG_CHECK(logits.defined() && target.defined() && logits.shape() == target.shape(),
           "bce_with_logits: logits {} and target {} must have one shape", logits.defined() ? logits.shape() : Shape{},
           target.defined() ? target.shape() : Shape{});
  Tensor zero = zeros({}, {logits.dtype(), logits.device()});
  Tensor log_term = log(exp(-abs(logits)) + 1.0);
  if (!pos_weight.defined()) return reduce(maximum(logits, zero) - logits * target + log_term, reduction);
  Tensor softplus_neg = log_term + maximum(-logits, zero);
  Tensor weight = (pos_weight - 1.0) * target + 1.0;
  return reduce((1.0 - target) * logits + weight * softplus_neg, reduction);
}

}  // namespace dg::nn
