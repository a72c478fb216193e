// Every op family on every device (tests/devices.h): the CPU, the guarded test
// device (CPU kernels on memory the host cannot touch, so a host dereference
// above tensor/ crashes), and CUDA when there is a GPU (skipped otherwise).
// Each case is described once (inputs made on a device, and a function) and
// checked three ways per device: forward against the CPU, gradients against
// the CPU's, and gradcheck on the device itself. Guarded results must be
// bitwise equal to the CPU's (the same kernels); CUDA's close (f64 inputs:
// 1e-10 relative). nn layers, optimizers, Module::to and checkpoints on
// devices: tests/test_devices_nn.cpp.
#include <functional>

#include "devices.h"
#include "nn/loss.h"

namespace dg {
namespace {

using testing::DeviceTest;
using testing::expect_match;
using testing::index_on;
using testing::leaf;

// One op family's sample: inputs made on a device, and the function under test.
struct OpCase {
  std::string name;
  std::function<Tensors(Device)> inputs;
  DiffFn fn;
  bool second_order = false;  // also gradgradcheck (backwards written with ops)
};

std::vector<OpCase> op_cases() {
  std::vector<OpCase> cases;
  cases.push_back({"elementwise", [](Device d) { return Tensors{leaf({3, 4}, 1, d, 0.1, 1.0)}; },
                   [](const Tensors& x) {
                     const Tensor& a = x[0];
                     return tanh(a) * exp(a) + sigmoid(a) - log(a) + sqrt(a) * gelu(a) + silu(a) / (abs(a) + 1.0) +
                            pow(a, 3.0) + relu(a) + clamp(a, 0.2, 0.8) + rsqrt(a) + square(neg(a));
                   },
                   true});
  cases.push_back({"broadcasting",
                   [](Device d) { return Tensors{leaf({3, 1, 4}, 2, d), leaf({2, 4}, 3, d), leaf({4}, 4, d, 0.5, 1.5)}; },
                   [](const Tensors& x) {
                     return maximum(x[0] * x[1], x[1] - x[2]) + x[0] / x[2] + minimum(x[0], x[2]) +
                            where(gt(x[0], 0.0), x[1], x[2]) + pow(x[2], x[2]) + (2.0 - x[0]) * 3.0;
                   }});
  cases.push_back({"reductions", [](Device d) { return Tensors{leaf({3, 4, 5}, 5, d)}; },
                   [](const Tensors& x) {
                     const Tensor& a = x[0];
                     return sum(a, {1}) * 0.5 + mean(a, {1}) + max(a, 1).values + min(a, 1).values +
                            logsumexp(a, {1}) + var(a, {1}) + sum(a) + max(a) + sum(mean(a, {0, 2}, true));
                   }});
  cases.push_back({"matmul",
                   [](Device d) {
                     return Tensors{leaf({2, 3, 4}, 6, d), leaf({4, 5}, 7, d), leaf({5, 4}, 8, d), leaf({5}, 9, d)};
                   },
                   [](const Tensors& x) {
                     // (2,3,4)@(4,5), linear to (2,3,5), and a batched x^T x summed to a scalar.
                     return matmul(x[0], x[1]) + linear(x[0], x[2], x[3]) + sum(matmul(transpose(x[0], 1, 2), x[0]));
                   },
                   true});
  cases.push_back({"views", [](Device d) { return Tensors{leaf({2, 3, 4}, 10, d), leaf({4, 2}, 11, d)}; },
                   [](const Tensors& x) {
                     const Tensor& a = x[0];
                     Tensor t = transpose(reshape(a, {6, 4}), 0, 1);                       // (4, 6), strided
                     Tensor c = cat({slice(t, 1, 0, 6, 2), narrow(t, 1, 1, 2), x[1]}, 1);  // (4, 7)
                     Tensor st = stack(split(c, 2, 0), 0);                                 // (2, 2, 7)
                     Tensor e = expand(unsqueeze(select(a, 0, 1), 0), {2, 3, 4});
                     return cat({flatten(st), flatten(e), flatten(contiguous(permute(a, {2, 0, 1}))),
                                 flatten(squeeze(view(x[1], {1, 4, 2}), 0)), flatten(clone(a))},
                                0);
                   }});
  cases.push_back({"indexing",
                   [](Device d) {
                     return Tensors{leaf({5, 3}, 12, d),
                                    leaf({2, 3}, 13, d),
                                    leaf({5, 2}, 14, d),
                                    index_on({4, 1}, {2}, d),
                                    index_on({2, 0, 2, 1, 1, 0, 0, 0, 2, 2}, {5, 2}, d),
                                    index_on({2, 0, 4, 1, 3}, {5}, d),  // a permutation
                                    index_on({0, 4, 4, 2}, {2, 2}, d)};
                   },
                   [](const Tensors& x) {
                     const Tensor &w = x[0], &src = x[1], &src2 = x[2], &rows = x[3], &cols = x[4], &perm = x[5],
                                  &tok = x[6];
                     Tensor mask = gt(select(w, 1, 0), 0.0);  // (5) bool, made on the device
                     return cat({flatten(index_select(w, 0, rows)), flatten(index_select(w, 0, perm)),
                                 flatten(index_add(w, 0, rows, src, 0.5)), flatten(gather(w, 1, cols)),
                                 flatten(scatter_add(w, 1, cols, src2)), flatten(embedding(w, tok)),
                                 flatten(masked_fill(w, unsqueeze(mask, 1), 2.0)), flatten(topk(w, 2, 1).values)},
                                0);
                   },
                   true});
  cases.push_back({"routing",
                   [](Device d) {
                     return Tensors{leaf({6, 4}, 15, d), leaf({3, 4}, 16, d), leaf({3, 4}, 17, d), leaf({3}, 18, d),
                                    leaf({4}, 19, d),    leaf({4}, 20, d),    leaf({4}, 21, d)};
                   },
                   [](const Tensors& x) {
                     const std::vector<int64_t> offsets{0, 2, 2, 6};  // groups of 2, 0 and 4 rows
                     Tensor y = grouped_linear(x[0], offsets, {x[1], x[2], x[2]}, {x[3], Tensor(), x[3]});
                     Tensor z = grouped_layer_norm(x[0], offsets, {x[4], x[4], x[5]}, {x[6], x[6], x[6]});
                     return cat({flatten(y), flatten(z)}, 0);
                   }});
  cases.push_back({"softmax", [](Device d) { return Tensors{leaf({3, 5}, 22, d, -3, 3)}; },
                   [](const Tensors& x) {
                     return softmax(x[0], -1) + log_softmax(x[0], 1) + transpose(softmax(transpose(x[0], 0, 1), 0), 0, 1);
                   }});  // fused backward: no second order
  cases.push_back({"norms", [](Device d) { return Tensors{leaf({4, 6}, 23, d), leaf({6}, 24, d), leaf({6}, 25, d)}; },
                   [](const Tensors& x) { return layer_norm(x[0], x[1], x[2]) + rms_norm(x[0], x[1]) * 0.5; }});
  cases.push_back({"losses",
                   [](Device d) {
                     return Tensors{leaf({6, 5}, 26, d, -2, 2), index_on({0, 4, -100, 2, 1, 3}, {6}, d),
                                    leaf({6, 5}, 27, d, 0, 1)};
                   },
                   [](const Tensors& x) {
                     Tensor ce = cross_entropy(x[0], x[1], -100, 0.1);
                     Tensor ce_rows = cross_entropy(x[0], x[1], -100, 0.0, Reduction::none);
                     return stack({ce, sum(ce_rows), nn::mse_loss(x[0], x[2]), nn::bce_with_logits(x[0], x[2])}, 0);
                   },
                   true});
  cases.push_back({"attention_dense",
                   [](Device d) { return Tensors{leaf({1, 2, 4, 3}, 28, d), leaf({1, 2, 4, 3}, 29, d), leaf({1, 2, 4, 3}, 30, d)}; },
                   [](const Tensors& x) {
                     return scaled_dot_product_attention(x[0], x[1], x[2], true) +
                            scaled_dot_product_attention(x[0], x[1], x[2], false, 0.7);
                   }});
  cases.push_back({"attention_varlen",
                   [](Device d) {
                     return Tensors{leaf({2, 5, 3}, 31, d), leaf({2, 5, 3}, 32, d), leaf({2, 5, 3}, 33, d),
                                    index_on({0, 2, 2, 5}, {4}, d)};
                   },
                   [](const Tensors& x) { return attention_varlen(x[0], x[1], x[2], x[3]); }});
  cases.push_back({"attention_qkv",
                   [](Device d) {
                     return Tensors{leaf({2, 3, 12}, 34, d), leaf({5, 12}, 35, d), index_on({0, 2, 2, 5}, {4}, d)};
                   },
                   [](const Tensors& x) {
                     return cat({flatten(attention_qkv(x[0], 2)), flatten(attention_qkv(x[1], 2, x[2]))}, 0);
                   }});
  cases.push_back({"attention_qkv_rows",
                   [](Device d) { return Tensors{leaf({5, 12}, 37, d), index_on({0, 2, 2, 5}, {4}, d), index_on({3, 0, 4, 1, 2}, {5}, d)}; },
                   [](const Tensors& x) { return attention_qkv_rows(x[0], 2, x[1], x[2]); }});
  cases.push_back({"dropout", [](Device d) { return Tensors{leaf({4, 8}, 36, d)}; },
                   [](const Tensors& x) {
                     Generator gen(7);  // the same mask on every device (counter-based RNG)
                     return dropout(x[0], 0.3, true, &gen);
                   }});
  return cases;
}

Tensors inputs_requiring_grad(const Tensors& in) {
  Tensors out;
  for (const Tensor& t : in)
    if (t.requires_grad()) out.push_back(t);
  return out;
}

class DeviceOps : public DeviceTest {};

TEST_P(DeviceOps, ForwardMatchesCpu) {
  for (const OpCase& c : op_cases()) {
    SCOPED_TRACE(c.name);
    expect_match(c.fn(c.inputs(device())), c.fn(c.inputs(Device::cpu())), device(), c.name);
  }
}

// d (w · f(x)) / d x for a fixed random w, on the device and on the CPU.
TEST_P(DeviceOps, GradientsMatchCpu) {
  for (const OpCase& c : op_cases()) {
    SCOPED_TRACE(c.name);
    auto grads = [&](Device d) {
      Tensors in = c.inputs(d);
      Tensor out = c.fn(in);
      Generator gen(3);
      Tensor w = randn(out.shape(), {DType::f64, d}, &gen);
      return grad({out}, inputs_requiring_grad(in), {w});
    };
    Tensors got = grads(device()), want = grads(Device::cpu());
    ASSERT_EQ(got.size(), want.size());
    for (size_t k = 0; k < got.size(); ++k) expect_match(got[k], want[k], device(), c.name + " grad " + std::to_string(k));
  }
}

TEST_P(DeviceOps, Gradcheck) {
  for (const OpCase& c : op_cases()) {
    SCOPED_TRACE(c.name);
    Tensors in = c.inputs(device());
    auto r = gradcheck(c.fn, in);
    EXPECT_TRUE(r.ok) << r.message;
    if (c.second_order) {
      auto r2 = gradgradcheck(c.fn, in);
      EXPECT_TRUE(r2.ok) << r2.message;
    }
  }
}

// In-place ops are not recorded; their results and version bumps are checked.
TEST_P(DeviceOps, InPlaceMatchesCpu) {
  auto run = [](Device d) {
    NoGradGuard no_grad;
    Tensor y = clone(testing::leaf({3, 4}, 40, d)), z = testing::leaf({3, 4}, 41, d).detach();
    const uint32_t v0 = y.version();
    add_(y, z, 2.0);
    mul_(y, 0.5);
    mul_(y, z);
    Tensor part = slice(y, 1, 1, 3);
    fill_(part, 0.25);
    Tensor row = select(y, 0, 2);
    copy_(row, from_vector<double>({1, 2, 3, 4}));  // from the host, whatever y's device
    EXPECT_EQ(y.version(), v0 + 5);
    return y;
  };
  expect_match(run(device()), run(Device::cpu()), device(), "in-place");
}

// Counter-based random fills give the same numbers on every device.
TEST_P(DeviceOps, RandomMatchesCpu) {
  auto draw = [](Device d) {
    Generator gen(9);
    return Tensors{rand({3, 5}, {DType::f32, d}, &gen), randn({7}, {DType::f64, d}, &gen),
                   bernoulli({4, 4}, 0.3, {DType::f32, d}, &gen), randint(-3, 40, {2, 9}, &gen, d)};
  };
  Tensors got = draw(device()), want = draw(Device::cpu());
  for (size_t k = 0; k < got.size(); ++k) expect_match(got[k], want[k], device(), "draw " + std::to_string(k));
}

INSTANTIATE_TEST_SUITE_P(Devices, DeviceOps, ::testing::ValuesIn(testing::all_devices()), testing::device_test_name);

}  // namespace
}  // namespace dg
