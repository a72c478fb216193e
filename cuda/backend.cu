// Device discovery, the per-device stream and cuBLAS handle, the caching
// allocator (cuda/allocator.h) and copies between host and device.
//
// One stream per device, created non-blocking (it does not wait for the
// legacy default stream): every kernel of the device runs on it in the order
// the host enqueues them, which is what lets the allocator hand out a freed
// block at once (see cuda/allocator.h) and makes synchronize() mean "all work
// on this device is done".
//
// Host copies go through one pinned staging buffer per device (grown as
// needed, then reused), because cudaMemcpyAsync from pageable memory is
// synchronous and slower. copy_from_host copies into the staging buffer and
// returns without waiting for the upload; the next use of the buffer waits
// for that upload first (an event). copy_to_host waits for its download, so
// the host buffer holds the data on return.
#include <cstring>
#include <mutex>

#include "cuda/allocator.h"
#include "cuda/common.cuh"

namespace dg::cuda {

struct CudaBackend::Impl {
  int index;
  cudaStream_t stream = nullptr;
  CachingAllocator allocator;

  std::once_flag cublas_once;
  cublasHandle_t cublas = nullptr;  // created on first use, bound to `stream`

  std::mutex staging_mu;
  void* staging = nullptr;  // pinned host memory, staging_bytes long
  size_t staging_bytes = 0;
  cudaEvent_t staging_free = nullptr;  // recorded after the last upload from `staging`

  explicit Impl(int i)
      : index(i),
        allocator(fmt::format("{}", Device::cuda(i)), [i](size_t n) { return device_malloc(i, n); },
                  [i](void* p) {
                    // cudaFree waits for the device, so no queued kernel still uses p.
                    DG_CUDA_CHECK(cudaSetDevice(i), "cuda: select device");
                    DG_CUDA_CHECK(cudaFree(p), "cuda: free");
                  }) {
    DG_CUDA_CHECK(cudaSetDevice(index), "cuda: select device");
    DG_CUDA_CHECK(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking), "cuda: create stream");
    DG_CUDA_CHECK(cudaEventCreateWithFlags(&staging_free, cudaEventDisableTiming), "cuda: create event");
  }

  // Teardown ignores errors: it runs at most at exit, when the driver may be gone.
  ~Impl() {
    cudaSetDevice(index);
    cudaStreamSynchronize(stream);
    if (cublas) cublasDestroy(cublas);
    if (staging) cudaFreeHost(staging);
    cudaEventDestroy(staging_free);
    cudaStreamDestroy(stream);
  }

  // cudaMalloc, or null when the device is out of memory (the error cleared,
  // so later launch checks do not report it).
  static void* device_malloc(int index, size_t n) {
    DG_CUDA_CHECK(cudaSetDevice(index), "cuda: select device");
    void* p = nullptr;
    cudaError_t err = cudaMalloc(&p, n);
    if (err == cudaErrorMemoryAllocation) {
      (void)cudaGetLastError();
      return nullptr;
    }
    DG_CUDA_CHECK(err, "cuda: allocate");
    return p;
  }

  // The staging buffer, at least n bytes, once the last upload from it is
  // done. Caller holds staging_mu.
  void* staging_for(size_t n) {
    DG_CUDA_CHECK(cudaEventSynchronize(staging_free), "cuda: wait for staging buffer");
    if (n > staging_bytes) {
      if (staging) DG_CUDA_CHECK(cudaFreeHost(staging), "cuda: free pinned staging buffer");
      staging = nullptr, staging_bytes = 0;
      DG_CUDA_CHECK(cudaHostAlloc(&staging, n, cudaHostAllocDefault), "cuda: allocate pinned staging buffer");
      staging_bytes = n;
    }
    return staging;
  }
};

CudaBackend::CudaBackend(int index) : index_(index), impl_(new Impl(index)) {}
CudaBackend::~CudaBackend() { delete impl_; }

void* CudaBackend::allocate(size_t nbytes) { return impl_->allocator.allocate(nbytes); }
void CudaBackend::deallocate(void* ptr, size_t nbytes) { impl_->allocator.deallocate(ptr, nbytes); }
void CudaBackend::empty_cache() { impl_->allocator.empty_cache(); }
size_t CudaBackend::bytes_in_use() const { return impl_->allocator.bytes_in_use(); }
size_t CudaBackend::peak_bytes_in_use() const { return impl_->allocator.peak_bytes_in_use(); }
void CudaBackend::reset_peak_bytes_in_use() { impl_->allocator.reset_peak_bytes_in_use(); }
size_t CudaBackend::bytes_cached() const { return impl_->allocator.bytes_cached(); }

