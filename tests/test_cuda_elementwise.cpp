// The CUDA backend's memory and elementwise kernels (cuda/backend.cu,
// cuda/elementwise.cu) against the CPU backend, kernel by kernel: every unary
// op (and its two derivatives) and binary op on every dtype it accepts, on
// contiguous, transposed and broadcast (stride-0) operands; where, fill,
// arange, dtype-converting strided copy, the random fills (bit for bit) and
// AdamW; host copies, allocator statistics and out of memory.
// Tolerances: f64 1e-12 relative (+1e-14), f32 1e-5 relative (+1e-6; the
// CPU's SIMD exp and tanh are not libm's), integers and bools exactly.
// Skipped without a GPU.
#include <cmath>

#include "tensor/functors.h"
#include "testing.h"

namespace dg {
namespace {

const Device kCuda = Device::cuda(0);

class CudaElementwise : public ::testing::Test {
 protected:
  void SetUp() override {
    if (device_count(DeviceType::cuda) == 0) GTEST_SKIP() << "no CUDA device on this machine";
  }
};

// Values of dtype dt in [-2, 2] (integers in [-3, 3], bools random), or in
// [0.1, 2] when `positive`; fixed by `seed`.
Tensor sample(const Shape& shape, DType dt, uint64_t seed, bool positive = false) {
  Generator g(seed);
  std::vector<double> v = rand(shape, {DType::f64}, &g).to_vector<double>();
  for (double& x : v) {
    if (dt == DType::b8) x = x < 0.5 ? 0 : 1;
    else if (is_integral(dt)) x = std::floor(7 * x) - 3;
    else x = positive ? 0.1 + 1.9 * x : 4 * x - 2;
  }
  return from_doubles(v, shape, {dt});
}

// The same values on `d` seen through three layouts of shape (4, 5):
// contiguous, transposed (a view of a (5, 4) tensor), and broadcast along
// dim 0 (stride 0; only the first row's values).
enum class Layout { contiguous, transposed, broadcast };
Tensor layout_on(const Tensor& host, Layout layout, Device d) {
  Tensor base;
  switch (layout) {
    case Layout::contiguous: return to_device(host, d);
    case Layout::transposed:
      base = to_device(to_contiguous(as_strided(host, {5, 4}, {1, 5}, 0)), d);
      return as_strided(base, {4, 5}, {1, 4}, 0);
    case Layout::broadcast:
      base = to_device(to_contiguous(as_strided(host, {1, 5}, {5, 1}, 0)), d);
      return as_strided(base, {4, 5}, {0, 1}, 0);
  }
  return {};
}
constexpr Layout kLayouts[] = {Layout::contiguous, Layout::transposed, Layout::broadcast};

void expect_same(const Tensor& cpu, const Tensor& cuda, const std::string& what) {
  ASSERT_EQ(cpu.shape(), cuda.shape()) << what;
  ASSERT_EQ(cpu.dtype(), cuda.dtype()) << what;
  std::vector<double> a = cpu.to_vector<double>(), b = cuda.to_vector<double>();
  const bool f64 = cpu.dtype() == DType::f64, f32 = cpu.dtype() == DType::f32;
  const double rtol = f64 ? 1e-12 : f32 ? 1e-5 : 0, atol = f64 ? 1e-14 : f32 ? 1e-6 : 0;
  for (size_t i = 0; i < a.size(); ++i) {
    if (std::isnan(a[i]) && std::isnan(b[i])) continue;
    ASSERT_LE(std::abs(a[i] - b[i]), atol + rtol * std::abs(a[i]))
        << what << ": element " << i << " cpu " << a[i] << " cuda " << b[i];
  }
}

// Runs kernel(backend, inputs..., out) on the CPU and on the GPU, from the
// same host inputs in `layout`, and compares the outputs.
template <class Kernel>
void compare(const std::string& what, const std::vector<Tensor>& host_inputs, Layout layout, DType out_dtype,
             Kernel&& kernel) {
  std::vector<Tensor> cpu_in, cuda_in;
  for (const Tensor& h : host_inputs) {
    cpu_in.push_back(layout_on(h, layout, Device::cpu()));
    cuda_in.push_back(layout_on(h, layout, kCuda));
  }
  Tensor cpu_out = empty({4, 5}, {out_dtype}), cuda_out = empty({4, 5}, {out_dtype, kCuda});
  kernel(backend_for(Device::cpu()), cpu_in, cpu_out);
  kernel(backend_for(kCuda), cuda_in, cuda_out);
  expect_same(cpu_out, cuda_out, what);
}

constexpr DType kDtypes[] = {DType::f32, DType::f64, DType::i64, DType::i32, DType::b8};

TEST_F(CudaElementwise, UnaryOpsAndDerivativesMatchCpu) {
  for (int k = 0; k < kNumUnaryOps; ++k) {
    const auto op = static_cast<UnaryOp>(k);
    const fn::UnaryTraits traits = fn::unary_traits(op);
    const bool positive = op == UnaryOp::log || op == UnaryOp::sqrt || op == UnaryOp::rsqrt ||
                          op == UnaryOp::pow_scalar || op == UnaryOp::reciprocal;
    const UnaryParams p = op == UnaryOp::clamp ? UnaryParams{-0.5, 1.5} : UnaryParams{2.5, 0};
    for (DType dt : kDtypes) {
      if (!fn::domain_accepts(traits.domain, dt)) continue;
      const Tensor x = sample({4, 5}, dt, 1, positive), g = sample({4, 5}, dt, 2);
      const DType out_dt = traits.bool_out ? DType::b8 : dt;
      for (Layout layout : kLayouts) {
        const std::string what = fmt::format("{} {} layout {}", unary_op_name(op), dtype_name(dt), int(layout));
        compare(what, {x}, layout, out_dt, [&](Backend& b, auto& in, const Tensor& out) { b.unary(op, in[0], out, p); });
        if (traits.bool_out) continue;
        // y = f(x) as the kernels receive it (contiguous, computed by the CPU).
        const Tensor y = empty({4, 5}, {dt});
        backend_for(Device::cpu()).unary(op, x, y, p);
        compare(what + " grad", {g, x, y}, layout, dt,
                [&](Backend& b, auto& in, const Tensor& out) { b.unary_grad(op, in[0], in[1], in[2], out, p); });
        compare(what + " grad2", {x, y}, layout, dt,
                [&](Backend& b, auto& in, const Tensor& out) { b.unary_grad2(op, in[0], in[1], out, p); });
      }
    }
  }
}

TEST_F(CudaElementwise, BinaryOpsMatchCpu) {
  for (int k = 0; k <= static_cast<int>(BinaryOp::logical_or); ++k) {
    const auto op = static_cast<BinaryOp>(k);
    for (DType dt : kDtypes) {
      if (!fn::domain_accepts(fn::binary_domain(op), dt)) continue;
      const Tensor a = sample({4, 5}, dt, 3, op == BinaryOp::pow), b = sample({4, 5}, dt, 4);
      const DType out_dt = is_comparison(op) ? DType::b8 : dt;
      for (Layout layout : kLayouts)
        compare(fmt::format("{} {} layout {}", binary_op_name(op), dtype_name(dt), int(layout)), {a, b}, layout,
                out_dt, [&](Backend& be, auto& in, const Tensor& out) { be.binary(op, in[0], in[1], out); });
    }
  }
}

TEST_F(CudaElementwise, WhereMatchesCpu) {
  for (DType dt : kDtypes)
    for (Layout layout : kLayouts)
      compare(fmt::format("where {} layout {}", dtype_name(dt), int(layout)),
              {sample({4, 5}, DType::b8, 5), sample({4, 5}, dt, 6), sample({4, 5}, dt, 7)}, layout, dt,
              [&](Backend& b, auto& in, const Tensor& out) { b.where(in[0], in[1], in[2], out); });
}

TEST_F(CudaElementwise, StridedCopyConvertsLikeCpu) {
  for (DType from : kDtypes) {
    for (DType to : kDtypes) {
      // dst: the even columns of a zeroed (4, 10) tensor.
      Tensor cpu_base = zeros({4, 10}, {to}), cuda_base = zeros({4, 10}, {to, kCuda});
      const Tensor src = sample({4, 5}, from, 8);
      backend_for(Device::cpu()).copy(layout_on(src, Layout::transposed, Device::cpu()),
                                      as_strided(cpu_base, {4, 5}, {10, 2}, 0));
      backend_for(kCuda).copy(layout_on(src, Layout::transposed, kCuda), as_strided(cuda_base, {4, 5}, {10, 2}, 0));
      expect_same(cpu_base, cuda_base, fmt::format("copy {} -> {}", dtype_name(from), dtype_name(to)));
    }
  }
}

TEST_F(CudaElementwise, FillAndArangeMatchCpu) {
  for (DType dt : kDtypes) {
    Tensor cpu_base = zeros({4, 10}, {dt}), cuda_base = zeros({4, 10}, {dt, kCuda});
    backend_for(Device::cpu()).fill(as_strided(cpu_base, {4, 5}, {10, 2}, 1), 1.75);
    backend_for(kCuda).fill(as_strided(cuda_base, {4, 5}, {10, 2}, 1), 1.75);
    expect_same(cpu_base, cuda_base, fmt::format("fill {}", dtype_name(dt)));
    if (dt == DType::b8) continue;
    Tensor cpu_range = empty({1000}, {dt}), cuda_range = empty({1000}, {dt, kCuda});
    backend_for(Device::cpu()).arange(cpu_range, -3.0, 0.1);
    backend_for(kCuda).arange(cuda_range, -3.0, 0.1);
    EXPECT_EQ(cpu_range.to_vector<double>(), cuda_range.to_vector<double>()) << "arange " << dtype_name(dt);
  }
}

// uniform and bernoulli use only exactly rounded operations: bit for bit.
// normal also calls log and cos, whose last bit may differ between libm and
// CUDA for a few f64 values (tensor/rng.h): f32 bit for bit, f64 to 1e-14.
TEST_F(CudaElementwise, RandomFillsGiveTheCpuNumbers) {
  for (DType dt : {DType::f32, DType::f64}) {
    for (int kind = 0; kind < 3; ++kind) {
      Tensor c = empty({100003}, {dt}), g = empty({100003}, {dt, kCuda});
      for (auto [b, t] : {std::pair{&backend_for(Device::cpu()), c}, std::pair{&backend_for(kCuda), g}}) {
        if (kind == 0) b->fill_uniform(t, -1.5, 2.5, 1234, 40);
        if (kind == 1) b->fill_normal(t, 0.5, 2.0, 1234, 40);
        if (kind == 2) b->fill_bernoulli(t, 0.3, 1234, 40);
      }
      std::vector<double> cv = c.to_vector<double>(), gv = g.to_vector<double>();
      const double tol = kind == 1 && dt == DType::f64 ? 1e-14 : 0.0;
      for (size_t i = 0; i < cv.size(); ++i)
        ASSERT_LE(std::abs(cv[i] - gv[i]), tol) << "kind " << kind << " " << dtype_name(dt) << " element " << i;
    }
  }
}

TEST_F(CudaElementwise, AdamWStepMatchesCpu) {
  for (DType dt : {DType::f32, DType::f64}) {
    Tensor p = sample({4, 5}, dt, 9), g = sample({4, 5}, dt, 10), m = sample({4, 5}, dt, 11),
           v = sample({4, 5}, dt, 12, true);
    std::vector<Tensor> cpu = {copy_of(p), g, copy_of(m), copy_of(v)};
    std::vector<Tensor> gpu = {to_device(p, kCuda), to_device(g, kCuda), to_device(m, kCuda), to_device(v, kCuda)};
    for (int64_t step = 1; step <= 3; ++step) {
      backend_for(Device::cpu()).adamw_step(cpu[0], cpu[1], cpu[2], cpu[3], 1e-2, 0.9, 0.999, 1e-8, 0.1, step);
      backend_for(kCuda).adamw_step(gpu[0], gpu[1], gpu[2], gpu[3], 1e-2, 0.9, 0.999, 1e-8, 0.1, step);
    }
    for (int k : {0, 2, 3}) expect_same(cpu[k], gpu[k], fmt::format("adamw {} tensor {}", dtype_name(dt), k));
  }
}

TEST_F(CudaElementwise, HostCopiesRoundTripThroughTheStagingBuffer) {
  for (int64_t n : {int64_t{10}, int64_t{1} << 20, int64_t{7}}) {  // grows, then reuses the buffer
    Tensor host = sample({n}, DType::f64, 13);
    Tensor dev = to_device(host, kCuda);
    EXPECT_EQ(to_device(dev, Device::cpu()).to_vector<double>(), host.to_vector<double>()) << n;
  }
}

TEST_F(CudaElementwise, AllocatorCountsBlocksAndReportsOutOfMemory) {
  Backend& b = backend_for(kCuda);
  const size_t before = b.bytes_in_use();
  void* p = b.allocate(1000);
  EXPECT_EQ(b.bytes_in_use(), before + 1024);
  b.deallocate(p, 1000);
  EXPECT_EQ(b.bytes_in_use(), before);
  EXPECT_EQ(b.allocate(900), p);  // the cached block again
  b.deallocate(p, 900);
  EXPECT_DG_ERROR(b.allocate(size_t{1} << 50), "cuda:0: out of memory allocating 1024 TiB", "in use", "cached");
  // The failed cudaMalloc left no error behind: kernels still launch.
  Tensor t = full({3}, 2.0, {DType::f32, kCuda});
  EXPECT_EQ(t.to_vector<float>(), (std::vector<float>{2, 2, 2}));
  b.empty_cache();
}

}  // namespace
}  // namespace dg
