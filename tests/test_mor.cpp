// Mixture-of-Recursions: the routing pieces (expert-choice top-k with
// sigmoid weights and its BCE, token-choice softmax gate and balancing loss)
// and whole-model losses against finite differences (f64); weights shared
// across recursions (one cycle of parameters; a shared weight's gradient is
// the sum of an unrolled reference's per-recursion copies); hierarchical
// filtering and capacities; decode == forward with per-recursion caches that
// hold only the tokens active there; N_r = 1 is the dense model; FLOPs;
// every bad config named by its field.
#include <cmath>

#include "autograd/gradcheck.h"
#include "models/factory.h"
#include "models/gpt.h"
#include "models/mor.h"
#include "nn/loss.h"
#include "testing.h"

using namespace dg;
using namespace dg::testing;
using namespace dg::models;

namespace {

MoRConfig tiny(MoRRouter router = MoRRouter::expert, DType dt = DType::f64) {
  MoRConfig c;
  c.gpt = {.n_layer = 2, .n_head = 2, .n_embd = 8, .block_size = 12, .vocab_size = 256, .dropout = 0.0,
           .tied_head = true, .seed = 3, .dtype = dt};
  c.cycle = 2;
  c.n_recursions = 3;
  c.router = router;
  c.capacity = 0.5;
  c.aux_weight = 0.1;
  c.balance = 0.1;
  return c;
}


// Decisive routers: scaled up so that decisions are far from the boundary
// (no flip between differently shaped but equal computations).
void sharpen(MoR& m, double factor) {
  NoGradGuard ng;
  for (auto& r : m.routers)
    if (r) mul_(r->weight, factor);
  if (m.depth_router) mul_(m.depth_router->weight, factor);
}

// Recursions a token ran (trace steps with a block, counted once per recursion).
std::vector<int64_t> recursions_of(const RoutingTrace& tr, int64_t token) {
  std::vector<int64_t> rs;
  for (const TraceStep& s : tr.tokens[token])
    if (s.block >= 0 && (rs.empty() || rs.back() != s.step)) rs.push_back(s.step);
  return rs;
}

}  // namespace

TEST(MoRPieces, ExpertChoiceKeepsTopKWithSigmoidWeights) {
  Tensor s = from_vector<double>({0.3, -1.0, 2.0, 0.1, 0.5, 1.5, -0.2, 0.0}, {2, 4});
  ExpertChoice e = expert_choice(s, 2);
  EXPECT_EQ(e.idx.to_vector<int64_t>(), (std::vector<int64_t>{0, 2, 0, 1}));
  expect_values(e.weight, {1 / (1 + std::exp(-0.3)), 1 / (1 + std::exp(-2.0)), 1 / (1 + std::exp(-0.5)),
                           1 / (1 + std::exp(-1.5))}, 1e-15);
  // BCE of all scores against membership {1,0,1,0, 1,1,0,0}.
  double want = 0;
  const std::vector<double> sv = s.to_vector<double>(), m = {1, 0, 1, 0, 1, 1, 0, 0};
  for (size_t i = 0; i < sv.size(); ++i) want += std::log1p(std::exp(-sv[i])) + (1 - m[i]) * sv[i];
  EXPECT_NEAR(e.aux.item<double>(), want / 8, 1e-14);
}

TEST(MoRPieces, ExpertChoiceGradients) {
  Tensor s = rand_input({3, 6}, 11);
  auto fn = [](const Tensors& in) {
    ExpertChoice e = expert_choice(in[0], 4);
    return sum(e.weight * e.weight) + e.aux * 3.0;  // the weights and the BCE, both on the path
  };
  EXPECT_GRADCHECK(fn, {s});
}

TEST(MoRPieces, TokenChoiceDepthGateAndBalance) {
  Tensor logits = from_vector<double>({0.0, 1.0, 0.0, 2.0, 0.0, 0.0, 0.0, 0.0, 3.0}, {3, 3});
  TokenChoice c = token_choice(logits);
  EXPECT_EQ(c.depth, (std::vector<int64_t>{2, 1, 3}));
  const double e = std::exp(1.0);
  EXPECT_NEAR(c.weight_value[0], e / (2 + e), 1e-15);
  expect_values(c.weight, c.weight_value, 1e-15);
  // 3 · sum_d f_d P_d with f = (1/3, 1/3, 1/3).
  Tensor p = softmax(logits, -1);
  EXPECT_NEAR(c.balance.item<double>(), sum(p).item<double>() / 3.0, 1e-15);
  auto fn = [](const Tensors& in) {
    TokenChoice t = token_choice(in[0]);
    return sum(t.weight * t.weight) + t.balance * 2.0;
  };
  EXPECT_GRADCHECK(fn, {rand_input({5, 3}, 12)});
}

