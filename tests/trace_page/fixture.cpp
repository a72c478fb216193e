// Writes the pages tests/trace_page/check.py renders in headless Chromium,
// each beside the facts it must display:
//   hand.html / hand.json  a hand-made trace (2 sequences, known paths) over a
//                          text of hostile bytes: markup, "</script>", NUL,
//                          control bytes, invalid and truncated UTF-8, RLO
//   mob.html / mob.json    the trace of a real forward of a tiny
//                          Mixture-of-Blocks whose tokens halt at different depths
// The .json files are RoutingTrace::to_json plus "depths" (RoutingTrace::depth
// per token), "open" (the token whose path the test opens with #token=N) and
// "title" (markup, shown as text).
//   trace_page_fixture OUT_DIR
#include <fmt/core.h>

#include <fstream>
#include <nlohmann/json.hpp>
#include <set>

#include "autograd/engine.h"
#include "autograd/ops.h"
#include "models/mob.h"
#include "models/trace_page.h"

using namespace dg;
using namespace dg::models;

namespace {

void write(const std::string& dir, const std::string& name, const RoutingTrace& tr, const std::string& text,
           const std::vector<int64_t>& levels, int64_t open) {
  const std::string title = name + " trace </title><script>alert(1)</script> & \"test\"";
  std::ofstream(dir + "/" + name + ".html", std::ios::binary) << trace_page_html(tr, text, levels, title);
  nlohmann::json j = nlohmann::json::parse(tr.to_json(text, levels));
  std::vector<int64_t> depths;
  for (int64_t t = 0; t < tr.B * tr.T; ++t) depths.push_back(tr.depth(t));
  j["depths"] = depths, j["open"] = open, j["title"] = title;
  std::ofstream(dir + "/" + name + ".json") << j.dump(1);
}

// Token t of the hand-made trace runs t % 5 blocks (block (t + 2s) % 3 at step
// s) and then returns, unless it reached max_depth 4; w and lambda differ per
// token and step, so a path shown for the wrong token or step is caught.
void hand_page(const std::string& dir) {
  static const char raw[] =
      "x<b>&amp;</script><script>alert(1)</script>\n<!-- \t\r\x00\x7f \xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80 "
      "\xff\xc3\x28\xe2\x82 \xed\xa0\x80 \xc0\xaf \xe0\x80\xaf \xf4\x90\x80\x80 \xe2\x80\xae RTL!\nend\xf0\x9f";
  const std::string text(raw, sizeof(raw) - 1);  // keeps the NUL byte
  RoutingTrace tr;
  const auto T = static_cast<int64_t>(text.size());
  tr.reset(2, T, 3, 4);
  std::vector<int64_t> levels;
  for (int64_t t = 0; t < 2 * T; ++t) {
    const int32_t depth = static_cast<int32_t>(t % 5);
    for (int32_t s = 0; s <= depth && s <= 4; ++s) {
      const float lambda = static_cast<float>((t * 13 + s * 29) % 97) / 97.0f;
      if (s == depth && depth < 4) {
        tr.tokens[t].push_back({s, -1, 0.0f, 0.5f + lambda / 2});
      } else if (s < depth) {
        const float w = static_cast<float>((t * 37 + s * 11) % 100) / 100.0f + 0.0005f;
        tr.tokens[t].push_back({s, static_cast<int32_t>((t + 2 * s) % 3), w, lambda / 2});
      }
    }
    levels.push_back(t % 7 == 2 ? t % 4 + 1 : -1);
  }
  write(dir, "hand", tr, text, levels, 13);  // token 13 ('r' of "</script>"): 3 blocks, then return
}

void mob_page(const std::string& dir) {
  const std::string text = "12+7=19\nthe caf\xc3\xa9 <b> & co\n345+66=411\nend of it.";
  const auto T = static_cast<int64_t>(text.size());
  MoBConfig c;
  c.gpt = {.n_layer = 0, .n_head = 2, .n_embd = 16, .block_size = T, .vocab_size = 256, .dropout = 0.0,
           .tied_head = true, .seed = 5, .dtype = DType::f32};
  c.n_blocks = 3, c.max_depth = 4, c.gate_init = GateInit::uniform, c.return_bias = 9.0;
  MoB model(c);
  {
    // A random gate, and +9·d on the return logit: the tokens halt at every depth 0..4.
    NoGradGuard ng;
    Generator g(7);
    copy_(model.gate->weight, randn(model.gate->weight.shape(), {model.gate->weight.dtype()}, &g) * 3.0);
    copy_(model.step_bias, randn(model.step_bias.shape(), {model.step_bias.dtype()}, &g) * 3.0);
  }
  std::vector<int64_t> ids(text.begin(), text.end());
  for (int64_t& b : ids) b &= 0xff;
  model.eval();
  {
    NoGradGuard ng;
    model.forward(from_vector<int64_t>(ids, {1, T}));
  }
  const RoutingTrace& tr = *model.last_routing_trace();
  std::set<int64_t> depths;
  int64_t open = 0;
  for (int64_t t = 0; t < T; ++t) {
    depths.insert(tr.depth(t));
    if (tr.depth(t) > tr.depth(open)) open = t;  // the first of the deepest tokens
  }
  DG_CHECK(depths.size() >= 3, "trace_page_fixture: the MoB trace has {} distinct depth(s); the page test needs "
           "tokens that halt at several depths", depths.size());
  std::vector<int64_t> levels(static_cast<size_t>(T), -1);
  for (size_t t = 0; t + 1 < text.size(); ++t)
    if (text[t] == '=') levels[t] = 1 + static_cast<int64_t>(t % 4);  // the byte after '=' begins an answer
  write(dir, "mob", tr, text, levels, open);
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    fmt::print(stderr, "usage: trace_page_fixture OUT_DIR\n");
    return 2;
  }
  try {
    hand_page(argv[1]);
    mob_page(argv[1]);
  } catch (const std::exception& e) {
    fmt::print(stderr, "{}\n", e.what());
    return 1;
  }
  return 0;
}
