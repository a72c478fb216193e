#include "models/block_on_rows.h"

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
  out.flops = 24.0 * static_cast<double>(C * C) * static_cast<double>(rows.size());
  for (size_t s = 1; s < cu.size(); ++s) {
    const auto L = static_cast<double>(cu[s] - cu[s - 1]);
    out.flops += 2.0 * static_cast<double>(C) * L * (L + 1.0);  // L(L+1)/2 query-key pairs at 4C
  }
  const Tensor seqlens = from_vector<int64_t>(cu, {static_cast<int64_t>(cu.size())}, R.device());
  out.delta = block.forward_packed(gather_rows(R, out.rows), seqlens);
  return out;
}

}  // namespace dg::models
