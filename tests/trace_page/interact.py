#!/usr/bin/env python3
"""The routing-trace page under a mouse and a keyboard, and its pixels: drives
headless Chromium over the DevTools protocol (--remote-debugging-pipe: NUL-
separated JSON on file descriptors 3 and 4, so nothing but the standard
library is needed) on a page that tests/trace_page/fixture.cpp wrote.

    interact.py CHROMIUM PROFILE_DIR EXPECT.json PAGE.html

Asserts: hovering a character shows its token's path and leaving the text
shows the pinned one again; a click pins a token, focuses it and puts
#token=N in the address; ArrowRight, End and Home move the pinned token, Tab
from the top of the page focuses the pinned character; editing the address's
fragment opens that token; the characters are laid out left to right, whatever
bidi controls the text holds; and in a screenshot every character's
background has the colour of its depth in the legend.
"""
import base64
import json
import math
import os
import struct
import subprocess
import sys
import time
import zlib


class Browser:
    """One headless Chromium, one page, commands over the DevTools pipe."""

    def __init__(self, chromium, profile):
        r3, w3 = os.pipe()  # we write, Chromium reads on fd 3
        r4, w4 = os.pipe()  # Chromium writes on fd 4, we read

        def child_fds():
            os.dup2(r3, 3)
            os.dup2(w4, 4)

        self.proc = subprocess.Popen(
            [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--remote-debugging-pipe",
             f"--user-data-dir={profile}", "--window-size=1000,900", "--force-device-scale-factor=1", "about:blank"],
            pass_fds=(3, 4), preexec_fn=child_fds, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        os.close(r3)
        os.close(w4)
        self.out, self.inp = os.fdopen(w3, "wb", buffering=0), os.fdopen(r4, "rb", buffering=0)
        self.buf, self.next_id, self.session = b"", 0, None

    def _read(self):
        while b"\0" not in self.buf:
            chunk = self.inp.read(1 << 16)
            if not chunk:
                raise RuntimeError("chromium closed the DevTools pipe")
            self.buf += chunk
        msg, self.buf = self.buf.split(b"\0", 1)
        return json.loads(msg)

    def send(self, method, params=None, browser=False):
        self.next_id += 1
        msg = {"id": self.next_id, "method": method, "params": params or {}}
        if self.session and not browser:
            msg["sessionId"] = self.session
        self.out.write(json.dumps(msg).encode() + b"\0")
        while True:
            m = self._read()
            if m.get("id") == self.next_id:
                if "error" in m:
                    raise RuntimeError(f"{method}: {m['error']}")
                return m["result"]

    def open(self, url):
        self.session = None
        target = self.send("Target.createTarget", {"url": url})["targetId"]
        self.session = self.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        deadline = time.time() + 20
        while not self.js("location.protocol === 'file:' && document.readyState === 'complete'"):
            if time.time() > deadline:
                raise RuntimeError(f"{url} did not load")
            time.sleep(0.05)

    def js(self, expr):
        r = self.send("Runtime.evaluate", {"expression": expr, "returnByValue": True})
        if "exceptionDetails" in r:
            raise RuntimeError(f"{expr}: {r['exceptionDetails']}")
        return r["result"].get("value")

    def mouse(self, kind, x, y):
        self.send("Input.dispatchMouseEvent", {"type": kind, "x": x, "y": y, "button": "left", "clickCount": 1})

    def key(self, key, code, keycode):
        for kind in ("rawKeyDown", "keyUp"):
            self.send("Input.dispatchKeyEvent",
                      {"type": kind, "key": key, "code": code, "windowsVirtualKeyCode": keycode})

    def close(self):
        try:
            self.send("Browser.close", browser=True)
        except RuntimeError:
            pass
        self.proc.wait(timeout=10)


def decode_png(data):
    """(width, height, rows of (r, g, b) tuples) of an 8-bit RGB or RGBA, non-interlaced PNG."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat = 8, b""
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos : pos + 8])
        body = data[pos + 8 : pos + 8 + length]
        if kind == b"IHDR":
            w, h, depth, colour, _, _, interlace = struct.unpack(">IIBBBBB", body)
            assert depth == 8 and colour in (2, 6) and interlace == 0, (depth, colour, interlace)
        elif kind == b"IDAT":
            idat += body
        pos += 12 + length
    bpp = 3 if colour == 2 else 4
    raw, stride, prev, rows = zlib.decompress(idat), w * bpp, bytearray(w * bpp), []
    for y in range(h):
        f, line = raw[y * (stride + 1)], bytearray(raw[y * (stride + 1) + 1 : (y + 1) * (stride + 1)])
        for i in range(stride):
            a = line[i - bpp] if i >= bpp else 0
            b, c = prev[i], prev[i - bpp] if i >= bpp else 0
            if f == 1:
                line[i] = (line[i] + a) & 255
            elif f == 2:
                line[i] = (line[i] + b) & 255
            elif f == 3:
                line[i] = (line[i] + (a + b) // 2) & 255
            elif f == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                line[i] = (line[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
        rows.append([tuple(line[x * bpp : x * bpp + 3]) for x in range(w)])
        prev = line
    return w, h, rows


PANEL = "document.getElementById('path').dataset.token"
ROWS = "[...document.querySelectorAll('#path-table tbody tr')].map(tr => [...tr.cells].map(c => c.textContent))"
FOCUSED = "document.activeElement && document.activeElement.dataset ? document.activeElement.dataset.t : null"


def centre(b, t):
    """The middle of character t's first box on screen."""
    r = b.js(f"(r => [r.left, r.top, r.width, r.height])(document.querySelector('#text [data-t=\"{t}\"]')"
             ".getClientRects()[0])")
    return r[0] + r[2] / 2, r[1] + r[3] / 2


def expect_panel(b, expect, t, what):
    assert b.js(PANEL) == str(t), f"{what}: the panel shows token {b.js(PANEL)}, want {t}"
    rows, want = b.js(ROWS), expect["paths"][t]
    assert len(rows) == len(want), f"{what}: {rows} for path {want}"
    for row, (step, block, w, lam) in zip(rows, want):
        ok = row[0] == str(step) and row[1] == ("return" if block < 0 else str(block))
        assert ok and abs(float(row[2]) - w) <= 5.1e-5 and abs(float(row[3]) - lam) <= 5.1e-5, (what, row, want)


def check(b, expect, page):
    depths, n, open_t = expect["depths"], min(len(expect.get("text_bytes", [])), expect["T"]), expect["open"]
    b.open(f"file://{page}#token={open_t}")
    expect_panel(b, expect, open_t, "#token= on load")
    # Tokens to hover and click: characters that show something (not a further byte of a character).
    visible = b.js("[...document.querySelectorAll('#text .c:not(.cont):not(.nl)')].map(e => Number(e.dataset.t))")
    a, c = visible[len(visible) // 3], visible[2 * len(visible) // 3]
    assert a != open_t and c != open_t

    b.mouse("mouseMoved", *centre(b, a))
    expect_panel(b, expect, a, f"hover on token {a}")
    b.mouse("mouseMoved", 990, 890)
    expect_panel(b, expect, open_t, "mouse left the text")

    x, y = centre(b, c)
    b.mouse("mouseMoved", x, y)
    b.mouse("mousePressed", x, y)
    b.mouse("mouseReleased", x, y)
    expect_panel(b, expect, c, f"click on token {c}")
    assert b.js("location.hash") == f"#token={c}", b.js("location.hash")
    assert b.js(FOCUSED) == str(c), f"focus after the click: {b.js(FOCUSED)}"
    b.key("ArrowRight", "ArrowRight", 39)
    expect_panel(b, expect, c + 1, "ArrowRight")
    assert b.js(FOCUSED) == str(c + 1), b.js(FOCUSED)
    b.key("End", "End", 35)
    expect_panel(b, expect, n - 1, "End")
    b.key("Home", "Home", 36)
    expect_panel(b, expect, 0, "Home")
    b.js("location.hash = '#token=" + str(a) + "'")
    deadline = time.time() + 5  # hashchange is dispatched asynchronously
    while b.js(PANEL) != str(a) and time.time() < deadline:
        time.sleep(0.02)
    expect_panel(b, expect, a, "the fragment edited")

    # Tab from the top of the page reaches the pinned character (roving tabindex).
    b.js("document.activeElement.blur()")
    b.key("Tab", "Tab", 9)
    assert b.js(FOCUSED) == str(a), f"Tab focused {b.js(FOCUSED)}, want the pinned token {a}"
    expect_panel(b, expect, a, "Tab")

    # Layout: left to right within each line, whatever bidi controls the text holds.
    boxes = b.js("[...document.querySelectorAll('#text .c')].map(e => (r => [r.left, r.top, r.bottom])"
                 "(e.getClientRects()[0] || {left: -1, top: -1, bottom: -1}))")
    for t in range(1, n):
        (x0, _, bottom0), (x1, top1, _) = boxes[t - 1], boxes[t]
        assert top1 >= bottom0 - 2 or x1 > x0, f"token {t} at {boxes[t]} after {boxes[t - 1]}: not left to right"

    # Pixels: the second pixel row of each character's box is background (glyphs start lower); most of
    # it must be the colour of the character's depth in the legend.
    b.mouse("mouseMoved", 990, 890)
    legend = b.js("[...document.querySelectorAll('#legend .swatch')].map(e => getComputedStyle(e).backgroundColor)")
    colours = [tuple(int(v) for v in s[4:-1].split(",")) for s in legend]
    rects = b.js("[...document.querySelectorAll('#text .c')].map(e => (r => [r.left, r.top, r.right])"
                 "(e.getClientRects()[0] || {left: 0, top: 0, right: 0}))")
    png = base64.b64decode(b.send("Page.captureScreenshot", {"format": "png"})["data"])
    if os.environ.get("DG_TRACE_PAGE_SHOT"):
        open(os.environ["DG_TRACE_PAGE_SHOT"], "wb").write(png)
    w, h, img = decode_png(png)
    bad = []
    for t, (left, top, right) in enumerate(rects[:n]):
        y = math.ceil(top) + 1  # below a box's border, above its glyph
        xs = range(int(left) + 2, int(right) - 1)
        if not xs or y >= h:
            continue
        want = colours[min(depths[t], len(colours) - 1)]
        hits = sum(1 for x in xs if max(abs(p - q) for p, q in zip(img[y][x], want)) <= 3)
        if hits * 2 < len(xs):
            bad.append(f"token {t}: {hits}/{len(xs)} pixels of {want} at y {y}, e.g. {img[y][xs[0]]}")
    assert not bad, "\n".join(bad[:10])
    print(f"ok: {page}: hover, leave, click, arrows, Home/End, fragment, Tab; layout and pixels of {n} characters")


def main():
    if len(sys.argv) != 5:
        sys.exit(__doc__)
    chromium, profile, expect_path, page = sys.argv[1:]
    with open(expect_path) as f:
        expect = json.load(f)
    b = Browser(chromium, profile)
    try:
        check(b, expect, os.path.abspath(page))
    finally:
        b.close()


if __name__ == "__main__":
    main()
