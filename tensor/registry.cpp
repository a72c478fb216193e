// The backend registry: the one place outside cuda/ that knows which devices exist.
#include <omp.h>

#include <cstdlib>

#include "tensor/backend.h"
#include "tensor/cpu/cpu_backend.h"
#include "tensor/guarded_backend.h"

#ifdef DG_WITH_CUDA
namespace dg::cuda {
Backend* cuda_backend(int index);  // cuda/backend.cu; null when no device is present
int cuda_device_count();
}
#endif

namespace dg {

Backend& backend_for(Device d) {
  if (d.is_cpu()) return cpu::cpu_backend();
  if (d.type == DeviceType::guarded) {
    DG_CHECK(d.index == 0, "device {}: the guarded test device has index 0 only", d);
    return guarded::guarded_backend();
  }
#ifdef DG_WITH_CUDA
  if (Backend* b = cuda::cuda_backend(d.index)) return *b;
  throw Error(fmt::format("device {}: no such CUDA device ({} visible)", d, cuda::cuda_device_count()));
#else
  throw Error(fmt::format("device {}: this build of dyngrad has no CUDA backend (configure with DG_CUDA=ON)", d));
#endif
}

int device_count(DeviceType type) {
  if (type == DeviceType::cpu || type == DeviceType::guarded) return 1;
#ifdef DG_WITH_CUDA
  if (type == DeviceType::cuda) return cuda::cuda_device_count();
#endif
  return 0;
}

Device parse_device(std::string_view text) {
  if (text == "cpu") return Device::cpu();
  if (text == "cuda") return Device::cuda(0);
  if (text == "guarded") return Device::guarded();
  if (text.starts_with("cuda:") && text.size() > 5 && text.size() <= 8) {
    int index = 0;
    for (char c : text.substr(5)) {
      if (c < '0' || c > '9') index = -1;
      if (index >= 0) index = index * 10 + (c - '0');
    }
    if (index >= 0) return Device::cuda(index);
  }
  throw Error(fmt::format("device '{}': expected cpu, cuda or cuda:N (or the test device guarded)", excerpt(text)));
}

void set_num_threads(int n) {
  DG_CHECK(n >= 1, "set_num_threads: expected at least 1 thread, got {}", n);
  omp_set_num_threads(n);
}

int num_threads() { return omp_get_max_threads(); }

}  // namespace dg