TEST(MoR, OneCycleOfParametersSharedByEveryRecursion) {
  for (MoRRouter router : {MoRRouter::expert, MoRRouter::token}) {
    MoRConfig c = tiny(router);
    MoR m(c);
    double n = 0;
    for (auto& [name, p] : m.named_parameters()) n += static_cast<double>(p.numel());
    const double C = 8, routers = router == MoRRouter::expert ? 2 * C : 3 * C + 3;
    EXPECT_EQ(n, trunk_parameters(c.gpt, 2) + routers);
    EXPECT_EQ(m.trunk().blocks.size(), 2u);
    // N_r = 5 adds routers, never blocks.
    c.n_recursions = 5;
    EXPECT_EQ(MoR(c).trunk().blocks.size(), 2u);
  }
}

TEST(MoR, OneRecursionIsTheDenseModel) {
  MoRConfig c = tiny();
  c.n_recursions = 1;
  MoR m(c);
  GPTConfig g = c.gpt;
  g.n_layer = 2;
  GPT dense(g);
  dense.load_state_dict(m.state_dict());
  Tensor idx = random_tokens(2, 10, 1);
  EXPECT_LT(max_abs_diff(m.forward(idx), dense.forward(idx)), 1e-12);
  EXPECT_NEAR(m.last_forward_flops_per_token(), dense.last_forward_flops_per_token(), 1e-9);
}

TEST(MoR, TopkCapacitiesAndHierarchicalFiltering) {
  MoRConfig c = tiny();
  c.n_recursions = 4;
  c.capacity = 0.6;
  MoR m(c);
  const int64_t B = 3, T = 10;
  EXPECT_EQ(m.capacity_k(T, 0), 10);
  EXPECT_EQ(m.capacity_k(T, 1), 6);
  EXPECT_EQ(m.capacity_k(T, 2), 4);  // ceil(0.6 * 6)
  EXPECT_EQ(m.capacity_k(T, 3), 3);  // ceil(0.6 * 4)
  m.forward(random_tokens(B, T, 2));
  const RoutingTrace& tr = *m.last_routing_trace();
  double applications = 0;
  for (int64_t b = 0; b < B; ++b) {
    std::vector<int64_t> at(4, 0);
    for (int64_t t = 0; t < T; ++t) {
      std::vector<int64_t> rs = recursions_of(tr, b * T + t);
      for (size_t i = 0; i < rs.size(); ++i) EXPECT_EQ(rs[i], static_cast<int64_t>(i)) << "a prefix 0..d-1";
      for (int64_t r : rs) ++at[r];
      EXPECT_EQ(tr.depth(b * T + t), 2 * static_cast<int64_t>(rs.size()));
      applications += static_cast<double>(tr.depth(b * T + t));
      // Stopped once at most, right after its last recursion.
      const auto& path = tr.tokens[b * T + t];
      if (rs.size() < 4) {
        ASSERT_FALSE(path.empty());
        EXPECT_EQ(path.back().block, -1);
        EXPECT_EQ(path.back().step, static_cast<int32_t>(rs.size()));
      }
    }
    for (int64_t r = 0; r < 4; ++r) EXPECT_EQ(at[r], m.capacity_k(T, r)) << "sequence " << b << " recursion " << r;
  }
  // FLOPs from those decisions: per block application 24C^2, attention per
  // recursion and sequence 2 cycle C k (k + 1), routers 2C per scored token.
  const double C = 8;
  double want = 24 * C * C * applications;
  for (int64_t r = 0; r < 4; ++r) {
    const double k = static_cast<double>(m.capacity_k(T, r));
    want += B * 2 * 2 * C * k * (k + 1);
    if (r >= 1) want += B * 2 * C * static_cast<double>(m.capacity_k(T, r - 1));
  }
  want = want / (B * T) + 2 * C * 256;
  EXPECT_NEAR(m.last_forward_flops_per_token(), want, 1e-9 * want);
}

