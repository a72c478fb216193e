// The models above tensor/ on another device than the CPU: dense GPT, MoD,
// MoB, MoE and MoR train, sample, checkpoint and resume on it exactly as on the CPU.
//
// The guarded test device (tensor/guarded_backend.h) runs the CPU's kernels on
// memory the host cannot touch, so there every result must be BIT-identical
// to the CPU's (same kernels, same order), and any host access to a tensor a
// model made there crashes the test. Its counters bound the host reads of a
// training step: none for dense, MoD and MoR's top-k routing, one batched
// read per depth step for MoB (its routing decisions), one for MoR's
// token-choice depths. The same tests run on CUDA when a GPU is
// present (f64 to 1e-10 instead of bitwise), and skip with the reason
// otherwise.
//
// Legend: B = batch, T = time; kinds dense | mod | mob | moe | mor (expert-choice)
// | mor_token (token-choice).
#include <filesystem>
#include <fstream>
#include <iterator>

#include "data/synthetic.h"
#include "models/factory.h"
#include "models/generate.h"
#include "models/gpt.h"
#include "models/mob.h"
#include "models/mod.h"
#include "models/moe.h"
#include "models/mor.h"
#include "nn/checkpoint.h"
#include "nn/optim.h"
#include "tensor/guarded_backend.h"
#include "train/trainer.h"
#include "devices.h"
#include "testing.h"

using namespace dg;
using namespace dg::models;

namespace {

// Tiny f64 configs of each kind (f64: the CUDA variant compares to 1e-10).
std::string config_of(const std::string& kind) {
  GPTConfig g{.n_layer = 2, .n_head = 2, .n_embd = 8, .block_size = 12, .vocab_size = 256, .dropout = 0.0,
              .tied_head = true, .seed = 5, .dtype = DType::f64};
  if (kind == "dense") return to_json(g);
  if (kind == "mod") {
    MoDConfig c;
    c.gpt = g;
    c.capacity = 0.5;
    c.causal = CausalMethod::both;
    return to_json(c);
  }
  if (kind == "moe") {
    MoEConfig c;
    c.gpt = g;
    c.n_experts = 3;
    c.top_k = 2;
    c.capacity_factor = 0.75;  // some tokens dropped in training
    return to_json(c);
  }
  if (kind == "mor" || kind == "mor_token") {
    MoRConfig c;
    c.gpt = g;
    c.router = kind == "mor" ? MoRRouter::expert : MoRRouter::token;
    c.aux_weight = 0.1;
    c.balance = 0.1;
    return to_json(c);
  }
  MoBConfig c;
  c.gpt = g;
  c.n_blocks = 3;
  c.max_depth = 3;
  c.gate_init = GateInit::uniform;  // routes that differ per token
  c.eps = 0.2;
  c.balance = 0.01;
  return to_json(c);
}

std::unique_ptr<LanguageModel> make(const std::string& kind, Device d) {
  auto m = make_model(kind == "mor_token" ? "mor" : kind, config_of(kind));
  m->to(d);
  return m;
}

// The i-th batch (B, T) of tokens and targets, made on the host, moved to d.
std::pair<Tensor, Tensor> batch(int64_t i, Device d) {
  Generator g(100 + static_cast<uint64_t>(i));
  Tensor x = randint(0, 256, {3, 10}, &g), y = randint(0, 256, {3, 10}, &g);
  return {to_device(x, d), to_device(y, d)};
}

// a and b (any devices) differ by at most tol (0: bit for bit).
::testing::AssertionResult near(const Tensor& a, const Tensor& b, double tol) {
  if (a.shape() != b.shape()) return ::testing::AssertionFailure() << fmt::format("shapes {} vs {}", a.shape(), b.shape());
  const std::vector<double> x = to_device(a, Device::cpu()).to_vector<double>();
  const std::vector<double> y = to_device(b, Device::cpu()).to_vector<double>();
  for (size_t i = 0; i < x.size(); ++i)
    if (!(std::abs(x[i] - y[i]) <= tol * std::max(1.0, std::abs(x[i]))) && !(tol == 0 && x[i] == y[i]))
      return ::testing::AssertionFailure() << "element " << i << ": " << x[i] << " vs " << y[i];
  return ::testing::AssertionSuccess();
}

std::string bytes_of(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>()};
}

