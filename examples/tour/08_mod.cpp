// Tour, chapter 8: Mixture-of-Depths' static routing (docs/tour/08_mod.md).
//
// The routing primitives on their own (top-k positions, gather, scatter),
// then a small MoD: every routed block runs on exactly k = ceil(c T) tokens of
// each sequence, and the router gets a gradient through the weights r.
#include <algorithm>
#include <cmath>

#include "autograd/engine.h"
#include "autograd/graphviz.h"
#include "examples/tour/check.h"
#include "models/mod.h"
#include "models/routing.h"

using namespace dg;
using namespace dg::models;

int main() try {
  tour::Checks check;
  const int64_t B = 2, T = 16, C = 8, k = 4;

  // 1. top-k by position: per sequence the k largest router scores, listed in position order.
  Generator gen(4);
  Tensor r = randn({B, T}, {DType::f64}, &gen);
  Tensor idx = topk_positions(r, k);  // (B, k) i64
  std::vector<double> rv = r.to_vector<double>();
  std::vector<int64_t> iv = idx.to_vector<int64_t>();
  bool topk_ok = idx.shape() == Shape{B, k};
  for (int64_t b = 0; b < B && topk_ok; ++b) {
    std::vector<double> row(rv.begin() + b * T, rv.begin() + (b + 1) * T), sorted = row;
    std::sort(sorted.begin(), sorted.end(), std::greater<>());
    for (int64_t j = 0; j < k; ++j) {
      const int64_t t = iv[b * k + j];
      topk_ok &= row[t] >= sorted[k - 1] && (j == 0 || t > iv[b * k + j - 1]);
    }
  }
  fmt::print("router scores -> kept positions per sequence: {}\n", idx);
  check.expect(topk_ok, "topk_positions keeps the k largest scores of each sequence, in ascending position order");

  // 2. gather, run, scatter: x[i] += w[i] * delta[i] on the kept rows only.
  Tensor x = randn({B, T, C}, {DType::f64}, &gen);
  Tensor xs = gather_tokens(x, idx);                     // (B, k, C)
  Tensor delta = randn({B, k, C}, {DType::f64}, &gen);   // stands for block(xs)
  Tensor w = gather(r, 1, idx);                          // (B, k): the kept tokens' router scores
  Tensor out = scatter_add_tokens(x, idx, delta, w);
  std::vector<double> xv = x.to_vector<double>(), ov = out.to_vector<double>(), dv = delta.to_vector<double>();
  bool kept_ok = xs.shape() == Shape{B, k, C}, others_ok = true;
  for (int64_t b = 0; b < B; ++b)
    for (int64_t t = 0; t < T; ++t) {
      const auto kept = std::find(iv.begin() + b * k, iv.begin() + (b + 1) * k, t);
      const int64_t j = kept - (iv.begin() + b * k);
      for (int64_t c = 0; c < C; ++c) {
        const size_t at = static_cast<size_t>((b * T + t) * C + c);
        if (j == k) {
          others_ok &= ov[at] == xv[at];  // bit for bit: copied, not recomputed
        } else {
          const double want = xv[at] + rv[b * T + t] * dv[static_cast<size_t>((b * k + j) * C + c)];
          kept_ok &= std::abs(ov[at] - want) < 1e-14;
        }
      }
    }
  check.expect(kept_ok, "scatter_add_tokens adds r * delta to each kept row");
  check.expect(others_ok, "every other row comes back unchanged, bit for bit");

  // 3. A MoD model: blocks 1 and 3 routed with capacity 1/4, so k = 4 of T = 16.
  MoDConfig cfg;
  cfg.gpt = {.n_layer = 4, .n_head = 2, .n_embd = C, .block_size = T, .vocab_size = 256, .seed = 1,
             .dtype = DType::f64};
  cfg.capacity = 0.25;
  MoD model(cfg);
  check.expect(model.capacity_k(T) == k, fmt::format("capacity_k({}) = ceil(0.25 * {}) = {}", T, T, k));
  Tensor tokens = randint(0, 256, {B, T}, &gen), targets = randint(0, 256, {B, T}, &gen);
  LossOutput loss = model.loss(tokens, targets);
  int64_t full = 0, routed = 0;
  for (const Node* n : tape({loss.objective}))
    if (std::string(n->name()) == "attention_qkv") {
      full += n->out_shape() == Shape{B, T, C};
      routed += n->out_shape() == Shape{B, k, C};
    }
  fmt::print("attention ran on (B, T, C) = ({}, {}, {}) in {} blocks and on (B, k, C) = ({}, {}, {}) in {}\n", B, T,
             C, full, B, k, C, routed);
  check.expect(full == 2 && routed == 2,
               "the two routed blocks ran on exactly k tokens per sequence, the others on all T");
  bool fractions = model.last_stats().fraction.size() == 2;
  for (double f : model.last_stats().fraction) fractions &= f == static_cast<double>(k) / static_cast<double>(T);
  check.expect(fractions, "last_stats(): each routed block processed k / T = 1/4 of the tokens");

  // 4. The router is on the gradient path: the LM loss reaches its weight through w = r.
  loss.lm.backward();
  const Tensor& gr = model.routers[1]->proj->weight.grad();
  double norm = 0;
  for (double v : gr.to_vector<double>()) norm += v * v;
  fmt::print("|d lm / d router weight| = {:.3e}\n", std::sqrt(norm));
  check.expect(norm > 0, "the LM loss alone gives the router of block 1 a nonzero gradient");
  return check.exit_code();
} catch (const dg::Error& e) {
  fmt::print(stderr, "error: {}\n", e.what());
  return 1;
}
