#include "models/trace_page.h"

#include <algorithm>
#include <initializer_list>
#include <utility>

#include "tensor/error.h"

namespace dg::models {
namespace {

// The page's style. Depth colours are set per character by the script.
constexpr const char* kStyle = R"css(
body { font-family: system-ui, sans-serif; margin: 1.5em; color: #222; background: #fff; }
h1 { font-size: 1.2em; margin: 0 0 .3em; }
#summary, #help { color: #555; margin: .2em 0; font-size: .9em; }
#legend { display: flex; flex-wrap: wrap; gap: .3em 1em; list-style: none; padding: 0; margin: .8em 0;
          font-size: .9em; }
#legend .swatch { display: inline-block; width: 1.4em; height: 1em; vertical-align: -.15em; margin-right: .3em;
                  border-radius: 2px; }
#marks { font-size: .85em; color: #555; margin: 0 0 .8em; }
#view { display: flex; flex-wrap: wrap; gap: 1em 2em; align-items: flex-start; }
#text { flex: 1 1 50ch; max-width: 100ch; font-family: ui-monospace, "DejaVu Sans Mono", monospace;
        white-space: pre-wrap; word-break: break-all; line-height: 1.9; direction: ltr; }
.c { unicode-bidi: isolate; padding: 0 1px; border-radius: 2px; cursor: pointer; }
.nl::before { content: "\21B5"; opacity: .75; }
.tab::before { content: "\21E5"; opacity: .75; }
.cont::before { content: "\B7"; opacity: .6; font-size: .7em; }
.ctl, .bad { font-size: .7em; vertical-align: .1em; border: 1px solid currentColor; }
.bad { border-style: dashed; }
.ans { box-shadow: inset 0 -3px 0 #e8112d; }
.sel, .c:focus { outline: 2px solid #000; outline-offset: 1px; }
#marks .c { cursor: default; }
#path { flex: 0 1 44ch; padding: .6em .8em; border: 1px solid #ccc; border-radius: 4px; position: sticky; top: 1em;
        background: #fafafa; }
#path table { border-collapse: collapse; margin-top: .4em; font-variant-numeric: tabular-nums; }
#path th, #path td { padding: 1px 10px; text-align: right; border-bottom: 1px solid #e4e4e4; }
)css";

// The page's script: reads the embedded trace, draws the legend and the text,
// and opens paths. Characters are created with textContent, never as HTML.
constexpr const char* kScript = R"js(
"use strict";
const trace = JSON.parse(document.getElementById("trace").textContent);
const bytes = trace.text_bytes || [], levels = trace.answer_levels || [];
const T = trace.T, maxDepth = trace.max_depth, n = Math.min(bytes.length, T);
const depthOf = t => trace.paths[t].filter(s => s[1] >= 0).length;

// Depth d of 0..maxDepth on the viridis scale (as tools/plot_routing.py draws it).
const VIRIDIS = [[68, 1, 84], [71, 44, 122], [59, 81, 139], [44, 113, 142], [33, 144, 141],
                 [39, 173, 129], [92, 200, 99], [170, 220, 50], [253, 231, 37]];
function colour(d) {
  const x = (maxDepth > 0 ? Math.min(d, maxDepth) / maxDepth : 0) * (VIRIDIS.length - 1);
  const i = Math.min(Math.floor(x), VIRIDIS.length - 2), f = x - i;
  return "rgb(" + VIRIDIS[i].map((v, k) => Math.round(v + f * (VIRIDIS[i + 1][k] - v))).join(", ") + ")";
}
const ink = d => (maxDepth > 0 && d / maxDepth > 0.5 ? "rgb(0, 0, 0)" : "rgb(255, 255, 255)");

// The code point of the valid UTF-8 sequence at b[i] (ending before `end`) and
// its length, or null: no overlong forms, no surrogates, nothing past U+10FFFF.
function utf8At(b, i, end) {
  const c = b[i];
  if (c < 0x80) return {cp: c, len: 1};
  const len = c >= 0xc2 && c <= 0xdf ? 2 : c >= 0xe0 && c <= 0xef ? 3 : c >= 0xf0 && c <= 0xf4 ? 4 : 0;
  if (len === 0 || i + len > end) return null;
  let cp = c & (0x7f >> len);
  for (let k = 1; k < len; ++k) {
    if ((b[i + k] & 0xc0) !== 0x80) return null;
    cp = (cp << 6) | (b[i + k] & 0x3f);
  }
  if (cp < [0, 0, 0x80, 0x800, 0x10000][len] || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return null;
  return {cp, len};
}
// What a character shows: newline and tab themselves (after a mark), other
// control characters their code in hex (boxed), the rest themselves.
const hex2 = b => b.toString(16).padStart(2, "0"), hex = b => "0x" + hex2(b);
function shown(cp) {
  if (cp === 10) return ["\n", "nl"];
  if (cp === 9) return ["\t", "tab"];
  if (cp < 0x20 || cp === 0x7f) return [hex2(cp), "ctl"];
  return [String.fromCodePoint(cp), ""];
}

const textEl = document.getElementById("text"), spans = [];
function addChar(t, s, cls, what) {
  const el = document.createElement("span");
  el.className = "c" + (cls ? " " + cls : "");
  el.textContent = s;
  const d = depthOf(t);
  el.dataset.t = t, el.dataset.b = bytes[t], el.dataset.d = d;
  el.style.backgroundColor = colour(d), el.style.color = ink(d);
  el.tabIndex = -1;
  el.title = "token " + t + ", " + what + ", depth " + d;
  spans.push(el), textEl.appendChild(el);
}
for (let i = 0; i < n;) {
  const u = utf8At(bytes, i, n);
  if (u === null) { addChar(i, hex2(bytes[i]), "bad", "byte " + hex(bytes[i]) + " (not UTF-8)"); ++i; continue; }
  const [s, cls] = shown(u.cp);
  addChar(i, s, cls, "byte " + hex(bytes[i]));
  for (let k = 1; k < u.len; ++k) addChar(i + k, "", "cont", "byte " + hex(bytes[i + k]) + " (continues " + s + ")");
  i += u.len;
}
// levels[t] is the level of the byte token t predicts: byte t + 1.
for (let t = 0; t + 1 < n; ++t)
  if (levels[t] >= 1 && levels[t] <= 4) {
    const el = spans[t + 1];
    el.classList.add("ans"), el.dataset.level = levels[t], el.title += ", answer level " + levels[t];
  }
if (n === 0) textEl.textContent = "(this trace holds no text)";

const legend = document.getElementById("legend"), count = new Array(maxDepth + 1).fill(0);
for (let t = 0; t < n; ++t) ++count[Math.min(depthOf(t), maxDepth)];
for (let d = 0; d <= maxDepth; ++d) {
  const li = document.createElement("li"), sw = document.createElement("span");
  sw.className = "swatch", sw.style.backgroundColor = colour(d);
  li.dataset.d = d, li.append(sw, d + (d === 1 ? " block" : " blocks") + " (" + count[d] + ")");
  legend.appendChild(li);
}
const summary = trace.summary || {};
document.getElementById("summary").textContent = trace.B + " x " + trace.T + " tokens, " + trace.n_blocks +
    " blocks, max depth " + maxDepth + "; mean depth " + (summary.mean_depth || 0).toFixed(2) + ", repeats " +
    (100 * (summary.repeat_rate || 0)).toFixed(1) + "% (all sequences); shown: the first sequence.";

// The path panel: token t's steps. Hover shows a token; click, focus, the
// arrow keys and #token=N pin one (hover ends back on the pinned token).
const head = document.getElementById("path-head"), table = document.getElementById("path-table");
let pinned = null;
// Byte t as the text shows it, quoted; newline, tab and further bytes by their marks.
function quoted(t) {
  const s = spans[t].textContent, marks = {"\n": "\u21b5", "\t": "\u21e5", "": "\u00b7"}, c = spans[t].classList;
  if (c.contains("bad")) return hex(bytes[t]) + " (not UTF-8)";
  if (c.contains("ctl")) return hex(bytes[t]) + " (control)";
  return hex(bytes[t]) + " \u201c" + (s in marks ? marks[s] : s) + "\u201d";
}
const number = v => (v === 0 || Math.abs(v) >= 1e-4 ? v.toFixed(4) : v.toExponential(1));
function describe(t) {
  if (t >= n) return "token " + t + " (sequence " + Math.floor(t / T) + ", position " + (t % T) + ")";
  let d = "token " + t + ": byte " + quoted(t);
  if (t + 1 < n) d += ", predicts byte " + quoted(t + 1) + (levels[t] >= 1 ? " (answer, level " + levels[t] + ")" : "");
  return d;
}
function show(t) {
  for (const el of textEl.querySelectorAll(".sel")) el.classList.remove("sel");
  const body = table.tBodies[0];
  body.replaceChildren();
  if (t === null || !(t >= 0 && t < trace.paths.length)) {
    head.textContent = t === null ? "Hover, click or focus a character to see its token's path."
                                  : "There is no token " + t + " in this trace.";
    table.hidden = true, document.getElementById("path").removeAttribute("data-token");
    return;
  }
  head.textContent = describe(t) + "; depth " + depthOf(t) + ".";
  for (const [step, block, w, lambda] of trace.paths[t]) {
    const tr = body.insertRow();
    for (const v of [step, block < 0 ? "return" : block, number(w), number(lambda)])
      tr.insertCell().textContent = v;
  }
  table.hidden = false, document.getElementById("path").dataset.token = t;
  if (t < n) spans[t].classList.add("sel");
}
function pin(t, focus) {
  pinned = t, show(t);
  for (const el of spans) el.tabIndex = -1;
  const target = t !== null && t < n ? spans[t] : spans[0];
  if (target) target.tabIndex = 0;
  if (focus && target && t !== null && t < n) target.focus();
}
const tokenOf = e => (e.target.dataset && e.target.dataset.t !== undefined ? Number(e.target.dataset.t) : null);
textEl.addEventListener("mouseover", e => { if (tokenOf(e) !== null) show(tokenOf(e)); });
textEl.addEventListener("mouseleave", () => show(pinned));
textEl.addEventListener("click", e => {
  if (tokenOf(e) === null) return;
  pin(tokenOf(e), true);
  history.replaceState(null, "", "#token=" + pinned);
});
textEl.addEventListener("focusin", e => { if (tokenOf(e) !== null && tokenOf(e) !== pinned) pin(tokenOf(e), false); });
textEl.addEventListener("keydown", e => {
  const moves = {ArrowRight: 1, ArrowDown: 1, ArrowLeft: -1, ArrowUp: -1, Home: -n, End: n};
  if (!(e.key in moves) || n === 0) return;
  e.preventDefault();
  pin(Math.max(0, Math.min(n - 1, (pinned === null || pinned >= n ? 0 : pinned) + moves[e.key])), true);
});
function fromHash() {
  const m = /^#token=(\d+)$/.exec(location.hash);
  pin(m ? Number(m[1]) : null, false);
}
window.addEventListener("hashchange", fromHash);
fromHash();
)js";

// s with every character that has an entry in `by` replaced by the entry.
std::string replace_each(const std::string& s, std::initializer_list<std::pair<char, const char*>> by) {
  std::string out;
  out.reserve(s.size());
  for (char c : s) {
    const auto* hit = std::find_if(by.begin(), by.end(), [c](const auto& e) { return e.first == c; });
    if (hit == by.end()) out += c;
    else out += hit->second;
  }
  return out;
}

}  // namespace

