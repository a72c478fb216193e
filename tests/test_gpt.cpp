// The dense GPT: parameter names and counts, FLOPs, incremental decoding equal
// to the full forward, causality, sampling, errors.
#include <algorithm>
#include <cmath>
#include <nlohmann/json.hpp>

#include "models/generate.h"
#include "models/gpt.h"
#include "testing.h"

using namespace dg;
using namespace dg::testing;
using models::GPT;
using models::GPTConfig;

namespace {

GPTConfig tiny(bool tied = true, DType dt = DType::f32) {
  return {.n_layer = 2, .n_head = 2, .n_embd = 16, .block_size = 12, .vocab_size = 256, .dropout = 0.0,
          .tied_head = tied, .seed = 7, .dtype = dt};
}


}  // namespace

TEST(GPT, NamesShapesAndParameterCount) {
  GPT m(tiny(false));
  auto sd = m.state_dict();
  EXPECT_EQ(sd.at("wte.weight").shape(), (Shape{256, 16}));
  EXPECT_EQ(sd.at("wpe.weight").shape(), (Shape{12, 16}));
  EXPECT_EQ(sd.at("blocks.1.attn.qkv.weight").shape(), (Shape{48, 16}));
  EXPECT_EQ(sd.at("blocks.1.mlp.proj.weight").shape(), (Shape{16, 64}));
  EXPECT_EQ(sd.at("lm_head.weight").shape(), (Shape{256, 16}));
  const int64_t C = 16, per_block = 4 * C + (3 * C * C + 3 * C) + (C * C + C) + (4 * C * C + 4 * C) + (4 * C * C + C);
  EXPECT_EQ(m.num_parameters(), 256 * C + 12 * C + 2 * per_block + 2 * C + 256 * C);
  GPT tied(tiny(true));
  EXPECT_EQ(tied.state_dict().count("lm_head.weight"), 0u);
  EXPECT_EQ(tied.num_parameters(), m.num_parameters() - 256 * C);
}

TEST(GPT, SameSeedSameWeightsAndResidualInitIsScaled) {
  GPT a(tiny()), b(tiny());
  for (auto& [name, t] : a.state_dict()) EXPECT_EQ(max_abs_diff(t, b.state_dict().at(name)), 0.0) << name;
  // std of a residual projection ~ 0.02 / sqrt(2L) = 0.01, of qkv ~ 0.02.
  auto sd = a.state_dict();
  auto rms = [](const Tensor& t) {
    double s = 0;
    for (double v : t.to_vector<double>()) s += v * v;
    return std::sqrt(s / t.numel());
  };
  EXPECT_NEAR(rms(sd.at("blocks.0.mlp.proj.weight")), 0.01, 0.002);
  EXPECT_NEAR(rms(sd.at("blocks.0.attn.qkv.weight")), 0.02, 0.003);
}

TEST(GPT, IncrementalDecodingEqualsFullForward) {
  for (bool tied : {true, false}) {
    GPT m(tiny(tied));
    m.eval();
    Tensor idx = random_tokens(2, 10, 3);
    Tensor full = m.forward(idx);
    auto state = m.start_decoding(2);
    Tensor a = m.decode(*state, slice(idx, 1, 0, 6));
    Tensor parts = a;
    for (int64_t t = 6; t < 10; ++t) parts = cat({parts, m.decode(*state, slice(idx, 1, t, t + 1))}, 1);
    EXPECT_LT(max_abs_diff(parts, full), 1e-5) << "tied " << tied;
    EXPECT_EQ(state->position, 10);
  }
}

// A decoding state holds one model's caches: another model's state is an error.
TEST(GPT, DecodingStateBelongsToTheModelThatMadeIt) {
  GPT a(tiny(true, DType::f64)), b(tiny(true, DType::f64));
  auto state = a.start_decoding(1);
  EXPECT_DG_ERROR(b.decode(*state, random_tokens(1, 2, 3)), "GPT::decode", "not made by this model");
  EXPECT_EQ(a.decode(*state, random_tokens(1, 2, 3)).size(1), 2);
}

