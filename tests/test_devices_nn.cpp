// nn on every device (tests/devices.h): layers and AdamW steps against the
// CPU (bitwise on the guarded device), Module::to, optimizer state placement,
// checkpoints saved from a device (bytes equal to a CPU save), mixed-device
// errors, index checks on the device, and host-copy counts that prove index
// and target checks stay on the device.
#include <filesystem>
#include <fstream>
#include <iterator>

#include <unistd.h>

#include "devices.h"
#include "nn/block.h"
#include "nn/checkpoint.h"
#include "nn/layers.h"
#include "nn/loss.h"
#include "nn/optim.h"
#include "nn/safetensors.h"
#include "tensor/guarded_backend.h"

namespace dg {
namespace {

using testing::DeviceTest;
using testing::expect_match;
using testing::index_on;
using testing::leaf;

// A small network over every layer kind: embedding -> block (layer norms,
// fused attention, MLP, dropout) -> RMS norm -> linear head.
struct Net : nn::Module {
  std::shared_ptr<nn::Embedding> emb;
  std::shared_ptr<nn::Block> block;
  std::shared_ptr<nn::RMSNorm> norm;
  std::shared_ptr<nn::Linear> head;
  Net(DType dtype, Device device, double dropout = 0.0) {
    Generator gen(11);
    nn::LayerOptions opt{dtype, &gen, device};
    emb = register_module("emb", std::make_shared<nn::Embedding>(7, 8, opt));
    block = register_module("block", std::make_shared<nn::Block>(8, 2, dropout, opt));
    norm = register_module("norm", std::make_shared<nn::RMSNorm>(8, 1e-6, opt));
    head = register_module("head", std::make_shared<nn::Linear>(8, 7, true, opt));
  }
  // tokens (B, T) -> logits (B, T, 7)
  Tensor forward(const Tensor& tokens) const { return head->forward(norm->forward(block->forward(emb->forward(tokens)))); }
  Tensor loss(const Tensor& tokens, const Tensor& targets) const { return cross_entropy(forward(tokens), targets); }
};

Tensor tokens_on(Device d) { return index_on({1, 2, 3, 4, 5, 6, 0, 1}, {2, 4}, d); }
Tensor targets_on(Device d) { return index_on({2, 3, 4, 5, 6, 0, -100, 2}, {2, 4}, d); }

class DeviceNN : public DeviceTest {};

TEST_P(DeviceNN, LayersMatchCpu) {
  Net net(DType::f64, device()), ref(DType::f64, Device::cpu());
  for (const auto& [name, p] : net.named_parameters()) EXPECT_EQ(p.device(), device()) << name;
  Tensor loss = net.loss(tokens_on(device()), targets_on(device()));
  Tensor ref_loss = ref.loss(tokens_on(Device::cpu()), targets_on(Device::cpu()));
  expect_match(net.forward(tokens_on(device())), ref.forward(tokens_on(Device::cpu())), device(), "logits");
  expect_match(loss, ref_loss, device(), "loss");
  loss.backward();
  ref_loss.backward();
  auto mine = net.named_parameters(), theirs = ref.named_parameters();
  ASSERT_EQ(mine.size(), theirs.size());
  for (size_t i = 0; i < mine.size(); ++i) expect_match(mine[i].second.grad(), theirs[i].second.grad(), device(), mine[i].first);
}

TEST_P(DeviceNN, ParamGradcheckThroughTheNet) {
  Net net(DType::f64, device());
  Tensor tokens = tokens_on(device()), targets = targets_on(device());
  // The head's bias and the RMS norm's weight: every layer's backward lies on their path.
  EXPECT_TRUE(testing::param_gradcheck([&] { return net.loss(tokens, targets); }, net.head->bias));
  EXPECT_TRUE(testing::param_gradcheck([&] { return net.loss(tokens, targets); }, net.norm->weight));
}

// Three AdamW steps (with dropout and clipping) from the same weights and batch.
TEST_P(DeviceNN, AdamWStepsMatchCpu) {
  auto train = [](Device d) {
    auto net = std::make_shared<Net>(DType::f32, d, 0.1);
    nn::AdamW opt(nn::decay_groups(net->parameters(), 0.1), 1e-2);
    Generator drop_gen(5);
    net->block->drop->gen = &drop_gen;
    for (int step = 0; step < 3; ++step) {
      opt.zero_grad();
      net->loss(tokens_on(d), targets_on(d)).backward();
      nn::clip_grad_norm(net->parameters(), 0.5);
      opt.step();
    }
    for (const auto& [key, t] : opt.state_dict()) {
      const bool counter = key == "step" || key.ends_with(".step");
      EXPECT_EQ(t.device(), counter ? Device::cpu() : d) << key;  // state lives with its parameter
    }
    net->block->drop->gen = nullptr;
    return net;
  };
  auto net = train(device()), ref = train(Device::cpu());
  auto mine = net->named_parameters(), theirs = ref->named_parameters();
  for (size_t i = 0; i < mine.size(); ++i) expect_match(mine[i].second, theirs[i].second, device(), mine[i].first);
}

INSTANTIATE_TEST_SUITE_P(Devices, DeviceNN, ::testing::ValuesIn(testing::all_devices()), testing::device_test_name);

// ---------------------------------------------------------------- guarded only

TEST(DevicesGuarded, MixedDevicesAreErrorsNamingOpAndDevices) {
  Tensor a = randn({2, 3}), b = randn({2, 3}, {.device = Device::guarded()});
  EXPECT_DG_ERROR(add(a, b), "add: tensors on different devices: cpu and guarded:0");
  EXPECT_DG_ERROR(matmul(a, transpose(b, 0, 1)), "matmul: tensors on different devices: cpu and guarded:0");
  EXPECT_DG_ERROR(cat({a, b}, 0), "cat", "different devices", "cpu", "guarded:0");
  EXPECT_DG_ERROR(where(gt(a, 0.0), a, b), "where", "different devices");
  EXPECT_DG_ERROR(index_select(b, 0, index_on({0}, {1}, Device::cpu())), "index_select: tensors on different devices");
  EXPECT_DG_ERROR(cross_entropy(b, index_on({0, 1}, {2}, Device::cpu())), "cross_entropy: tensors on different devices");
  EXPECT_DG_ERROR(layer_norm(b, ones({3}), Tensor()), "layer_norm", "different devices");
  Tensor x = randn({3}, {.device = Device::guarded()}).set_requires_grad();
  Tensor y = mul(x, 2.0);
  EXPECT_DG_ERROR(y.backward(ones({3})), "tensors on different devices: cpu and guarded:0");
}

TEST(DevicesGuarded, ToIsDifferentiableAndGoesBackToTheSourceDevice) {
  Tensor x = testing::rand_input({2, 3}, 1);
  EXPECT_TRUE(x.to(Device::cpu()).is_same(x));  // same device: the same tensor
  Tensor y = x.to(Device::guarded());
  EXPECT_EQ(y.device(), Device::guarded());
  sum(mul(y, y)).backward();
  ASSERT_TRUE(x.grad().defined());
  EXPECT_EQ(x.grad().device(), Device::cpu());
  testing::expect_values(x.grad(), mul(x, 2.0).to_vector<double>(), 0);
  auto r = gradcheck([](const Tensors& in) { return to(mul(to(in[0], Device::guarded()), 3.0), Device::cpu()); }, {x});
  EXPECT_TRUE(r.ok) << r.message;
}

TEST(DevicesGuarded, ModuleToMovesInPlaceAndBack) {
  Net net(DType::f32, Device::cpu());
  std::vector<Tensor> handles = net.parameters();
  std::vector<std::vector<float>> before;
  for (const Tensor& p : handles) before.push_back(p.to_vector<float>());
  nn::AdamW opt(handles, 1e-2);
  net.loss(tokens_on(Device::cpu()), targets_on(Device::cpu())).backward();
  opt.step();  // state on the CPU
  Tensor stale = sum(net.head->forward(randn({8})));  // a graph saving the head's weight
  EXPECT_EQ(&net.to(Device::guarded()), &net);
  std::vector<Tensor> moved = net.parameters();
  for (size_t i = 0; i < handles.size(); ++i) {
    EXPECT_TRUE(moved[i].is_same(handles[i]));  // the optimizer's handles see the move
    EXPECT_EQ(handles[i].device(), Device::guarded());
    EXPECT_FALSE(handles[i].grad().defined());  // grads dropped
    EXPECT_TRUE(handles[i].requires_grad() && handles[i].is_leaf());
  }
  EXPECT_THROW(stale.backward(), Error);  // versions bumped: the old graph refuses

  // A step on the guarded device moves the optimizer's state there.
  std::vector<std::vector<float>> after_cpu_step;
  for (const Tensor& p : handles) after_cpu_step.push_back(p.to_vector<float>());
  opt.zero_grad();
  net.loss(tokens_on(Device::guarded()), targets_on(Device::guarded())).backward();
  opt.step();
  for (const auto& [key, t] : opt.state_dict())
    if (key.ends_with("exp_avg") || key.ends_with("exp_avg_sq")) {
      EXPECT_EQ(t.device(), Device::guarded()) << key;
    }

  // And back: the values read on the CPU equal those read on the device.
  std::vector<std::vector<float>> on_device;
  for (const Tensor& p : handles) on_device.push_back(p.to_vector<float>());
  net.to(Device::cpu());
  for (size_t i = 0; i < handles.size(); ++i) {
    EXPECT_EQ(handles[i].device(), Device::cpu());
    EXPECT_EQ(handles[i].to_vector<float>(), on_device[i]);
    EXPECT_NE(on_device[i], after_cpu_step[i]);  // the guarded step changed something
  }
}

std::string file_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

TEST(DevicesGuarded, CheckpointSavedOnGuardedEqualsCpuSaveAndLoadsOntoTheDevice) {
  const auto dir = std::filesystem::temp_directory_path() / ("dg_devices_" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  const std::string cpu_path = (dir / "cpu.safetensors").string(), dev_path = (dir / "guarded.safetensors").string();
  Net cpu_net(DType::f32, Device::cpu()), dev_net(DType::f32, Device::guarded());
  nn::save_checkpoint(cpu_path, cpu_net, nullptr, 3);
  nn::save_checkpoint(dev_path, dev_net, nullptr, 3);
  const std::string a = file_bytes(cpu_path), b = file_bytes(dev_path);
  EXPECT_GT(a.size(), 1000u);
  EXPECT_EQ(a, b);

  // Loads onto the module's device.
  Net other(DType::f32, Device::guarded());
  for (Tensor& p : other.parameters()) {
    NoGradGuard ng;
    zero_(p);
  }
  nn::load_checkpoint(cpu_path, other, nullptr);
  auto want = cpu_net.named_parameters(), got = other.named_parameters();
  for (size_t i = 0; i < got.size(); ++i) {
    EXPECT_EQ(got[i].second.device(), Device::guarded());
    expect_match(got[i].second, want[i].second, Device::guarded(), got[i].first);
  }
  std::filesystem::remove_all(dir);
}

TEST(DevicesGuarded, IndexChecksRunOnTheDeviceWithTheCpuMessages) {
  const Device g = Device::guarded();
  Tensor x = randn({5, 3}, {.device = g});
  EXPECT_DG_ERROR(index_select(x, 0, index_on({1, 7}, {2}, g)), "index_select",
                  "index 7 out of range for dim 0 of size 5", "[5, 3]");
  EXPECT_DG_ERROR(index_select(x, 1, index_on({-1}, {1}, g)), "index -1 out of range for dim 1 of size 3");
  EXPECT_DG_ERROR(gather(x, 1, index_on({0, 3}, {1, 2}, g)), "gather", "index 3 out of range for dim 1 of size 3");
  EXPECT_DG_ERROR(embedding(x, index_on({0, 5}, {1, 2}, g)), "embedding", "index 5 out of range for dim 0 of size 5");
  EXPECT_DG_ERROR(cross_entropy(x, index_on({0, 5, 1, 1, 2}, {5}, g)), "cross_entropy",
                  "target 5 out of range for 3 classes");
  EXPECT_DG_ERROR(cross_entropy(x, index_on({0, 1, 1, 1, -100}, {5}, g), 2), "target -100 out of range for 3 classes");
  // The first bad value in row-major order of a strided index.
  Tensor strided = transpose(index_on({0, 1, 9, 2, 8, 0}, {2, 3}, g), 0, 1);  // rows [0, 2], [1, 8], [9, 0]
  EXPECT_DG_ERROR(gather(randn({3, 9}, {.device = g}), 1, strided), "index 9 out of range");
}

// The rule "index and target checks do not copy to the host", counted.
TEST(DevicesGuarded, IndexAndLossOpsMakeNoHostCopies) {
  const Device g = Device::guarded();
  Tensor w = randn({6, 4}, {.device = g}).set_requires_grad();
  Tensor idx = index_on({5, 0, 0, 3}, {4}, g), perm = index_on({1, 0, 2, 3, 5, 4}, {6}, g);
  Tensor targets = index_on({1, -100, 3, 0}, {4}, g);
  const auto before = guarded::counters();
  Tensor cols = index_on({0, 3, 1, 2, 0, 3}, {6, 1}, g);
  Tensor picked = index_select(w, 0, idx) + sum(index_select(w, 0, perm), {0}, true) + embedding(w, idx);
  Tensor loss = cross_entropy(picked, targets) + sum(gather(w, 1, cols)) + sum(scatter_add(w, 1, cols, gather(w, 1, cols)));
  loss.backward();
  const auto after = guarded::counters();
  EXPECT_EQ(after.copies_to_host, before.copies_to_host);
  EXPECT_GT(after.kernels, before.kernels);
  EXPECT_EQ(w.grad().device(), g);
}

// A whole training step of the net on the guarded device: no host reads
// except clip_grad_norm's one (the norm is returned to the caller).
TEST(DevicesGuarded, TrainingStepHostReads) {
  const Device g = Device::guarded();
  Net net(DType::f32, g, 0.1);
  nn::AdamW opt(net.parameters(), 1e-3);
  Tensor tokens = tokens_on(g), targets = targets_on(g);
  auto before = guarded::counters();
  net.loss(tokens, targets).backward();
  opt.step();
  EXPECT_EQ(guarded::counters().copies_to_host, before.copies_to_host);
  before = guarded::counters();
  nn::clip_grad_norm(net.parameters(), 1.0);
  EXPECT_EQ(guarded::counters().copies_to_host, before.copies_to_host + 1);
}

}  // namespace
}  // namespace dg
