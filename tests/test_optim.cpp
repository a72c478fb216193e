// Optimizers (nn/optim.h): trajectories against torch.optim (the JSON written
// by tests/parity/make_optim_reference.py), the fused AdamW kernel against the
// same formula written with ordinary ops, state_dict round trips (bitwise),
// load errors, skipped parameters, zero_grad, gradient clipping, the LR
// schedule, gradient accumulation and hyper-parameter errors.
#include <nlohmann/json.hpp>

#include <cmath>
#include <fstream>
#include <limits>
#include <numbers>

#include "nn/optim.h"
#include "testing.h"

using namespace dg;
using json = nlohmann::json;

namespace {

const json& reference() {
  static const json ref = [] {
    std::ifstream f(DG_SOURCE_DIR "/tests/parity/optim_reference.json");
    if (!f) throw std::runtime_error("cannot open tests/parity/optim_reference.json (run make_optim_reference.py)");
    return json::parse(f);
  }();
  return ref;
}

const char* dtype_key(DType dt) { return dt == DType::f64 ? "f64" : "f32"; }

// Tolerances per dtype: f64 1e-12 relative, f32 rtol 1e-5 / atol 1e-6.
void expect_close(const std::vector<double>& got, const std::vector<double>& want, DType dt, const std::string& what) {
  ASSERT_EQ(got.size(), want.size()) << what;
  const double rtol = dt == DType::f64 ? 1e-12 : 1e-5, atol = dt == DType::f64 ? 1e-15 : 1e-6;
  double worst = 0;
  size_t at = 0;
  for (size_t i = 0; i < got.size(); ++i) {
    const double excess = std::abs(got[i] - want[i]) - (atol + rtol * std::abs(want[i]));
    if (excess > worst) worst = excess, at = i;
  }
  EXPECT_EQ(worst, 0.0) << what << ": element " << at << " is " << got[at] << ", torch says " << want[at];
}

std::vector<Tensor> make_params(const json& values, DType dt) {
  std::vector<Tensor> ps;
  const json& shapes = reference()["shapes"];
  for (size_t i = 0; i < shapes.size(); ++i)
    ps.push_back(from_doubles(values[i].get<std::vector<double>>(), Shape(shapes[i].get<std::vector<int64_t>>()),
                              {dt})
                     .set_requires_grad());
  return ps;
}

std::unique_ptr<nn::Optimizer> make_optimizer(const json& c, const std::vector<Tensor>& ps) {
  const json& h = c["hyper"];
  const double lr = h["lr"];
  if (c["optimizer"] == "sgd")
    return std::make_unique<nn::SGD>(ps, lr, h.value("momentum", 0.0), h.value("dampening", 0.0),
                                     h.value("weight_decay", 0.0), h.value("nesterov", false));
  const std::vector<double> betas = h.value("betas", std::vector<double>{0.9, 0.999});
  const double eps = h.value("eps", 1e-8);
  std::vector<nn::ParamGroup> groups;
  if (c["groups"].is_null()) {
    groups.push_back({ps, h.value("weight_decay", 0.01)});
  } else {
    for (const json& g : c["groups"]) {
      nn::ParamGroup pg{{}, g["weight_decay"].get<double>()};
      for (const json& i : g["params"]) pg.params.push_back(ps[i.get<size_t>()]);
      groups.push_back(pg);
    }
  }
  return std::make_unique<nn::AdamW>(groups, lr, betas[0], betas[1], eps);
}

bool skipped(const json& c, int64_t step, size_t param) {
  for (const json& s : c["skip"])
    if (s[0].get<int64_t>() == step && s[1].get<size_t>() == param) return true;
  return false;
}

void run_reference_case(const std::string& name, DType dt) {
  const json& ref = reference();
  const json* found = nullptr;
  for (const json& c : ref["cases"]) found = c["name"] == name ? &c : found;
  ASSERT_NE(found, nullptr) << "no case " << name << " in optim_reference.json";
  const json& c = *found;
  const json& data = ref[dtype_key(dt)];
  std::vector<Tensor> ps = make_params(data["params"], dt);
  auto opt = make_optimizer(c, ps);
  for (int64_t k = 0; k < ref["steps"].get<int64_t>(); ++k) {
    if (!c["lrs"].is_null()) opt->set_lr(c["lrs"][k].get<double>());
    for (size_t i = 0; i < ps.size(); ++i) {
      if (skipped(c, k, i)) {
        ps[i].zero_grad();
      } else {
        ps[i].set_grad(from_doubles(data["grads"][k][i].get<std::vector<double>>(), ps[i].shape(), {dt}));
      }
    }
    opt->step();
    for (size_t i = 0; i < ps.size(); ++i)
      expect_close(ps[i].to_vector<double>(), c[dtype_key(dt)][k][i].get<std::vector<double>>(), dt,
                   fmt::format("{} {} step {} param {}", name, dtype_key(dt), k, i));
  }
  EXPECT_EQ(opt->steps(), ref["steps"].get<int64_t>());
}

}  // namespace

