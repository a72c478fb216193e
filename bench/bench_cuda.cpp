// GPU figures for tools/gpu_check.sh (built only with the CUDA backend):
//  (a) GEMM rate: cuBLAS SGEMM with TF32 tensor cores (cublasGemmEx,
//      CUBLAS_COMPUTE_32F_FAST_TF32) called directly, at 4096^3 and at the
//      GEMM shapes of a GPT-2-small training step (B*T = 8192 rows, C = 768,
//      vocabulary 256); and dyngrad's dg::matmul on the same shapes (TF32
//      when DG_TF32=1), so the backend's overhead on top of cuBLAS shows.
//      Timed with CUDA events: median of --reps launches after 3 warm-ups.
//  (b) Host time per op: sum(tanh(x * y + x)) and its backward on 64 x 64
//      tensors (4 forward ops: mul, add, tanh, sum), --iters iterations, the
//      device synchronised once at the end; reported per iteration and per
//      forward op. bench/torch_ops.py --device cuda --filter Chain4 times the
//      same chain in PyTorch.
//
//   DG_TF32=1 bench_cuda [--reps 20] [--iters 2000] [--json out.json]
//
// Legend: M, K, N: out (M, N) = a (M, K) @ b (K, N), row-major.
#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <chrono>
#include <fstream>
#include <string>
#include <vector>

#include "autograd/ops.h"

using namespace dg;

namespace {

void cuda_check(cudaError_t e, const char* what) {
  DG_CHECK(e == cudaSuccess, "bench_cuda: {}: {}", what, cudaGetErrorString(e));
}
void cublas_check(cublasStatus_t s, const char* what) {
  DG_CHECK(s == CUBLAS_STATUS_SUCCESS, "bench_cuda: {}: cuBLAS status {}", what, static_cast<int>(s));
}

struct GemmShape {
  std::string name;
  int64_t M, K, N;
};

// The GEMMs of one GPT-2-small layer's forward at B*T = 8192 (backward runs
// the same shapes transposed), plus the LM head and the square reference.
std::vector<GemmShape> shapes() {
  return {{"square 4096^3", 4096, 4096, 4096},     {"attn qkv 8192x768x2304", 8192, 768, 2304},
          {"attn proj 8192x768x768", 8192, 768, 768}, {"mlp fc 8192x768x3072", 8192, 768, 3072},
          {"mlp proj 8192x3072x768", 8192, 3072, 768}, {"lm head 8192x768x256", 8192, 768, 256}};
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

// Median milliseconds of one fn() over reps repetitions of `inner` calls,
// each repetition timed with CUDA events and closed by sync() (which waits
// for the stream the work went to), after 3 untimed calls.
template <class Fn, class Sync>
double time_ms(int reps, int inner, Fn fn, Sync sync) {
  for (int i = 0; i < 3; ++i) fn();
  sync();
  cudaEvent_t start, stop;
  cuda_check(cudaEventCreate(&start), "cudaEventCreate");
  cuda_check(cudaEventCreate(&stop), "cudaEventCreate");
  std::vector<double> ms;
  for (int i = 0; i < reps; ++i) {
    sync();
    cuda_check(cudaEventRecord(start), "cudaEventRecord");
    for (int j = 0; j < inner; ++j) fn();
    sync();
    cuda_check(cudaEventRecord(stop), "cudaEventRecord");
    cuda_check(cudaEventSynchronize(stop), "cudaEventSynchronize");
    float t = 0;
    cuda_check(cudaEventElapsedTime(&t, start, stop), "cudaEventElapsedTime");
    ms.push_back(t / inner);
  }
  cudaEventDestroy(start);
  cudaEventDestroy(stop);
  return median(ms);
}

struct GemmResult {
  GemmShape shape;
  double cublas_tflops, dyngrad_tflops;
};

GemmResult time_gemm(const GemmShape& s, int reps, cublasHandle_t handle, Device dev) {
  Generator g(1);
  Tensor a = to_device(randn({s.M, s.K}, {}, &g), dev), b = to_device(randn({s.K, s.N}, {}, &g), dev);
  Tensor c = to_device(zeros({s.M, s.N}), dev);
  Backend& be = backend_for(dev);
  auto sync = [&] { be.synchronize(); };
  // Row-major C = A B is column-major C^T = B^T A^T: cuBLAS gets (N, M, K) with B first.
  const float one = 1, zero = 0;
  auto cublas = [&] {
    cublas_check(cublasGemmEx(handle, CUBLAS_OP_N, CUBLAS_OP_N, static_cast<int>(s.N), static_cast<int>(s.M),
                              static_cast<int>(s.K), &one, b.raw_data(), CUDA_R_32F, static_cast<int>(s.N),
                              a.raw_data(), CUDA_R_32F, static_cast<int>(s.K), &zero, c.raw_data(), CUDA_R_32F,
                              static_cast<int>(s.N), CUBLAS_COMPUTE_32F_FAST_TF32, CUBLAS_GEMM_DEFAULT),
                 "cublasGemmEx");
  };
  const double flops = 2.0 * static_cast<double>(s.M) * static_cast<double>(s.K) * static_cast<double>(s.N);
  // Enough calls per repetition (~0.2 TFLOP) that launch and sync costs vanish.
  const int inner = std::max(1, static_cast<int>(2e11 / flops));
  const double t_cublas = time_ms(reps, inner, cublas, [] { cuda_check(cudaDeviceSynchronize(), "sync"); });
  NoGradGuard no_grad;
  Tensor out;
  const double t_dg = time_ms(reps, inner, [&] { out = matmul(a, b); }, sync);
  return {s, flops / (t_cublas * 1e-3) / 1e12, flops / (t_dg * 1e-3) / 1e12};
}

// Seconds per iteration of the 4-op chain with its backward.
double time_chain(int64_t iters, Device dev) {
  Generator g(2);
  Tensor x = to_device(randn({64, 64}, {}, &g), dev).set_requires_grad();
  Tensor y = to_device(randn({64, 64}, {}, &g), dev);
  Backend& be = backend_for(dev);
  auto step = [&] {
    sum(tanh(x * y + x)).backward();
    x.zero_grad();
  };
  for (int i = 0; i < 50; ++i) step();
  be.synchronize();
  std::vector<double> per_iter;
  for (int rep = 0; rep < 5; ++rep) {
    const auto t0 = std::chrono::steady_clock::now();
    for (int64_t i = 0; i < iters; ++i) step();
    be.synchronize();
    per_iter.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() /
                       static_cast<double>(iters));
  }
  return median(per_iter);
}

}  // namespace

