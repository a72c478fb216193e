// Mixture-of-Experts: the routing rule (top-k, ties to the lower index,
// capacity first come first served), gradchecks of its pieces (gates, balance
// loss, z-loss) and of the whole loss, the batched grouped execution against a
// naive one-token-at-a-time reference (loss and every gradient, f64), dropped
// tokens passing unchanged and uncounted, one expert equal to the dense model,
// cached decoding equal to the forward, the trace, checkpoints and bad configs.
//
// Legend: B = batch, T = time, C = channels, N = B*T, E = experts, k = experts per token.
#include <algorithm>
#include <cmath>
#include <filesystem>
#include <limits>

#include "models/factory.h"
#include "models/gpt.h"
#include "models/moe.h"
#include "nn/checkpoint.h"
#include "testing.h"

using namespace dg;
using namespace dg::testing;
using namespace dg::models;

namespace {

MoEConfig tiny(int64_t E = 4, int64_t k = 1, double cf = 0.0, DType dt = DType::f64) {
  MoEConfig c;
  c.gpt = {.n_layer = 2, .n_head = 2, .n_embd = 8, .block_size = 8, .vocab_size = 256, .dropout = 0.0,
           .tied_head = true, .seed = 3, .dtype = dt};
  c.n_experts = E;
  c.top_k = k;
  c.capacity_factor = cf;
  return c;
}


// Routers scaled up so that tokens spread over the experts decisively (no
// near-ties for finite differences to flip) and capacity has something to drop.
void sharpen_routers(MoE& m, double factor) {
  NoGradGuard ng;
  for (auto& l : m.layers)
    if (l) mul_(l->router->weight, factor);
}

// ---------------------------------------------------------------- the naive reference
// One token at a time: top-k by sorting each token's probabilities on the
// host, capacity counted in token order, each kept expert called on that one
// row, the balance and z losses written from their definitions.
Tensor naive_objective(MoE& m, const Tensor& idx, const Tensor& tgt, double cf) {
  const Trunk& tr = m.trunk();
  const MoEConfig& c = m.moe_config();
  const int64_t B = idx.size(0), T = idx.size(1), C = c.gpt.n_embd, N = B * T, E = c.n_experts, k = c.top_k;
  Tensor x = tr.embed(idx);
  Tensors balance, z;
  for (size_t i = 0; i < tr.blocks.size(); ++i) {
    const nn::Block& block = *tr.blocks[i];
    if (!m.layers[i]) {
      x = x + block.forward(x);
      continue;
    }
    const MoELayer& layer = *m.layers[i];
    Tensor x1 = reshape(x + nn::attention_delta(block, x, block.attn->kernel()), {N, C});
    Tensor h = block.ln2->forward(x1);
    Tensor logits = layer.router->forward(h);
    Tensor p = softmax(logits, -1);
    const std::vector<double> pv = p.detach().to_vector<double>();
    const int64_t cap = cf > 0 ? static_cast<int64_t>(std::ceil(cf * N * k / E)) : std::numeric_limits<int64_t>::max();
    std::vector<int64_t> taken(E, 0), chosen(E, 0);
    Tensors rows;
    for (int64_t n = 0; n < N; ++n) {
      std::vector<int64_t> order(E);
      for (int64_t e = 0; e < E; ++e) order[e] = e;
      std::stable_sort(order.begin(), order.end(), [&](int64_t a, int64_t b) { return pv[n * E + a] > pv[n * E + b]; });
      Tensor pn = select(p, 0, n), row = select(x1, 0, n), hn = unsqueeze(select(h, 0, n), 0);
      Tensor norm = k == 1 ? scalar_tensor(1.0, {DType::f64}) : select(pn, 0, order[0]) + select(pn, 0, order[1]);
      for (int64_t j = 0; j < k; ++j) {
        const int64_t e = order[j];
        ++chosen[e];
        if (taken[e] >= cap) continue;  // dropped: the token passes this expert
        ++taken[e];
        row = row + squeeze(layer.experts[e]->forward(hn), 0) * (select(pn, 0, e) / norm);
      }
      rows.push_back(row);
    }
    x = reshape(stack(rows), {B, T, C});
    Tensor bal = scalar_tensor(0.0, {DType::f64});
    for (int64_t e = 0; e < E; ++e)
      bal = bal + mean(select(p, 1, e)) * (static_cast<double>(E) * chosen[e] / static_cast<double>(N * k));
    balance.push_back(bal);
    z.push_back(mean(square(log(sum(exp(logits), {1})))));
  }
  Tensor lm = cross_entropy(tr.head(x), tgt);
  return lm + mean(stack(balance)) * c.balance + mean(stack(z)) * c.z_loss;
}

}  // namespace

