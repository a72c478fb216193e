#!/usr/bin/env python3
"""What the routing-trace page displays, read from the DOM that headless
Chromium dumped after the page's script ran (tests/trace_page/run.sh).

    check.py EXPECT.json DOM.html TOKEN [--utf8]

EXPECT.json is what tests/trace_page/fixture.cpp wrote beside the page (the
trace's JSON plus "depths", RoutingTrace::depth per token); TOKEN is the N of
the #token=N the page was opened with. Asserts: one character element per text
byte, in order, holding that byte, showing what the byte should show (worked
out here, with Python's strict UTF-8 decoder, not with the page's code) and
nothing parsed from it as markup; each character's depth and colour those of
the legend entry for the trace's depth; the legend (every depth 0..max_depth,
distinct colours, token counts); the answer bytes; and the opened path's rows
(step, block or "return", w, lambda) for TOKEN. With --utf8 the text is valid
UTF-8 without control bytes and the characters must read as the text itself.
"""
import json
import re
import sys
from html.parser import HTMLParser


class Dom(HTMLParser):
    """The parts of the page the checks read."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.stack = []  # open elements: (tag, attrs dict)
        self.chars = []  # {"attrs", "text"} per span in #text
        self.legend = []  # {"d", "colour", "text"}
        self.tags = {}  # tag -> count, over the whole document
        self.path = None  # attrs of <section id="path">
        self.head = ""
        self.rows = []  # per <tr> of the path table's body: cell texts
        self.table_hidden = None
        self.h1 = ""

    def inside(self, pred):
        return any(pred(tag, a) for tag, a in self.stack)

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        self.tags[tag] = self.tags.get(tag, 0) + 1
        if tag == "span" and self.inside(lambda t, x: x.get("id") == "text"):
            self.chars.append({"attrs": a, "text": ""})
        elif tag == "li" and self.inside(lambda t, x: x.get("id") == "legend"):
            self.legend.append({"d": a.get("data-d"), "colour": None, "text": ""})
        elif tag == "span" and a.get("class") == "swatch" and self.legend:
            self.legend[-1]["colour"] = style_of(a).get("background-color")
        elif tag == "section" and a.get("id") == "path":
            self.path = a
        elif tag == "table" and a.get("id") == "path-table":
            self.table_hidden = "hidden" in a
        elif tag == "tr" and self.inside(lambda t, x: t == "tbody"):
            self.rows.append([])
        elif tag == "td" and self.rows:
            self.rows[-1].append("")
        if tag not in ("meta", "br", "input", "img", "link"):
            self.stack.append((tag, a))

    def handle_endtag(self, tag):
        while self.stack:
            if self.stack.pop()[0] == tag:
                break

    def handle_data(self, data):
        if not self.stack:
            return
        tag, a = self.stack[-1]
        if tag == "span" and self.inside(lambda t, x: x.get("id") == "text"):
            self.chars[-1]["text"] += data
        elif self.inside(lambda t, x: t == "li" and "data-d" in x):
            self.legend[-1]["text"] += data
        elif tag == "h1":
            self.h1 += data
        elif self.inside(lambda t, x: x.get("id") == "path-head"):
            self.head += data
        elif tag == "td" and self.rows:
            self.rows[-1][-1] += data


def style_of(attrs):
    """Inline style as {property: value}."""
    out = {}
    for part in (attrs.get("style") or "").split(";"):
        if ":" in part:
            k, v = part.split(":", 1)
            out[k.strip()] = v.strip()
    return out


def expected_chars(b):
    """Per byte: (text shown, class) under the page's documented rule."""
    out, i = [], 0
    while i < len(b):
        c = b[i]
        n = 1 if c < 0x80 else 2 if c >> 5 == 6 else 3 if c >> 4 == 14 else 4 if c >> 3 == 30 else 0
        ch = None
        if n and i + n <= len(b):
            try:
                ch = bytes(b[i : i + n]).decode("utf-8")  # strict: no overlong, surrogate, > U+10FFFF
            except UnicodeDecodeError:
                ch = None
        if ch is None:
            out.append((f"{c:02x}", "bad"))
            i += 1
            continue
        cp = ord(ch)
        if cp == 10:
            out.append(("\n", "nl"))
        elif cp == 9:
            out.append(("\t", "tab"))
        elif cp < 0x20 or cp == 0x7F:
            out.append((f"{cp:02x}", "ctl"))
        else:
            out.append((ch, ""))
        out += [("", "cont")] * (n - 1)
        i += n
    return out