// ---------------------------------------------------------------- parity with torch.optim

class OptimParity : public ::testing::TestWithParam<std::tuple<std::string, DType>> {};

TEST_P(OptimParity, MatchesTorchEveryStep) { run_reference_case(std::get<0>(GetParam()), std::get<1>(GetParam())); }

INSTANTIATE_TEST_SUITE_P(Cases, OptimParity,
                         ::testing::Combine(::testing::Values("sgd_momentum", "sgd_nesterov", "sgd_dampening_skip",
                                                              "sgd_plain", "adamw", "adamw_groups",
                                                              "adamw_skip_schedule"),
                                            ::testing::Values(DType::f64, DType::f32)),
                         [](const auto& info) {
                           return std::get<0>(info.param) + "_" + dtype_key(std::get<1>(info.param));
                         });

TEST(Optim, ReferenceCoversEveryCase) { EXPECT_EQ(reference()["cases"].size(), 7u); }

TEST(Optim, ClipGradNormMatchesTorch) {
  const json& ref = reference();
  for (DType dt : {DType::f64, DType::f32}) {
    for (const json& c : ref["clip"]) {
      const json& want = c[dtype_key(dt)];
      std::vector<Tensor> ps = make_params(ref[dtype_key(dt)]["params"], dt);
      const json& g0 = ref[dtype_key(dt)]["grads"][0];
      for (size_t i = 0; i < ps.size(); ++i) {
        std::vector<double> g = g0[i].get<std::vector<double>>();
        for (double& x : g) x *= 3.0;  // as in the script
        if (i != 1) ps[i].set_grad(from_doubles(g, ps[i].shape(), {dt}));
      }
      const double norm = nn::clip_grad_norm(ps, c["max_norm"].get<double>());
      const std::string what = fmt::format("clip {} max_norm {}", dtype_key(dt), c["max_norm"].get<double>());
      expect_close({norm}, {want["norm"].get<double>()}, dt, what + " norm");
      EXPECT_FALSE(ps[1].grad().defined());
      for (size_t i : {size_t{0}, size_t{2}})
        expect_close(ps[i].grad().to_vector<double>(), want["grads"][i].get<std::vector<double>>(), dt,
                     what + fmt::format(" grad {}", i));
    }
  }
}

TEST(Optim, ClipGradNormNonFiniteLeavesGrads) {
  Tensor p = zeros({3}, {DType::f64}).set_requires_grad();
  p.set_grad(from_vector<double>({1.0, std::numeric_limits<double>::infinity(), 2.0}));
  const double norm = nn::clip_grad_norm({p}, 1.0);
  EXPECT_TRUE(std::isinf(norm));
  EXPECT_EQ(p.grad().to_vector<double>()[0], 1.0);
  EXPECT_EQ(p.grad().to_vector<double>()[2], 2.0);
  EXPECT_DG_ERROR(nn::clip_grad_norm({p}, -1.0), "clip_grad_norm", "-1");
}