// ---------------------------------------------------------------- routing rule
TEST(MoERouting, TopKTiesToTheLowerIndexAndRenormalisesTwo) {
  // N = 3, E = 3: a tie between experts 0 and 2, a clear order, a three-way tie.
  const std::vector<double> p = {0.4, 0.2, 0.4, 0.1, 0.7, 0.2, 1 / 3.0, 1 / 3.0, 1 / 3.0};
  MoERoutes r1 = route_top_k(p, 3, 3, 1, 0.0);
  EXPECT_EQ(r1.choice, (std::vector<int64_t>{0, 1, 0}));
  EXPECT_EQ(r1.gate, (std::vector<double>{0.4, 0.7, 1 / 3.0}));
  EXPECT_EQ(r1.capacity, -1);
  EXPECT_EQ(r1.dropped(), 0);
  MoERoutes r2 = route_top_k(p, 3, 3, 2, 0.0);
  EXPECT_EQ(r2.choice, (std::vector<int64_t>{0, 2, 1, 2, 0, 1}));
  EXPECT_EQ(r2.chosen, (std::vector<int64_t>{2, 2, 2}));
  EXPECT_DOUBLE_EQ(r2.gate[0], 0.5);
  EXPECT_DOUBLE_EQ(r2.gate[2], 0.7 / 0.9);
  EXPECT_DOUBLE_EQ(r2.gate[3], 0.2 / 0.9);
}

TEST(MoERouting, CapacityIsFirstComeFirstServedInTokenOrder) {
  // Every token prefers expert 1; E = 2, N = 4, k = 1, cf = 1: capacity ceil(4 / 2) = 2.
  const std::vector<double> p = {0.1, 0.9, 0.2, 0.8, 0.3, 0.7, 0.4, 0.6};
  MoERoutes r = route_top_k(p, 4, 2, 1, 1.0);
  EXPECT_EQ(r.capacity, 2);
  EXPECT_EQ(r.kept, (std::vector<uint8_t>{1, 1, 0, 0}));
  EXPECT_EQ(r.chosen, (std::vector<int64_t>{0, 4}));  // before dropping
  EXPECT_EQ(r.dropped(), 2);
  // k = 2, cf = 0.5: capacity ceil(0.5 * 8 / 2) = 2; a token's first choice before its second.
  MoERoutes r2 = route_top_k(p, 4, 2, 2, 0.5);
  EXPECT_EQ(r2.capacity, 2);
  EXPECT_EQ(r2.kept, (std::vector<uint8_t>{1, 1, 1, 1, 0, 0, 0, 0}));
}

// ---------------------------------------------------------------- gradchecks of the pieces
TEST(MoERouting, GradcheckGatesBalanceAndZLoss) {
  Tensor logits = rand_input({5, 4}, 11, -2.0, 2.0);
  const std::vector<double> pv = softmax(logits, -1).detach().to_vector<double>();
  for (int64_t k : {1, 2}) {
    MoERoutes r = route_top_k(pv, 5, 4, k, 0.0);
    Tensor choice = from_vector<int64_t>(r.choice, {5, k});
    auto gates = [&](const Tensors& in) { return gate_weights(softmax(in[0], -1), choice); };
    EXPECT_TRUE(gradcheck(gates, {logits})) << "k = " << k;
    // The gates equal the host's.
    EXPECT_LT(max_rel_diff(r.gate, gates({logits.detach()})), 1e-15);
    auto bal = [&](const Tensors& in) { return balance_loss(softmax(in[0], -1), r.chosen); };
    EXPECT_TRUE(gradcheck(bal, {logits})) << "k = " << k;
  }
  EXPECT_TRUE(gradcheck([](const Tensors& in) { return router_z_loss(in[0]); }, {logits}));
  // Balance at a uniform router and uniform choices is 1; z-loss of zero logits is log(E)^2.
  Tensor uniform = full({4, 2}, 0.5, {DType::f64});
  EXPECT_DOUBLE_EQ(balance_loss(uniform, {2, 2}).item<double>(), 1.0);
  EXPECT_NEAR(router_z_loss(zeros({3, 4}, {DType::f64})).item<double>(), std::pow(std::log(4.0), 2), 1e-15);
  // All assignments on one expert with all its probability: E.
  EXPECT_DOUBLE_EQ(balance_loss(from_vector<double>({1, 0, 1, 0}, {2, 2}), {2, 0}).item<double>(), 2.0);
}