std::string html_escape(const std::string& s) {
  return replace_each(s, {{'&', "&amp;"}, {'<', "&lt;"}, {'>', "&gt;"}, {'"', "&quot;"}, {'\'', "&#39;"}});
}

std::string json_for_script(const std::string& json) {
  return replace_each(json, {{'<', "\\u003c"}, {'>', "\\u003e"}, {'&', "\\u0026"}});
}

std::string trace_page_html(const RoutingTrace& trace, const std::string& text,
                            const std::vector<int64_t>& answer_levels, const std::string& title) {
  const auto tokens = static_cast<size_t>(trace.B * trace.T);
  DG_CHECK(trace.tokens.size() == tokens, "trace_page_html: the trace holds {} paths for B*T = {}x{} tokens",
           trace.tokens.size(), trace.B, trace.T);
  DG_CHECK(answer_levels.empty() || answer_levels.size() == tokens,
           "trace_page_html: answer_levels holds {} entries for B*T = {} tokens (give none, or one per token)",
           answer_levels.size(), tokens);
  const std::string t = html_escape(title);
  std::string page;
  page += "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n";
  // Nothing may be fetched: the page is its own world.
  page += "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; "
          "style-src 'unsafe-inline'; script-src 'unsafe-inline'\">\n";
  page += "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n";
  page += "<title>" + t + "</title>\n<style>" + kStyle + "</style>\n</head>\n<body>\n";
  page += "<h1>" + t + "</h1>\n";
  page += "<p id=\"summary\"></p>\n";
  page += "<p id=\"help\">Each character is coloured by the number of blocks its token ran. Hover, click or "
          "focus one (Tab, then the arrow keys) for its path; add #token=N to the address to open token N.</p>\n";
  page += "<ul id=\"legend\" aria-label=\"depth: blocks applied\"></ul>\n";
  page += "<p id=\"marks\"><span class=\"c ans\">red bar</span>: answer byte (its level in its tooltip; the "
          "character before it predicts it) &middot; <span class=\"c nl\"></span> newline &middot; "
          "<span class=\"c tab\"></span> tab &middot; <span class=\"c ctl\">1b</span> control byte, in hex "
          "&middot; <span class=\"c bad\">ff</span> byte that is not UTF-8, in hex &middot; "
          "<span class=\"c cont\"></span> further byte of the character before it</p>\n";
  page += "<noscript>This page draws the trace with JavaScript; the trace itself is the JSON in its "
          "source.</noscript>\n";
  page += "<div id=\"view\"><div id=\"text\" role=\"group\" aria-label=\"text coloured by depth\"></div>\n";
  page += "<section id=\"path\" aria-live=\"polite\"><div id=\"path-head\"></div>\n";
  page += "<table id=\"path-table\" hidden><thead><tr><th>step</th><th>block</th><th>w</th>"
          "<th>&lambda; (halting probability)</th></tr></thead><tbody></tbody></table></section></div>\n";
  page += "<script type=\"application/json\" id=\"trace\">" + json_for_script(trace.to_json(text, answer_levels)) +
          "</script>\n";
  page += std::string("<script>") + kScript + "</script>\n</body>\n</html>\n";
  return page;
}

}  // namespace dg::models