// The device under test and how close it must come to the CPU.
struct Case {
  std::string kind;
  Device device;
  double tol;  // 0: bit for bit
};

// How ctest and gtest print a case (instead of its raw bytes).
void PrintTo(const Case& c, std::ostream* os) { *os << c.kind << " on " << fmt::format("{}", c.device); }

std::string case_name(const ::testing::TestParamInfo<Case>& i) {
  return i.param.kind + "_" + (i.param.device.type == DeviceType::guarded ? "guarded" : "cuda");
}

class ModelsOnDevice : public ::testing::TestWithParam<Case> {
 protected:
  void SetUp() override { dg::testing::skip_unless_available(GetParam().device); }
};

// Three AdamW steps from the same weights and batches: every loss, every
// gradient and (MoB) every route equal to the CPU's.
TEST_P(ModelsOnDevice, TrainsThreeStepsLikeTheCpu) {
  const Case& c = GetParam();
  auto cpu = make(c.kind, Device::cpu()), dev = make(c.kind, c.device);
  nn::AdamW opt_cpu(cpu->parameters(), 1e-2), opt_dev(dev->parameters(), 1e-2);
  for (int64_t step = 0; step < 3; ++step) {
    for (auto* o : {&opt_cpu, &opt_dev}) o->zero_grad();
    auto [xc, yc] = batch(step, Device::cpu());
    auto [xd, yd] = batch(step, c.device);
    LossOutput lc = cpu->loss(xc, yc), ld = dev->loss(xd, yd);
    ASSERT_EQ(ld.objective.device(), c.device);
    lc.objective.backward();
    ld.objective.backward();
    const LossValues vc = read_values(lc), vd = read_values(ld);
    EXPECT_TRUE(near(scalar_tensor(vc.objective), scalar_tensor(vd.objective), c.tol)) << "step " << step;
    EXPECT_TRUE(near(scalar_tensor(vc.lm), scalar_tensor(vd.lm), c.tol)) << "step " << step;
    ASSERT_EQ(vc.stats.size(), vd.stats.size());
    for (auto& [k, v] : vc.stats) EXPECT_NEAR(v, vd.stats.at(k), c.tol * std::max(1.0, std::abs(v))) << k;
    auto pc = cpu->named_parameters(), pd = dev->named_parameters();
    ASSERT_EQ(pc.size(), pd.size());
    for (size_t i = 0; i < pc.size(); ++i) {
      ASSERT_EQ(pd[i].second.device(), c.device) << pd[i].first;
      ASSERT_EQ(pc[i].second.grad().defined(), pd[i].second.grad().defined()) << pd[i].first;
      if (pc[i].second.grad().defined()) {
        EXPECT_TRUE(near(pc[i].second.grad(), pd[i].second.grad(), c.tol)) << "step " << step << " " << pc[i].first;
      }
    }
    if (cpu->last_routing_trace()) {  // MoB, MoE, MoR
      const auto& tc = cpu->last_routing_trace()->tokens;
      const auto& td = dev->last_routing_trace()->tokens;
      ASSERT_EQ(tc.size(), td.size());
      for (size_t t = 0; t < tc.size(); ++t) {
        ASSERT_EQ(tc[t].size(), td[t].size()) << "token " << t << " step " << step;
        for (size_t s = 0; s < tc[t].size(); ++s) EXPECT_EQ(tc[t][s].block, td[t][s].block) << "token " << t;
      }
    }
    opt_cpu.step();
    opt_dev.step();
  }
  for (auto& [name, p] : dev->named_parameters()) EXPECT_EQ(p.device(), c.device) << name;
}

