#pragma once
// One block run on some rows of a flat residual stream, as a routed model
// runs it: the rows, listed by (sequence, position), form packed
// variable-length sequences — rows of one sequence attend to each other,
// causally by position, and to nothing else — and go through the block as one
// batch; the forward FLOPs are counted as the built-in routed models count
// them. The piece of MoB's block-scope step that a routing scheme of one's
// own needs to run "these tokens through that block" (examples/custom_routing.cpp).
//
// Legend: N = B*T rows of the stream R (N, C), T = sequence length, n = rows
// chosen, L = the chosen rows of one sequence.
//
//   std::vector<int64_t> rows = {0, 3, 17};              // flat rows b*T + t, ascending
//   BlockOnRows r = block_on_rows(*trunk.blocks[k], R, rows, T);
//   R = scatter_add_rows(R, r.rows, r.delta, w);         // R[rows] += w * delta
//   flops += r.flops;
#include <cstdint>
#include <vector>

#include "models/routing.h"
#include "nn/block.h"

namespace dg::models {

// cu_seqlens of the packed sequences that ascending flat rows form in
// sequences of length T: one boundary per sequence from the first up to the
// last one present (a sequence without rows is empty), (S + 1) on the host.
std::vector<int64_t> packed_seqlens(const std::vector<int64_t>& rows, int64_t T);

struct BlockOnRows {
  Rows rows;         // the rows, on R's device (what scatter_add_rows takes)
  Tensor delta;      // (n, C): the block's delta for each row; undefined when no rows
  double flops = 0;  // 24 C^2 per row + causal attention 2 C L (L + 1) per packed sequence
};

// The block's delta for rows (ascending, each in [0, N)) of R (N, C); a
// dg::Error names a row out of order or out of range.
BlockOnRows block_on_rows(const nn::Block& block, const Tensor& R, const std::vector<int64_t>& rows, int64_t T);

}  // namespace dg::models
