// tensor/: creation, strides and views at the storage level, dtype
// conversion, printing, the RNG and the caching allocator.
#include <gtest/gtest.h>

#include <cmath>
#include <numeric>

#include "tensor/backend.h"
#include "tensor/cpu/cpu_backend.h"
#include "tensor/creation.h"
#include "testing.h"

using namespace dg;

TEST(Tensor, CreationAndCopies) {
  Tensor t = from_vector<float>({1, 2, 3, 4, 5, 6}, {2, 3});
  EXPECT_EQ(t.shape(), (Shape{2, 3}));
  EXPECT_EQ(t.strides(), (Shape{3, 1}));
  EXPECT_TRUE(t.is_contiguous());
  EXPECT_EQ(t.dtype(), DType::f32);
  EXPECT_EQ(t.to_vector<double>(), (std::vector<double>{1, 2, 3, 4, 5, 6}));
  EXPECT_EQ(zeros({3}, {DType::i64}).to_vector<int64_t>(), (std::vector<int64_t>{0, 0, 0}));
  EXPECT_EQ(ones({2}, {DType::i32}).to_vector<int32_t>(), (std::vector<int32_t>{1, 1}));
  EXPECT_EQ(arange(4).to_vector<float>(), (std::vector<float>{0, 1, 2, 3}));
  EXPECT_EQ(arange(1.0, 2.0, 0.25, {DType::f64}).to_vector<double>(), (std::vector<double>{1, 1.25, 1.5, 1.75}));
  EXPECT_EQ(full({1}, 2.5, {DType::f64}).item<double>(), 2.5);
  EXPECT_EQ(scalar_tensor(3.0).dim(), 0);
  EXPECT_EQ(scalar_tensor(3.0).numel(), 1);
  EXPECT_EQ(from_vector<bool>({true, false}).to_vector<bool>(), (std::vector<bool>{true, false}));
  EXPECT_EQ(zeros({0, 3}).numel(), 0);
  EXPECT_TRUE(zeros({0, 3}).to_vector<float>().empty());
}

TEST(Tensor, StridedViewsShareStorage) {
  Tensor t = from_vector<float>({1, 2, 3, 4, 5, 6}, {2, 3});
  Tensor tt = as_strided(t, {3, 2}, {1, 3}, 0);  // the transpose
  EXPECT_FALSE(tt.is_contiguous());
  EXPECT_EQ(tt.to_vector<float>(), (std::vector<float>{1, 4, 2, 5, 3, 6}));
  Tensor col = as_strided(t, {2}, {3}, 1);  // column 1
  EXPECT_EQ(col.to_vector<float>(), (std::vector<float>{2, 5}));
  EXPECT_EQ(&t.storage(), &col.storage());
  backend_of(col).fill(col, 9.0);  // a write through the view is visible in t
  EXPECT_EQ(t.to_vector<float>(), (std::vector<float>{1, 9, 3, 4, 9, 6}));
  Tensor bcast = as_strided(col, {2, 4}, {3, 0}, 1);  // stride 0: broadcast
  EXPECT_EQ(to_contiguous(bcast).to_vector<float>(), (std::vector<float>{9, 9, 9, 9, 9, 9, 9, 9}));
}

TEST(Tensor, ViewStridesFollowsPyTorchRules) {
  Tensor t = zeros({2, 3, 4});
  Strides st;
  ASSERT_TRUE(view_strides(t, {6, 4}, st));
  EXPECT_EQ(st, (Strides{4, 1}));
  Tensor tr = as_strided(t, {4, 3, 2}, {1, 4, 12}, 0);  // permuted: not viewable as flat
  EXPECT_FALSE(view_strides(tr, {24}, st));
  ASSERT_TRUE(view_strides(tr, {4, 3, 2, 1}, st));  // adding a size-1 dim is fine
  Tensor sl = as_strided(t, {2, 3, 2}, {12, 4, 1}, 0);  // last dim sliced: rows stay viewable
  ASSERT_TRUE(view_strides(sl, {6, 2}, st));
  EXPECT_EQ(st, (Strides{4, 1}));
  EXPECT_FALSE(view_strides(sl, {12}, st));
}