def check(expect, dom, token, utf8):
    T, max_depth = expect["T"], expect["max_depth"]
    text = expect.get("text_bytes", [])
    levels = expect.get("answer_levels", [])
    depths = expect["depths"]
    n = min(len(text), T)
    fail = []

    # Nothing in the text or title became markup: the page's own two scripts, the title as text.
    assert dom.tags.get("script") == 2, f"script elements: {dom.tags.get('script')}"
    assert dom.tags.get("b", 0) == 0 and dom.tags.get("a", 0) == 0, dom.tags
    assert dom.h1 == expect["title"], (dom.h1, expect["title"])

    # The legend: depth -> colour, every depth once, distinct colours, counts of shown tokens.
    assert [e["d"] for e in dom.legend] == [str(d) for d in range(max_depth + 1)], dom.legend
    colours = [e["colour"] for e in dom.legend]
    assert all(re.fullmatch(r"rgb\(\d+, \d+, \d+\)", c or "") for c in colours), colours
    assert len(set(colours)) == max_depth + 1, f"legend colours not distinct: {colours}"
    for d, e in enumerate(dom.legend):
        shown = sum(1 for t in range(n) if min(depths[t], max_depth) == d)
        want = f"{d} block{'' if d == 1 else 's'} ({shown})"
        assert e["text"] == want, (e["text"], want)

    # One element per byte, in order: the byte, what it shows, its depth and colour, answer marks.
    assert len(dom.chars) == n, f"{len(dom.chars)} character elements for {n} text bytes"
    want_chars = expected_chars(text[:n])
    for t, (el, (want_text, want_cls)) in enumerate(zip(dom.chars, want_chars)):
        a = el["attrs"]
        cls = (a.get("class") or "").split()
        if a.get("data-t") != str(t) or a.get("data-b") != str(text[t]):
            fail.append(f"element {t}: data-t {a.get('data-t')} data-b {a.get('data-b')}, byte {text[t]}")
        if el["text"] != want_text or (want_cls and want_cls not in cls):
            fail.append(f"byte {t} (0x{text[t]:02x}) shows {el['text']!r} {cls}, want {want_text!r} {want_cls}")
        if a.get("data-d") != str(depths[t]):
            fail.append(f"token {t}: data-d {a.get('data-d')}, trace depth {depths[t]}")
        if style_of(a).get("background-color") != colours[min(depths[t], max_depth)]:
            fail.append(f"token {t}: colour {style_of(a).get('background-color')}, legend's for depth {depths[t]} "
                        f"is {colours[min(depths[t], max_depth)]}")
        answer = t >= 1 and 1 <= levels[t - 1] <= 4 if levels else False
        if ("ans" in cls) != answer or (answer and a.get("data-level") != str(levels[t - 1])):
            fail.append(f"byte {t}: answer mark {'ans' in cls} level {a.get('data-level')}, want {answer}")
        if ("sel" in cls) != (t == token):
            fail.append(f"token {t}: selected {'sel' in cls}, opened token {token}")
    if utf8:
        shown = "".join(el["text"] for el in dom.chars)
        want = bytes(text[:n]).decode("utf-8")
        assert shown == want, f"the page shows {shown!r}, the text is {want!r}"

    # The opened path.
    paths = expect["paths"]
    if 0 <= token < len(paths):
        assert dom.path.get("data-token") == str(token), dom.path
        assert not dom.table_hidden, "path table hidden"
        assert dom.head.startswith(f"token {token}") and dom.head.endswith(f"depth {depths[token]}."), dom.head
        want_rows = paths[token]
        assert len(dom.rows) == len(want_rows), (dom.rows, want_rows)
        for row, (step, block, w, lam) in zip(dom.rows, want_rows):
            ok = len(row) == 4 and row[0] == str(step) and row[1] == ("return" if block < 0 else str(block))
            ok = ok and abs(float(row[2]) - w) <= 5.1e-5 and abs(float(row[3]) - lam) <= 5.1e-5
            if not ok:
                fail.append(f"token {token}: row {row}, want step {step} block {block} w {w:.6f} lambda {lam:.6f}")
    else:
        assert "data-token" not in dom.path and dom.table_hidden and not dom.rows, (dom.path, dom.rows)
        assert dom.head == f"There is no token {token} in this trace.", dom.head
    if fail:
        sys.exit("\n".join(fail[:20]) + f"\n({len(fail)} failures)")
    print(f"ok: {n} characters, depths {sorted(set(depths[:n]))}, token {token} ({len(dom.rows)} path rows)")


def main():
    if len(sys.argv) not in (4, 5) or (len(sys.argv) == 5 and sys.argv[4] != "--utf8"):
        sys.exit(__doc__)
    with open(sys.argv[1]) as f:
        expect = json.load(f)
    dom = Dom()
    with open(sys.argv[2], encoding="utf-8", newline="") as f:
        dom.feed(f.read())
    check(expect, dom, int(sys.argv[3]), len(sys.argv) == 5)


if __name__ == "__main__":
    main()
