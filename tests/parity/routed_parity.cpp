// Parity of the routed models with their PyTorch references (bench/
// torch_models.py: TorchMoD, TorchMoB, TorchMoE), f64: the same weights and
// batch must give the same training objective, the same gradient for every
// parameter and, for MoB, the same route for every token (block per step,
// halting step), for MoE the same expert for every assignment (and the same
// ones dropped).
// The reference files come from tests/parity/make_routed_reference.py, which
// tests/parity/run_routed_parity.sh runs (with Debian's /usr/bin/python3)
// before this binary, passing their directory in DG_ROUTED_REFERENCE_DIR.
// Tolerances are those of the dense f64 parity test (tests/test_gpt_parity.cpp).
#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <filesystem>

#include "models/factory.h"
#include "models/mob.h"
#include "models/moe.h"
#include "nn/safetensors.h"

using namespace dg;

namespace {

constexpr double kAtol = 1e-12, kRtol = 1e-10;

// max |a - b| and how many elements are outside kAtol + kRtol * |b|.
std::pair<double, int64_t> compare(const Tensor& a, const Tensor& b) {
  std::vector<double> x = a.to_vector<double>(), y = b.to_vector<double>();
  if (x.size() != y.size()) return {INFINITY, static_cast<int64_t>(std::max(x.size(), y.size()))};
  double m = 0;
  int64_t bad = 0;
  for (size_t i = 0; i < x.size(); ++i) {
    const double d = std::abs(x[i] - y[i]);
    m = std::max(m, d);
    bad += !(d <= kAtol + kRtol * std::abs(y[i]));
  }
  return {m, bad};
}

std::string reference_dir() {
  const char* dir = std::getenv("DG_ROUTED_REFERENCE_DIR");
  return dir ? dir : "";
}

void run_case(const std::string& name) {
  const std::string dir = reference_dir();
  if (dir.empty()) GTEST_SKIP() << "DG_ROUTED_REFERENCE_DIR is not set (run tests/parity/run_routed_parity.sh)";
  const std::string path = dir + "/routed_reference_" + name + ".safetensors";
  ASSERT_TRUE(std::filesystem::exists(path)) << path << " is missing: make_routed_reference.py did not write it";
  nn::TensorFile ref = nn::load_safetensors(path);
  const std::string kind = ref.metadata.at("model_kind");
  auto model = models::make_model(kind, ref.metadata.at("model_config"));
  std::map<std::string, Tensor> init;
  for (auto& [key, t] : ref.tensors)
    if (key.rfind("param.", 0) == 0) init.emplace(key.substr(6), t);
  model->load_state_dict(init);  // strict: every name on both sides
  model->train();
  models::LossOutput out = model->loss(ref.tensors.at("x"), ref.tensors.at("y"));
  out.objective.backward();

  auto [dobj, badobj] = compare(out.objective, ref.tensors.at("objective"));
  fmt::print("  {:<12} objective {:.12f}  max|diff| {:.3e}\n", name, out.objective.item<double>(), dobj);
  EXPECT_EQ(badobj, 0) << name << ": objective differs by " << dobj;
  auto [dlm, badlm] = compare(out.lm, ref.tensors.at("lm"));
  EXPECT_EQ(badlm, 0) << name << ": LM loss differs by " << dlm;

  double worst = 0;
  std::string worst_name;
  for (auto& [pname, p] : model->named_parameters()) {
    ASSERT_TRUE(p.grad().defined()) << name << ": " << pname << " got no gradient";
    auto [d, bad] = compare(p.grad(), ref.tensors.at("grad." + pname));
    if (d >= worst) worst = d, worst_name = pname;
    EXPECT_EQ(bad, 0) << name << ": grad." << pname << " differs by up to " << d;
  }
  fmt::print("  {:<12} worst gradient max|diff| {:.3e} ({})\n", name, worst, worst_name);

  if (kind == "mob") {
    auto& mob = dynamic_cast<models::MoB&>(*model);
    const models::RoutingTrace& tr = mob.last_trace();
    const Tensor& want_t = ref.tensors.at("route.paths");
    const int64_t N = tr.B * tr.T, D1 = tr.max_depth + 1;
    ASSERT_EQ(want_t.shape(), (Shape{N, D1}));
    std::vector<int64_t> want = want_t.to_vector<int64_t>();
    int64_t differing = 0, depth_sum = 0;
    for (int64_t i = 0; i < N; ++i) {
      std::vector<int64_t> got(D1, -2);
      for (const models::TraceStep& s : tr.tokens[i]) got[s.step] = s.block;
      depth_sum += tr.depth(i);
      differing += !std::equal(got.begin(), got.end(), want.begin() + i * D1);
    }
    fmt::print("  {:<12} routes differing: {} of {} tokens, mean depth {:.3f}\n", name, differing, N,
               static_cast<double>(depth_sum) / static_cast<double>(N));
    EXPECT_EQ(differing, 0) << name << ": tokens routed differently from PyTorch";
  }
  if (kind == "moe") {
    const std::vector<models::MoERoutes>& routes = dynamic_cast<models::MoE&>(*model).last_routes();
    std::vector<int64_t> got;
    int64_t dropped = 0;
    for (const models::MoERoutes& r : routes)
      for (size_t a = 0; a < r.choice.size(); ++a) got.push_back(r.kept[a] ? r.choice[a] : -1), dropped += !r.kept[a];
    const Tensor& want = ref.tensors.at("route.experts");
    ASSERT_EQ(want.numel(), static_cast<int64_t>(got.size()));
    const std::vector<int64_t> w = want.to_vector<int64_t>();
    int64_t differing = 0;
    for (size_t i = 0; i < got.size(); ++i) differing += got[i] != w[i];
    fmt::print("  {:<12} assignments differing: {} of {}, {} dropped\n", name, differing, got.size(), dropped);
    EXPECT_EQ(differing, 0) << name << ": assignments routed differently from PyTorch";
  }
}

}  // namespace

TEST(RoutedParity, MoDMatchesPyTorchInF64) { run_case("mod"); }
TEST(RoutedParity, MoBStepScopeMatchesPyTorchInF64) { run_case("mob_step"); }
TEST(RoutedParity, MoBBlockScopeStraightThroughMatchesPyTorchInF64) { run_case("mob_block"); }
TEST(RoutedParity, MoETop1DroplessMatchesPyTorchInF64) { run_case("moe_top1"); }
TEST(RoutedParity, MoETop2WithDropsMatchesPyTorchInF64) { run_case("moe_top2"); }
