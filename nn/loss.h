#pragma once
// Losses. cross_entropy is the fused kernel of autograd/ops.h (log-softmax and
// NLL in one pass, ignore_index, label smoothing); the others are composites
// of differentiable ops and need no backward of their own.
//
//   Tensor l = nn::cross_entropy(logits, targets);            // logits (..., V), targets (...) i64
//   Tensor m = nn::mse_loss(pred, target);                    // mean((pred - target)^2)
//   Tensor b = nn::bce_with_logits(logits, labels);           // labels in [0, 1]
#include "autograd/ops.h"

namespace dg::nn {

using dg::cross_entropy;

// mean (or sum, or none) of (input - target)^2, shapes broadcast.
Tensor mse_loss(const Tensor& input, const Tensor& target, Reduction reduction = Reduction::mean);

// Binary cross-entropy on logits x against targets y in [0, 1]:
//   max(x, 0) - x*y + log(1 + exp(-|x|))
// which never evaluates exp of a large positive number (stable for |x| ~ 1e3).
// pos_weight (optional, broadcast) scales the positive term as in PyTorch.
Tensor bce_with_logits(const Tensor& logits, const Tensor& target, Reduction reduction = Reduction::mean,
                       const Tensor& pos_weight = Tensor());

}  // namespace dg::nn