TEST(GPT, LaterTokensNeverChangeEarlierLogits) {
  GPT m(tiny(true, DType::f64));
  Tensor idx = random_tokens(1, 12, 5);
  Tensor base = m.forward(idx);
  Tensor other = m.forward(change_tokens_from(idx, 7, 101));
  EXPECT_EQ(max_abs_diff(slice(base, 1, 0, 7), slice(other, 1, 0, 7)), 0.0);  // bit for bit
  EXPECT_GT(max_abs_diff(slice(base, 1, 7, 8), slice(other, 1, 7, 8)), 0.0);
}

TEST(GPT, GradientsReachEveryParameterAndGradcheckF64) {
  GPTConfig c = tiny(false, DType::f64);
  c.n_embd = 8;
  c.block_size = 5;
  GPT m(c);
  Tensor idx = random_tokens(2, 5, 9), tgt = random_tokens(2, 5, 10);
  m.loss(idx, tgt).objective.backward();
  for (auto& [name, p] : m.named_parameters()) {
    ASSERT_TRUE(p.grad().defined()) << name;
    if (name.rfind("wte", 0) != 0 && name.rfind("wpe", 0) != 0) {
      double s = 0;
      for (double v : p.grad().to_vector<double>()) s += std::abs(v);
      EXPECT_GT(s, 0.0) << name;
    }
  }
  // Finite differences through the whole model for a few parameters.
  for (const char* name : {"blocks.0.attn.qkv.weight", "blocks.1.ln2.bias", "ln_f.weight"}) {
    Tensor p = m.state_dict().at(name);
    EXPECT_TRUE(param_gradcheck([&] { return m.loss(idx, tgt).objective; }, p)) << name;
  }
}

TEST(GPT, FlopsPerTokenFormula) {
  GPT m(tiny());
  m.forward(random_tokens(1, 12, 1));
  const double C = 16, T = 12;
  EXPECT_DOUBLE_EQ(m.last_forward_flops_per_token(), 2 * (24 * C * C + 2 * C * (T + 1)) + 2 * C * 256);
}

TEST(GPT, ErrorsNameTheProblem) {
  GPT m(tiny());
  EXPECT_DG_ERROR(m.forward(random_tokens(1, 13, 1)), "GPT", "sequence length 13", "block_size = 12");
  EXPECT_DG_ERROR(m.forward(from_vector<int64_t>({1, 2, 300}, {1, 3})), "embedding", "300");
  EXPECT_DG_ERROR(m.forward(zeros({2, 3})), "GPT", "i64");
  GPTConfig bad = tiny();
  bad.n_head = 3;
  EXPECT_DG_ERROR(GPT{bad}, "n_head (--heads) 3 must divide n_embd (--embd) 16");
  auto state = m.start_decoding(1);
  m.decode(*state, random_tokens(1, 12, 2));
  EXPECT_DG_ERROR(m.decode(*state, random_tokens(1, 1, 2)), "GPT::decode");
}

TEST(GPT, ConfigJsonRoundTripAndErrors) {
  GPTConfig c = tiny(false, DType::f64);
  GPTConfig d = models::gpt_config_from_json(models::to_json(c));
  EXPECT_EQ(models::to_json(d), models::to_json(c));
  EXPECT_DG_ERROR(models::gpt_config_from_json("{\"n_layer\": 2}"), "GPT config", "missing key 'n_head'");
  EXPECT_DG_ERROR(models::gpt_config_from_json("[1]"), "expected a JSON object");
}

