#pragma once
// The small Mixture-of-Blocks of chapter 9's examples: 3 blocks, up to 4
// steps, f64. An untrained MoB starts on the dense path (every token runs
// block d at step d), so the gate is set by hand: tokens then pick
// different blocks and halt at different depths.
#include <memory>
#include <vector>

#include "models/mob.h"

namespace tour {

// B = 2 sequences of T = 8 tokens, C = 16 channels, H = 2 heads.
inline constexpr int64_t kB = 2, kT = 8;

inline std::unique_ptr<dg::models::MoB> tiny_mob() {
  using namespace dg;
  models::MoBConfig cfg;
  cfg.gpt = {.n_layer = 0, .n_head = 2, .n_embd = 16, .block_size = kT, .vocab_size = 256, .dropout = 0.0,
             .tied_head = true, .seed = 3, .dtype = DType::f64};
  cfg.n_blocks = 3;
  cfg.max_depth = 4;
  cfg.gate_init = models::GateInit::uniform;
  auto model = std::make_unique<models::MoB>(cfg);
  // Gate logits = W norm(R) + b_d: W random, and the return logit's bias
  // -1 + 1.5 d, so that returning gets likelier with depth.
  NoGradGuard no_grad;  // writing parameters in place is not part of any graph
  Generator gen(12);
  Tensor& w = model->gate->weight;
  copy_(w, randn(w.shape(), {w.dtype()}, &gen) * 0.5);
  const int64_t n = cfg.n_blocks, D = cfg.max_depth;
  std::vector<double> bias((D + 1) * (n + 1), 0.0);
  for (int64_t d = 0; d <= D; ++d) bias[d * (n + 1) + n] = -1.0 + 1.5 * static_cast<double>(d);
  copy_(model->step_bias, from_doubles(bias, {D + 1, n + 1}, {w.dtype()}));
  return model;
}

// Token ids (B, T) from a fixed seed.
inline dg::Tensor tiny_tokens(uint64_t seed) {
  dg::Generator gen(seed);
  return dg::randint(0, 256, {kB, kT}, &gen);
}

}  // namespace tour
