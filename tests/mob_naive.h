#pragma once
// The naive reference executor of Mixture-of-Blocks' ponder objective (test
// and benchmark only): token by token, in position order, each token alone
// through its own path — one block, one step at a time — with attention over
// explicitly kept per-step (or per step and block) key/value lists. The
// batched executor must match it (tests/test_mob.cpp) and beat it by far
// (bench/bench_mob.cpp).
#include <algorithm>
#include <cmath>
#include <vector>

#include "models/mob.h"

namespace dg::testing {

inline double mob_log_prior(double lambda, int64_t d, int64_t D) {
  return d < D ? std::log(lambda) + static_cast<double>(d) * std::log1p(-lambda)
               : static_cast<double>(D) * std::log1p(-lambda);
}

// Returns the objective (scalar); paths, when given, receive each token's blocks.
inline Tensor naive_mob_objective(models::MoB& m, const Tensor& idx, const Tensor& targets,
                                  std::vector<std::vector<int64_t>>* paths) {
  using models::AttnScope;
  const models::MoBConfig& c = m.mob_config();
  const int64_t B = idx.size(0), T = idx.size(1), C = c.gpt.n_embd, H = c.gpt.n_head, Dh = C / H;
  const int64_t n = c.n_blocks, D = c.max_depth;
  Tensor x = m.trunk().embed(idx);  // (B, T, C)
  std::vector<int64_t> tg = targets.to_vector<int64_t>();
  Tensor total = zeros({}, {x.dtype()});
  for (int64_t b = 0; b < B; ++b) {
    std::vector<Tensors> keys((D + 1) * n), values((D + 1) * n);  // per step (and block)
    for (int64_t t = 0; t < T; ++t) {
      Tensor R = reshape(select(select(x, 0, b), 0, t), {1, C});
      Tensor S = ones({}, {x.dtype()});
      std::vector<int64_t> path;
      for (int64_t d = 0; d <= D; ++d) {
        Tensor p = reshape(softmax(m.gate_logits(R, d), -1), {n + 1});
        Tensor lambda = select(p, 0, n);
        Tensor ce = cross_entropy(m.trunk().head(R), from_vector<int64_t>({tg[b * T + t]}), -100, 0.0, Reduction::sum);
        const double s = S.item<double>(), l = lambda.item<double>();
        const bool halt = d == D || s * (1 - l) < c.eps;
        Tensor h = halt ? S : lambda * S;
        total = total + h * ce + h * (log(clamp(h, 1e-12, 1.0)) - mob_log_prior(c.prior, d, D)) * c.kl;
        if (halt) break;
        Tensor q = slice(p, 0, 0, n) / (1.0 - lambda);
        std::vector<double> qv = q.to_vector<double>();
        const int64_t k = std::max_element(qv.begin(), qv.end()) - qv.begin();
        path.push_back(k);
        // The block with attention over the keys and values kept for this
        // step (and block): qkv (1, 3C) -> y (1, C).
        const int64_t slot = c.attn_scope == AttnScope::step ? d : d * n + k;
        auto attend_kept = [&](const Tensor& qkv) {
          auto head = [&](int64_t i) { return reshape(slice(qkv, 1, i * C, (i + 1) * C), {1, H, 1, Dh}); };
          keys[slot].push_back(head(1));
          values[slot].push_back(head(2));
          Tensor y = scaled_dot_product_attention(head(0), cat(keys[slot], 2), cat(values[slot], 2), true);
          return reshape(y, {1, C});
        };
        R = R + select(q, 0, k) * nn::block_delta(*m.trunk().blocks[k], R, attend_kept);
        S = S * (1.0 - lambda);
      }
      if (paths) paths->push_back(path);
    }
  }
  return total * (1.0 / static_cast<double>(B * T));
}

}  // namespace dg::testing