TEST(MoE, WholeLossGradcheckOverRouterAndExperts) {
  for (int64_t k : {1, 2})
    for (double cf : {0.0, 0.5}) {
      MoE m(tiny(4, k, cf));
      sharpen_routers(m, 40.0);
      Tensor idx = random_tokens(2, 6, 4), tgt = random_tokens(2, 6, 5);
      m.loss(idx, tgt);
      if (cf > 0) {
        EXPECT_GT(m.last_routes()[0].dropped() + m.last_routes()[1].dropped(), 0) << "k " << k;
      }
      // Both routers, and every expert that ran some token (fc weight in layer 1, proj weight in layer 0).
      Tensors params = {m.layers[0]->router->weight, m.layers[1]->router->weight};
      for (int64_t i : {0, 1}) {
        const MoERoutes& r = m.last_routes()[i];
        std::vector<int64_t> ran(4, 0);
        for (int64_t a = 0; a < r.N * r.k; ++a) ran[r.choice[a]] += r.kept[a];
        for (int64_t e = 0; e < 4; ++e)
          if (ran[e] > 0) params.push_back(i == 1 ? m.layers[i]->experts[e]->fc->weight : m.layers[i]->experts[e]->proj->weight);
      }
      EXPECT_GE(params.size(), 4u);
      for (Tensor p : params)
        EXPECT_TRUE(param_gradcheck([&] { return m.loss(idx, tgt).objective; }, p)) << "k " << k << " cf " << cf;
    }
}

// ---------------------------------------------------------------- batched == naive
TEST(MoE, BatchedEqualsNaivePerTokenReference) {
  for (int64_t k : {1, 2})
    for (double cf : {0.0, 0.6}) {
      MoEConfig c = tiny(3, k, cf);
      c.balance = 0.3, c.z_loss = 0.05;  // large, so their gradients show
      MoE m(c);
      sharpen_routers(m, 20.0);
      Tensor idx = random_tokens(3, 7, 6), tgt = random_tokens(3, 7, 7);
      Tensor fast = m.loss(idx, tgt).objective;
      Tensor slow = naive_objective(m, idx, tgt, cf);
      EXPECT_NEAR(fast.item<double>(), slow.item<double>(), 1e-12) << "k " << k << " cf " << cf;
      if (cf > 0) {
        EXPECT_GT(m.last_routes()[0].dropped() + m.last_routes()[1].dropped(), 0);
      }
      const Tensors params = m.parameters();
      Tensors gf = grad({fast}, params), gs = grad({slow}, params);
      const auto named = m.named_parameters();
      for (size_t i = 0; i < params.size(); ++i)
        EXPECT_LT(max_rel_diff(gf[i], gs[i]), 1e-11) << named[i].first << " k " << k << " cf " << cf;
    }
}

// ---------------------------------------------------------------- capacity
TEST(MoE, DroppedTokensPassUnchangedAndAreNotCounted) {
  Generator gen(9);
  nn::Block block(8, 2, 0.0, {DType::f64, &gen});
  MoELayer layer(block, 2, 1, {DType::f64, &gen}, 0.02);
  Tensor x1 = rand_input({10, 8}, 12).detach(), h = block.ln2->forward(x1);
  MoELayer::Output o = layer.forward(x1, h, 0.5);  // capacity ceil(0.5 * 10 / 2) = 3 per expert
  ASSERT_EQ(o.routes.capacity, 3);
  ASSERT_GT(o.routes.dropped(), 0);
  const std::vector<double> in = x1.to_vector<double>(), out = o.out.to_vector<double>();
  for (int64_t n = 0; n < 10; ++n) {
    bool same = true;
    for (int64_t c = 0; c < 8; ++c) same = same && in[n * 8 + c] == out[n * 8 + c];
    EXPECT_EQ(same, o.routes.kept[n] == 0) << "token " << n;  // bit for bit where dropped, changed where kept
  }
  // The model counts only the expert work it ran.
  MoE dropless(tiny(4, 1, 0.0)), capped(tiny(4, 1, 0.5));
  for (MoE* m : {&dropless, &capped}) sharpen_routers(*m, 40.0);
  Tensor idx = random_tokens(2, 8, 13), tgt = random_tokens(2, 8, 14);
  dropless.loss(idx, tgt);
  capped.loss(idx, tgt);
  int64_t dropped = 0;
  for (const MoERoutes& r : capped.last_routes()) dropped += r.dropped();
  ASSERT_GT(dropped, 0);
  const double C = 8, N = 16;
  EXPECT_NEAR(dropless.last_forward_flops_per_token() - capped.last_forward_flops_per_token(),
              static_cast<double>(dropped) * 16 * C * C / N, 1e-9);
  // Dropless at k = 1: the dense model's FLOPs plus the router's.
  EXPECT_NEAR(dropless.last_forward_flops_per_token(), dense_flops_per_token(2, 8, 256, 8) + 2 * 2 * C * 4, 1e-9);
  // Evaluation never drops.
  capped.eval();
  capped.forward(idx);
  for (const MoERoutes& r : capped.last_routes()) EXPECT_EQ(r.dropped(), 0);
}