TEST(Optim, ClipGradNormBelowMaxIsUntouched) {
  Tensor p = zeros({2}, {DType::f32}).set_requires_grad();
  p.set_grad(from_vector<float>({3.0f, 4.0f}));
  EXPECT_NEAR(nn::clip_grad_norm({p}, 10.0), 5.0, 1e-12);
  EXPECT_EQ(p.grad().to_vector<float>(), (std::vector<float>{3.0f, 4.0f}));
  EXPECT_NEAR(nn::clip_grad_norm({p}, 1.0), 5.0, 1e-12);  // now clipped to norm ~1
  EXPECT_NEAR(p.grad().to_vector<float>()[0], 3.0 / (5.0 + 1e-6), 1e-7);
  EXPECT_NEAR(p.grad().to_vector<float>()[1], 4.0 / (5.0 + 1e-6), 1e-7);
}

// ---------------------------------------------------------------- fused kernel vs ops

// The AdamW update written with ordinary differentiable ops (the composite
// reference): the formula the fused kernel must reproduce.
void adamw_composite(Tensor& p, const Tensor& g, Tensor& m, Tensor& v, double lr, double b1, double b2, double eps,
                     double wd, int64_t t) {
  NoGradGuard ng;
  const double bc1 = 1 - std::pow(b1, double(t)), bc2 = 1 - std::pow(b2, double(t));
  Tensor p1 = mul(p, 1 - lr * wd);
  m = add(mul(m, b1), mul(g, 1 - b1));
  v = add(mul(v, b2), mul(mul(g, g), 1 - b2));
  Tensor denom = add(div(sqrt(v), scalar_tensor(std::sqrt(bc2), {p.dtype()})), eps);
  p = sub(p1, mul(div(m, denom), lr / bc1));
}

TEST(Optim, FusedAdamWKernelMatchesComposite) {
  for (DType dt : {DType::f64, DType::f32}) {
    const int64_t n = 100003;  // several OpenMP chunks, blocks with a ragged tail
    Generator gen(7);
    Tensor p = randn({n}, {dt}, &gen), g = randn({n}, {dt}, &gen), m = mul(randn({n}, {dt}, &gen), 0.1),
           v = mul(rand({n}, {dt}, &gen), 0.01);
    Tensor p_ref = copy_of(p), m_ref = copy_of(m), v_ref = copy_of(v);
    for (int64_t t = 1; t <= 3; ++t) {
      backend_of(p).adamw_step(p, g, m, v, 3e-3, 0.9, 0.99, 1e-8, 0.1, t + 4);
      adamw_composite(p_ref, g, m_ref, v_ref, 3e-3, 0.9, 0.99, 1e-8, 0.1, t + 4);
    }
    const double tol = dt == DType::f64 ? 1e-12 : 1e-5;
    EXPECT_LT(dg::testing::max_abs_diff(p, p_ref), tol) << dtype_key(dt);
    EXPECT_LT(dg::testing::max_abs_diff(m, m_ref), tol) << dtype_key(dt);
    EXPECT_LT(dg::testing::max_abs_diff(v, v_ref), tol) << dtype_key(dt);
    EXPECT_GT(dg::testing::max_abs_diff(p, g), 0.1);  // p really moved somewhere else than g
  }
}

// ---------------------------------------------------------------- state_dict