// KV-cached sampling gives the CPU's tokens (a prompt, then one token at a time).
TEST_P(ModelsOnDevice, SamplesLikeTheCpu) {
  const Case& c = GetParam();
  auto cpu = make(c.kind, Device::cpu()), dev = make(c.kind, c.device);
  if (c.kind == "mod") {
    dynamic_cast<MoD&>(*cpu).set_routing(MoDRouting::causal);
    dynamic_cast<MoD&>(*dev).set_routing(MoDRouting::causal);
  }
  SampleOptions so{.max_new_tokens = 20, .temperature = 1.0, .top_k = 0, .seed = 3, .stop_token = -1};
  const std::vector<int64_t> prompt = {51, 52, 43, 53};
  EXPECT_EQ(generate(*cpu, prompt, so), generate(*dev, prompt, so));
}

// A checkpoint saved from the device holds the CPU's bytes; loaded onto the
// device it continues training exactly like the CPU.
TEST_P(ModelsOnDevice, CheckpointsAndResumesLikeTheCpu) {
  const Case& c = GetParam();
  const std::string dir = ::testing::TempDir() + "/models_device_" + case_name({c, 0});
  std::filesystem::create_directories(dir);
  auto train_step = [](LanguageModel& m, nn::AdamW& o, int64_t i) {
    o.zero_grad();
    auto [x, y] = batch(i, device_of(m));
    LossOutput l = m.loss(x, y);
    l.objective.backward();
    o.step();
    return read_values(l).objective;
  };
  auto cpu = make(c.kind, Device::cpu()), dev = make(c.kind, c.device);
  nn::AdamW opt_cpu(cpu->parameters(), 1e-2), opt_dev(dev->parameters(), 1e-2);
  for (int64_t i = 0; i < 2; ++i) train_step(*cpu, opt_cpu, i), train_step(*dev, opt_dev, i);
  nn::save_checkpoint(dir + "/cpu.safetensors", *cpu, &opt_cpu, 2, {});
  nn::save_checkpoint(dir + "/dev.safetensors", *dev, &opt_dev, 2, {});
  if (c.tol == 0) {
    EXPECT_EQ(bytes_of(dir + "/cpu.safetensors"), bytes_of(dir + "/dev.safetensors"));
  }
  // Resume: fresh models and optimizers on each device, from the CPU's file.
  auto cpu2 = make(c.kind, Device::cpu()), dev2 = make(c.kind, c.device);
  nn::AdamW opt_cpu2(cpu2->parameters(), 1e-2), opt_dev2(dev2->parameters(), 1e-2);
  nn::load_checkpoint(dir + "/cpu.safetensors", *cpu2, &opt_cpu2);
  nn::load_checkpoint(dir + "/cpu.safetensors", *dev2, &opt_dev2);
  for (auto& [name, p] : dev2->named_parameters()) ASSERT_EQ(p.device(), c.device) << name;
  for (int64_t i = 2; i < 4; ++i) {
    const double a = train_step(*cpu, opt_cpu, i), b = train_step(*cpu2, opt_cpu2, i), d = train_step(*dev2, opt_dev2, i);
    EXPECT_EQ(a, b) << "CPU resume, step " << i;
    EXPECT_NEAR(a, d, c.tol * std::max(1.0, std::abs(a))) << "device resume, step " << i;
    if (c.tol == 0) {
      EXPECT_EQ(a, d) << "device resume, step " << i;
    }
  }
  auto pc = cpu->named_parameters(), pd = dev2->named_parameters();
  for (size_t i = 0; i < pc.size(); ++i) EXPECT_TRUE(near(pc[i].second, pd[i].second, c.tol)) << pc[i].first;
  std::filesystem::remove_all(dir);
}

std::vector<Case> cases() {
  std::vector<Case> v;
  for (const char* kind : {"dense", "mod", "mob", "moe", "mor", "mor_token"}) {
    v.push_back({kind, Device::guarded(), 0.0});
    v.push_back({kind, Device::cuda(0), 1e-10});
  }
  return v;
}

INSTANTIATE_TEST_SUITE_P(Kinds, ModelsOnDevice, ::testing::ValuesIn(cases()), case_name);

