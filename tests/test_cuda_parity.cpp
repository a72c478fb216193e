// CPU vs CUDA, op by op: every op family through the public ops API on the
// CPU and on cuda:0 from the same inputs (dg::to_device), forward outputs and
// the gradient of every input compared. Inputs include transposed, sliced and
// broadcast views and empty tensors. Without a GPU every test is skipped (see
// tests/cuda_parity.h; DG_PARITY_DEVICE=guarded checks the tests themselves).
//
// Tolerances (normwise relative: max|cuda - cpu| / max|cpu|, per tensor).
// f64: 1e-10 for every op. f32, per op family, and why the results may differ:
//   kExact        0      copies, views, comparisons, indices, random fills:
//                        the same values move, or the same Philox counters
//                        give the same bits (tensor/rng.h).
//   kElementwise  2e-6   the same functor (tensor/functors.h) on both sides,
//                        but nvcc contracts a*b+c into one FMA (one rounding
//                        fewer): a few f32 ulps (ulp = 6e-8 relative).
//   kReduction    1e-5   sums in a different order (tree per block + warp
//                        shuffles vs the CPU's sequential/OpenMP chunks):
//                        error ~ log2(n) to n ulps of sum|x|, n <= 33k here;
//                        also every broadcast operand's gradient (a sum).
//   kTranscend    1e-5   exp/log/tanh/erf: CUDA's expf, tanhf within 1-2 ulp,
//                        the CPU's vectorised versions within a few ulp; the
//                        backward of pow/gelu/sigmoid multiplies a few such.
//   kGemm         2e-5   cuBLAS (tiles, split-K) accumulates in another order
//                        than Eigen/OpenBLAS; K <= 96 here. TF32 stays off
//                        (the default; DG_TF32 must be unset for this test).
//   kAtomic       1e-5   index_add / scatter_add / embedding backward add
//                        with atomics: order of repeated indices varies run
//                        to run; same bound as a sum of the repeats.
//   kFused        3e-5   softmax, log-softmax, layer/RMS norm, cross-entropy:
//                        a reduction, exp and rsqrt chained; the backward
//                        reduces again.
//   kAttention    1e-4   online-softmax rescaling (never T x T), backward
//                        recomputes probabilities from the saved lse; GEMMs
//                        of T <= 64 rows in f32 chained twice.
//   kAdamW        2e-6   one fused elementwise update (sqrt, div) per step.
#include <functional>

#include "cuda_parity.h"

using namespace dg;
using dg::testing::close;

