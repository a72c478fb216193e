#pragma once
// One block run on some rows of a flat residual stream, as a routed model
// runs it: the rows, listed by (sequence, position), form packed
// variable-length sequences — rows of one sequence attend to each other,
// causally by position, and to nothing else — and go through the block as one
// batch; the forward FLOPs are counted as the built-in routed models count
// them. The piece of MoB's block-scope step that a routing scheme of one's
// own needs to run "these tokens through that block" (examples/custom_routing.cpp),
// and expert choice: which of the active rows each block takes.
//
// Legend: N = B*T rows of the stream R (N, C), T = sequence length, n = rows
// chosen, L = the chosen rows of one sequence; Na = active rows, E = columns
// (blocks or experts) that choose among them.
//
//   std::vector<int64_t> rows = {0, 3, 17};              // flat rows b*T + t, ascending
//   BlockOnRows r = block_on_rows(*trunk.blocks[k], R, rows, T);
//   R = scatter_add_rows(R, r.rows, r.delta, w);         // R[rows] += w * delta
//   flops += r.flops;
//
//   // each column takes the top half of each sequence's active rows:
//   ExpertChoiceRows c = expert_choice_rows(scores, E, active, T, 0.5);
//   BlockOnRows r = block_on_rows(*trunk.blocks[k], R, c.rows[k], T);
#include <cstdint>
#include <vector>

#include "models/routing.h"
#include "nn/block.h"

namespace dg::models {

// cu_seqlens of the packed sequences that ascending flat rows form in
// sequences of length T: one boundary per sequence from the first up to the
// last one present (a sequence without rows is empty), (S + 1) on the host.
std::vector<int64_t> packed_seqlens(const std::vector<int64_t>& rows, int64_t T);

// Forward FLOPs of causal attention over packed sequences with cu_seqlens cu
// (S + 1) at width C: L(L+1)/2 query-key pairs at 4C (q k^T and p v) per
// sequence of length L, as the routed models count them.
double packed_attention_flops(const std::vector<int64_t>& cu, int64_t C);

// Expert choice among the active rows, decided on the host: scores (Na, E)
// row-major, one column per block or expert, for the active rows (Na, flat
// b*T + t, ascending). In each sequence, every column k takes the
// ceil(share * a) rows with the largest scores[i, k] among that sequence's a
// active rows (share in (0, 1]: at least one, at most all; ties as
// std::partial_sort leaves them; scores must not be NaN). A row may be taken
// by several columns or by none. A dg::Error names a bad size, share or row.
struct ExpertChoiceRows {
  std::vector<double> taken;                    // (Na, E) row-major: 1 where column k took row i, else 0 (a BCE target)
  std::vector<std::vector<int64_t>> positions;  // [k]: the i that column k took, ascending (index scores, rows)
  std::vector<std::vector<int64_t>> rows;       // [k]: their rows, rows[positions[k][j]] (what block_on_rows takes)
};
ExpertChoiceRows expert_choice_rows(const std::vector<double>& scores, int64_t E, const std::vector<int64_t>& rows,
                                    int64_t T, double share);

struct BlockOnRows {
  Rows rows;         // the rows, on R's device (what scatter_add_rows takes)
  Tensor delta;      // (n, C): the block's delta for each row; undefined when no rows
  double flops = 0;  // 24 C^2 per row + causal attention 2 C L (L + 1) per packed sequence
};

// The block's delta for rows (ascending, each in [0, N)) of R (N, C); a
// dg::Error names a row out of order or out of range.
BlockOnRows block_on_rows(const nn::Block& block, const Tensor& R, const std::vector<int64_t>& rows, int64_t T);

}  // namespace dg::models
