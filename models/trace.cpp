#include "models/trace.h"

#include <algorithm>

#include <nlohmann/json.hpp>

namespace dg::models {

void RoutingTrace::reset(int64_t B_, int64_t T_, int64_t n, int64_t D) {
  B = B_, T = T_, n_blocks = n, max_depth = D;
  tokens.resize(B * T);
  for (std::vector<TraceStep>& path : tokens) path.clear();  // keeps each path's capacity: no allocation per step
}

int64_t RoutingTrace::depth(int64_t token) const {
  int64_t d = 0;
  for (const TraceStep& s : tokens[token]) d += s.block >= 0;
  return d;
}

TraceSummary RoutingTrace::summary() const {
  TraceSummary s;
  s.depth_histogram.assign(max_depth + 1, 0);
  s.usage.assign(max_depth + 1, std::vector<int64_t>(n_blocks, 0));
  s.transitions.assign(n_blocks, std::vector<int64_t>(n_blocks, 0));
  s.block_share.assign(n_blocks, 0.0);
  int64_t applications = 0, repeats = 0;
  std::vector<uint8_t> used(n_blocks);
  for (const auto& path : tokens) {
    int64_t depth = 0, prev = -1;
    std::fill(used.begin(), used.end(), 0);
    for (const TraceStep& st : path) {
      if (st.block < 0) continue;
      ++depth;
      ++applications;
      ++s.usage[st.step][st.block];
      s.block_share[st.block] += 1;
      if (used[st.block]) ++repeats;
      used[st.block] = 1;
      if (prev >= 0) ++s.transitions[prev][st.block];
      prev = st.block;
    }
    ++s.depth_histogram[std::min(depth, max_depth)];
  }
  const double n_tok = static_cast<double>(std::max<size_t>(tokens.size(), 1));
  s.mean_depth = static_cast<double>(applications) / n_tok;
  s.repeat_rate = applications ? static_cast<double>(repeats) / static_cast<double>(applications) : 0.0;
  for (double& b : s.block_share) b = applications ? b / static_cast<double>(applications) : 0.0;
  return s;
}

std::string RoutingTrace::to_json(const std::string& text, const std::vector<int64_t>& answer_levels) const {
  nlohmann::json j;
  j["B"] = B, j["T"] = T, j["n_blocks"] = n_blocks, j["max_depth"] = max_depth;
  nlohmann::json paths = nlohmann::json::array();
  for (const auto& path : tokens) {
    nlohmann::json p = nlohmann::json::array();
    for (const TraceStep& st : path) p.push_back({st.step, st.block, st.w, st.lambda});
    paths.push_back(p);
  }
  j["paths"] = paths;  // per token: [step, block (-1 = return), w, lambda]
  j["path_fields"] = {"step", "block", "w", "lambda"};
  TraceSummary s = summary();
  j["summary"] = {{"mean_depth", s.mean_depth},   {"depth_histogram", s.depth_histogram},
                  {"usage", s.usage},             {"transitions", s.transitions},
                  {"repeat_rate", s.repeat_rate}, {"block_share", s.block_share}};
  if (!text.empty()) {
    std::vector<int> bytes(text.begin(), text.end());
    for (int& b : bytes) b &= 0xff;
    j["text_bytes"] = bytes;  // raw bytes: any text, even invalid UTF-8, survives
  }
  if (!answer_levels.empty()) j["answer_levels"] = answer_levels;
  return j.dump();
}

}  // namespace dg::models