namespace {

constexpr double kF64 = 1e-10;
constexpr double kExact = 0, kElementwise = 2e-6, kReduction = 1e-5, kTranscend = 1e-5, kGemm = 2e-5,
                 kAtomic = 1e-5, kFused = 3e-5, kAttention = 1e-4, kAdamW = 2e-6;

// One op case: float inputs of the given shapes (U[-1, 1), or U[0.5, 2) when
// `positive`), non-differentiable extra inputs (indices, masks: made on the
// CPU, moved with the rest), and the ops to run. Outputs may be views.
struct OpCase {
  std::string name;
  std::vector<Shape> shapes;
  std::function<Tensors(const Tensors& in, const Tensors& aux)> run;
  double f32_tol;
  Tensors aux = {};
  bool positive = false;
};

Tensor ids(const std::vector<int64_t>& v, const Shape& shape = {}) { return from_vector<int64_t>(v, shape); }

bool is_float(const Tensor& t) { return t.dtype() == DType::f32 || t.dtype() == DType::f64; }

Tensors make_inputs(const OpCase& c, DType dt, uint64_t seed) {
  Generator g(seed);
  Tensors in;
  for (const Shape& s : c.shapes) {
    Tensor u = rand(s, {DType::f64}, &g);
    Tensor x = c.positive ? add(mul(u, 1.5), 0.5) : add(mul(u, 2.0), -1.0);
    in.push_back(to_dtype(x, dt).detach().set_requires_grad());
  }
  return in;
}

// Runs c on the CPU and on dev in dtype dt; expects equal outputs and input gradients.
void check_case(const OpCase& c, DType dt, Device dev) {
  SCOPED_TRACE(fmt::format("{} {} on {}", c.name, dt, dev));
  const double tol = dt == DType::f64 ? kF64 : c.f32_tol;
  Tensors in_cpu = make_inputs(c, dt, 17), in_dev, aux_dev;
  for (const Tensor& x : in_cpu) in_dev.push_back(to_device(x.detach(), dev).set_requires_grad());
  for (const Tensor& a : c.aux) aux_dev.push_back(to_device(a, dev));
  Tensors out_cpu = c.run(in_cpu, c.aux), out_dev = c.run(in_dev, aux_dev);
  ASSERT_EQ(out_cpu.size(), out_dev.size());
  // Loss = sum_k sum(out_k * w_k) with random weights w_k: every output
  // element gets its own upstream gradient.
  Generator g(99);
  Tensor loss_cpu, loss_dev;
  for (size_t k = 0; k < out_cpu.size(); ++k) {
    const bool floating = is_float(out_cpu[k]);
    EXPECT_EQ(out_dev[k].device(), dev) << "output " << k << " left the device";
    EXPECT_TRUE(close(out_dev[k], out_cpu[k], floating ? tol : kExact, fmt::format("output {}", k)));
    if (!floating || !out_cpu[k].requires_grad()) continue;
    Tensor w = randn(out_cpu[k].shape(), {dt}, &g);
    Tensor term_cpu = sum(mul(out_cpu[k], w)), term_dev = sum(mul(out_dev[k], to_device(w, dev)));
    loss_cpu = loss_cpu.defined() ? add(loss_cpu, term_cpu) : term_cpu;
    loss_dev = loss_dev.defined() ? add(loss_dev, term_dev) : term_dev;
  }
  if (!loss_cpu.defined()) return;
  loss_cpu.backward();
  loss_dev.backward();
  for (size_t i = 0; i < in_cpu.size(); ++i) {
    ASSERT_EQ(in_cpu[i].grad().defined(), in_dev[i].grad().defined()) << "input " << i;
    if (!in_cpu[i].grad().defined()) continue;
    EXPECT_EQ(in_dev[i].grad().device(), dev);
    EXPECT_TRUE(close(in_dev[i].grad(), in_cpu[i].grad(), tol, fmt::format("gradient of input {}", i)));
  }
}

void check_all(const std::vector<OpCase>& cases, Device dev) {
  for (const OpCase& c : cases)
    for (DType dt : {DType::f64, DType::f32}) check_case(c, dt, dev);
}

// A unary op on a contiguous input and on a transposed view of it.
OpCase unary_case(std::string name, std::function<Tensor(const Tensor&)> f, double tol, bool positive = false) {
  return {std::move(name), {{7, 33}},
          [f](const Tensors& in, const Tensors&) { return Tensors{f(in[0]), f(transpose(in[0], 0, 1))}; },
          tol, {}, positive};
}

// A binary op with broadcasting (4,1,6) op (5,1), and with a transposed left operand.
OpCase binary_case(std::string name, std::function<Tensor(const Tensor&, const Tensor&)> f, double tol,
                   bool positive = false) {
  return {std::move(name), {{4, 1, 6}, {5, 1}, {6, 5}, {5, 6}},
          [f](const Tensors& in, const Tensors&) {
            return Tensors{f(in[0], in[1]), f(transpose(in[2], 0, 1), in[3])};
          },
          tol, {}, positive};
}

}  // namespace

// The fixture skips every test without a GPU (tests/cuda_parity.h).
class CudaParity : public dg::testing::DeviceParity {};

TEST_F(CudaParity, UnaryOps) {
  check_all({unary_case("neg", [](const Tensor& x) { return neg(x); }, kElementwise),
             unary_case("exp", [](const Tensor& x) { return exp(x); }, kTranscend),
             unary_case("log", [](const Tensor& x) { return log(x); }, kTranscend, true),
             unary_case("sqrt", [](const Tensor& x) { return sqrt(x); }, kTranscend, true),
             unary_case("rsqrt", [](const Tensor& x) { return rsqrt(x); }, kTranscend, true),
             unary_case("abs", [](const Tensor& x) { return abs(x); }, kElementwise),
             unary_case("tanh", [](const Tensor& x) { return tanh(x); }, kTranscend),
             unary_case("sigmoid", [](const Tensor& x) { return sigmoid(x); }, kTranscend),
             unary_case("relu", [](const Tensor& x) { return relu(x); }, kElementwise),
             unary_case("gelu_tanh", [](const Tensor& x) { return gelu(x, true); }, kTranscend),
             unary_case("gelu_erf", [](const Tensor& x) { return gelu(x, false); }, kTranscend),
             unary_case("silu", [](const Tensor& x) { return silu(x); }, kTranscend),
             unary_case("square", [](const Tensor& x) { return square(x); }, kElementwise),
             unary_case("pow_scalar", [](const Tensor& x) { return pow(x, 2.5); }, kTranscend, true),
             unary_case("clamp", [](const Tensor& x) { return clamp(x, -0.3, 0.4); }, kElementwise)},
            dev);
}