namespace {

// 3 params; param 1 gets no grad before step 3, so it has no state at a save after step 2.
std::vector<Tensor> fresh_params(uint64_t seed) {
  Generator gen(seed);
  return {randn({4, 3}, {DType::f32}, &gen).set_requires_grad(), randn({3}, {DType::f32}, &gen).set_requires_grad(),
          randn({2, 2}, {DType::f32}, &gen).set_requires_grad()};
}

void feed_grads(std::vector<Tensor>& ps, int64_t step) {
  Generator gen(100 + step);
  for (size_t i = 0; i < ps.size(); ++i) {
    if (i == 1 && step < 3) {
      ps[i].zero_grad();
    } else {
      ps[i].set_grad(randn(ps[i].shape(), {DType::f32}, &gen));
    }
  }
}

std::unique_ptr<nn::Optimizer> make_opt(const std::string& kind, const std::vector<Tensor>& ps) {
  if (kind == "sgd") return std::make_unique<nn::SGD>(ps, 0.05, 0.9, 0.1, 0.01);
  return std::make_unique<nn::AdamW>(std::vector<nn::ParamGroup>{{{ps[0], ps[2]}, 0.1}, {{ps[1]}, 0.0}}, 1e-2);
}

// Param order inside the optimizer (groups flattened): AdamW sees ps[0], ps[2], ps[1].
void round_trip(const std::string& kind) {
  std::vector<Tensor> a = fresh_params(1);
  auto opt_a = make_opt(kind, a);
  for (int64_t k = 0; k < 3; ++k) {
    feed_grads(a, k);
    opt_a->step();
  }
  const auto saved = opt_a->state_dict();
  std::vector<Tensor> b;
  for (const Tensor& p : a) b.push_back(copy_of(p).set_requires_grad());
  for (int64_t k = 3; k < 6; ++k) {
    feed_grads(a, k);
    opt_a->step();
  }

  auto opt_b = make_opt(kind, b);
  opt_b->load_state_dict(saved);
  EXPECT_EQ(opt_b->steps(), 3);
  for (int64_t k = 3; k < 6; ++k) {
    feed_grads(b, k);
    opt_b->step();
  }
  for (size_t i = 0; i < a.size(); ++i)
    EXPECT_EQ(a[i].to_vector<float>(), b[i].to_vector<float>()) << kind << " param " << i << " (bitwise)";
  const auto sa = opt_a->state_dict(), sb = opt_b->state_dict();
  ASSERT_EQ(sa.size(), sb.size());
  for (const auto& [key, t] : sa) {
    ASSERT_TRUE(sb.count(key)) << key;
    EXPECT_EQ(t.to_vector<double>(), sb.at(key).to_vector<double>()) << key;
  }
}

}  // namespace

TEST(Optim, StateDictRoundTripIsBitwiseAdamW) { round_trip("adamw"); }
TEST(Optim, StateDictRoundTripIsBitwiseSGD) { round_trip("sgd"); }

TEST(Optim, StateDictNamesAndCopies) {
  std::vector<Tensor> ps = fresh_params(2);
  nn::AdamW opt(ps);
  feed_grads(ps, 0);
  opt.step();
  auto sd = opt.state_dict();
  // ps[1] had no grad: no state for it yet.
  std::vector<std::string> keys;
  for (const auto& [k, t] : sd) keys.push_back(k);
  EXPECT_EQ(keys, (std::vector<std::string>{"param.0.exp_avg", "param.0.exp_avg_sq", "param.0.step",
                                            "param.2.exp_avg", "param.2.exp_avg_sq", "param.2.step", "step"}));
  EXPECT_EQ(sd.at("step").dtype(), DType::i64);
  EXPECT_EQ(sd.at("step").dim(), 0);
  EXPECT_EQ(sd.at("param.2.step").item<int64_t>(), 1);
  // A copy: changing it leaves the optimizer alone.
  Tensor m = sd.at("param.0.exp_avg");
  const std::vector<float> before = m.to_vector<float>();
  fill_(m, 123.0);
  EXPECT_EQ(opt.state_dict().at("param.0.exp_avg").to_vector<float>(), before);
}

