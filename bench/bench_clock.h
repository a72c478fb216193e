#pragma once
// The benchmarks' clock: wall time, or with cpu = true the process's CPU time
// (all threads), which a loaded machine disturbs far less (use one thread).
//
//   const double t0 = dg::bench::now_ms(cpu);  ...;  const double ms = dg::bench::now_ms(cpu) - t0;
#include <chrono>
#include <ctime>

namespace dg::bench {

inline double now_ms(bool cpu) {
  if (!cpu)
    return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now().time_since_epoch()).count();
  timespec ts{};
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) * 1e3 + static_cast<double>(ts.tv_nsec) / 1e6;
}

}  // namespace dg::bench
