#!/usr/bin/env bash
# The routing-trace page in headless Chromium: tests/trace_page/fixture.cpp
# writes a hand-made trace's page (hostile bytes, known paths) and a real MoB
# forward's page; each is opened with #token=N and its DOM, after the page's
# script ran, is checked by check.py (characters, depth colours, legend,
# answer marks, the opened path); then interact.py hovers, clicks and types on
# each and checks the layout and the pixels. Exit 77 (ctest: skipped) without
# chromium. About 10 s.
#   bash tests/trace_page/run.sh FIXTURE PYTHON
set -euo pipefail
FIXTURE="$1" PY="$2"
HERE="$(cd "$(dirname "$0")" && pwd)"
BROWSER=$(command -v chromium || command -v chromium-browser || true)
if [ -z "$BROWSER" ]; then
  echo "SKIPPED: chromium is not installed (tools/setup.sh installs Debian's chromium): the trace page was not rendered"
  exit 77
fi
OUT=$(mktemp -d)
trap 'rm -rf "$OUT"' EXIT
"$FIXTURE" "$OUT"

# render PAGE TOKEN: the page's DOM after load, opened at #token=TOKEN, in $OUT/PAGE_TOKEN.dom.
render() {
  if ! timeout 30 "$BROWSER" --headless --no-sandbox --disable-gpu --no-first-run --user-data-dir="$OUT/profile" \
       --dump-dom "file://$OUT/$1.html#token=$2" > "$OUT/$1_$2.dom" 2> "$OUT/chromium.log"; then
    echo "chromium failed (or ran past 30 s) on $1.html#token=$2:" >&2
    tail -20 "$OUT/chromium.log" >&2
    exit 1
  fi
}
field() { "$PY" -c 'import json, sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])' "$OUT/$1.json" "$2"; }

T=$(field hand T)
# hand: a token with 3 blocks and a return, one of the second sequence (no character), one past the end.
for token in $(field hand open) $((T + 5)) 99999; do
  render hand "$token"
  "$PY" "$HERE/check.py" "$OUT/hand.json" "$OUT/hand_$token.dom" "$token"
done
# mob: the first of its deepest tokens; the text is plain UTF-8, so the page must read as the text.
token=$(field mob open)
render mob "$token"
"$PY" "$HERE/check.py" "$OUT/mob.json" "$OUT/mob_$token.dom" "$token" --utf8
# Mouse, keyboard, layout and pixels, over the DevTools protocol.
for page in hand mob; do
  timeout 60 "$PY" "$HERE/interact.py" "$BROWSER" "$OUT/profile" "$OUT/$page.json" "$OUT/$page.html"
done
