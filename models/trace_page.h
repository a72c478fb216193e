#pragma once
// The routing-trace page: one static, self-contained HTML file (inline CSS and
// JavaScript, the trace embedded as the JSON of RoutingTrace::to_json; no
// server, no network, no other file) showing the text of the first sequence
// with every byte on a background coloured by its token's depth (blocks
// applied), a legend of depth -> colour, the answer bytes marked (a red
// bar), and the path of a token — per step: step, block or "return", weight w, halting
// probability lambda — on hover, click or keyboard focus (arrow keys move
// along the text). A URL fragment #token=N opens token N's path on load, and
// clicking a byte puts its fragment in the address bar, so a path can be linked.
//
// Byte b of the text belongs to token b (row 0 of the trace); answer_levels[t]
// is the level of the byte token t predicts (byte t + 1), as in data::Batch.
// Bytes of any value display safely: valid UTF-8 characters as themselves
// (the lead byte shows the character, its continuation bytes a dot), newline
// and tab as themselves after a mark, other control bytes (< 0x20, 0x7f) and
// bytes that are not UTF-8 as their two hex digits in a box (solid, dashed:
// fonts rarely have the control pictures); every character is bidi-isolated,
// and the text is set with textContent, never parsed as HTML.
//
//   std::ofstream(dir + "/routing.html")
//       << models::trace_page_html(*model.last_routing_trace(), text, levels, "mob routing");
#include <cstdint>
#include <string>
#include <vector>

#include "models/trace.h"

namespace dg::models {

// The page as one string. answer_levels is empty or holds one level per
// token (B*T, 1..4 for answer bytes, else -1); a dg::Error says otherwise.
std::string trace_page_html(const RoutingTrace& trace, const std::string& text,
                            const std::vector<int64_t>& answer_levels, const std::string& title);

// Text that is safe inside HTML text and attribute values (& < > " ').
std::string html_escape(const std::string& s);
// JSON made safe inside <script type="application/json">: '<', '>' and '&'
// become \u003c, \u003e, \u0026 (they can occur only inside JSON strings,
// where the escape means the same character), so no "</script>" or "<!--"
// can end or change the script element.
std::string json_for_script(const std::string& json);

}  // namespace dg::models