TEST(Optim, LoadStateDictErrors) {
  std::vector<Tensor> ps = fresh_params(3);
  nn::AdamW opt(ps);
  feed_grads(ps, 0);
  opt.step();
  const auto good = opt.state_dict();

  auto wrong_shape = good;
  wrong_shape["param.0.exp_avg"] = zeros({3, 4});
  EXPECT_DG_ERROR(opt.load_state_dict(wrong_shape), "AdamW", "param.0.exp_avg", "[3, 4]", "[4, 3]");
  auto wrong_dtype = good;
  wrong_dtype["param.2.exp_avg_sq"] = zeros({2, 2}, {DType::f64});
  EXPECT_DG_ERROR(opt.load_state_dict(wrong_dtype), "param.2.exp_avg_sq", "f64", "f32");
  auto missing = good;
  missing.erase("param.0.exp_avg_sq");
  EXPECT_DG_ERROR(opt.load_state_dict(missing), "AdamW", "missing key 'param.0.exp_avg_sq'");
  auto no_step = good;
  no_step.erase("step");
  EXPECT_DG_ERROR(opt.load_state_dict(no_step), "missing key 'step'");
  auto unknown = good;
  unknown["param.0.momentum_buffer"] = zeros({4, 3});
  EXPECT_DG_ERROR(opt.load_state_dict(unknown), "unexpected key 'param.0.momentum_buffer'");
  auto out_of_range = good;
  out_of_range["param.7.exp_avg"] = zeros({4, 3});
  EXPECT_DG_ERROR(opt.load_state_dict(out_of_range), "param.7.exp_avg", "3 parameters");
  auto bad_counter = good;
  bad_counter["param.0.step"] = scalar_tensor(1.0, {DType::f32});
  EXPECT_DG_ERROR(opt.load_state_dict(bad_counter), "param.0.step", "0-dim i64");

  // A failed load changed nothing.
  const auto after = opt.state_dict();
  ASSERT_EQ(after.size(), good.size());
  for (const auto& [k, t] : good) EXPECT_EQ(t.to_vector<double>(), after.at(k).to_vector<double>()) << k;
  EXPECT_EQ(opt.steps(), 1);
}

// ---------------------------------------------------------------- step rules

TEST(Optim, SkipsParamsWithoutGradAndBumpsVersions) {
  for (const std::string kind : {"sgd", "adamw"}) {
    std::vector<Tensor> ps = fresh_params(4);
    auto opt = make_opt(kind, ps);
    feed_grads(ps, 0);  // ps[1] has no grad at step 0
    ASSERT_FALSE(ps[1].grad().defined());
    const std::vector<float> p0 = ps[0].to_vector<float>(), p1 = ps[1].to_vector<float>();
    const uint32_t v0 = ps[0].version(), v1 = ps[1].version();
    opt->step();
    EXPECT_EQ(ps[1].to_vector<float>(), p1) << kind;
    EXPECT_EQ(ps[1].version(), v1) << kind;
    EXPECT_NE(ps[0].to_vector<float>(), p0) << kind;
    EXPECT_GT(ps[0].version(), v0) << kind;
  }
}

TEST(Optim, StepAfterInPlaceUpdateInvalidatesSavedGraph) {
  Tensor w = ones({3}, {DType::f64}).set_requires_grad();
  nn::SGD opt({w}, 0.1);
  sum(mul(w, w)).backward();
  Tensor loss = sum(mul(w, w));  // saves w
  opt.step();                    // changes w in place
  EXPECT_THROW(loss.backward(), Error);
}

TEST(Optim, ZeroGradDropsGradients) {
  Tensor w = ones({2, 2}, {DType::f32}).set_requires_grad();
  nn::AdamW opt({w});
  sum(mul(w, w)).backward();
  ASSERT_TRUE(w.grad().defined());
  opt.zero_grad();
  EXPECT_FALSE(w.grad().defined());
  const std::vector<float> before = w.to_vector<float>();
  opt.step();  // nothing to do
  EXPECT_EQ(w.to_vector<float>(), before);
  EXPECT_EQ(opt.steps(), 1);
}

TEST(Optim, AdamWAcceptsStridedGrad) {
  Generator gen(5);
  Tensor g = randn({3, 4}, {DType::f64}, &gen);
  Tensor a = ones({4, 3}, {DType::f64}).set_requires_grad(), b = ones({4, 3}, {DType::f64}).set_requires_grad();
  a.set_grad(transpose(g, 0, 1));  // a strided view
  b.set_grad(copy_of(transpose(g, 0, 1)));
  nn::AdamW oa({a}), ob({b});
  oa.step();
  ob.step();
  EXPECT_EQ(a.to_vector<double>(), b.to_vector<double>());
}