TEST(MoE, OneExpertIsTheDenseModel) {
  MoEConfig c = tiny(1, 1);
  MoE moe(c);
  GPT dense(c.gpt);
  Tensor idx = random_tokens(2, 8, 2);
  EXPECT_LT(max_abs_diff(moe.forward(idx), dense.forward(idx)), 1e-12);
  EXPECT_EQ(moe.num_parameters(), dense.num_parameters() + 2 * 8);  // the two routers (C x 1)
}

// ---------------------------------------------------------------- decoding and traces
TEST(MoE, CachedDecodingEqualsForward) {
  for (int64_t k : {1, 2}) {
    MoE m(tiny(4, k, 0.5, DType::f64));
    sharpen_routers(m, 20.0);
    m.eval();
    Tensor idx = random_tokens(2, 8, 9);
    Tensor full = m.forward(idx);
    auto st = m.start_decoding(2);
    Tensor parts = m.decode(*st, slice(idx, 1, 0, 3));
    for (int64_t t = 3; t < 8; ++t) parts = cat({parts, m.decode(*st, slice(idx, 1, t, t + 1))}, 1);
    EXPECT_LT(max_abs_diff(parts, full), 1e-12) << "k " << k;
  }
}

TEST(MoE, TraceListsEachTokensExperts) {
  MoE m(tiny(4, 2, 0.5));
  sharpen_routers(m, 40.0);
  m.loss(random_tokens(2, 8, 15), random_tokens(2, 8, 16));
  const RoutingTrace* tr = m.last_routing_trace();
  ASSERT_NE(tr, nullptr);
  EXPECT_EQ(tr->n_blocks, 4);
  EXPECT_EQ(tr->max_depth, 2 * 2);  // two MoE layers, two experts each
  ASSERT_EQ(tr->tokens.size(), 16u);
  int64_t kept = 0;
  for (const MoERoutes& r : m.last_routes()) kept += r.N * r.k - r.dropped();
  int64_t depth = 0;
  for (int64_t t = 0; t < 16; ++t) {
    depth += tr->depth(t);
    for (const TraceStep& s : tr->tokens[t]) {
      const MoERoutes& r = m.last_routes()[s.step];
      const int64_t a = t * 2 + (r.choice[t * 2] == s.block ? 0 : 1);
      EXPECT_EQ(r.choice[a], s.block);
      EXPECT_EQ(r.kept[a], 1);
      EXPECT_FLOAT_EQ(s.w, static_cast<float>(r.gate[a]));
      EXPECT_EQ(s.lambda, 0.0f);
    }
  }
  EXPECT_EQ(depth, kept);
  EXPECT_GT(tr->summary().mean_depth, 0.0);
}

TEST(MoE, LossStats) {
  MoE m(tiny(4, 1, 0.5));
  sharpen_routers(m, 40.0);
  LossValues v = read_values(m.loss(random_tokens(2, 8, 17), random_tokens(2, 8, 18)));
  double share = 0;
  for (int64_t e = 0; e < 4; ++e) share += v.stats.at(fmt::format("expert{}_share", e));
  EXPECT_NEAR(share, 1.0, 1e-12);
  EXPECT_GT(v.stats.at("dropped"), 0.0);
  EXPECT_GT(v.stats.at("balance"), 0.0);
  EXPECT_GT(v.stats.at("z"), 0.0);
  EXPECT_NEAR(v.objective, v.lm + 0.01 * v.stats.at("balance") + 1e-3 * v.stats.at("z"), 1e-12);
}