TEST(MoR, CausalAndTokenChoiceFilterHierarchically) {
  for (MoRRouter router : {MoRRouter::expert, MoRRouter::token}) {
    MoR m(tiny(router));
    sharpen(m, 40.0);
    m.set_routing(MoRRouting::causal);
    m.forward(random_tokens(2, 12, 3));
    const RoutingTrace& tr = *m.last_routing_trace();
    std::vector<int64_t> depths(4, 0);
    for (int64_t i = 0; i < 24; ++i) {
      std::vector<int64_t> rs = recursions_of(tr, i);
      ASSERT_GE(rs.size(), 1u);
      for (size_t j = 0; j < rs.size(); ++j) EXPECT_EQ(rs[j], static_cast<int64_t>(j));
      ++depths[rs.size()];
    }
    EXPECT_GT(depths[1] + depths[2], 0) << "some tokens stop early";
    EXPECT_GT(depths[2] + depths[3], 0) << "some tokens go on";
  }
}

// Sequences with different numbers of active tokens run as packed sequences;
// one sequence alone runs as a (1, k, C) batch: the same logits.
TEST(MoR, PackedRecursionsEqualEachSequenceAlone) {
  for (MoRRouter router : {MoRRouter::expert, MoRRouter::token}) {
    MoR m(tiny(router));
    sharpen(m, 40.0);
    m.set_routing(MoRRouting::causal);
    Tensor idx = random_tokens(3, 12, 13);
    Tensor all = m.forward(idx);
    const RoutingTrace tr = *m.last_routing_trace();
    bool unequal = false;
    for (int64_t r = 1; r < 3; ++r) {
      std::vector<int64_t> at(3, 0);
      for (int64_t i = 0; i < 36; ++i) at[i / 12] += static_cast<int64_t>(recursions_of(tr, i).size()) > r;
      unequal = unequal || at[0] != at[1] || at[1] != at[2];
    }
    EXPECT_TRUE(unequal) << "the test needs sequences with different counts";
    for (int64_t b = 0; b < 3; ++b)
      EXPECT_LT(max_abs_diff(slice(all, 0, b, b + 1), m.forward(slice(idx, 0, b, b + 1))), 1e-12) << b;
  }
}

TEST(MoR, LossGradientsMatchFiniteDifferences) {
  for (MoRRouter router : {MoRRouter::expert, MoRRouter::token}) {
    MoR m(tiny(router));
    if (router == MoRRouter::token) sharpen(m, 40.0);  // depths spread over 1..3
    Tensor idx = random_tokens(2, 8, 4), tgt = random_tokens(2, 8, 5);
    auto loss = [&] { return m.loss(idx, tgt).objective; };
    const nn::Block& b0 = *m.trunk().blocks[0];
    const nn::Block& b1 = *m.trunk().blocks[1];
    std::vector<Tensor> ps = {b0.attn->qkv->weight, b1.mlp->fc->bias, b1.ln1->weight, m.trunk().ln_f->weight,
                              m.trunk().wpe->weight};
    if (router == MoRRouter::expert) ps.push_back(m.routers[1]->weight), ps.push_back(m.routers[2]->weight);
    else ps.push_back(m.depth_router->weight), ps.push_back(m.depth_router->bias);
    for (Tensor p : ps) EXPECT_TRUE(param_gradcheck(loss, p)) << static_cast<int>(router);
  }
}