TEST(Optim, DecayGroupsSplitByDim) {
  std::vector<Tensor> ps = fresh_params(6);  // (4,3), (3), (2,2)
  auto groups = nn::decay_groups(ps, 0.1);
  ASSERT_EQ(groups.size(), 2u);
  ASSERT_EQ(groups[0].params.size(), 2u);
  EXPECT_TRUE(groups[0].params[0].is_same(ps[0]));
  EXPECT_TRUE(groups[0].params[1].is_same(ps[2]));
  EXPECT_TRUE(groups[1].params[0].is_same(ps[1]));
  EXPECT_EQ(groups[0].weight_decay, 0.1);
  EXPECT_EQ(groups[1].weight_decay, 0.0);
  nn::AdamW opt(groups);
  EXPECT_EQ(opt.weight_decay_of(1), 0.1);
  EXPECT_EQ(opt.weight_decay_of(2), 0.0);
}

// Two half-batch backward passes (loss scaled by 1/2) then one step equal
// one full-batch step.
TEST(Optim, GradientAccumulationEqualsFullBatch) {
  Generator gen(11);
  Tensor x = randn({8, 3}, {DType::f64}, &gen), y = randn({8, 2}, {DType::f64}, &gen);
  Tensor w0 = randn({3, 2}, {DType::f64}, &gen), b0 = randn({2}, {DType::f64}, &gen);
  auto loss_of = [](const Tensor& xb, const Tensor& yb, const Tensor& w, const Tensor& b) {
    return mean(square(sub(add(matmul(xb, w), b), yb)));
  };
  Tensor wf = copy_of(w0).set_requires_grad(), bf = copy_of(b0).set_requires_grad();
  Tensor wa = copy_of(w0).set_requires_grad(), ba = copy_of(b0).set_requires_grad();
  nn::AdamW full({wf, bf}, 0.01), accum({wa, ba}, 0.01);
  for (int it = 0; it < 3; ++it) {
    full.zero_grad();
    loss_of(x, y, wf, bf).backward();
    full.step();
    accum.zero_grad();
    for (int64_t h = 0; h < 2; ++h) {
      Tensor xb = slice(x, 0, 4 * h, 4 * h + 4), yb = slice(y, 0, 4 * h, 4 * h + 4);
      mul(loss_of(xb, yb, wa, ba), 0.5).backward();
    }
    EXPECT_LT(dg::testing::max_abs_diff(wa.grad(), wf.grad()), 1e-14);
    accum.step();
  }
  EXPECT_LT(dg::testing::max_abs_diff(wa, wf), 1e-12);
  EXPECT_LT(dg::testing::max_abs_diff(ba, bf), 1e-12);
  EXPECT_GT(dg::testing::max_abs_diff(wa, w0), 1e-3);  // it did train
}

// ---------------------------------------------------------------- schedule