// Integers are integers, in range; unknown keys and wrong types name the key.
TEST(GPT, ConfigNumbersAreCheckedNotConverted) {
  auto with = [](const std::string& key, nlohmann::json v) {
    nlohmann::json j = nlohmann::json::parse(models::to_json(tiny()));
    j[key] = v;
    return j.dump();
  };
  EXPECT_DG_ERROR(models::gpt_config_from_json(with("n_layer", 1e300)), "'n_layer' must be an integer in [1, 1024]",
                  "1e+300");
  EXPECT_DG_ERROR(models::gpt_config_from_json(with("n_layer", 1.9)), "'n_layer' must be an integer", "1.9");
  EXPECT_DG_ERROR(models::gpt_config_from_json(with("n_layer", 0)), "'n_layer' must be an integer in [1, 1024], got 0");
  EXPECT_DG_ERROR(models::gpt_config_from_json(with("seed", -1)), "'seed' must be an integer in [0, 2^64 - 1], got -1");
  EXPECT_DG_ERROR(models::gpt_config_from_json(with("n_embd", "16")), "'n_embd' must be an integer", "\"16\"");
  EXPECT_DG_ERROR(models::gpt_config_from_json(with("n_embd", 100000)), "'n_embd' must be an integer in [1, 65536]");
  EXPECT_DG_ERROR(models::gpt_config_from_json(with("dropout", 1.0)), "'dropout' must be a number in [0, 1)");
  EXPECT_DG_ERROR(models::gpt_config_from_json(with("dtype", "f16")), "'dtype' must be one of f32 | f64", "f16");
  EXPECT_DG_ERROR(models::gpt_config_from_json(with("tied_head", 1)), "'tied_head' must be true or false");
  EXPECT_DG_ERROR(models::gpt_config_from_json(with("n_layers", 2)), "unknown key 'n_layers'", "n_layer");
  EXPECT_DG_ERROR(models::gpt_config_from_json(with("n_head", 3)), "n_head (--heads) 3 must divide n_embd");
  // Within every field's range, but too many parameters in all.
  nlohmann::json big = nlohmann::json::parse(with("n_embd", 65536));
  big["n_head"] = 1;
  EXPECT_DG_ERROR(models::gpt_config_from_json(big.dump()), "parameters, more than the 2e+09 allowed");
  EXPECT_EQ(models::gpt_config_from_json(with("seed", 18446744073709551615ull)).seed, 18446744073709551615ull);
}

TEST(Generate, SamplingRulesAndDeterminism) {
  std::vector<double> logits = {0.0, 5.0, 1.0, 4.9};
  EXPECT_EQ(models::sample_token(logits, 0.0, 0, 0.99), 1);  // greedy
  // top_k = 2 keeps ids 1 and 3 only, whatever u is.
  for (double u : {0.0, 0.3, 0.6, 0.999}) {
    int64_t t = models::sample_token(logits, 1.0, 2, u);
    EXPECT_TRUE(t == 1 || t == 3) << u;
  }
  GPT m(tiny());
  models::SampleOptions opt{.max_new_tokens = 8, .temperature = 1.0, .top_k = 10, .seed = 4};
  auto a = models::generate(m, {65, 66, 67}, opt), b = models::generate(m, {65, 66, 67}, opt);
  EXPECT_EQ(a, b);
  EXPECT_EQ(a.size(), 8u);
  opt.max_new_tokens = 30;  // past block_size 12: the window slides
  EXPECT_EQ(models::generate(m, {65, 66, 67}, opt).size(), 30u);
  EXPECT_DG_ERROR(models::generate(m, {}, opt), "generate", "empty");
}

// Past the context, each token is the one a full forward on the last
// block_size tokens predicts (greedy, f64): the window slides, the prompt
// included when it is longer than the context.
TEST(Generate, SlidingWindowEqualsFullForwardOnTheLastBlock) {
  GPT m(tiny(true, DType::f64));
  const int64_t context = m.block_size();
  for (std::vector<int64_t> prompt : {std::vector<int64_t>{65, 66, 67}, std::vector<int64_t>(20, 70)}) {
    models::SampleOptions opt{.max_new_tokens = 2 * context + 5, .temperature = 0.0};
    std::vector<int64_t> out = models::generate(m, prompt, opt);
    ASSERT_EQ(static_cast<int64_t>(out.size()), opt.max_new_tokens);
    std::vector<int64_t> all = prompt;
    for (int64_t tok : out) {
      const int64_t n = std::min<int64_t>(context, static_cast<int64_t>(all.size()));
      NoGradGuard ng;
      Tensor logits = m.forward(from_vector<int64_t>(std::vector<int64_t>(all.end() - n, all.end()), {1, n}));
      std::vector<double> row = logits.to_vector<double>();
      std::vector<double> last(row.end() - m.vocab_size(), row.end());
      EXPECT_EQ(tok, std::max_element(last.begin(), last.end()) - last.begin()) << "after " << all.size();
      all.push_back(tok);
    }
  }
}
