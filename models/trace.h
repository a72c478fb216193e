#pragma once
// RoutingTrace: what Mixture-of-Blocks did with every token in one forward —
// per token the list of (step, block, w, lambda), block -1 meaning "return",
// w the weight of R + w·Delta (q, or 1 with the straight-through weight).
// Summaries (depth histogram, block usage per step, transitions, repeat rate)
// feed logs, tests and the pictures of tools/plot_routing.py.
//
//   const models::RoutingTrace& tr = mob.last_trace();
//   models::TraceSummary s = tr.summary();
//   fmt::print("mean depth {:.2f}, repeats {:.1%}\n", s.mean_depth, s.repeat_rate);
//   std::ofstream("trace.json") << tr.to_json(text);
#include <cstdint>
#include <string>
#include <vector>

namespace dg::models {

struct TraceStep {
  int32_t step = 0;
  int32_t block = -1;   // -1: the token returned (halted) at this step
  float w = 0;          // weight of the block's output: q, or 1 straight-through (0 on return)
  float lambda = 0;     // probability of returning at this step
};

struct TraceSummary {
  double mean_depth = 0;                       // block applications per token
  std::vector<int64_t> depth_histogram;        // [depth] -> tokens, depth 0..max_depth
  std::vector<std::vector<int64_t>> usage;     // [step][block] -> applications
  std::vector<std::vector<int64_t>> transitions;  // [from block][to block] -> consecutive pairs
  double repeat_rate = 0;                      // share of applications repeating a block the token already used
  std::vector<double> block_share;             // [block] -> share of all applications
};

struct RoutingTrace {
  int64_t B = 0, T = 0, n_blocks = 0, max_depth = 0;
  std::vector<std::vector<TraceStep>> tokens;  // B*T, row b*T + t

  void reset(int64_t B_, int64_t T_, int64_t n, int64_t D);
  int64_t depth(int64_t token) const;  // block applications
  TraceSummary summary() const;
  // JSON: dims, per-token paths ([step, block, w, lambda], named in
  // "path_fields"; traces before w was named hold the same order), the summary, the text (raw bytes of the
  // first sequence) and per-token answer levels (1..4, else -1) when given,
  // for tools/plot_routing.py.
  std::string to_json(const std::string& text = "", const std::vector<int64_t>& answer_levels = {}) const;
};

}  // namespace dg::models