// The model against an unrolled reference: each recursion with its own copy
// of the cycle's blocks, each sequence on its own, the top-k chosen on the
// host. The same loss; the shared block's gradient is the sum of the copies'.
TEST(MoR, SharedGradientIsTheSumOverRecursions) {
  MoRConfig c = tiny();
  MoR m(c);
  const int64_t B = 2, T = 10, C = 8, R = 3;
  Tensor idx = random_tokens(B, T, 6), tgt = random_tokens(B, T, 7);
  std::vector<std::vector<std::shared_ptr<nn::Block>>> copies(R);
  for (int64_t r = 0; r < R; ++r)
    for (int64_t j = 0; j < 2; ++j) {
      auto b = std::make_shared<nn::Block>(C, 2, 0.0, nn::LayerOptions{DType::f64});
      b->load_state_dict(m.trunk().blocks[j]->state_dict());
      copies[r].push_back(b);
    }
  Tensor x = m.trunk().embed(idx);
  Tensors seqs;
  Tensor aux = zeros({}, {DType::f64});
  for (int64_t b = 0; b < B; ++b) {
    Tensor xb = slice(x, 0, b, b + 1);  // (1, T, C)
    std::vector<int64_t> active(T);
    for (int64_t t = 0; t < T; ++t) active[t] = t;
    for (int64_t r = 0; r < R; ++r) {
      Tensor g;
      if (r >= 1) {
        Tensor pos = from_vector<int64_t>(active, {static_cast<int64_t>(active.size())});
        Tensor s = reshape(m.routers[r]->forward(index_select(xb, 1, pos)), {-1});
        std::vector<double> sv = s.to_vector<double>();
        const int64_t k = m.capacity_k(T, r);
        std::vector<int64_t> order(sv.size());
        for (size_t i = 0; i < order.size(); ++i) order[i] = static_cast<int64_t>(i);
        std::sort(order.begin(), order.end(), [&](int64_t a, int64_t b2) { return sv[a] > sv[b2]; });
        order.resize(k);
        std::sort(order.begin(), order.end());
        std::vector<double> member(sv.size(), 0.0);
        std::vector<int64_t> kept;
        for (int64_t i : order) member[i] = 1, kept.push_back(active[i]);
        aux = aux + nn::bce_with_logits(s, from_vector<double>(member, {static_cast<int64_t>(member.size())})) *
                        (1.0 / B);
        g = sigmoid(index_select(s, 0, from_vector<int64_t>(order, {k})));
        active = kept;
      }
      Tensor pos = from_vector<int64_t>(active, {static_cast<int64_t>(active.size())});
      for (int64_t j = 0; j < 2; ++j) {
        Tensor delta = copies[r][j]->forward(index_select(xb, 1, pos));  // (1, k, C)
        if (g.defined()) delta = delta * reshape(g, {1, -1, 1});
        xb = index_add(xb, 1, pos, delta);
      }
    }
    seqs.push_back(xb);
  }
  Tensor ref = cross_entropy(m.trunk().head(cat(seqs, 0)), tgt) + aux * c.aux_weight;
  Tensor got = m.loss(idx, tgt).objective;
  EXPECT_NEAR(got.item<double>(), ref.item<double>(), 1e-12);
  m.zero_grad();
  got.backward();
  ref.backward();
  for (int64_t j = 0; j < 2; ++j) {
    auto shared = m.trunk().blocks[j]->named_parameters();
    for (size_t i = 0; i < shared.size(); ++i) {
      Tensor want = zeros(shared[i].second.shape(), {DType::f64});
      for (int64_t r = 0; r < R; ++r) want = want + copies[r][j]->named_parameters()[i].second.grad();
      EXPECT_LT(max_rel_diff(shared[i].second.grad(), want), 1e-10) << "block " << j << " " << shared[i].first;
      // Every recursion contributes: no copy's gradient is the whole sum.
      EXPECT_GT(max_abs_diff(copies[1][j]->named_parameters()[i].second.grad(), want), 0.0) << shared[i].first;
    }
  }
}

TEST(MoR, CausalRoutingNeverLetsTheFutureIn) {
  for (MoRRouter router : {MoRRouter::expert, MoRRouter::token}) {
    MoR m(tiny(router));
    sharpen(m, 40.0);
    m.set_routing(MoRRouting::causal);
    Tensor idx = random_tokens(1, 12, 8);
    Tensor base = m.forward(idx);
    Tensor other = m.forward(change_tokens_from(idx, 7, 77));
    // Not bit for bit: the future changes how many rows the packed GEMMs
    // hold, and with it their blocking; a leak would be of order 1, not 1e-16.
    EXPECT_LT(max_abs_diff(slice(base, 1, 0, 7), slice(other, 1, 0, 7)), 1e-13);
    EXPECT_GT(max_abs_diff(slice(base, 1, 7, 12), slice(other, 1, 7, 12)), 1e-3);
  }
}