// ---------------------------------------------------------------- checkpoints and configs
TEST(MoE, CheckpointRoundTripThroughTheFactory) {
  MoEConfig c = tiny(3, 2, 0.25);
  auto m = make_model("moe", to_json(c));
  EXPECT_EQ(m->kind(), "moe");
  const std::string dir = ::testing::TempDir() + "/moe_ckpt";
  std::filesystem::create_directories(dir);
  nn::save_checkpoint(dir + "/ckpt.safetensors", *m, nullptr, 1,
                      {{"model_kind", m->kind()}, {"model_config", m->config_json()}});
  auto back = load_model(dir + "/ckpt.safetensors");
  EXPECT_EQ(back->config_json(), m->config_json());
  Tensor idx = random_tokens(1, 8, 19);
  m->eval(), back->eval();
  EXPECT_EQ(max_abs_diff(back->forward(idx), m->forward(idx)), 0.0);
  std::filesystem::remove_all(dir);
}

// A checkpoint whose config asks for far more experts than the file holds is
// refused before anything is allocated.
TEST(MoE, CheckpointAskingForMoreExpertsThanItHoldsIsRefused) {
  MoEConfig c = tiny(2, 1);
  auto m = make_model("moe", to_json(c));
  nlohmann::json j = nlohmann::json::parse(to_json(c));
  j["n_experts"] = 1024;
  const std::string dir = ::testing::TempDir() + "/moe_big";
  std::filesystem::create_directories(dir);
  nn::save_checkpoint(dir + "/ckpt.safetensors", *m, nullptr, 1, {{"model_kind", "moe"}, {"model_config", j.dump()}});
  EXPECT_DG_ERROR(load_model(dir + "/ckpt.safetensors"), "load_model", "weights in the trunk and experts alone");
  std::filesystem::remove_all(dir);
}

TEST(MoE, ConfigRoundTripAndBadInput) {
  MoEConfig c = tiny(3, 2, 1.25);
  c.moe_every = 2;
  EXPECT_EQ(to_json(moe_config_from_json(to_json(c))), to_json(c));
  auto with = [](const char* key, nlohmann::json v) {
    nlohmann::json j = nlohmann::json::parse(to_json(tiny()));
    j[key] = v;
    return j.dump();
  };
  EXPECT_DG_ERROR(moe_config_from_json(with("top_k", 3)), "MoE config", "'top_k'", "[1, 2]", "3");
  EXPECT_DG_ERROR(moe_config_from_json(with("n_experts", 0)), "MoE config", "'n_experts'", "[1, 1024]");
  EXPECT_DG_ERROR(moe_config_from_json(with("capacity_factor", -0.5)), "MoE config", "'capacity_factor'", ">= 0");
  EXPECT_DG_ERROR(moe_config_from_json(with("moe_every", 3)), "MoE config", "moe_every (--moe-every) 3",
                  "n_layer (--layers) 2",
                  "allowed: 1..n_layer");
  EXPECT_DG_ERROR(moe_config_from_json(with("balance", -1)), "MoE config", "'balance'");
  EXPECT_DG_ERROR(moe_config_from_json(with("z_loss", "big")), "MoE config", "'z_loss'");
  EXPECT_DG_ERROR(moe_config_from_json(with("experts", 4)), "MoE config", "unknown key 'experts'");
  // top_k larger than n_experts: the message of the issue.
  nlohmann::json j = nlohmann::json::parse(to_json(tiny(1, 1)));
  j["top_k"] = 2;
  EXPECT_DG_ERROR(moe_config_from_json(j.dump()), "MoE config: top_k (--experts-per-token) 2 is larger than "
                  "n_experts (--experts) 1 (allowed: 1..n_experts, at most 2)");
  EXPECT_DG_ERROR(make_model("moe", j.dump()), "top_k (--experts-per-token) 2", "n_experts (--experts) 1");
  // A config made in code is checked by the constructor.
  MoEConfig bad = tiny(2, 2);
  bad.capacity_factor = -1;
  EXPECT_DG_ERROR(MoE{bad}, "MoE config", "capacity_factor");
  bad = tiny(1, 2);
  EXPECT_DG_ERROR(MoE{bad}, "top_k (--experts-per-token) 2 is larger than n_experts (--experts) 1");
  // The parameter limit counts the experts.
  bad = tiny(1024, 1);
  bad.gpt.n_embd = 512;
  bad.gpt.n_layer = 8;
  EXPECT_DG_ERROR(validate(bad), "n_experts 1024", "parameters");
}
