#include "models/block_on_rows.h"

#include <algorithm>
#include <cmath>
#include <numeric>

namespace dg::models {

std::vector<int64_t> packed_seqlens(const std::vector<int64_t>& rows, int64_t T) {
  DG_CHECK(T > 0, "packed_seqlens: T must be positive, got {}", T);
  std::vector<int64_t> cu{0};
  int64_t seq = -1;
  for (int64_t r : rows) {
    for (; seq < r / T; ++seq) cu.push_back(cu.back());  // open the row's sequence (and any empty before it)
    ++cu.back();
  }
  return cu;
}

double packed_attention_flops(const std::vector<int64_t>& cu, int64_t C) {
  double flops = 0;
  for (size_t s = 1; s < cu.size(); ++s) {
    const auto L = static_cast<double>(cu[s] - cu[s - 1]);
    flops += 2.0 * static_cast<double>(C) * L * (L + 1.0);
  }
  return flops;
}

ExpertChoiceRows expert_choice_rows(const std::vector<double>& scores, int64_t E, const std::vector<int64_t>& rows,
                                    int64_t T, double share) {
  const auto Na = static_cast<int64_t>(rows.size());
  DG_CHECK(T > 0 && E > 0 && share > 0 && share <= 1,
           "expert_choice_rows: needs T > 0, E > 0 and share in (0, 1], got T = {}, E = {}, share = {}", T, E, share);
  DG_CHECK(static_cast<int64_t>(scores.size()) == Na * E,
           "expert_choice_rows: scores must be (Na, E) = ({}, {}) row-major, got {} values", Na, E, scores.size());
  for (int64_t i = 0; i < Na; ++i)
    DG_CHECK(rows[i] >= 0 && (i == 0 || rows[i] > rows[i - 1]),
             "expert_choice_rows: rows must be ascending and non-negative, got {} at position {}", rows[i], i);
  ExpertChoiceRows c;
  c.taken.assign(Na * E, 0.0);
  c.positions.resize(E);
  c.rows.resize(E);
  for (int64_t lo = 0, hi = 0; lo < Na; lo = hi) {  // [lo, hi): one sequence's active rows
    while (hi < Na && rows[hi] / T == rows[lo] / T) ++hi;
    const auto cap = static_cast<int64_t>(std::ceil(share * static_cast<double>(hi - lo)));
    for (int64_t k = 0; k < E; ++k) {
      std::vector<int64_t> order(hi - lo);
      std::iota(order.begin(), order.end(), lo);
      std::partial_sort(order.begin(), order.begin() + cap, order.end(),
                        [&](int64_t a, int64_t b) { return scores[a * E + k] > scores[b * E + k]; });
      for (int64_t j = 0; j < cap; ++j) c.taken[order[j] * E + k] = 1.0;
    }
  }
  for (int64_t i = 0; i < Na; ++i)  // ascending i: each column's positions and rows in order
    for (int64_t k = 0; k < E; ++k)
      if (c.taken[i * E + k] > 0) {
        c.positions[k].push_back(i);
        c.rows[k].push_back(rows[i]);
      }
  return c;
}

BlockOnRows block_on_rows(const nn::Block& block, const Tensor& R, const std::vector<int64_t>& rows, int64_t T) {
  DG_CHECK(R.dim() == 2, "block_on_rows: R must be (N, C), got {}", R.shape());
  const int64_t N = R.size(0), C = R.size(1);
  for (size_t i = 0; i < rows.size(); ++i)
    DG_CHECK(rows[i] >= 0 && rows[i] < N && (i == 0 || rows[i] > rows[i - 1]),
             "block_on_rows: rows must be ascending and in [0, {}), got {} at position {}", N, rows[i], i);
  BlockOnRows out;
  if (rows.empty()) return out;
  out.rows = Rows(rows, R.device());
  const std::vector<int64_t> cu = packed_seqlens(rows, T);
  out.flops = 24.0 * static_cast<double>(C * C) * static_cast<double>(rows.size()) + packed_attention_flops(cu, C);
  const Tensor seqlens = from_vector<int64_t>(cu, {static_cast<int64_t>(cu.size())}, R.device());
  out.delta = block.forward_packed(gather_rows(R, out.rows), seqlens);
  return out;
}

}  // namespace dg::models