TEST(Optim, WarmupCosineValues) {
  // warmup 10, total 110, max 1.0, min 0.1
  auto lr = [](int64_t s) { return nn::warmup_cosine_lr(s, 10, 110, 1.0, 0.1); };
  EXPECT_DOUBLE_EQ(lr(0), 0.1);
  EXPECT_DOUBLE_EQ(lr(4), 0.5);
  EXPECT_DOUBLE_EQ(lr(9), 1.0);
  EXPECT_DOUBLE_EQ(lr(10), 1.0);
  EXPECT_NEAR(lr(35), 0.1 + 0.45 * (1 + std::sqrt(0.5)), 1e-15);  // progress 1/4: cos(pi/4)
  EXPECT_NEAR(lr(60), 0.55, 1e-15);                               // progress 1/2
  EXPECT_NEAR(lr(85), 0.1 + 0.45 * (1 - std::sqrt(0.5)), 1e-15);  // progress 3/4
  EXPECT_DOUBLE_EQ(lr(110), 0.1);
  EXPECT_DOUBLE_EQ(lr(1000), 0.1);
  for (int64_t s = 10; s < 110; ++s) EXPECT_GE(lr(s), lr(s + 1)) << s;  // monotone decay
  EXPECT_DOUBLE_EQ(nn::warmup_cosine_lr(0, 0, 10, 2.0, 0.0), 2.0);    // no warmup
  nn::WarmupCosine sched{.warmup = 10, .total = 110, .max_lr = 1.0, .min_lr = 0.1};
  EXPECT_DOUBLE_EQ(sched(60), lr(60));
  EXPECT_DG_ERROR(nn::warmup_cosine_lr(0, 10, 5, 1.0, 0.1), "warmup_cosine_lr", "warmup 10", "total 5");
  EXPECT_DG_ERROR(nn::warmup_cosine_lr(-1, 0, 5, 1.0, 0.1), "warmup_cosine_lr", "step -1");
}

// ---------------------------------------------------------------- errors

TEST(Optim, BadHyperParametersAreErrors) {
  Tensor w = ones({2}).set_requires_grad();
  EXPECT_DG_ERROR(nn::SGD({w}, -0.1), "SGD", "learning rate", "-0.1");
  EXPECT_DG_ERROR(nn::SGD({w}, 0.1, -0.5), "SGD", "momentum", "-0.5");
  EXPECT_DG_ERROR(nn::SGD({w}, 0.1, 0.0, 0.0, 0.0, true), "SGD", "nesterov", "momentum 0");
  EXPECT_DG_ERROR(nn::SGD({w}, 0.1, 0.9, 0.5, 0.0, true), "SGD", "nesterov", "dampening 0.5");
  EXPECT_DG_ERROR(nn::SGD({w}, 0.1, 0.0, 0.0, -1e-3), "SGD", "weight_decay", "-0.001");
  EXPECT_DG_ERROR(nn::AdamW({w}, -1e-3), "AdamW", "learning rate", "-0.001");
  EXPECT_DG_ERROR(nn::AdamW({w}, 1e-3, 1.0), "AdamW", "beta1", "1");
  EXPECT_DG_ERROR(nn::AdamW({w}, 1e-3, 0.9, -0.2), "AdamW", "beta2", "-0.2");
  EXPECT_DG_ERROR(nn::AdamW({w}, 1e-3, 0.9, 0.999, -1e-8), "AdamW", "eps", "-1e-08");
  EXPECT_DG_ERROR(nn::AdamW({w}, 1e-3, 0.9, 0.999, 1e-8, -0.01), "AdamW", "weight_decay", "-0.01");
  nn::AdamW ok({w});
  EXPECT_DG_ERROR(ok.set_lr(-0.5), "AdamW", "-0.5");
  EXPECT_DG_ERROR(ok.set_lr(std::nan("")), "AdamW", "nan");
  EXPECT_DOUBLE_EQ(ok.lr(), 1e-3);
  ok.set_lr(0.25);
  EXPECT_DOUBLE_EQ(ok.lr(), 0.25);
}

TEST(Optim, BadParametersAreErrors) {
  Tensor w = ones({2}).set_requires_grad();
  EXPECT_DG_ERROR(nn::SGD({ones({2})}, 0.1), "SGD", "requires grad");
  EXPECT_DG_ERROR(nn::AdamW(std::vector<Tensor>{}), "AdamW", "empty");
  EXPECT_DG_ERROR(nn::AdamW({w, w}), "AdamW", "more than once");
  EXPECT_DG_ERROR(nn::SGD({mul(w, 2.0)}, 0.1), "SGD", "leaf");
  Tensor p = ones({2, 2}).set_requires_grad();
  p.set_grad(ones({2, 2}, {DType::f64}));
  nn::SGD opt({p}, 0.1);
  EXPECT_DG_ERROR(opt.step(), "SGD", "parameter 0", "f64");
}
