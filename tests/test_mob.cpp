// Mixture-of-Blocks. The differential test is the heart: a naive executor that
// runs every token alone through its own path (one token, one block, one step
// at a time, attention over explicitly kept per-step key/value lists) must
// give the batched executor's objective and gradients to 1e-9 in f64, for
// both attention scopes, on a random model whose tokens halt at different
// depths and repeat blocks. Also: dense-path init is the dense model, D_max
// and eps limits, causality, cached decoding, traces vs FLOPs, policies.
#include <cmath>
#include <set>

#include "models/gpt.h"
#include "models/mob.h"
#include "testing.h"
#include "tests/mob_naive.h"

using namespace dg;
using namespace dg::testing;
using namespace dg::models;

namespace {

MoBConfig tiny(AttnScope scope, DType dt = DType::f64) {
  MoBConfig c;
  c.gpt = {.n_layer = 0, .n_head = 2, .n_embd = 8, .block_size = 10, .vocab_size = 256, .dropout = 0.0,
           .tied_head = true, .seed = 11, .dtype = dt};
  c.n_blocks = 3;
  c.max_depth = 4;
  c.attn_scope = scope;
  c.gate_init = GateInit::uniform;
  c.eps = 0.2;
  return c;
}


// Scales the gate so that its choices vary a lot between tokens.
void randomise_gate(MoB& m, double scale, uint64_t seed) {
  NoGradGuard ng;
  Generator g(seed);
  copy_(m.gate->weight, randn(m.gate->weight.shape(), {m.gate->weight.dtype()}, &g) * scale);
  copy_(m.step_bias, randn(m.step_bias.shape(), {m.step_bias.dtype()}, &g) * 0.5);
}

}  // namespace

TEST(MoB, BatchedExecutorEqualsNaivePerTokenExecutor) {
  for (AttnScope scope : {AttnScope::step, AttnScope::block}) {
    MoB m(tiny(scope));
    randomise_gate(m, 3.0, 5);
    m.train();
    Tensor idx = random_tokens(2, 10, 1), tgt = random_tokens(2, 10, 2);
    std::vector<std::vector<int64_t>> paths;
    Tensor ref = dg::testing::naive_mob_objective(m, idx, tgt, &paths);
    // The model is interesting only if tokens halt at different depths and repeat blocks.
    std::set<size_t> depths;
    int repeats = 0;
    for (auto& p : paths) {
      depths.insert(p.size());
      std::set<int64_t> u(p.begin(), p.end());
      repeats += u.size() < p.size();
    }
    ASSERT_GE(depths.size(), 3u) << "scope " << static_cast<int>(scope);
    ASSERT_GT(repeats, 0);
    auto params = m.parameters();
    Tensors g_ref = grad({ref}, params, {}, false, false, true);
    Tensor got = m.loss(idx, tgt).objective;
    EXPECT_NEAR(got.item<double>(), ref.item<double>(), 1e-9);
    Tensors g = grad({got}, params, {}, false, false, true);
    // Paths of the batched trace equal the naive paths.
    for (size_t tk = 0; tk < paths.size(); ++tk) {
      std::vector<int64_t> tp;
      for (auto& st : m.last_trace().tokens[tk])
        if (st.block >= 0) tp.push_back(st.block);
      EXPECT_EQ(tp, paths[tk]) << "token " << tk;
    }
    auto names = m.named_parameters();
    for (size_t i = 0; i < params.size(); ++i) {
      ASSERT_EQ(g[i].defined(), g_ref[i].defined()) << names[i].first;
      if (g[i].defined()) {
        EXPECT_LT(max_abs_diff(g[i], g_ref[i]), 1e-9) << names[i].first;
      }
    }
  }
}

TEST(MoB, DensePathInitIsTheDenseModel) {
  MoBConfig c = tiny(AttnScope::step);
  c.gate_init = GateInit::dense_path;
  c.weight = BlockWeight::straight_through;  // w = 1 in value
  c.max_depth = 5;
  MoB m(c);
  m.eval();
  GPTConfig g = c.gpt;
  g.n_layer = c.n_blocks;
  GPT dense(g);
  std::map<std::string, Tensor> sd;
  for (auto& [name, t] : m.state_dict())
    if (dense.state_dict().count(name)) sd.emplace(name, t);
  dense.load_state_dict(sd);
  Tensor idx = random_tokens(2, 10, 3);
  EXPECT_LT(max_abs_diff(m.forward(idx), dense.forward(idx)), 1e-12);
  for (auto& path : m.last_trace().tokens) {
    ASSERT_EQ(path.size(), 4u);  // blocks 0, 1, 2 then return at step 3
    for (int64_t d = 0; d < 3; ++d) EXPECT_EQ(path[d].block, d);
    EXPECT_EQ(path[3].block, -1);
  }
}

