// fashion_mnist: a multilayer perceptron on Fashion-MNIST (the idx files of
// Debian's dataset-fashion-mnist package), trained with AdamW; prints the
// test accuracy after every epoch.
//
//   fashion_mnist                       # 784-256-128-10, 8 epochs, batch 128
//   fashion_mnist --epochs 8 --hidden 512
//
// Legend: N = images, B = batch, 784 = 28 x 28 pixels in [0, 1], 10 classes.
#include <CLI/CLI.hpp>
#include <chrono>
#include <cmath>

#include "autograd/ops.h"
#include "data/fashion_mnist.h"
#include "examples/device_flag.h"
#include "nn/init.h"
#include "nn/layers.h"
#include "nn/optim.h"

using namespace dg;

namespace {

struct MLP : nn::Module {
  std::shared_ptr<nn::Linear> fc1, fc2, out;
  MLP(int64_t hidden, Generator* gen) {
    nn::LayerOptions o{DType::f32, gen};
    fc1 = register_module("fc1", std::make_shared<nn::Linear>(784, hidden, true, o));
    fc2 = register_module("fc2", std::make_shared<nn::Linear>(hidden, hidden / 2, true, o));
    out = register_module("out", std::make_shared<nn::Linear>(hidden / 2, 10, true, o));
    for (auto* l : {fc1.get(), fc2.get(), out.get()}) nn::init::kaiming_uniform_(l->weight, 1.0, gen);
  }
  // x (B, 784) -> logits (B, 10)
  Tensor forward(const Tensor& x) const { return out->forward(relu(fc2->forward(relu(fc1->forward(x))))); }
};

double accuracy(const MLP& m, const data::FashionMnist& d) {
  NoGradGuard ng;
  std::vector<int64_t> pred = argmax(m.forward(d.images), 1).to_vector<int64_t>(), y = d.labels.to_vector<int64_t>();
  int64_t ok = 0;
  for (size_t i = 0; i < y.size(); ++i) ok += pred[i] == y[i];
  return static_cast<double>(ok) / static_cast<double>(y.size());
}

}  // namespace

int main(int argc, char** argv) {
  std::string dir = data::kFashionMnistDir;
  int64_t epochs = 8, batch = 128, hidden = 256;
  double lr = 2e-3;
  uint64_t seed = 0;
  std::string device = "cpu";
  CLI::App app{"Train an MLP on Fashion-MNIST."};
  examples::add_device_flag(app, device);
  app.add_option("--data", dir, "folder with the idx(.gz) files")->capture_default_str();
  app.add_option("--epochs", epochs, "passes over the 60000 training images")->check(CLI::PositiveNumber)->capture_default_str();
  app.add_option("--batch", batch, "images per step")->check(CLI::PositiveNumber)->capture_default_str();
  app.add_option("--hidden", hidden, "width of the first hidden layer (the second is half)")->check(CLI::Range(2, 8192))->capture_default_str();
  app.add_option("--lr", lr, "AdamW learning rate")->check(CLI::PositiveNumber)->capture_default_str();
  app.add_option("--seed", seed, "weights and shuffling")->capture_default_str();
  CLI11_PARSE(app, argc, argv);
  try {
    const Device d = examples::open_device(device);
    const auto t0 = std::chrono::steady_clock::now();
    data::FashionMnist train = data::load_fashion_mnist(dir, data::Split::train);
    data::FashionMnist test = data::load_fashion_mnist(dir, data::Split::val);
    for (data::FashionMnist* set : {&train, &test}) set->images = set->images.to(d), set->labels = set->labels.to(d);
    Generator gen(seed);
    MLP model(hidden, &gen);
    model.to(d);
    nn::AdamW opt(nn::decay_groups(model.parameters(), 1e-4), lr);
    const int64_t N = train.images.size(0), steps_per_epoch = N / batch;
    fmt::print("fashion_mnist: {} train / {} test images, MLP 784-{}-{}-10 ({} parameters)\n", N,
               test.images.size(0), hidden, hidden / 2, model.num_parameters());
    for (int64_t e = 0; e < epochs; ++e) {
      // A fresh permutation each epoch: the order of N uniform numbers.
      Tensor perm = topk(rand({N}, {DType::f32}, &gen), N, 0).indices.to(d);
      Tensor loss_sum = zeros({}, {DType::f32, d});  // on the device: read once per epoch
      for (int64_t s = 0; s < steps_per_epoch; ++s) {
        Tensor idx = slice(perm, 0, s * batch, (s + 1) * batch);
        opt.set_lr(lr * 0.5 * (1.0 + std::cos(M_PI * static_cast<double>(e * steps_per_epoch + s) /
                                               static_cast<double>(epochs * steps_per_epoch))));
        opt.zero_grad();
        Tensor loss = cross_entropy(model.forward(index_select(train.images, 0, idx)),
                                    index_select(train.labels, 0, idx));
        loss.backward();
        opt.step();
        loss_sum = loss_sum + loss.detach();
      }
      const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      fmt::print("epoch {}  train loss {:.4f}  test accuracy {:.2f}%  ({:.1f} s)\n", e + 1,
                 loss_sum.item<double>() / static_cast<double>(steps_per_epoch), 100 * accuracy(model, test), secs);
    }
  } catch (const std::exception& e) {
    fmt::print(stderr, "fashion_mnist: {}\n", e.what());
    return 1;
  }
  return 0;
}
