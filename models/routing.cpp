#include "models/routing.h"

namespace dg::models {

Tensor topk_positions(const Tensor& r, int64_t k) {
  DG_CHECK(r.defined() && r.dim() == 2, "topk_positions: router logits must be (B, T), got {}",
           r.defined() ? r.shape() : Shape{});
  DG_CHECK(k >= 1 && k <= r.size(1), "topk_positions: k = {} out of range for T = {}", k, r.size(1));
  NoGradGuard no_grad;  // the choice itself is discrete
  return topk(r, k, 1, /*largest=*/true, /*sorted=*/false).indices;  // unsorted = ascending positions
}

Tensor flat_rows(const Tensor& idx, int64_t T) {
  NoGradGuard no_grad;
  const int64_t B = idx.size(0);
  Tensor base = mul(arange(B, {DType::i64, idx.device()}), static_cast<double>(T));  // (B)
  return reshape(add(idx, unsqueeze(base, 1)), {-1});
}

Tensor gather_tokens(const Tensor& x, const Tensor& idx) {
  DG_CHECK(x.dim() == 3 && idx.dim() == 2 && idx.size(0) == x.size(0),
           "gather_tokens: x {} and idx {} must be (B, T, C) and (B, k)", x.shape(), idx.shape());
  const int64_t B = x.size(0), T = x.size(1), C = x.size(2), k = idx.size(1);
  return reshape(index_select(reshape(x, {B * T, C}), 0, flat_rows(idx, T)), {B, k, C});
}

Tensor scatter_add_tokens(const Tensor& x, const Tensor& idx, const Tensor& delta, const Tensor& w) {
  DG_CHECK(x.dim() == 3 && idx.dim() == 2 && delta.dim() == 3 && w.dim() == 2 && delta.size(0) == x.size(0) &&
               delta.size(1) == idx.size(1) && delta.size(2) == x.size(2) && w.shape() == idx.shape(),
           "scatter_add_tokens: x {} idx {} delta {} w {} do not fit (B, T, C), (B, k), (B, k, C), (B, k)",
           x.shape(), idx.shape(), delta.shape(), w.shape());
  const int64_t B = x.size(0), T = x.size(1), C = x.size(2), k = idx.size(1);
  Tensor src = reshape(delta * unsqueeze(w, 2), {B * k, C});
  return reshape(index_add(reshape(x, {B * T, C}), 0, flat_rows(idx, T), src), {B, T, C});
}

Rows::Rows(const std::vector<int64_t>& rows, Device device)
    : ids(from_vector<int64_t>(rows, {static_cast<int64_t>(rows.size())}, device)), in_order(true) {
  for (size_t i = 0; i < rows.size(); ++i) in_order = in_order && rows[i] == static_cast<int64_t>(i);
}

// Every row in order (MoB on the dense path, a step where no token has
// halted): x itself, no copy, and no index_add in backward.
Tensor gather_rows(const Tensor& x, const Rows& rows) {
  return rows.in_order && rows.size() == x.size(0) ? x : index_select(x, 0, rows.ids);
}

// Weighted: index_add_rows (no scaled copy of delta). Unweighted, every row
// in order: a plain add, the same values as index_add.
Tensor scatter_add_rows(const Tensor& x, const Rows& rows, const Tensor& delta, const Tensor& w) {
  if (w.defined()) return index_add_rows(x, rows.ids, delta, w);
  return rows.in_order && rows.size() == x.size(0) && delta.shape() == x.shape() ? x + delta
                                                                                  : index_add(x, 0, rows.ids, delta);
}

Tensor membership(const Tensor& idx, int64_t T, DType dtype) {
  NoGradGuard no_grad;
  const int64_t B = idx.size(0);
  Tensor m = zeros({B * T}, {dtype, idx.device()});
  return reshape(index_add(m, 0, flat_rows(idx, T), ones({idx.numel()}, {dtype, idx.device()})), {B, T});
}

Tensor agreement(const Tensor& logits, const Tensor& target) {
  NoGradGuard no_grad;
  return mean(to_dtype(eq(gt(logits.detach(), 0.0), gt(target, 0.5)), DType::f64));
}

PackedChoice pack_choice(const std::vector<uint8_t>& chosen, int64_t B, int64_t T, Device device) {
  DG_CHECK(static_cast<int64_t>(chosen.size()) == B * T, "pack_choice: {} choices for B={} T={}", chosen.size(), B, T);
  PackedChoice p;
  p.counts.assign(B, 0);
  for (int64_t b = 0; b < B; ++b)
    for (int64_t t = 0; t < T; ++t) p.counts[b] += chosen[b * T + t] != 0;
  for (int64_t c : p.counts) p.kmax = std::max(p.kmax, c);
  if (p.kmax == 0) return p;
  std::vector<int64_t> idx(B * p.kmax), real, target;
  for (int64_t b = 0; b < B; ++b) {
    int64_t j = 0;
    for (int64_t t = 0; t < T; ++t)
      if (chosen[b * T + t]) {
        real.push_back(b * p.kmax + j);
        target.push_back(b * T + t);
        idx[b * p.kmax + j++] = t;
      }
    for (; j < p.kmax; ++j) idx[b * p.kmax + j] = T - 1;  // pads: after every real token
  }
  p.idx = from_vector<int64_t>(idx, {B, p.kmax}, device);
  p.real_rows = Rows(real, device);
  p.target_rows = Rows(target, device);
  return p;
}

Groups group_by_choice(const std::vector<int64_t>& choice, int64_t n) {
  Groups g;
  g.offsets.assign(n + 1, 0);
  for (int64_t c : choice) {
    DG_CHECK(c >= 0 && c < n, "group_by_choice: choice {} out of range [0, {})", c, n);
    ++g.offsets[c + 1];
  }
  for (int64_t i = 0; i < n; ++i) g.offsets[i + 1] += g.offsets[i];
  g.perm.resize(choice.size());
  std::vector<int64_t> next(g.offsets.begin(), g.offsets.end() - 1);
  for (size_t r = 0; r < choice.size(); ++r) g.perm[next[choice[r]]++] = static_cast<int64_t>(r);
  return g;
}

}  // namespace dg::models
