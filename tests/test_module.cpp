// nn::Module (names, state dicts, train/eval), layers against composites,
// losses against their formulas and PyTorch-equivalent values, init statistics.
#include <cmath>

#include "nn/init.h"
#include "nn/block.h"
#include "nn/loss.h"
#include "testing.h"

using namespace dg;
using namespace dg::testing;

namespace {

struct Net : nn::Module {
  std::shared_ptr<nn::Linear> a, b;
  std::shared_ptr<nn::Block> blk;
  Net() {
    a = register_module("a", std::make_shared<nn::Linear>(4, 8, true, nn::LayerOptions{DType::f64}));
    b = register_module("b", std::make_shared<nn::Linear>(8, 2, false, nn::LayerOptions{DType::f64}));
    blk = register_module("blocks.0", std::make_shared<nn::Block>(8, 2, 0.0, nn::LayerOptions{DType::f64}));
  }
};

std::vector<std::string> names(const nn::NamedTensorList& l) {
  std::vector<std::string> out;
  for (auto& [n, t] : l) out.push_back(n);
  return out;
}

}  // namespace

TEST(Module, NamesAreDottedInRegistrationOrder) {
  Net net;
  std::vector<std::string> n = names(net.named_parameters());
  std::vector<std::string> want = {"a.weight", "a.bias", "b.weight", "blocks.0.ln1.weight", "blocks.0.ln1.bias",
                                   "blocks.0.attn.qkv.weight", "blocks.0.attn.qkv.bias", "blocks.0.attn.proj.weight",
                                   "blocks.0.attn.proj.bias", "blocks.0.ln2.weight", "blocks.0.ln2.bias",
                                   "blocks.0.mlp.fc.weight", "blocks.0.mlp.fc.bias", "blocks.0.mlp.proj.weight",
                                   "blocks.0.mlp.proj.bias"};
  EXPECT_EQ(n, want);
  EXPECT_EQ(net.num_parameters(), 4 * 8 + 8 + 8 * 2 + 2 * 8 + 8 * 24 + 24 + 64 + 8 + 2 * 8 + 8 * 32 + 32 + 32 * 8 + 8);
  for (auto& p : net.parameters()) EXPECT_TRUE(p.requires_grad() && p.is_leaf());
  // The member and the listed parameter are one tensor.
  EXPECT_TRUE(net.named_parameters()[0].second.is_same(net.a->weight));
}

TEST(Module, StateDictRoundTripIntoAFreshModel) {
  Net src, dst;
  nn::init::normal_(src.a->weight, 0.0, 1.0);
  Tensor before = dst.a->weight;
  dst.load_state_dict(src.state_dict());
  EXPECT_TRUE(dst.a->weight.is_same(before));  // written in place, not replaced
  for (auto& [name, t] : src.state_dict()) EXPECT_EQ(max_abs_diff(t, dst.state_dict().at(name)), 0.0) << name;
}

TEST(Module, LoadStateDictErrorsNameTheKeysAndLeaveTheModelUnchanged) {
  Net net;
  auto sd = net.state_dict();
  std::vector<double> w0 = net.a->weight.to_vector<double>();
  auto missing = sd;
  missing.erase("b.weight");
  EXPECT_DG_ERROR(net.load_state_dict(missing), "load_state_dict", "missing keys [b.weight]");
  net.load_state_dict(missing, /*strict=*/false);  // non-strict ignores it
  auto extra = sd;
  extra["c.weight"] = zeros({1}, {DType::f64});
  EXPECT_DG_ERROR(net.load_state_dict(extra), "unexpected keys [c.weight]");
  auto bad = sd;
  bad["a.bias"] = zeros({7}, {DType::f64});
  bad["a.weight"] = ones({8, 4}, {DType::f64});
  EXPECT_DG_ERROR(net.load_state_dict(bad), "'a.bias'", "[7]", "[8]");
  EXPECT_EQ(net.a->weight.to_vector<double>(), w0);  // checked before any write
  auto wrong_dtype = sd;
  wrong_dtype["a.bias"] = zeros({8}, {DType::f32});
  EXPECT_DG_ERROR(net.load_state_dict(wrong_dtype), "'a.bias'", "f32", "f64");
}

TEST(Module, TrainEvalReachesEverySubmodule) {
  Net net;
  net.eval();
  EXPECT_FALSE(net.blk->drop->is_training());
  net.train();
  EXPECT_TRUE(net.blk->attn->qkv->is_training());
}