TEST(Tensor, DtypeConversion) {
  Tensor f = from_vector<float>({1.5f, -2.5f, 3.0f});
  EXPECT_EQ(to_dtype(f, DType::i64).to_vector<int64_t>(), (std::vector<int64_t>{1, -2, 3}));
  EXPECT_EQ(to_dtype(f, DType::f64).dtype(), DType::f64);
  EXPECT_TRUE(to_dtype(f, DType::f32).is_same(f));  // no copy when already that dtype
  EXPECT_EQ(to_dtype(f, DType::b8).to_vector<bool>(), (std::vector<bool>{true, true, true}));
}

TEST(Tensor, BroadcastShapes) {
  EXPECT_EQ(broadcast_shapes({3, 1}, {4}, "add"), (Shape{3, 4}));
  EXPECT_EQ(broadcast_shapes({}, {2, 2}, "add"), (Shape{2, 2}));
  EXPECT_DG_ERROR(broadcast_shapes({2, 3}, {4}, "add"), "add", "[2, 3]", "[4]", "cannot be broadcast");
}

TEST(Tensor, ShapeLimitsAndErrors) {
  EXPECT_DG_ERROR(Shape({1, 1, 1, 1, 1, 1, 1, 1, 1}), "at most 8 dims");
  EXPECT_DG_ERROR(zeros({2, -1}), "negative dimension");
  EXPECT_DG_ERROR(zeros({2}).size(3), "dim 3 out of range");
  EXPECT_EQ(zeros({2, 5}).size(-1), 5);
  EXPECT_DG_ERROR(from_vector<float>({1, 2, 3}, {2, 2}), "3 values", "[2, 2]");
  EXPECT_DG_ERROR(zeros({2}).item<float>(), "one element", "[2]");
  EXPECT_DG_ERROR(zeros({2}).data<double>(), "data<f64>", "f32");
  // The first CUDA device that is not there (cuda:0 without a GPU or without
  // the CUDA backend, cuda:1 on a one-GPU machine).
  const Device absent = Device::cuda(device_count(DeviceType::cuda));
  const std::string name = fmt::format("cuda:{}", absent.index);
  EXPECT_DG_ERROR(zeros({2}, {DType::f32, absent}), name.c_str());
}

TEST(Tensor, PrintsLikePyTorch) {
  EXPECT_EQ(from_vector<float>({1, 2.5f}).to_string(), "tensor([1.0000, 2.5000])");
  EXPECT_EQ(from_vector<int64_t>({1, 2, 3, 4}, {2, 2}).to_string(),
            "tensor([[1, 2],\n        [3, 4]], dtype=i64, shape=[2, 2])");
  EXPECT_EQ(scalar_tensor(0.5, {DType::f64}).to_string(), "tensor(0.5000, dtype=f64)");
  EXPECT_EQ(fmt::format("{}", from_vector<float>({1e-6f})), "tensor([1.0000e-06])");
  std::string big = zeros({2000}).to_string();
  EXPECT_NE(big.find("..."), std::string::npos);
  EXPECT_LT(big.size(), 200u);
}

TEST(Random, SameSeedSameNumbersAnyThreadCount) {
  int saved = num_threads();
  Generator g1(7), g2(7);
  set_num_threads(1);
  std::vector<float> a = randn({50000}, {}, &g1).to_vector<float>();
  set_num_threads(2);
  std::vector<float> b = randn({50000}, {}, &g2).to_vector<float>();
  set_num_threads(saved);
  EXPECT_EQ(a, b);
  // A generator advances: the next draw differs; resetting the state repeats it.
  Generator g(7);
  std::vector<float> first = rand({4}, {}, &g).to_vector<float>();
  std::vector<float> second = rand({4}, {}, &g).to_vector<float>();
  EXPECT_NE(first, second);
  g.set_state(7, 0);
  EXPECT_EQ(rand({4}, {}, &g).to_vector<float>(), first);
}

