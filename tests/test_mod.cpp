// Mixture-of-Depths: routing primitives (k per sequence, positions sorted,
// untouched rows bit-identical, delta added never x + delta), gradients
// (router on the path, finite differences with routing fixed), causal mode
// (future tokens never change the past), cached decoding equal to the full
// causal forward, capacity 1 equal to the dense model, FLOP accounting.
#include <cmath>

#include "models/gpt.h"
#include "models/mod.h"
#include "models/routing.h"
#include "nn/layers.h"
#include "testing.h"

using namespace dg;
using namespace dg::testing;
using namespace dg::models;

namespace {

MoDConfig tiny(double capacity = 0.25, DType dt = DType::f64) {
  MoDConfig c;
  c.gpt = {.n_layer = 2, .n_head = 2, .n_embd = 8, .block_size = 8, .vocab_size = 256, .dropout = 0.0,
           .tied_head = true, .seed = 3, .dtype = dt};
  c.capacity = capacity;
  c.predictor_hidden = 4;
  return c;
}


}  // namespace

TEST(Routing, TopkPositionsAreKLargestInPositionOrder) {
  Tensor r = from_vector<double>({0.1, 0.9, -1.0, 0.5, 0.3, 2.0, 0.2, 0.0,  //
                                  5.0, 4.0, 3.0, 2.0, 1.0, 0.0, -1.0, -2.0},
                                 {2, 8});
  Tensor idx = topk_positions(r, 3);
  EXPECT_EQ(idx.shape(), (Shape{2, 3}));
  EXPECT_EQ(idx.to_vector<int64_t>(), (std::vector<int64_t>{1, 3, 5, 0, 1, 2}));
  EXPECT_EQ(membership(idx, 8, DType::f64).to_vector<double>(),
            (std::vector<double>{0, 1, 0, 1, 0, 1, 0, 0, 1, 1, 1, 0, 0, 0, 0, 0}));
}

TEST(Routing, ScatterTouchesOnlySelectedRowsAndAddsTheDelta) {
  Tensor x = rand_input({2, 6, 4}, 1).detach();
  Tensor idx = from_vector<int64_t>({0, 4, 1, 5}, {2, 2});
  Tensor delta = rand_input({2, 2, 4}, 2).detach(), w = rand_input({2, 2}, 3).detach();
  Tensor out = scatter_add_tokens(x, idx, delta, w);
  std::vector<double> xv = x.to_vector<double>(), ov = out.to_vector<double>(), dv = delta.to_vector<double>(),
                      wv = w.to_vector<double>();
  for (int64_t b = 0; b < 2; ++b)
    for (int64_t t = 0; t < 6; ++t)
      for (int64_t c = 0; c < 4; ++c) {
        const int64_t i = (b * 6 + t) * 4 + c;
        int64_t j = -1;
        for (int64_t s = 0; s < 2; ++s)
          if (idx.to_vector<int64_t>()[b * 2 + s] == t) j = s;
        if (j < 0) EXPECT_EQ(ov[i], xv[i]);  // bit for bit
        else EXPECT_DOUBLE_EQ(ov[i], xv[i] + wv[b * 2 + j] * dv[(b * 2 + j) * 4 + c]);
      }
  // A zero delta leaves x unchanged: x + 0, never x + (x + delta).
  EXPECT_EQ(max_abs_diff(scatter_add_tokens(x, idx, zeros({2, 2, 4}, {DType::f64}), w), x), 0.0);
  // Gather picks the same rows.
  Tensor g = gather_tokens(x, idx);
  EXPECT_EQ(max_abs_diff(select(select(g, 0, 0), 0, 1), select(select(x, 0, 0), 0, 4)), 0.0);
  EXPECT_EQ(max_abs_diff(select(select(g, 0, 1), 0, 0), select(select(x, 0, 1), 0, 1)), 0.0);
}

TEST(Routing, PackChoicePadsAfterRealTokens) {
  std::vector<uint8_t> chosen = {1, 0, 1, 0, 0, 0, 0, 1};  // B=2, T=4: counts 2 and 1
  PackedChoice p = pack_choice(chosen, 2, 4);
  EXPECT_EQ(p.kmax, 2);
  EXPECT_EQ(p.idx.to_vector<int64_t>(), (std::vector<int64_t>{0, 2, 3, 3}));
  EXPECT_EQ(p.real_rows.ids.to_vector<int64_t>(), (std::vector<int64_t>{0, 1, 2}));
  EXPECT_EQ(p.target_rows.ids.to_vector<int64_t>(), (std::vector<int64_t>{0, 2, 7}));
  EXPECT_EQ(pack_choice(std::vector<uint8_t>(8, 0), 2, 4).kmax, 0);
  Groups g = group_by_choice({2, 0, 2, 1, 0}, 3);
  EXPECT_EQ(g.perm, (std::vector<int64_t>{1, 4, 3, 0, 2}));
  EXPECT_EQ(g.offsets, (std::vector<int64_t>{0, 2, 3, 5}));
  EXPECT_DG_ERROR(group_by_choice({3}, 3), "group_by_choice", "3");
}

