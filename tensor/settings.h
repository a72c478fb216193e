#pragma once
// Process-wide numeric settings, read by the backends (today: the CUDA one).
//
//   dg::set_allow_tf32(true);      // f32 GEMMs may use TF32 tensor cores (faster, ~1e-3 relative)
//   dg::set_deterministic(true);   // kernels that accumulate with atomics take an ordered path
//
// Both default to off. The environment can turn them on at start: DG_TF32=1,
// DG_DETERMINISTIC=1 (0 or 1; any other value is a dg::Error naming the
// variable, raised when the setting is first read). A set_*() call overrides
// the environment. Like PyTorch's torch.backends.cuda.matmul.allow_tf32 and
// torch.use_deterministic_algorithms. The CPU backend is always exact f32 and
// deterministic for a given thread count, so it reads neither.
namespace dg {

void set_allow_tf32(bool allow);
bool allow_tf32();

void set_deterministic(bool on);
bool deterministic();

namespace detail {
// The value of a 0/1 environment flag: `fallback` when unset or empty; a
// dg::Error naming the variable and the allowed values for anything else.
bool env_flag(const char* name, bool fallback = false);
// Test hook: forget set_*() calls and values read, so that the next read
// parses the environment again.
void reset_settings();
}  // namespace detail

}  // namespace dg
