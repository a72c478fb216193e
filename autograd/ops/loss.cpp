// Losses and dropout: cross_entropy (fused) and dropout (composite).
//
// Legend: N = rows (the product of the leading dims), V = classes, s = label
// smoothing, t = target class, lse = log(sum(exp(x))) of a row.
#include <algorithm>
#include <vector>

#include "autograd/ops/common.h"

namespace dg {

namespace {

// Every target is ignore_index or a class in [0, V); a dg::Error names the
// first bad target. Checked on the target's device (no copy to the host).
void check_targets(const Tensor& target, int64_t V, int64_t ignore_index, const Tensor& logits) {
  backend_of(target).check_indices(target, V,
                                   fmt::format("cross_entropy: target {{}} out of range for {} classes (logits shape "
                                               "{}, target shape {}, ignore_index {})", V, logits.shape(),
                                               target.shape(), ignore_index),
                                   ignore_index);
}

// How many targets are not ignore_index (the divisor of the mean), as a 0-dim
// tensor of dtype `dt` on the target's device: the count is never read on the host.
Tensor count_targets(const Tensor& target, int64_t ignore_index, DType dt) {
  NoGradGuard no_grad;
  Tensor ignore = scalar_tensor(static_cast<double>(ignore_index), {DType::i64, target.device()});
  return sum(to(ne(target, ignore), dt));
}

// d loss / d logits with differentiable ops, for create_graph (double
// backward): w * g * (softmax(x) - q), q the smoothed one-hot target
// ((1-s) on t, s/V everywhere), w = 0 on ignored rows. Built on the logits'
// device from the target (ignored rows point at class 0, then weigh 0).
Tensor cross_entropy_grad_composite(const Tensor& x, const Tensor& target, const Tensor& g, int64_t ignore_index,
                                    double s, Site site) {
  const int64_t V = x.shape().back();
  Tensor q, w;
  {
    NoGradGuard no_grad;
    Shape rows = x.shape();  // (..., 1): one class per row (target may come flattened)
    rows[rows.size() - 1] = 1;
    Tensor t1 = reshape(target, rows);
    Tensor kept = ne(t1, scalar_tensor(static_cast<double>(ignore_index), {DType::i64, target.device()}));
    t1 = where(kept, t1, zeros({}, {DType::i64, target.device()}));
    Tensor onehot = zeros(x.shape(), {x.dtype(), x.device()});
    backend_of(x).scatter_add(onehot, x.dim() - 1, t1, ones(t1.shape(), {x.dtype(), x.device()}));
    q = add(mul(onehot, 1 - s), s / static_cast<double>(V));
    w = to(kept, x.dtype());  // (..., 1)
  }
  return mul(sub(softmax(x, -1, site), q, site), mul(unsqueeze(g, -1, site), w, site), site);
}

// d loss / d logits for the per-row loss: the fused kernel, or the composite
// when the backward itself is being recorded.
// x is the contiguous copy of logits (logits itself when it already was).
Tensor cross_entropy_grad(const Tensor& logits, const Tensor& x, const Tensor& target, const Tensor& lse,
                          const Tensor& g, int64_t ignore_index, double s, Site site) {
  if (should_record({logits, g})) return cross_entropy_grad_composite(logits, target, g, ignore_index, s, site);
  const int64_t V = x.shape().back(), N = x.numel() / std::max<int64_t>(V, 1);
  // g has the leading shape; flatten it to (N) without a copy when it is
  // contiguous or all-broadcast (stride 0, from a mean or sum).
  Tensor gf;
  if (std::all_of(g.strides().begin(), g.strides().end(), [](int64_t st) { return st == 0; })) {
    gf = as_strided(g, {N}, {0}, g.offset());
  } else {
    gf = to_contiguous(g);
    gf = as_strided(gf, {N}, {1}, gf.offset());
  }
  Tensor gx = empty_as(x.shape(), x);
  backend_of(x).cross_entropy_backward(as_strided(x, {N, V}, {V, 1}, x.offset()), target, lse, gf, ignore_index, s,
                                       as_strided(gx, {N, V}, {V, 1}, 0));
  return gx;
}

}  // namespace

// --- cross_entropy: logits (..., V) floating, target (...) i64 class indices ->
// per-row loss (...) = (1-s)*(lse - x[t]) + s*(lse - mean(x)), 0 where
// t == ignore_index; then reduced: none, sum, or mean over the non-ignored
// rows (like PyTorch; NaN when every row is ignored).
//
// Why fused: the composite log_softmax + gather would write and read an
// (N, V) log-probability tensor (for a language model head, V is the vocab),
// and its backward a few more; the fused kernel reads the logits once forward
// and once backward, and saves only lse (N).
Tensor cross_entropy(const Tensor& logits, const Tensor& target, int64_t ignore_index, double label_smoothing,
                     Reduction reduction, Site site) {
  check_defined("cross_entropy", logits, "logits");
  check_defined("cross_entropy", target, "target");
  check_floating("cross_entropy", logits);
  check_same_device("cross_entropy", logits, target);
  DG_CHECK(logits.dim() >= 1, "cross_entropy: logits must have a class dim, got a 0-dim tensor");
  DG_CHECK(target.dtype() == DType::i64, "cross_entropy: target must be i64 class indices, got {} of shape {} "
           "(logits shape {})", target.dtype(), target.shape(), logits.shape());
  Shape lead = logits.shape();
  lead.erase(lead.size() - 1);
  DG_CHECK(target.shape() == lead, "cross_entropy: target shape {} must equal the logits' leading shape {} "
           "(logits shape {})", target.shape(), lead, logits.shape());
  DG_CHECK(label_smoothing >= 0 && label_smoothing <= 1, "cross_entropy: label_smoothing must be in [0, 1], got {}",
           label_smoothing);
  const int64_t V = logits.shape().back(), N = lead.numel();
  DG_CHECK(V > 0 || N == 0, "cross_entropy: logits have 0 classes (shape {})", logits.shape());
  check_targets(target, V, ignore_index, logits);

  // Forward on flat (N, V) / (N) views of contiguous data.
  Tensor x = to_contiguous(logits), t = to_contiguous(target);
  t = as_strided(t, {N}, {1}, t.offset());
  Tensor loss = empty_as(lead, logits), lse = empty_as({N}, logits);
  backend_of(x).cross_entropy(as_strided(x, {N, V}, {V, 1}, x.offset()), t, ignore_index, label_smoothing,
                              as_strided(loss, {N}, {1}, 0), lse);
  // Saves the logits (and their contiguous copy if they were strided), target and lse.
  if (should_record({logits}))
    record("cross_entropy", site, loss, {logits},
           [logits = save(logits), x = save(x), t = save(t), lse = save(lse), ignore_index, label_smoothing](
               const Tensor& g, const Node& n) -> Tensors {
             return {cross_entropy_grad(logits.get(), x.get(), t.get(), lse.get(), g, ignore_index, label_smoothing,
                                        n.site())};
           },
           {x.shape(), lse.shape()});
  switch (reduction) {
    case Reduction::none: return loss;
    case Reduction::sum: return sum(loss, {}, false, site);
    case Reduction::mean: break;
  }
  return div(sum(loss, {}, false, site), count_targets(target, ignore_index, logits.dtype()), site);
}

// --- dropout: x -> x * mask, mask = bernoulli(1 - p) / (1 - p) (so the mean
// is preserved); x itself when !training or p == 0. A composite: the
// gradient, g * mask, comes from mul.
Tensor dropout(const Tensor& x, double p, bool training, Generator* gen, Site site) {
  check_defined("dropout", x);
  check_floating("dropout", x);
  DG_CHECK(p >= 0 && p < 1, "dropout: p must be in [0, 1), got {} (input shape {})", p, x.shape());
  if (!training || p == 0) return x;
  Tensor keep = bernoulli(x.shape(), 1.0 - p, {x.dtype(), x.device()}, gen);
  return mul(x, mul(keep, 1.0 / (1.0 - p), site), site);
}

}  // namespace dg