TEST(MoR, DecodeEqualsForwardAndCachesOnlyActiveTokens) {
  for (MoRRouter router : {MoRRouter::expert, MoRRouter::token}) {
    MoR m(tiny(router, DType::f32));
    sharpen(m, 40.0);
    m.eval();
    m.set_routing(MoRRouting::causal);
    Tensor idx = random_tokens(1, 12, 9);
    Tensor full = m.forward(idx);
    const RoutingTrace tr = *m.last_routing_trace();
    auto st = m.start_decoding(1);
    Tensor parts = m.decode(*st, slice(idx, 1, 0, 4));
    for (int64_t t = 4; t < 12; ++t) parts = cat({parts, m.decode(*st, slice(idx, 1, t, t + 1))}, 1);
    EXPECT_LT(max_abs_diff(parts, full), 1e-5) << static_cast<int>(router);
    auto& caches = dynamic_cast<KVDecodeState&>(*st).caches;
    ASSERT_EQ(caches.size(), 6u);
    for (int64_t r = 0; r < 3; ++r) {
      int64_t active = 0;
      for (int64_t t = 0; t < 12; ++t) {
        std::vector<int64_t> rs = recursions_of(tr, t);
        active += static_cast<int64_t>(rs.size()) > r;
      }
      if (r == 0) {
        EXPECT_EQ(active, 12);
      }
      if (r == 2) {
        EXPECT_LT(active, 12) << "the test needs tokens that stop";
      }
      for (int64_t j = 0; j < 2; ++j) EXPECT_EQ(caches[r * 2 + j].length, active) << "recursion " << r;
    }
  }
  MoR m(tiny());
  EXPECT_DG_ERROR(m.start_decoding(2), "MoR::decode", "batch 1");
}

TEST(MoR, LossHasTheRoutingTermsAndStats) {
  MoR e(tiny(MoRRouter::expert));
  Tensor idx = random_tokens(2, 8, 10), tgt = random_tokens(2, 8, 11);
  LossOutput a = e.loss(idx, tgt);
  EXPECT_TRUE(a.device_stats.count("aux") && a.device_stats.count("router_acc"));
  EXPECT_NEAR(a.objective.item<double>(), a.lm.item<double>() + a.device_stats.at("aux").item<double>(), 1e-12);
  EXPECT_DOUBLE_EQ(a.stats.at("depth"), 2.0 * (8 + 4 + 2) / 8);  // block applications per token
  MoR t(tiny(MoRRouter::token));
  LossOutput b = t.loss(idx, tgt);
  ASSERT_TRUE(b.device_stats.count("balance"));
  EXPECT_NEAR(b.objective.item<double>(), b.lm.item<double>() + b.device_stats.at("balance").item<double>(), 1e-12);
}

TEST(MoR, ConfigRoundTripAndBadInput) {
  MoRConfig c = tiny(MoRRouter::token);
  c.capacity = 0.25;
  EXPECT_EQ(to_json(mor_config_from_json(to_json(c))), to_json(c));
  EXPECT_EQ(make_model("mor", to_json(c))->kind(), "mor");
  auto with = [&](const char* key, nlohmann::json v) {
    nlohmann::json j = nlohmann::json::parse(to_json(c));
    j[key] = v;
    return j.dump();
  };
  EXPECT_DG_ERROR(mor_config_from_json(with("n_recursions", 0)), "MoR config", "'n_recursions'", "[1, 64]", "got 0");
  EXPECT_DG_ERROR(mor_config_from_json(with("capacity", 0.0)), "'capacity'", "(0, 1]");
  EXPECT_DG_ERROR(mor_config_from_json(with("capacity", 1.5)), "'capacity'", "(0, 1]", "1.5");
  EXPECT_DG_ERROR(mor_config_from_json(with("router", "soft")), "'router'", "expert | token", "soft");
  EXPECT_DG_ERROR(mor_config_from_json(with("cycle", 0)), "'cycle'", "[1, 1024]");
  EXPECT_DG_ERROR(mor_config_from_json(with("aux_weight", -1)), "'aux_weight'", ">= 0");
  EXPECT_DG_ERROR(mor_config_from_json(with("balance", "x")), "'balance'", ">= 0");
  EXPECT_DG_ERROR(make_model("mor", with("halting", "ponder")), "unknown key 'halting'");
  // A config made in code is checked when the model is built.
  MoRConfig bad = tiny();
  bad.n_recursions = 0;
  EXPECT_DG_ERROR(MoR{bad}, "MoR config", "'n_recursions'");
  bad = tiny();
  bad.capacity = 2;
  EXPECT_DG_ERROR(MoR{bad}, "MoR config", "'capacity'", "(0, 1]");
  bad = tiny();
  bad.gpt.n_head = 3;
  EXPECT_DG_ERROR(MoR{bad}, "n_head");
}
