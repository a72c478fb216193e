#pragma once
// Routing primitives shared by Mixture-of-Depths and Mixture-of-Blocks: pick
// tokens, gather their rows, run a block on them as a batch, scatter the
// weighted deltas back. All differentiable (index_select / index_add /
// gather), so gradients reach both the block and the router weights.
//
// Legend: B = batch, T = time, C = channels, k = tokens kept per sequence,
// N = rows of a flattened (B*T, C) residual stream.
//
//   Tensor idx = topk_positions(router_logits, k);        // (B, k), ascending positions
//   Tensor xs = gather_tokens(x, idx);                    // (B, k, C)
//   Tensor delta = block.forward(xs);                     // attention only among the kept tokens
//   x = scatter_add_tokens(x, idx, delta, gather(router_logits, 1, idx));  // x[i] += w[i] * delta[i]
//
// Rows that are not selected are copied unchanged, bit for bit.
#include <cstdint>
#include <vector>

#include "autograd/ops.h"

namespace dg::models {

// r (B, T) -> i64 (B, k): per sequence the k largest, listed by position
// (ascending), so a causal mask over the kept tokens is causal by position.
Tensor topk_positions(const Tensor& r, int64_t k);

// idx (B, k) positions in sequences of length T -> flat rows b*T + idx (B*k).
Tensor flat_rows(const Tensor& idx, int64_t T);

// x (B, T, C), idx (B, k) -> (B, k, C).
Tensor gather_tokens(const Tensor& x, const Tensor& idx);

// x (B, T, C) with w[b, j] * delta[b, j] added at row idx[b, j]: out of place,
// every other row copied unchanged. delta (B, k, C), w (B, k).
Tensor scatter_add_tokens(const Tensor& x, const Tensor& idx, const Tensor& delta, const Tensor& w);

// Row indices decided on the host (MoB's active tokens, a packed choice), as
// an i64 tensor on the device of the rows they index, and whether they are
// every row in order (0, 1, ..., n - 1): known from the host list, so the
// row functions never read an index tensor back from a device.
struct Rows {
  Rows() = default;
  Rows(const std::vector<int64_t>& rows, Device device);
  Tensor ids;             // (n) i64
  bool in_order = false;  // rows == 0..n-1
  int64_t size() const { return ids.defined() ? ids.size(0) : 0; }
};

// Flat-row versions for variable numbers of tokens: x (N, C), rows (n).
// When rows is every row in order (0..N-1), gather_rows returns x itself and
// an unweighted scatter_add_rows is a plain add: the same values without the
// copies and the index_add of their backward (MoB's steps where no token has
// halted). A weighted one (w (n)) is one index_add_rows: x[rows[i]] +=
// w[i] * delta[i] in one pass, its backward one pass too.
Tensor gather_rows(const Tensor& x, const Rows& rows);
Tensor scatter_add_rows(const Tensor& x, const Rows& rows, const Tensor& delta, const Tensor& w);

// Membership mask of idx (B, k) in sequences of length T: (B, T) with 1 where
// selected, in `dtype` on idx's device (a BCE target; no gradient).
Tensor membership(const Tensor& idx, int64_t T, DType dtype);

// Share of tokens where sigmoid(logit) > 0.5 agrees with a 0/1 target (how
// well a router decides causally what top-k chose): a 0-dim f64 tensor on the
// logits' device, no gradient.
Tensor agreement(const Tensor& logits, const Tensor& target);

// Variable-length selection made static: from a (B, T) boolean choice, the
// positions of each sequence's chosen tokens packed to the left and padded to
// the longest count with copies of the sequence's last position (after all
// real ones, so causal attention over the packed rows never lets a real token
// see a pad). `real_rows` lists the flat (B*kmax) rows that are real and
// `target_rows` their rows in the (B*T) stream. Tensors on `device`.
struct PackedChoice {
  Tensor idx;        // (B, kmax) i64, or undefined when nothing is chosen
  Rows real_rows;    // (n) rows of the packed (B*kmax) batch that are real
  Rows target_rows;  // (n) rows of the (B*T) stream they came from
  int64_t kmax = 0;
  std::vector<int64_t> counts;  // per sequence
};
PackedChoice pack_choice(const std::vector<uint8_t>& chosen, int64_t B, int64_t T, Device device = Device::cpu());

// Stable counting sort of per-row choices in [0, n): the rows of each group in
// their original order, group after group. perm (N) i64, offsets (n + 1).
struct Groups {
  std::vector<int64_t> perm;
  std::vector<int64_t> offsets;
};
Groups group_by_choice(const std::vector<int64_t>& choice, int64_t n);

}  // namespace dg::models