TEST(Random, Distributions) {
  Generator g(1);
  const int n = 200000;
  std::vector<double> u = rand({n}, {DType::f64}, &g).to_vector<double>();
  std::vector<double> z = randn({n}, {DType::f64}, &g).to_vector<double>();
  std::vector<double> b = bernoulli({n}, 0.3, {DType::f64}, &g).to_vector<double>();
  auto mean = [](const std::vector<double>& v) { return std::accumulate(v.begin(), v.end(), 0.0) / v.size(); };
  double mz = mean(z), vz = 0;
  for (double x : z) vz += (x - mz) * (x - mz);
  vz /= n;
  for (double x : u) ASSERT_TRUE(x >= 0 && x < 1);
  // Standard errors at n = 2e5: U mean 0.00065, N mean 0.0022, N var 0.0032, Bernoulli 0.001; allow ~5 sigma.
  EXPECT_NEAR(mean(u), 0.5, 0.004);
  EXPECT_NEAR(mz, 0.0, 0.012);
  EXPECT_NEAR(vz, 1.0, 0.016);
  EXPECT_NEAR(mean(b), 0.3, 0.005);
  std::vector<int64_t> r = randint(3, 7, {1000}, &g).to_vector<int64_t>();
  for (int64_t x : r) ASSERT_TRUE(x >= 3 && x < 7);
}

// normal_at's own log and cos (tensor/rng.h), which the host and CUDA compute
// bit for bit alike, against long double libm (64-bit mantissa: the angle
// 2 pi u itself is exact enough there): within 2 ulp (of the result, or of 1
// where cos is near 0) on the inputs they get, the ends included.
TEST(Random, PortableLogAndCosMatchLibm) {
  auto ulps = [](double got, long double want, double scale) {
    return static_cast<double>(std::abs(static_cast<long double>(got) - want)) /
           (std::nextafter(scale, INFINITY) - scale);
  };
  const long double two_pi = 6.283185307179586476925286766559005768L;
  Generator g(3);
  std::vector<double> t = rand({100000}, {DType::f64}, &g).to_vector<double>();
  for (double x : {0.0, 0.125, 0.25, 0.375, 0.5, 0.625, 0.75, 0.875, 0x1p-53, 1.0 - 0x1p-53}) t.push_back(x);
  double worst_log = 0, worst_cos = 0;
  for (double u : t) {
    const double x = 1.0 - u;  // (0, 1], as Box-Muller's u1
    const long double l = std::log(static_cast<long double>(x)), c = std::cos(two_pi * u);
    worst_log = std::max(worst_log, ulps(portable_log(x), l, std::max(std::abs(static_cast<double>(l)), 0x1p-52)));
    worst_cos = std::max(worst_cos, ulps(portable_cos_turns(u), c, std::max(std::abs(static_cast<double>(c)), 1.0)));
  }
  EXPECT_LE(worst_log, 2.0);
  EXPECT_LE(worst_cos, 2.0);
  EXPECT_EQ(portable_log(1.0), 0.0);
  EXPECT_EQ(portable_cos_turns(0.0), 1.0);
  EXPECT_EQ(portable_cos_turns(0.5), -1.0);
}

TEST(Allocator, CachesFreedBlocks) {
  Backend& cpu = backend_for(Device::cpu());
  size_t before = cpu.bytes_in_use();
  void* first;
  {
    Tensor t = empty({1000});
    first = t.raw_data();
    EXPECT_GE(cpu.bytes_in_use(), before + 4000);
  }
  EXPECT_EQ(cpu.bytes_in_use(), before);
  Tensor again = empty({1000});
  EXPECT_EQ(again.raw_data(), first);  // the cached block is handed out again
  EXPECT_EQ(reinterpret_cast<uintptr_t>(again.raw_data()) % 64, 0u);
}

