// Process-wide numeric settings (settings.h): each flag is -1 until first read
// (then parsed from its environment variable) or set by the API.
#include "tensor/settings.h"

#include <atomic>
#include <cstdlib>
#include <string_view>

#include "tensor/error.h"

namespace dg {

namespace {

struct Flag {
  const char* env;
  std::atomic<int> value{-1};  // -1: not read yet, else 0 or 1
};

Flag tf32_flag{"DG_TF32"};
Flag deterministic_flag{"DG_DETERMINISTIC"};

// The flag's value, parsing the environment on first use. A bad value throws
// and leaves the flag unread, so every later read reports it again.
bool read(Flag& f) {
  int v = f.value.load(std::memory_order_relaxed);
  if (v >= 0) return v != 0;
  int parsed = detail::env_flag(f.env) ? 1 : 0;
  int expected = -1;
  f.value.compare_exchange_strong(expected, parsed);  // a concurrent set_*() wins
  return f.value.load(std::memory_order_relaxed) != 0;
}

}  // namespace

void set_allow_tf32(bool allow) { tf32_flag.value.store(allow ? 1 : 0); }
bool allow_tf32() { return read(tf32_flag); }

void set_deterministic(bool on) { deterministic_flag.value.store(on ? 1 : 0); }
bool deterministic() { return read(deterministic_flag); }

namespace detail {

bool env_flag(const char* name, bool fallback) {
  const char* raw = std::getenv(name);
  if (raw == nullptr) return fallback;
  const std::string_view v(raw);
  if (v.empty()) return fallback;
  if (v == "0") return false;
  if (v == "1") return true;
  throw Error(fmt::format("{}: expected 0 or 1 (or unset), got '{}'", name, excerpt(v)));
}

void reset_settings() {
  tf32_flag.value.store(-1);
  deterministic_flag.value.store(-1);
}

}  // namespace detail

}  // namespace dg
