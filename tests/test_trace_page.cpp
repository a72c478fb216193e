// The routing-trace page writer (models/trace_page.h): escaping of the title
// and of the embedded JSON, the embedded trace equal to RoutingTrace::to_json
// whatever the text's bytes, nothing fetched from outside, bad input refused.
// What the page displays is checked in headless Chromium (tests/trace_page/).
#include <nlohmann/json.hpp>

#include "models/mob.h"
#include "models/trace_page.h"
#include "testing.h"

using namespace dg;
using namespace dg::models;

namespace {

size_t count(const std::string& s, const std::string& what) {
  size_t n = 0;
  for (size_t at = s.find(what); at != std::string::npos; at = s.find(what, at + 1)) ++n;
  return n;
}

// The JSON between <script type="application/json" id="trace"> and </script>.
std::string embedded_json(const std::string& page) {
  const std::string open = "<script type=\"application/json\" id=\"trace\">";
  const size_t from = page.find(open);
  EXPECT_NE(from, std::string::npos);
  const size_t begin = from + open.size(), end = page.find("</script>", begin);
  EXPECT_NE(end, std::string::npos);
  return page.substr(begin, end - begin);
}

// Token t runs t % 3 blocks, then returns.
RoutingTrace hand_trace(int64_t B, int64_t T) {
  RoutingTrace tr;
  tr.reset(B, T, 2, 3);
  for (int64_t t = 0; t < B * T; ++t) {
    const auto depth = static_cast<int32_t>(t % 3);
    for (int32_t s = 0; s < depth; ++s)
      tr.tokens[t].push_back({s, (s + static_cast<int32_t>(t)) % 2, 0.25f * static_cast<float>(s + 1), 0.1f});
    tr.tokens[t].push_back({depth, -1, 0.0f, 0.75f});
  }
  return tr;
}

// Every byte value, and text that would close or open elements if pasted as HTML.
std::string hostile_text() {
  std::string text = "</script><script>alert(1)</script><!-- & &amp; \"'\n";
  for (int b = 0; b < 256; ++b) text += static_cast<char>(b);
  return text;
}

}  // namespace

TEST(TracePage, HtmlEscapeEscapesEveryMarkupCharacter) {
  EXPECT_EQ(html_escape("a<b>&\"c'd"), "a&lt;b&gt;&amp;&quot;c&#39;d");
  EXPECT_EQ(html_escape("plain \xc3\xa9"), "plain \xc3\xa9");
}

TEST(TracePage, JsonForScriptCannotEndTheScriptAndMeansTheSame) {
  const nlohmann::json j = {{"s", "</script><!--<script>&x"}, {"n", {1, 2.5, -3}}};
  const std::string safe = json_for_script(j.dump());
  EXPECT_EQ(safe.find('<'), std::string::npos);
  EXPECT_EQ(safe.find('>'), std::string::npos);
  EXPECT_EQ(safe.find('&'), std::string::npos);
  EXPECT_EQ(nlohmann::json::parse(safe), j);
}

TEST(TracePage, EmbeddedTraceRoundTripsWhateverTheTextBytes) {
  const std::string text = hostile_text();
  const auto T = static_cast<int64_t>(text.size());
  const RoutingTrace tr = hand_trace(2, T);
  std::vector<int64_t> levels(static_cast<size_t>(2 * T), -1);
  levels[5] = 3, levels[T + 1] = 1;
  const std::string title = "</title><script>alert('x')</script> & run";
  const std::string page = trace_page_html(tr, text, levels, title);

  // The page's own two scripts and nothing else: the text and the title opened no element.
  EXPECT_EQ(count(page, "<script"), 2u);
  EXPECT_EQ(count(page, "</script>"), 2u);
  EXPECT_EQ(count(page, "<title>"), 1u);
  EXPECT_EQ(count(page, "</title>"), 1u);
  EXPECT_NE(page.find("<title>&lt;/title&gt;&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; run</title>"),
            std::string::npos);
  // The text travels as numbers: none of its raw bytes is in the page.
  EXPECT_EQ(page.find("alert(1)"), std::string::npos);
  EXPECT_EQ(page.find('\xff'), std::string::npos);
  EXPECT_EQ(page.find('\0'), std::string::npos);

  const nlohmann::json embedded = nlohmann::json::parse(embedded_json(page));
  EXPECT_EQ(embedded, nlohmann::json::parse(tr.to_json(text, levels)));
  std::vector<int> bytes = embedded.at("text_bytes").get<std::vector<int>>();
  ASSERT_EQ(bytes.size(), text.size());
  for (size_t i = 0; i < text.size(); ++i) EXPECT_EQ(bytes[i], static_cast<unsigned char>(text[i])) << i;
  // Token 5 runs 2 blocks (1, then 0), then returns.
  EXPECT_EQ(embedded.at("paths").at(5).dump(),
            "[[0,1,0.25,0.10000000149011612],[1,0,0.5,0.10000000149011612],[2,-1,0.0,0.75]]");
}

TEST(TracePage, RealMoBTraceRoundTrips) {
  MoBConfig c;
  c.gpt = {.n_layer = 0, .n_head = 2, .n_embd = 8, .block_size = 12, .vocab_size = 256, .dropout = 0.0,
           .tied_head = true, .seed = 3, .dtype = DType::f32};
  c.n_blocks = 2, c.max_depth = 3, c.gate_init = GateInit::uniform;
  MoB model(c);
  model.eval();
  const std::string text = "1+2=3\n4+5=9\n";
  std::vector<int64_t> ids(text.begin(), text.end());
  {
    NoGradGuard ng;
    model.forward(from_vector<int64_t>(ids, {1, 12}));
  }
  const RoutingTrace& tr = *model.last_routing_trace();
  const std::string page = trace_page_html(tr, text, {}, "mob");
  EXPECT_EQ(nlohmann::json::parse(embedded_json(page)), nlohmann::json::parse(tr.to_json(text)));
}

TEST(TracePage, PageIsSelfContained) {
  const std::string page = trace_page_html(hand_trace(1, 4), "abcd", {}, "t");
  for (const char* outside : {"http:", "https:", "src=", "href=", "url(", "@import", "<link", "<iframe"})
    EXPECT_EQ(page.find(outside), std::string::npos) << outside;
  // And a browser would refuse to fetch anything even if it were asked to.
  EXPECT_NE(page.find("Content-Security-Policy\" content=\"default-src 'none';"), std::string::npos);
}

TEST(TracePage, BadInputIsRefusedWithTheField) {
  const RoutingTrace tr = hand_trace(2, 4);
  try {
    trace_page_html(tr, "abcd", std::vector<int64_t>(5, -1), "t");
    ADD_FAILURE() << "expected dg::Error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("answer_levels holds 5 entries for B*T = 8 tokens"), std::string::npos)
        << e.what();
  }
  RoutingTrace short_trace = tr;
  short_trace.tokens.pop_back();
  try {
    trace_page_html(short_trace, "abcd", {}, "t");
    ADD_FAILURE() << "expected dg::Error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("the trace holds 7 paths for B*T = 2x4"), std::string::npos) << e.what();
  }
}