TEST_F(CudaParity, BinaryOpsWithBroadcastAndStrides) {
  check_all({binary_case("add", [](const Tensor& a, const Tensor& b) { return add(a, b); }, kReduction),
             binary_case("sub", [](const Tensor& a, const Tensor& b) { return sub(a, b); }, kReduction),
             binary_case("mul", [](const Tensor& a, const Tensor& b) { return mul(a, b); }, kReduction),
             binary_case("div", [](const Tensor& a, const Tensor& b) { return div(a, b); }, kReduction, true),
             binary_case("pow", [](const Tensor& a, const Tensor& b) { return pow(a, b); }, kTranscend, true),
             binary_case("maximum", [](const Tensor& a, const Tensor& b) { return maximum(a, b); }, kReduction),
             binary_case("minimum", [](const Tensor& a, const Tensor& b) { return minimum(a, b); }, kReduction),
             binary_case("where", [](const Tensor& a, const Tensor& b) { return where(lt(a, b), a, b); },
                         kReduction),
             {"comparisons", {{4, 1, 6}, {5, 1}},
              [](const Tensors& in, const Tensors&) {
                const Tensor &a = in[0], &b = in[1];
                return Tensors{lt(a, b), le(a, b), gt(a, b), ge(a, b), ne(a, b), eq(a, a), gt(a, 0.1)};
              },
              kExact},
             {"scalar operands", {{9, 4}},
              [](const Tensors& in, const Tensors&) { return Tensors{add(in[0], 0.25), mul(in[0], -3.0)}; },
              kElementwise}},
            dev);
}

TEST_F(CudaParity, Reductions) {
  // (64, 513): several blocks per row and a ragged tail; the transposed view
  // reduces along the strided dim.
  check_all({{"sum",
              {{64, 513}},
              [](const Tensors& in, const Tensors&) {
                const Tensor& x = in[0];
                return Tensors{sum(x), sum(x, {1}), sum(x, {0}, true), sum(transpose(x, 0, 1), {1}), mean(x, {1})};
              },
              kReduction},
             {"max min arg",
              {{17, 129}},
              [](const Tensors& in, const Tensors&) {
                const Tensor& x = in[0];
                ValuesIndices mx = max(x, 1), mn = min(x, 0, true);
                return Tensors{mx.values, mx.indices, mn.values, mn.indices, argmax(x, 0),
                               argmin(transpose(x, 0, 1), 1), max(x), min(x)};
              },
              kReduction},
             {"logsumexp var",
              {{12, 300}},
              [](const Tensors& in, const Tensors&) {
                const Tensor& x = in[0];
                return Tensors{logsumexp(x, {1}), var(x, {1}), var(x, {}, false, 0)};
              },
              kFused}},
            dev);
}

TEST_F(CudaParity, ShapeOps) {
  check_all({{"views and copies",
              {{6, 8}, {3, 8}, {1, 8}},
              [](const Tensors& in, const Tensors&) {
                const Tensor &x = in[0], &y = in[1], &r = in[2];
                return Tensors{contiguous(permute(reshape(x, {2, 3, 8}), {2, 0, 1})),
                               clone(slice(x, 1, 1, 7, 2)),
                               mul(select(x, 0, 2), 2.0),
                               cat({x, y, transpose(transpose(y, 0, 1), 0, 1)}, 0),
                               stack({y, slice(x, 0, 0, 3)}, 1),
                               split(x, 4, 1)[1] * 1.0,
                               contiguous(expand(r, {5, 8}))};
              },
              kReduction}},
            dev);
}