int main(int argc, char** argv) {
  int reps = 20;
  int64_t iters = 2000;
  std::string json_path;
  CLI::App app{"GPU GEMM rates (cuBLAS TF32 vs dyngrad) and host time per op of a small chain."};
  app.add_option("--reps", reps, "timed GEMM launches per shape")->check(CLI::PositiveNumber)->capture_default_str();
  app.add_option("--iters", iters, "chain iterations per repetition")->check(CLI::PositiveNumber)->capture_default_str();
  app.add_option("--json", json_path, "also write the results here");
  CLI11_PARSE(app, argc, argv);
  try {
    DG_CHECK(device_count(DeviceType::cuda) > 0, "bench_cuda: no CUDA device on this machine");
    const Device dev = Device::cuda(0);
    cublasHandle_t handle;
    cublas_check(cublasCreate(&handle), "cublasCreate");
    const char* tf32 = std::getenv("DG_TF32");
    std::string out = fmt::format("{{\"impl\":\"dyngrad\",\"bench\":\"bench_cuda\",\"dg_tf32\":\"{}\",\"gemm\":[",
                                  tf32 ? tf32 : "");
    fmt::print("| GEMM (f32 in, TF32 tensor cores) | cuBLAS TFLOP/s | dg::matmul TFLOP/s (DG_TF32={}) |\n|---|---:|---:|\n",
               tf32 ? tf32 : "unset");
    bool first = true;
    for (const GemmShape& s : shapes()) {
      GemmResult r = time_gemm(s, reps, handle, dev);
      fmt::print("| {} | {:.1f} | {:.1f} |\n", s.name, r.cublas_tflops, r.dyngrad_tflops);
      out += fmt::format("{}{{\"name\":\"{}\",\"M\":{},\"K\":{},\"N\":{},\"cublas_tf32_tflops\":{:.2f},"
                         "\"dyngrad_tflops\":{:.2f}}}",
                         first ? "" : ",", s.name, s.M, s.K, s.N, r.cublas_tflops, r.dyngrad_tflops);
      first = false;
    }
    cublasDestroy(handle);
    const double chain = time_chain(iters, dev);
    fmt::print("\nBM_Chain4/64 (mul, add, tanh, sum + backward): {:.2f} us per iteration, {:.2f} us per forward op\n",
               chain * 1e6, chain * 1e6 / 4);
    out += fmt::format("],\"chain4_us_per_iter\":{:.3f},\"chain4_us_per_op\":{:.3f}}}", chain * 1e6,
                       chain * 1e6 / 4);
    fmt::print("{}\n", out);
    if (!json_path.empty()) std::ofstream(json_path) << out << "\n";
  } catch (const Error& e) {
    fmt::print(stderr, "{}\n", e.what());
    return 1;
  }
  return 0;
}
