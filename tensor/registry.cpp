// The backend registry: the one place outside cuda/ that knows which devices exist.
#include <omp.h>

#include <cstdlib>

#include "tensor/backend.h"
#include "tensor/cpu/cpu_backend.h"

#ifdef DG_WITH_CUDA
namespace dg::cuda {
Backend* cuda_backend(int index);  // cuda/backend.cu; null when no device is present
}
#endif

namespace dg {

Backend& backend_for(Device d) {
  if (d.is_cpu()) return cpu::cpu_backend();
#ifdef DG_WITH_CUDA
  if (Backend* b = cuda::cuda_backend(d.index)) return *b;
  throw Error(fmt::format("device {}: no CUDA device is available", d));
#else
  throw Error(fmt::format("device {}: this build of dyngrad has no CUDA backend (configure with DG_CUDA=ON)", d));
#endif
}

void set_num_threads(int n) {
  DG_CHECK(n >= 1, "set_num_threads: expected at least 1 thread, got {}", n);
  omp_set_num_threads(n);
}

int num_threads() { return omp_get_max_threads(); }

}  // namespace dg
