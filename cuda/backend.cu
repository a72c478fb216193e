// STUB: to be replaced by the kernels of this family (see cuda_backend.h).
#include "cuda/common.cuh"

namespace dg::cuda {

void* CudaBackend::allocate(size_t nbytes) {
  throw Error("cuda: allocate is not implemented yet");
}

void CudaBackend::deallocate(void* ptr, size_t nbytes) {
  throw Error("cuda: deallocate is not implemented yet");
}

void CudaBackend::empty_cache() {
  throw Error("cuda: empty_cache is not implemented yet");
}

size_t CudaBackend::bytes_in_use() const {
  throw Error("cuda: bytes_in_use is not implemented yet");
}

void CudaBackend::copy_from_host(const void* src, const Tensor& dst) {
  throw Error("cuda: copy_from_host is not implemented yet");
}

void CudaBackend::copy_to_host(const Tensor& src, void* dst) {
  throw Error("cuda: copy_to_host is not implemented yet");
}

void CudaBackend::synchronize() {
  throw Error("cuda: synchronize is not implemented yet");
}

}  // namespace dg::cuda

namespace dg::cuda {

struct CudaBackend::Impl {};

CudaBackend::CudaBackend(int index) : index_(index), impl_(new Impl) {}
CudaBackend::~CudaBackend() { delete impl_; }
size_t CudaBackend::peak_bytes_in_use() const { return 0; }
void CudaBackend::reset_peak_bytes_in_use() {}
size_t CudaBackend::bytes_cached() const { return 0; }

void throw_cuda_error(cudaError_t err, const char* what, const char* file, int line) {
  throw Error(fmt::format("{}: CUDA error {} ({}) at {}:{}", what, cudaGetErrorName(err), cudaGetErrorString(err),
                          file, line));
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
  if (index < 0 || index >= cuda_device_count()) return nullptr;
  static CudaBackend* backends[64] = {};
  if (index >= 64) return nullptr;
  if (!backends[index]) backends[index] = new CudaBackend(index);  // never destroyed, like the CPU's
  return backends[index];
}

cudaStream_t stream_of(const Tensor&) { throw Error("cuda: streams are not implemented yet"); }

}  // namespace dg::cuda