TEST(Layers, LinearMatchesFormulaAndGradchecks) {
  nn::Linear lin(3, 5, true, {DType::f64});
  Tensor x = rand_input({2, 4, 3}, 1);
  Tensor ref = matmul(x, transpose(lin.weight, 0, 1)) + lin.bias;
  EXPECT_LT(max_abs_diff(lin.forward(x), ref), 1e-14);
  EXPECT_GRADCHECK([&](const Tensors& in) { return lin.forward(in[0]); }, {x});
  EXPECT_GRADCHECK([&](const Tensors& in) { return lin.forward(x.detach()) * in[0]; }, {rand_input({5}, 2)});
  EXPECT_DG_ERROR(lin.forward(rand_input({2, 4}, 3)), "Linear", "[2, 4]", "in_features = 3");
}

TEST(Layers, BlockDeltaGradcheckAndZeroedBlockIsIdentity) {
  nn::Block blk(8, 2, 0.0, {DType::f64});
  Tensor x = rand_input({2, 5, 8}, 4);
  EXPECT_GRADCHECK([&](const Tensors& in) { return blk.forward(in[0]); }, {x});
  // Gradients reach the weights too.
  Tensor xd = x.detach();
  for (Tensor w : {blk.attn->qkv->weight, blk.mlp->fc->bias, blk.ln2->weight})
    EXPECT_TRUE(param_gradcheck([&] { return sum(square(blk.forward(xd))); }, w));
  // A block whose output projections are zero adds nothing: delta == 0.
  nn::init::zeros_(blk.attn->proj->weight);
  nn::init::zeros_(blk.attn->proj->bias);
  nn::init::zeros_(blk.mlp->proj->weight);
  nn::init::zeros_(blk.mlp->proj->bias);
  EXPECT_EQ(max_abs_diff(blk.forward(x), zeros({2, 5, 8}, {DType::f64})), 0.0);
}

// The block's two halves: attention_delta, then mlp_delta on ln2(x + a), add
// up to the block's delta bit for bit; the attention half alone is the block
// with a zero MLP.
TEST(Layers, BlockHalvesAddUpToTheBlock) {
  Generator gen(7);
  nn::Block blk(8, 2, 0.0, {DType::f64, &gen});
  Tensor x = rand_input({2, 5, 8}, 5).detach();
  Tensor a = nn::attention_delta(blk, x, blk.attn->kernel());
  Tensor m = nn::mlp_delta(blk, blk.ln2->forward(x + a));
  EXPECT_EQ(max_abs_diff(a + m, blk.forward(x)), 0.0);
  EXPECT_EQ(max_abs_diff(m, blk.mlp->forward(blk.ln2->forward(x + a))), 0.0);
  nn::init::zeros_(blk.mlp->proj->weight);
  nn::init::zeros_(blk.mlp->proj->bias);
  EXPECT_EQ(max_abs_diff(a, blk.forward(x)), 0.0);
}

// Several blocks on their own rows of one group-ordered tensor (an empty
// group included) give each block's delta on its rows, and gradients reach
// every block's weights through the grouped ops.
TEST(Layers, GroupedBlocksEqualEachBlockOnItsOwnRows) {
  std::vector<std::shared_ptr<nn::Block>> blocks;
  for (uint64_t seed : {1, 2, 3}) {
    Generator gen(seed);
    blocks.push_back(std::make_shared<nn::Block>(8, 2, 0.0, nn::LayerOptions{DType::f64, &gen}));
  }
  const std::vector<int64_t> offsets = {0, 3, 3, 7};
  Tensor x = rand_input({7, 8}, 6);
  // Each group attends within itself: one packed sequence per group.
  Tensor cu = from_vector<int64_t>(offsets);
  nn::GroupedBlocks grouped(blocks, offsets);
  Tensor got = nn::block_delta(grouped, x, blocks[0]->attn->packed_kernel(cu));
  Tensor expected = cat({blocks[0]->forward_packed(slice(x, 0, 0, 3), from_vector<int64_t>({0, 3})),
                         blocks[2]->forward_packed(slice(x, 0, 3, 7), from_vector<int64_t>({0, 4}))}, 0);
  EXPECT_LT(max_abs_diff(got, expected), 1e-14);
  Tensor xd = x.detach();
  for (Tensor w : {blocks[2]->mlp->fc->weight, blocks[0]->ln1->bias, blocks[2]->attn->qkv->weight})
    EXPECT_TRUE(param_gradcheck([&] { return sum(square(nn::block_delta(grouped, xd, blocks[0]->attn->packed_kernel(cu)))); }, w));
  EXPECT_DG_ERROR(nn::GroupedBlocks(blocks, std::vector<int64_t>{0, 7}), "GroupedBlocks", "3 blocks need 4 group offsets");
}