TEST(MoD, ProcessesExactlyKTokensPerSequenceAndCountsFlops) {
  MoD m(tiny(0.25));
  Tensor idx = random_tokens(3, 8, 1);
  m.forward(idx);
  ASSERT_EQ(m.last_stats().fraction.size(), 1u);  // 2 blocks, mod_every 2: block 1 routed
  EXPECT_DOUBLE_EQ(m.last_stats().fraction[0], 2.0 / 8.0);
  EXPECT_EQ(m.capacity_k(8), 2);
  EXPECT_EQ(m.capacity_k(7), 2);  // ceil(0.25 * 7)
  const double C = 8;
  const double want = block_flops_per_token(8, 8) + 2.0 / 8.0 * block_flops_per_token(8, 2) + 2 * C +
                      2.0 * 4 * (C + 1) + 2 * C * 256;
  EXPECT_NEAR(m.last_forward_flops_per_token(), want, 1e-9 * want);
  EXPECT_LT(m.last_forward_flops_per_token(), dense_flops_per_token(2, 8, 256, 8));
}

TEST(MoD, CapacityOneWithUnitWeightIsTheDenseModel) {
  MoDConfig c = tiny(1.0);
  c.router_weight = RouterWeight::none;
  MoD mod(c);
  GPT dense(c.gpt);
  dense.load_state_dict(dense.state_dict());
  // Same seed -> same GPT weights; copy explicitly anyway.
  std::map<std::string, Tensor> sd;
  for (auto& [name, t] : dense.state_dict()) sd.emplace(name, t);
  mod.load_state_dict(sd, /*strict=*/false);
  Tensor idx = random_tokens(2, 8, 2);
  EXPECT_EQ(max_abs_diff(mod.forward(idx), dense.forward(idx)), 0.0);
}

TEST(MoD, RouterGetsGradientAndFiniteDifferencesAgree) {
  MoD m(tiny(0.5));
  Tensor idx = random_tokens(2, 8, 4), tgt = random_tokens(2, 8, 5);
  m.loss(idx, tgt).objective.backward();
  Tensor rw = m.routers[1]->proj->weight;
  ASSERT_TRUE(rw.grad().defined());
  double s = 0;
  for (double v : rw.grad().to_vector<double>()) s += std::abs(v);
  EXPECT_GT(s, 0.0);
  // Routing is discrete; a 1e-6 perturbation does not change which tokens are
  // kept, so central differences see the routed function with routing fixed.
  for (Tensor p : {rw, m.trunk().blocks[1]->attn->qkv->weight, m.routers[1]->pred_fc->weight})
    EXPECT_TRUE(param_gradcheck([&] { return m.loss(idx, tgt).objective; }, p));
}

TEST(MoD, PredictorDoesNotChangeLmGradients) {
  MoDConfig a = tiny(0.5);
  a.causal = CausalMethod::aux_loss;
  a.aux_weight = 0.0;
  MoDConfig b = a;
  b.causal = CausalMethod::both;
  b.predictor_weight = 1.0;  // a large predictor loss
  MoD ma(a), mb(b);
  mb.load_state_dict(ma.state_dict(), /*strict=*/false);
  Tensor idx = random_tokens(2, 8, 6), tgt = random_tokens(2, 8, 7);
  ma.loss(idx, tgt).objective.backward();
  mb.loss(idx, tgt).objective.backward();
  for (auto& [name, p] : ma.named_parameters()) {
    if (name.find(".pred_") != std::string::npos) continue;  // the predictor itself: trained only in b
    Tensor gb = mb.state_dict().at(name).grad();
    ASSERT_TRUE(p.grad().defined() && gb.defined()) << name;
    EXPECT_LT(max_abs_diff(p.grad(), gb), 1e-15) << name;
  }
}

TEST(MoD, CausalRoutingNeverLetsTheFutureIn) {
  MoDConfig c = tiny(0.5);
  c.causal = CausalMethod::aux_loss;
  MoD m(c);
  // Make the router choose roughly half the tokens: bias-free router on x, so
  // scale its weight up to get decisive logits.
  { NoGradGuard ng; mul_(m.routers[1]->proj->weight, 50.0); }
  m.set_routing(MoDRouting::causal);
  Tensor idx = random_tokens(1, 8, 8);
  Tensor base = m.forward(idx);
  EXPECT_GT(m.last_stats().fraction[0], 0.0);
  Tensor other = m.forward(change_tokens_from(idx, 5, 77));
  EXPECT_EQ(max_abs_diff(slice(base, 1, 0, 5), slice(other, 1, 0, 5)), 0.0);
}

TEST(MoD, CachedDecodingEqualsCausalForward) {
  for (CausalMethod method : {CausalMethod::aux_loss, CausalMethod::predictor}) {
    MoDConfig c = tiny(0.5, DType::f32);
    c.causal = method;
    MoD m(c);
    { NoGradGuard ng; mul_(m.routers[1]->proj->weight, 50.0); mul_(m.routers[1]->pred_out->weight, 50.0); }
    m.eval();
    m.set_routing(MoDRouting::causal);
    Tensor idx = random_tokens(1, 8, 9);
    Tensor full = m.forward(idx);
    auto st = m.start_decoding(1);
    Tensor parts = m.decode(*st, slice(idx, 1, 0, 3));
    for (int64_t t = 3; t < 8; ++t) parts = cat({parts, m.decode(*st, slice(idx, 1, t, t + 1))}, 1);
    EXPECT_LT(max_abs_diff(parts, full), 1e-5);
  }
  MoD m(tiny());
  EXPECT_DG_ERROR(m.start_decoding(2), "MoD::decode", "batch 1");
}

TEST(MoD, ConfigRoundTripAndErrors) {
  MoDConfig c = tiny();
  c.router_weight = RouterWeight::sigmoid;
  c.causal = CausalMethod::predictor;
  EXPECT_EQ(to_json(mod_config_from_json(to_json(c))), to_json(c));
  MoDConfig bad = tiny(1.5);
  EXPECT_DG_ERROR(MoD{bad}, "MoD", "capacity", "1.5");
}