TEST_F(CudaParity, MatmulShapesAndTransposes) {
  check_all({{"2-D", {{33, 47}, {47, 29}},
              [](const Tensors& in, const Tensors&) { return Tensors{matmul(in[0], in[1])}; }, kGemm},
             {"transposed operands", {{47, 33}, {29, 47}},
              [](const Tensors& in, const Tensors&) {
                return Tensors{matmul(transpose(in[0], 0, 1), transpose(in[1], 0, 1))};
              },
              kGemm},
             {"batched broadcast", {{3, 1, 8, 16}, {4, 16, 5}},
              [](const Tensors& in, const Tensors&) { return Tensors{matmul(in[0], in[1])}; }, kGemm},
             {"vector", {{16}, {16, 7}, {96}},
              [](const Tensors& in, const Tensors&) {
                return Tensors{matmul(in[0], in[1]), matmul(in[2], in[2])};
              },
              kGemm},
             {"linear", {{2, 5, 24}, {10, 24}, {10}},
              [](const Tensors& in, const Tensors&) {
                return Tensors{linear(in[0], in[1], in[2]), linear(in[0], in[1])};
              },
              kGemm},
             {"grouped linear", {{9, 12}, {6, 12}, {6}, {6, 12}, {6}},
              [](const Tensors& in, const Tensors&) {
                return Tensors{grouped_linear(in[0], {0, 4, 4, 9}, {in[1], in[3], in[1]}, {in[2], in[4], in[2]})};
              },
              kGemm}},
            dev);
}

TEST_F(CudaParity, IndexingAndRouting) {
  Tensor rows = ids({3, 0, 3, 5, 1}, {5});  // repeats: the backward adds them (atomics on CUDA)
  Tensor gidx = ids({0, 2, 2, 1, 0, 0, 1, 2, 3, 3, 3, 0}, {4, 3});
  Tensor tokens = ids({1, 4, 4, 0, 2, 4}, {2, 3});
  Tensor mask = from_vector<bool>({true, false, false, true, true, false}, {2, 3});
  check_all({{"index_select", {{6, 7}, {4, 6}},
              [](const Tensors& in, const Tensors& aux) {
                return Tensors{index_select(in[0], 0, aux[0]), index_select(in[1], 1, aux[0])};
              },
              kAtomic, {rows}},
             {"index_add", {{6, 7}, {5, 7}},
              [](const Tensors& in, const Tensors& aux) { return Tensors{index_add(in[0], 0, aux[0], in[1], 0.5)}; },
              kAtomic, {rows}},
             {"gather scatter_add", {{4, 5}, {4, 3}},
              [](const Tensors& in, const Tensors& aux) {
                return Tensors{gather(in[0], 1, aux[0]), scatter_add(in[0], 1, aux[0], in[1])};
              },
              kAtomic, {gidx}},
             {"embedding", {{5, 8}},
              [](const Tensors& in, const Tensors& aux) { return Tensors{embedding(in[0], aux[0])}; }, kAtomic,
              {tokens}},
             {"masked_fill", {{2, 3}},
              [](const Tensors& in, const Tensors& aux) { return Tensors{masked_fill(in[0], aux[0], -2.5)}; },
              kElementwise, {mask}},
             {"topk", {{6, 40}},
              [](const Tensors& in, const Tensors&) {
                ValuesIndices a = topk(in[0], 5), b = topk(transpose(in[0], 0, 1), 2, 0, false);
                return Tensors{a.values, a.indices, b.values, b.indices};
              },
              kExact}},
            dev);
}

TEST_F(CudaParity, FusedNnKernels) {
  Tensor target = ids({3, -100, 0, 6, 6, 1, 2, 5, -100, 4}, {10});
  check_all({{"softmax", {{10, 7}, {5, 300}},
              [](const Tensors& in, const Tensors&) {
                return Tensors{softmax(in[0]), softmax(in[0], 0), log_softmax(in[1]),
                               log_softmax(transpose(in[0], 0, 1))};
              },
              kFused},
             {"layer_norm rms_norm", {{2, 5, 48}, {48}, {48}},
              [](const Tensors& in, const Tensors&) {
                return Tensors{layer_norm(in[0], in[1], in[2]), layer_norm(in[0], {}, {}),
                               rms_norm(in[0], in[1])};
              },
              kFused},
             {"grouped_layer_norm", {{7, 16}, {16}, {16}, {16}, {16}},
              [](const Tensors& in, const Tensors&) {
                return Tensors{grouped_layer_norm(in[0], {0, 3, 7}, {in[1], in[3]}, {in[2], in[4]})};
              },
              kFused},
             {"cross_entropy", {{10, 7}},
              [](const Tensors& in, const Tensors& aux) {
                return Tensors{cross_entropy(in[0], aux[0]),
                               cross_entropy(in[0], aux[0], -100, 0.1, Reduction::none),
                               cross_entropy(in[0], aux[0], -100, 0.0, Reduction::sum)};
              },
              kFused, {target}}},
            dev);
}