void CudaBackend::copy_from_host(const void* src, const Tensor& dst) {
  DG_ASSERT(dst.is_contiguous(), "cuda copy_from_host: dst must be contiguous");
  const size_t n = dst.nbytes();
  if (n == 0) return;
  cudaStream_t stream = stream_of(dst);
  std::lock_guard lock(impl_->staging_mu);
  void* staging = impl_->staging_for(n);
  std::memcpy(staging, src, n);
  DG_CUDA_CHECK(cudaMemcpyAsync(dst.raw_data(), staging, n, cudaMemcpyHostToDevice, stream), "cuda: copy to device");
  DG_CUDA_CHECK(cudaEventRecord(impl_->staging_free, stream), "cuda: record staging event");
}

void CudaBackend::copy_to_host(const Tensor& src, void* dst) {
  DG_ASSERT(src.is_contiguous(), "cuda copy_to_host: src must be contiguous");
  raise_pending_errors(index_);  // an index check that failed since the last look (cuda/checks.cu)
  const size_t n = src.nbytes();
  if (n == 0) return;
  cudaStream_t stream = stream_of(src);
  std::lock_guard lock(impl_->staging_mu);
  void* staging = impl_->staging_for(n);
  DG_CUDA_CHECK(cudaMemcpyAsync(staging, src.raw_data(), n, cudaMemcpyDeviceToHost, stream), "cuda: copy to host");
  DG_CUDA_CHECK(cudaStreamSynchronize(stream), "cuda: copy to host");
  std::memcpy(dst, staging, n);
}

void CudaBackend::synchronize() {
  DG_CUDA_CHECK(cudaSetDevice(index_), "cuda: select device");
  DG_CUDA_CHECK(cudaStreamSynchronize(impl_->stream), "cuda: synchronize");
  raise_pending_errors(index_);
}

void throw_cuda_error(cudaError_t err, const char* what, const char* file, int line) {
  throw Error(fmt::format("{}: CUDA error {} ({}) at {}:{}", what, cudaGetErrorName(err), cudaGetErrorString(err),
                          file, line));
}

void throw_cublas_error(cublasStatus_t status, const char* what, const char* file, int line) {
  throw Error(fmt::format("{}: cuBLAS error {} ({}) at {}:{}", what, static_cast<int>(status),
                          cublasGetStatusString(status), file, line));
}

int cuda_device_count() {
  static const int count = [] {
    int n = 0;
    if (cudaGetDeviceCount(&n) != cudaSuccess) {
      (void)cudaGetLastError();  // no driver or no device: clear the sticky error
      return 0;
    }
    return n;
  }();
  return count;
}

Backend* cuda_backend(int index) {
  constexpr int kMaxDevices = 64;
  if (index < 0 || index >= kMaxDevices || index >= cuda_device_count()) return nullptr;
  static std::mutex mu;
  static CudaBackend* backends[kMaxDevices] = {};
  std::lock_guard lock(mu);
  if (!backends[index]) backends[index] = new CudaBackend(index);  // never destroyed, like the CPU's
  return backends[index];
}

CudaBackend& backend_of_cuda(const Tensor& t) {
  DG_ASSERT(t.device().type == DeviceType::cuda, "cuda kernel given a tensor on {}", t.device());
  Backend* b = cuda_backend(t.device().index);
  DG_ASSERT(b != nullptr, "cuda kernel given a tensor on {}, which does not exist", t.device());
  auto& cb = static_cast<CudaBackend&>(*b);
  DG_CUDA_CHECK(cudaSetDevice(cb.index()), "cuda: select device");
  return cb;
}

cudaStream_t stream_of(const Tensor& t) { return backend_of_cuda(t).impl().stream; }

cublasHandle_t cublas_handle(const Tensor& t) {
  CudaBackend::Impl& impl = backend_of_cuda(t).impl();
  std::call_once(impl.cublas_once, [&] {
    DG_CUBLAS_CHECK(cublasCreate(&impl.cublas), "cuda: create cuBLAS handle");
    DG_CUBLAS_CHECK(cublasSetStream(impl.cublas, impl.stream), "cuda: bind cuBLAS to the device's stream");
  });
  return impl.cublas;
}

}  // namespace dg::cuda