TEST(MoB, MaxDepthForcesReturnAndEpsOneStopsAtStepZero) {
  MoBConfig c = tiny(AttnScope::step);
  c.gate_init = GateInit::dense_path;
  c.max_depth = 2;  // dense path wants 3 blocks; D_max cuts it at 2
  MoB m(c);
  m.eval();
  m.forward(random_tokens(1, 6, 4));
  for (auto& path : m.last_trace().tokens) {
    EXPECT_EQ(m.last_trace().depth(&path - m.last_trace().tokens.data()), 2);
    EXPECT_EQ(path.back().block, -1);
    EXPECT_EQ(path.back().step, 2);
  }
  MoBConfig e = tiny(AttnScope::step);
  e.eps = 1.0;
  MoB m1(e);
  m1.train();
  auto out = m1.loss(random_tokens(1, 6, 5), random_tokens(1, 6, 6));
  EXPECT_EQ(out.stats.at("depth"), 0.0);
}

TEST(MoB, LaterTokensNeverChangeEarlierLogits) {
  for (AttnScope scope : {AttnScope::step, AttnScope::block}) {
    MoB m(tiny(scope));
    randomise_gate(m, 3.0, 7);
    m.eval();
    Tensor idx = random_tokens(1, 10, 8);
    Tensor base = m.forward(idx);
    Tensor other = m.forward(change_tokens_from(idx, 6, 91));
    // Not bit for bit: a later token joining or leaving a block's group
    // changes that group's row count, and Eigen's GEMM rounds a row
    // differently in its remainder panels (differences of ~1e-17 were seen).
    // Information from the future would show at the scale of the logits.
    EXPECT_LT(max_abs_diff(slice(base, 1, 0, 6), slice(other, 1, 0, 6)), 1e-13);
    EXPECT_GT(max_abs_diff(slice(base, 1, 6, 7), slice(other, 1, 6, 7)), 1e-6);  // the change itself shows
  }
}

TEST(MoB, CachedDecodingEqualsFullForward) {
  for (AttnScope scope : {AttnScope::step, AttnScope::block}) {
    MoB m(tiny(scope, DType::f32));
    randomise_gate(m, 3.0, 9);
    m.eval();
    Tensor idx = random_tokens(1, 10, 10);
    Tensor full = m.forward(idx);
    auto st = m.start_decoding(1);
    Tensor parts = m.decode(*st, slice(idx, 1, 0, 4));
    for (int64_t t = 4; t < 10; ++t) parts = cat({parts, m.decode(*st, slice(idx, 1, t, t + 1))}, 1);
    EXPECT_LT(max_abs_diff(parts, full), 1e-5);
  }
}

TEST(MoB, TraceDepthsMatchFlopAccounting) {
  MoBConfig c = tiny(AttnScope::step);
  MoB m(c);
  randomise_gate(m, 3.0, 12);
  m.eval();
  m.forward(random_tokens(2, 10, 13));
  const RoutingTrace& tr = m.last_trace();
  int64_t apps = 0;
  for (size_t i = 0; i < tr.tokens.size(); ++i) apps += tr.depth(static_cast<int64_t>(i));
  TraceSummary s = tr.summary();
  EXPECT_DOUBLE_EQ(s.mean_depth, static_cast<double>(apps) / 20.0);
  int64_t usage = 0;
  for (auto& row : s.usage)
    for (int64_t u : row) usage += u;
  EXPECT_EQ(usage, apps);
  // FLOPs per token: 24 C^2 per application + gate at every visited step + head once
  // + attention (depends on segment lengths: bounded below by 0).
  const double C = 8, V = 256;
  int64_t visits = 0;
  for (auto& p : tr.tokens) visits += static_cast<int64_t>(p.size());
  const double lower = (24 * C * C * apps + 2 * C * 4 * visits + 2 * C * V * 20) / 20.0;
  EXPECT_GE(m.last_forward_flops_per_token(), lower);
  EXPECT_LT(m.last_forward_flops_per_token(), lower + 2 * C * 11 * 4 * 5);  // attention at most 2C(T+1) per application
  std::string js = tr.to_json("hello");
  EXPECT_NE(js.find("\"depth_histogram\""), std::string::npos);
  EXPECT_NE(js.find("\"text_bytes\":[104,101,108,108,111]"), std::string::npos);
}

TEST(MoB, BiasPolicyTrainsAndReportsDepth) {
  MoBConfig c = tiny(AttnScope::step);
  c.halting = Halting::bias;
  c.return_bias = 0.5;
  MoB m(c);
  randomise_gate(m, 3.0, 14);
  m.train();
  auto out = m.loss(random_tokens(2, 10, 15), random_tokens(2, 10, 16));
  out.objective.backward();
  EXPECT_TRUE(m.gate->weight.grad().defined());
  EXPECT_TRUE(std::isfinite(out.objective.item<double>()));
}

TEST(MoB, ConfigRoundTripAndErrors) {
  MoBConfig c = tiny(AttnScope::block);
  c.halting = Halting::bias;
  c.explore = Explore::gumbel;
  EXPECT_EQ(to_json(mob_config_from_json(to_json(c))), to_json(c));
  MoBConfig bad = tiny(AttnScope::step);
  bad.max_depth = 0;
  EXPECT_DG_ERROR(MoB{bad}, "MoB", "max_depth");
  MoB m(tiny(AttnScope::step));
  EXPECT_DG_ERROR(m.start_decoding(3), "MoB::decode", "batch 1");
}