TEST_F(CudaParity, AttentionLayouts) {
  Tensor cu = ids({0, 5, 5, 17}, {4});  // lengths 5, 0 (empty), 12
  check_all({{"dense", {{2, 3, 17, 8}, {2, 3, 17, 8}, {2, 3, 17, 8}},
              [](const Tensors& in, const Tensors&) {
                return Tensors{scaled_dot_product_attention(in[0], in[1], in[2], true),
                               scaled_dot_product_attention(in[0], in[1], in[2], false, 0.3)};
              },
              kAttention},
             {"varlen", {{3, 17, 8}, {3, 17, 8}, {3, 17, 8}},
              [](const Tensors& in, const Tensors& aux) {
                return Tensors{attention_varlen(in[0], in[1], in[2], aux[0])};
              },
              kAttention, {cu}},
             {"fused qkv", {{2, 33, 3 * 32}, {17, 3 * 32}},
              [](const Tensors& in, const Tensors& aux) {
                return Tensors{attention_qkv(in[0], 4), attention_qkv(in[1], 4, aux[0])};
              },
              kAttention, {cu}}},
            dev);
}

TEST_F(CudaParity, EmptyTensors) {
  check_all({{"empty", {{0, 5}, {3, 0}, {0, 4}},
              [](const Tensors& in, const Tensors&) {
                return Tensors{add(in[0], 1.0), tanh(in[0]), sum(in[0], {0}), sum(in[0]),
                               matmul(in[1], in[2]), softmax(in[0]), cat({in[0], in[0]}, 0)};
              },
              kReduction}},
            dev);
}

TEST_F(CudaParity, RandomFillsAreBitIdentical) {
  for (DType dt : {DType::f32, DType::f64}) {
    SCOPED_TRACE(fmt::format("{}", dt));
    // 1031 elements: not a multiple of Philox's 4 outputs per counter.
    auto both = [&](auto make) {
      Generator a(7), b(7);
      Tensor on_cpu = make(Device::cpu(), a), on_dev = make(dev, b);
      EXPECT_EQ(on_dev.device(), dev);
      EXPECT_EQ(a.offset(), b.offset()) << "the generators advanced differently";
      return std::pair{on_dev, on_cpu};
    };
    auto [u, u_ref] = both([&](Device d, Generator& g) { return rand({1031}, {dt, d}, &g); });
    EXPECT_TRUE(close(u, u_ref, kExact, "rand"));
    auto [n, n_ref] = both([&](Device d, Generator& g) {
      rand({5}, {dt, d}, &g);  // a second fill from a non-zero offset
      return randn({33, 31}, {dt, d}, &g);
    });
    EXPECT_TRUE(close(n, n_ref, kExact, "randn"));
    auto [m, m_ref] = both([&](Device d, Generator& g) { return bernoulli({1031}, 0.3, {dt, d}, &g); });
    EXPECT_TRUE(close(m, m_ref, kExact, "bernoulli"));
    auto [i, i_ref] = both([&](Device d, Generator& g) { return randint(-3, 250, {1031}, &g, d); });
    EXPECT_TRUE(close(i, i_ref, kExact, "randint"));
    auto [o, o_ref] = both([&](Device d, Generator& g) {
      return dropout(to_device(ones({40, 27}, {dt}), d), 0.25, true, &g);
    });
    EXPECT_TRUE(close(o, o_ref, kExact, "dropout"));
  }
}

TEST_F(CudaParity, AdamWStep) {
  for (DType dt : {DType::f64, DType::f32}) {
    SCOPED_TRACE(fmt::format("{}", dt));
    Generator g(3);
    Tensor p = randn({37, 11}, {dt}, &g), m = zeros({37, 11}, {dt}), v = zeros({37, 11}, {dt});
    Tensor pd = to_device(copy_of(p), dev), md = to_device(m, dev), vd = to_device(v, dev);
    const AdamWHyper h{1e-2, 0.9, 0.95, 1e-8, 0.1};
    for (int64_t step = 1; step <= 3; ++step) {
      Tensor grad = randn({37, 11}, {dt}, &g);
      adamw_step_(p, grad, m, v, h, step);
      adamw_step_(pd, transpose(transpose(to_device(grad, dev), 0, 1), 0, 1), md, vd, h, step);
    }
    const double tol = dt == DType::f64 ? kF64 : kAdamW;
    EXPECT_TRUE(close(pd, p, tol, "param"));
    EXPECT_TRUE(close(md, m, tol, "exp_avg"));
    EXPECT_TRUE(close(vd, v, tol, "exp_avg_sq"));
  }
}
