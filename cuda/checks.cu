// Index and target checks on the GPU (Backend::check_indices), without a copy
// to the host per call.
//
// A check enqueues two kernels on the device's stream and returns at once:
//   check_kernel   every thread tests its values; a bad one lowers, with
//                  atomicMin, the device-side key (seq << 40 | position) of
//                  the first failure, so the earliest check (in stream order)
//                  and, within it, the first position in row-major order win;
//   record_value   one thread: if this check owns the key, copies the value at
//                  that position (the index is still alive: it runs next in
//                  stream order).
// The host keeps each pending check's message by its sequence number.
// raise_pending_errors(device) reads the 16-byte status back (one copy, only
// when checks are pending), forgets the pending checks, and throws the first
// failure's dg::Error. The backend calls it at synchronize() and before each
// copy to the host, so the error surfaces at the next point where the host
// looks at device data (the op it names is the one that failed).
#include <climits>
#include <map>
#include <mutex>
#include <string>

#include "cuda/common.cuh"

namespace dg::cuda {

void raise_pending_errors(int device);

namespace {

// ---------------------------------------------------------------- kernels

constexpr int kPositionBits = 40;  // positions below 2^40 elements
constexpr unsigned long long kNoFailure = ULLONG_MAX;
constexpr uint32_t kMaxPending = 1024;  // then the host syncs and raises

struct CheckStatus {
  unsigned long long first;  // seq << kPositionBits | position; kNoFailure if none
  long long value;           // the value at `first`, written by record_value
};

__global__ void check_kernel(const int64_t* idx, OffsetCalc<1> oc, int64_t n, int64_t size, bool has_skip,
                             int64_t skip, unsigned long long seq, CheckStatus* status) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t v = idx[oc.get(i)[0]];
    const bool bad = (v < 0 || v >= size) && !(has_skip && v == skip);
    if (bad) atomicMin(&status->first, (seq << kPositionBits) | static_cast<unsigned long long>(i));
  }
}

__global__ void record_value(const int64_t* idx, OffsetCalc<1> oc, unsigned long long seq, CheckStatus* status) {
  const unsigned long long first = status->first;
  if (first == kNoFailure || (first >> kPositionBits) != seq) return;
  const int64_t position = static_cast<int64_t>(first & ((1ull << kPositionBits) - 1));
  status->value = idx[oc.get(position)[0]];
}

// ---------------------------------------------------------------- host state

// Per device: the status block and the messages of the checks enqueued since
// the last raise, by sequence number (from 0 after each raise).
struct DeviceChecks {
  CheckStatus* status = nullptr;  // device memory, allocated once
  cudaStream_t stream = nullptr;
  std::map<unsigned long long, std::string> pending;
  unsigned long long next_seq = 0;
};

std::mutex g_mutex;
std::map<int, DeviceChecks> g_checks;

DeviceChecks& checks_for(int device, cudaStream_t stream) {
  DeviceChecks& c = g_checks[device];
  if (!c.status) {
    DG_CUDA_CHECK(cudaMalloc(&c.status, sizeof(CheckStatus)), "check_indices: status block");
    DG_CUDA_CHECK(cudaMemsetAsync(c.status, 0xFF, sizeof(unsigned long long), stream), "check_indices: reset");
  }
  c.stream = stream;
  return c;
}

}  // namespace

// ---------------------------------------------------------------- launchers

void CudaBackend::check_indices(const Tensor& idx, int64_t size, std::string_view message,
                                std::optional<int64_t> skip) {
  DG_ASSERT(idx.dtype() == DType::i64 && idx.numel() < (int64_t{1} << kPositionBits));
  const int64_t n = idx.numel();
  if (n == 0) return;
  cudaStream_t stream = stream_of(idx);
  bool full = false;
  {
    std::lock_guard lock(g_mutex);
    full = g_checks[index_].pending.size() >= kMaxPending;
  }
  if (full) raise_pending_errors(index_);  // bounds the host-side queue
  std::lock_guard lock(g_mutex);
  DeviceChecks& c = checks_for(index_, stream);
  const unsigned long long seq = c.next_seq++;
  c.pending.emplace(seq, std::string(message));
  OffsetCalc<1> oc(idx.shape(), {idx.strides()});
  const int64_t* p = dptr<const int64_t>(idx);
  check_kernel<<<blocks_for(n), kThreads, 0, stream>>>(p, oc, n, size, skip.has_value(), skip.value_or(0), seq,
                                                       c.status);
  DG_CUDA_LAUNCHED("check_indices");
  record_value<<<1, 1, 0, stream>>>(p, oc, seq, c.status);
  DG_CUDA_LAUNCHED("check_indices");
}

// Throws the first failed check of `device` since the last call (waits for
// the device's stream); returns at once, without touching the device, when no
// check is pending. To be called by synchronize() and copy_to_host().
void raise_pending_errors(int device) {
  std::string message;
  CheckStatus status{kNoFailure, 0};
  {
    std::lock_guard lock(g_mutex);
    auto it = g_checks.find(device);
    if (it == g_checks.end() || it->second.pending.empty()) return;
    DeviceChecks& c = it->second;
    DG_CUDA_CHECK(cudaMemcpyAsync(&status, c.status, sizeof(CheckStatus), cudaMemcpyDeviceToHost, c.stream),
                  "check_indices: read status");
    DG_CUDA_CHECK(cudaStreamSynchronize(c.stream), "check_indices: synchronize");
    if (status.first != kNoFailure) {
      auto failed = c.pending.find(status.first >> kPositionBits);
      DG_ASSERT(failed != c.pending.end(), "check_indices: no message for the failed check");
      message = failed->second;
      DG_CUDA_CHECK(cudaMemsetAsync(c.status, 0xFF, sizeof(unsigned long long), c.stream), "check_indices: reset");
    }
    c.pending.clear();
    c.next_seq = 0;
  }
  if (status.first != kNoFailure) throw Error(fmt::format(fmt::runtime(message), static_cast<int64_t>(status.value)));
}

}  // namespace dg::cuda