// Large blocks are reused best fit (within twice the request), so sizes that
// move from step to step, as MoE's rows per expert do, share blocks instead of
// keeping one idle block per size seen. A fresh backend: its books start at 0.
TEST(Allocator, ReusesALargerBlockBestFit) {
  constexpr size_t MiB = size_t{1} << 20;
  cpu::CpuBackend cpu;
  void* big = cpu.allocate(8 * MiB);
  void* mid = cpu.allocate(6 * MiB);
  cpu.deallocate(big, 8 * MiB);
  cpu.deallocate(mid, 6 * MiB);
  EXPECT_EQ(cpu.bytes_cached(), 14 * MiB);
  void* a = cpu.allocate(5 * MiB + 1);  // 6 MiB after rounding: the 6 MiB block, not the 8
  EXPECT_EQ(a, mid);
  void* b = cpu.allocate(5 * MiB);  // no 5 MiB block: the smallest one that holds it
  EXPECT_EQ(b, big);
  EXPECT_EQ(cpu.bytes_in_use(), 14 * MiB);  // whole blocks
  EXPECT_EQ(cpu.bytes_cached(), 0u);
  cpu.deallocate(b, 5 * MiB);  // the block goes back at its own size, 8 MiB
  EXPECT_EQ(cpu.bytes_in_use(), 6 * MiB);
  EXPECT_EQ(cpu.bytes_cached(), 8 * MiB);
  void* c = cpu.allocate(3 * MiB);  // 8 MiB is more than twice 3: a new block
  EXPECT_NE(c, big);
  EXPECT_EQ(cpu.bytes_in_use(), 9 * MiB);
  void* d = cpu.allocate(7 * MiB);
  EXPECT_EQ(d, big);
  // Sizes that vary from round to round reuse the blocks of the first round.
  cpu.deallocate(a, 5 * MiB + 1), cpu.deallocate(c, 3 * MiB), cpu.deallocate(d, 7 * MiB);
  const size_t held = cpu.bytes_cached();
  for (size_t round = 0; round < 4; ++round) {
    std::vector<std::pair<void*, size_t>> live;
    for (size_t n : {8 - round % 2, 6 - round % 3, 3 - round % 2}) live.emplace_back(cpu.allocate(n * MiB), n * MiB);
    for (auto [p, n] : live) cpu.deallocate(p, n);
    EXPECT_EQ(cpu.bytes_in_use(), 0u);
    EXPECT_EQ(cpu.bytes_cached(), held) << "round " << round;
  }
  cpu.empty_cache();
  EXPECT_EQ(cpu.bytes_cached(), 0u);
}

// dg::excerpt: input text quoted in errors, bounded and escaped.
TEST(Error, ExcerptBoundsAndEscapes) {
  EXPECT_EQ(excerpt("plain text"), "plain text");
  EXPECT_EQ(excerpt(std::string(96, 'x')), std::string(96, 'x'));
  EXPECT_EQ(excerpt(std::string(200, 'x')), std::string(96, 'x') + "... (200 bytes)");
  EXPECT_EQ(excerpt("a\nb\tc\\d\x1b[0m\x7f"), "a\\nb\\tc\\\\d\\x1b[0m\\x7f");
  // cut before a character that would straddle the bound: 95 bytes, then the 2-byte e-acute
  EXPECT_EQ(excerpt(std::string(95, 'a') + "\xc3\xa9zz"), std::string(95, 'a') + "... (99 bytes)");
  EXPECT_EQ(excerpt(std::string(94, 'a') + "\xc3\xa9zz", 96), std::string(94, 'a') + "\xc3\xa9... (98 bytes)");
  EXPECT_EQ(excerpt("abcdef", 3), "abc... (6 bytes)");
  EXPECT_EQ(excerpt(""), "");
}
