#pragma once
// The benchmarks' clock: wall time, or with cpu = true the process's CPU time
// (all threads), which a loaded machine disturbs far less (use one thread);
// and the medians the benchmark programs report.
//
//   const double t0 = dg::bench::now_ms(cpu);  ...;  const double ms = dg::bench::now_ms(cpu) - t0;
//   std::vector<double> m = dg::bench::alternated_median_ms(9, {run_a, run_b}, cpu);   // ms, a then b
#include <algorithm>
#include <chrono>
#include <ctime>
#include <functional>
#include <vector>

namespace dg::bench {

inline double now_ms(bool cpu) {
  if (!cpu)
    return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now().time_since_epoch()).count();
  timespec ts{};
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) * 1e3 + static_cast<double>(ts.tv_nsec) / 1e6;
}

// Milliseconds one call of f takes on that clock.
inline double time_ms(const std::function<void()>& f, bool cpu) {
  const double t0 = now_ms(cpu);
  f();
  return now_ms(cpu) - t0;
}

// The median of t (the upper one of an even count); t is not empty.
inline double median(std::vector<double> t) {
  std::sort(t.begin(), t.end());
  return t[t.size() / 2];
}

// Medians of fs timed in turn (f0, f1, ..., f0, f1, ...), after one warm-up
// call of each, so that a change in the machine's load hits all alike.
inline std::vector<double> alternated_median_ms(int reps, const std::vector<std::function<void()>>& fs, bool cpu) {
  std::vector<std::vector<double>> t(fs.size());
  for (const auto& f : fs) f();  // warm-up
  for (int i = 0; i < reps; ++i)
    for (size_t j = 0; j < fs.size(); ++j) t[j].push_back(time_ms(fs[j], cpu));
  std::vector<double> out;
  for (auto& tj : t) out.push_back(median(tj));
  return out;
}

}  // namespace dg::bench
