#pragma once
// The argument contracts of the fused row kernels (softmax, layer norm, RMS
// norm, cross-entropy; tensor/backend.h), checked once for every backend. The
// ops check user input and name the op; these only DG_ASSERT what the ops
// guarantee, and return the row layout (N rows of length C).
//
//   const RowLayout rows = norm_layout("layer_norm", x, y, mean, rstd);   // rows.N, rows.C
#include <cstdint>
#include <utility>

#include "tensor/tensor.h"

namespace dg::kern {

// Length of the last dim (1 for a 0-dim tensor): the rows the kernels normalise.
inline int64_t row_length(const Tensor& x) { return x.dim() == 0 ? 1 : x.shape().back(); }

struct RowLayout {
  int64_t N, C;
};

// softmax: x -> out of one shape, both contiguous.
inline RowLayout softmax_layout(const Tensor& x, const Tensor& out) {
  DG_ASSERT(x.is_contiguous() && out.is_contiguous() && x.shape() == out.shape(), "softmax {} -> {}", x.shape(),
            out.shape());
  const int64_t C = row_length(x);
  return {C ? x.numel() / C : 0, C};
}

// The backward of a row kernel: a, b -> g, all contiguous and of one shape
// (softmax_backward: y, gy -> gx; norm backward: gy, x -> gx).
inline void assert_backward_args(const char* op, const Tensor& a, const Tensor& b, const Tensor& g) {
  DG_ASSERT(a.is_contiguous() && b.is_contiguous() && g.is_contiguous() && a.shape() == b.shape() &&
                a.shape() == g.shape(),
            "{} {} {} -> {}", op, a.shape(), b.shape(), g.shape());
}

// layer_norm / rms_norm forward: x -> y of one shape, with N per-row statistics
// (mean may be undefined: RMS norm has none).
inline RowLayout norm_layout(const char* op, const Tensor& x, const Tensor& y, const Tensor& mean, const Tensor& rstd) {
  DG_ASSERT(x.is_contiguous() && y.is_contiguous() && x.shape() == y.shape(), "{} {} -> {}", op, x.shape(),
            y.shape());
  const int64_t C = row_length(x), N = rstd.numel();
  DG_ASSERT(N * C == x.numel() && (!mean.defined() || mean.numel() == N), "{} {} with stats {}", op, x.shape(),
            rstd.shape());
  return {N, C};
}

// cross_entropy: logits (N, V) contiguous, i64 target (N), per-row outputs contiguous.
inline RowLayout cross_entropy_layout(const Tensor& logits, const Tensor& target, const Tensor& loss, const Tensor& lse) {
  DG_ASSERT(logits.dim() == 2 && logits.is_contiguous() && target.dim() == 1 && target.dtype() == DType::i64);
  DG_ASSERT(loss.is_contiguous() && lse.is_contiguous());
  return {logits.shape()[0], logits.shape()[1]};
}

inline RowLayout cross_entropy_backward_layout(const Tensor& logits, const Tensor& target, const Tensor& lse,
                                        const Tensor& gloss, const Tensor& glogits) {
  DG_ASSERT(logits.dim() == 2 && logits.is_contiguous() && glogits.is_contiguous() && lse.is_contiguous());
  DG_ASSERT(target.dim() == 1 && gloss.dim() == 1 && target.dtype() == DType::i64);
  return {logits.shape()[0], logits.shape()[1]};
}

}  // namespace dg::kern