// Host reads of one training forward + backward on the guarded device:
// none for dense and MoD. MoB: its halting policy reads the step's routing
// values once per depth step (one batched copy: probabilities, q, surviving
// mass), and nothing else (cu_seqlens are checked on the device).
struct Reads {
  uint64_t copies = 0;
  int64_t steps = 0;  // MoB: depth steps run (the longest token path)
};
Reads host_reads_of_a_step(const std::string& kind) {
  auto m = make(kind, Device::guarded());
  m->train();
  auto [x, y] = batch(0, Device::guarded());
  const uint64_t before = guarded::counters().copies_to_host;
  LossOutput l = m->loss(x, y);
  l.objective.backward();
  Reads r{guarded::counters().copies_to_host - before, 0};
  if (auto* mob = dynamic_cast<MoB*>(m.get()))
    for (const auto& path : mob->last_trace().tokens) r.steps = std::max<int64_t>(r.steps, static_cast<int64_t>(path.size()));
  return r;
}

TEST(ModelsOnDeviceHostReads, DenseAndMoDReadNothingPerStep) {
  EXPECT_EQ(host_reads_of_a_step("dense").copies, 0u);
  EXPECT_EQ(host_reads_of_a_step("mod").copies, 0u);
}

// MoR: expert-choice top-k keeps every selection on the device (its trace is
// read only when asked); token-choice reads its depth probabilities once.
TEST(ModelsOnDeviceHostReads, MoRReadsNothingWithTopkAndOnceWithTokenChoice) {
  EXPECT_EQ(host_reads_of_a_step("mor").copies, 0u);
  EXPECT_EQ(host_reads_of_a_step("mor_token").copies, 1u);
}

TEST(ModelsOnDeviceHostReads, MoBReadsItsDecisionsOncePerDepthStep) {
  const Reads r = host_reads_of_a_step("mob");
  ASSERT_GE(r.steps, 2);
  EXPECT_EQ(r.copies, static_cast<uint64_t>(r.steps));  // the policy's read of each step
  std::printf("MoB training forward + backward: %llu host reads over %lld depth steps\n",
              static_cast<unsigned long long>(r.copies), static_cast<long long>(r.steps));
}

// MoE: one read per MoE layer (its router probabilities, for the top-k and
// the grouping of tokens by expert) and nothing else.
TEST(ModelsOnDeviceHostReads, MoEReadsItsRouterOncePerLayer) {
  EXPECT_EQ(host_reads_of_a_step("moe").copies, 2u);  // n_layer 2, an MoE layer in each block
}

// The trainer's own reads per step: the loss, LM loss and stats in one copy
// (read_values), plus the gradient norm of nn::clip_grad_norm.
TEST(ModelsOnDeviceHostReads, ReadValuesIsOneCopy) {
  auto m = make("mod", Device::guarded());
  auto [x, y] = batch(1, Device::guarded());
  LossOutput l = m->loss(x, y);
  ASSERT_FALSE(l.device_stats.empty());
  const uint64_t before = guarded::counters().copies_to_host;
  const LossValues v = read_values(l);
  EXPECT_EQ(guarded::counters().copies_to_host - before, 1u);
  EXPECT_TRUE(v.stats.count("router_acc") && v.stats.count("predictor_acc") && v.stats.count("aux"));
}

// The Trainer's host reads per step on guarded, between two step callbacks:
// the model's (above) plus two: the gradient norm (nn::clip_grad_norm, one
// read per device) and the loss, LM loss and stats together (read_values).
TEST(ModelsOnDeviceHostReads, TrainerReadsTwicePerStepBesidesTheModel) {
  data::SyntheticCorpus corpus(3, 20000, 4000);
  for (const char* kind : {"dense", "mod"}) {
    auto m = make(kind, Device::guarded());
    train::TrainOptions o;
    o.steps = 3, o.batch = 2, o.block = 10, o.warmup = 1, o.eval_every = 0, o.eval_batches = 1;
    train::Trainer t(*m, corpus, o);
    std::vector<uint64_t> at;  // copies to the host at each step's callback
    t.run([&](const train::StepLog&) { at.push_back(guarded::counters().copies_to_host); });
    ASSERT_EQ(at.size(), 3u);
    EXPECT_EQ(at[2] - at[1], 2u) << kind;
    EXPECT_EQ(at[1] - at[0], 2u) << kind;
  }
}

}  // namespace