TEST(Layers, AttentionWithCacheEqualsFullForward) {
  nn::CausalSelfAttention attn(8, 2, {DType::f64});
  Tensor x = rand_input({2, 7, 8}, 5).detach();
  Tensor full = attn.forward(x);
  NoGradGuard ng;
  nn::KVCache cache{zeros({2, 2, 10, 4}, {DType::f64}), zeros({2, 2, 10, 4}, {DType::f64}), 0};
  Tensor a = attn.forward(slice(x, 1, 0, 4), &cache);
  Tensor b = attn.forward(slice(x, 1, 4, 5), &cache);
  Tensor c = attn.forward(slice(x, 1, 5, 7), &cache);
  EXPECT_LT(max_abs_diff(cat({a, b, c}, 1), full), 1e-13);
  EXPECT_DG_ERROR(attn.forward(slice(x, 1, 0, 4), &cache), "KV cache holds 10 positions, 7 cached + 4 new");
}

TEST(Layers, DropoutOnlyInTraining) {
  nn::Dropout d(0.5);
  Tensor x = ones({1000}, {DType::f64});
  std::vector<double> v = d.forward(x).to_vector<double>();
  int zeros_seen = 0;
  for (double e : v) {
    EXPECT_TRUE(e == 0.0 || e == 2.0);
    zeros_seen += e == 0.0;
  }
  EXPECT_GT(zeros_seen, 400);
  EXPECT_LT(zeros_seen, 600);
  d.eval();
  EXPECT_EQ(max_abs_diff(d.forward(x), x), 0.0);
}

TEST(Losses, MseAndBceWithLogitsValuesAndGradients) {
  Tensor a = from_vector<double>({1.0, -2.0, 0.5}), b = from_vector<double>({0.0, 1.0, 0.5});
  expect_values(nn::mse_loss(a, b), {(1.0 + 9.0 + 0.0) / 3.0}, 1e-15);
  expect_values(nn::mse_loss(a, b, Reduction::sum), {10.0}, 1e-15);
  // BCE against the direct formula -[y log s(x) + (1-y) log(1 - s(x))].
  Tensor x = from_vector<double>({0.3, -1.7, 4.0, 0.0}), y = from_vector<double>({1.0, 0.0, 0.25, 1.0});
  std::vector<double> xv = x.to_vector<double>(), yv = y.to_vector<double>(), want;
  for (size_t i = 0; i < xv.size(); ++i) {
    double s = 1.0 / (1.0 + std::exp(-xv[i]));
    want.push_back(-(yv[i] * std::log(s) + (1 - yv[i]) * std::log(1 - s)));
  }
  expect_values(nn::bce_with_logits(x, y, Reduction::none), want, 1e-14);
  // Stable where the naive formula overflows: x = 1000, y = 0 -> 1000.
  expect_values(nn::bce_with_logits(from_vector<double>({1000.0, -1000.0}), from_vector<double>({0.0, 1.0}),
                                    Reduction::none),
                {1000.0, 1000.0}, 1e-9);
  // pos_weight p: -[p y log s + (1-y) log(1-s)].
  Tensor pw = from_vector<double>({3.0});
  double s = 1.0 / (1.0 + std::exp(-0.3));
  expect_values(nn::bce_with_logits(from_vector<double>({0.3}), from_vector<double>({0.6}), Reduction::none, pw),
                {-(3.0 * 0.6 * std::log(s) + 0.4 * std::log(1 - s))}, 1e-14);
  Tensor xi = rand_input({5}, 8, -3, 3), yi = rand({5}, {DType::f64});
  EXPECT_GRADCHECK([&](const Tensors& in) { return nn::bce_with_logits(in[0], yi); }, {xi});
  EXPECT_GRADCHECK([&](const Tensors& in) { return nn::mse_loss(in[0], yi); }, {xi});
  EXPECT_DG_ERROR(nn::bce_with_logits(xi, zeros({4}, {DType::f64})), "bce_with_logits", "[5]", "[4]");
}

TEST(Init, StatisticsAndErrors) {
  Tensor w = zeros({256, 512});
  Generator g(3);
  nn::init::normal_(w, 0.5, 0.02, &g);
  std::vector<float> v = w.to_vector<float>();
  double m = 0, s2 = 0;
  for (float e : v) m += e;
  m /= v.size();
  for (float e : v) s2 += (e - m) * (e - m);
  EXPECT_NEAR(m, 0.5, 1e-3);
  EXPECT_NEAR(std::sqrt(s2 / v.size()), 0.02, 5e-4);
  nn::init::xavier_uniform_(w, 1.0, &g);
  const double a = std::sqrt(6.0 / (256 + 512));
  float mx = 0;
  for (float e : w.to_vector<float>()) mx = std::max(mx, std::abs(e));
  EXPECT_LE(mx, a);
  EXPECT_GT(mx, 0.99 * a);
  Tensor b = zeros({3});
  EXPECT_DG_ERROR(nn::init::kaiming_uniform_(b), "kaiming_uniform_", "[3]");
}
