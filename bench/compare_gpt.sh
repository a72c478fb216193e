#!/usr/bin/env bash
# dyngrad vs PyTorch on a full GPT training step (zero_grad, forward, loss,
# backward, AdamW step), f32, 2 threads each, for the tiny and small configs.
# Prints one markdown table.
#
#   bash bench/compare_gpt.sh                    # tiny then small, 2 rounds, 20 steps
#   BUILD=build-bench bash bench/compare_gpt.sh  # where bench/bench_gpt_step was built
#   STEPS=5 ROUNDS=1 CONFIGS=tiny bash bench/compare_gpt.sh
#   SIDES=pytorch bash bench/compare_gpt.sh      # only the PyTorch half (no binary needed)
#
# The dyngrad side is $BUILD/bench/bench_gpt_step (default BUILD=build; build
# it first, Release, e.g. cmake --build build --target bench_gpt_step); the
# PyTorch side is bench/torch_gpt.py run by Debian's /usr/bin/python3. Both take
# --config tiny|small --steps N --warmup 3 --threads 2 and print one JSON line.
# The sides run alternately (dyngrad, pytorch, dyngrad, pytorch, ...), ROUNDS
# times each; a side's time is the median of its rounds' median step times.
# Both run with OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE unset and 2 threads
# (DG_NUM_THREADS=2, OMP_NUM_THREADS=2, --threads 2). Peak RSS is measured
# from outside with /usr/bin/time -f %M when it exists (Debian package
# `time`), otherwise taken from the program's own peak_rss_mb; the table shows
# the largest over the rounds. Raw results: $OUT/results.jsonl.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
STEPS=${STEPS:-20}
WARMUP=${WARMUP:-3}
ROUNDS=${ROUNDS:-2}
CONFIGS=${CONFIGS:-"tiny small"}
SIDES=${SIDES:-"dyngrad pytorch"}
OUT=${OUT:-$BUILD/compare_gpt}
BIN="$BUILD/bench/bench_gpt_step"
PY=/usr/bin/python3

for side in $SIDES; do
  case "$side" in
    dyngrad)
      if [ ! -x "$BIN" ]; then
        echo "compare_gpt.sh: error: $BIN not found (or not executable)." >&2
        echo "  Build it first, e.g.: cmake --build $BUILD --target bench_gpt_step" >&2
        echo "  (or set BUILD=<build dir>; SIDES=pytorch runs only the PyTorch half)" >&2
        exit 1
      fi ;;
    pytorch)
      if ! "$PY" -c 'import torch, numpy' 2>/dev/null; then
        echo "compare_gpt.sh: error: $PY cannot import torch and numpy (Debian: python3-torch)" >&2
        exit 1
      fi ;;
    *) echo "compare_gpt.sh: error: unknown side '$side' in SIDES (dyngrad, pytorch)" >&2; exit 1 ;;
  esac
done

mkdir -p "$OUT"
RESULTS="$OUT/results.jsonl"
: > "$RESULTS"

RUN=(env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE DG_NUM_THREADS=2 OMP_NUM_THREADS=2)
TORCH_ENV=()
OPENBLAS_DIR=/usr/lib/x86_64-linux-gnu/openblas-openmp
if [ -e "$OPENBLAS_DIR/libblas.so.3" ]; then
  # torch finds its BLAS as libblas.so.3: make it OpenBLAS without touching the system's choice.
  TORCH_ENV=(LD_LIBRARY_PATH="$OPENBLAS_DIR${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}")
else
  echo "compare_gpt.sh: warning: no OpenBLAS at $OPENBLAS_DIR; torch uses" \
       "$(readlink -f /usr/lib/x86_64-linux-gnu/libblas.so.3 || echo '?')" >&2
fi
TIME=()
[ -x /usr/bin/time ] && TIME=(/usr/bin/time -o "$OUT/rss.txt" -f %M)
FLAGS=(--steps "$STEPS" --warmup "$WARMUP" --threads 2)

# run_one SIDE CONFIG ROUND: runs one side once and appends its JSON line, with
# round and rss_mb added, to $RESULTS.
run_one() {
  local side=$1 config=$2 round=$3 cmd line
  if [ "$side" = dyngrad ]; then
    cmd=("${RUN[@]}" "$BIN" --config "$config" "${FLAGS[@]}")
  else
    cmd=("${RUN[@]}" "${TORCH_ENV[@]}" "$PY" bench/torch_gpt.py --config "$config" "${FLAGS[@]}")
  fi
  echo "== $side $config (round $round)" >&2
  rm -f "$OUT/rss.txt"
  if ! "${TIME[@]}" "${cmd[@]}" > "$OUT/last.txt"; then
    echo "compare_gpt.sh: error: $side $config failed:" >&2
    cat "$OUT/last.txt" >&2
    exit 1
  fi
  line=$(grep '"impl"' "$OUT/last.txt" | tail -n 1 || true)
  echo "$line" >&2
  "$PY" - "$side" "$config" "$round" "$OUT/rss.txt" "$line" >> "$RESULTS" <<'EOF'
import json, os, sys
side, config, rnd, rss_file, line = sys.argv[1:]
try:
    r = json.loads(line)
except ValueError:
    sys.exit(f"compare_gpt.sh: error: {side} {config} printed no JSON line with \"impl\" (got {line!r})")
impl = "dyngrad" if side == "dyngrad" else "pytorch"
for key in ("impl", "median_step_ms", "tokens_per_s"):
    if key not in r:
        sys.exit(f"compare_gpt.sh: error: {side} {config}: JSON line lacks {key!r}: {line}")
if r["impl"] != impl or r.get("config", config) != config:
    sys.exit(f"compare_gpt.sh: error: {side} {config}: unexpected impl/config in {line}")
r["round"] = int(rnd)
r["rss_mb"] = r.get("peak_rss_mb")
r["rss_source"] = "self"
if os.path.exists(rss_file):
    with open(rss_file) as f:
        last = f.read().split()
    if last and last[-1].isdigit():
        r["rss_mb"] = round(int(last[-1]) / 1024, 1)  # /usr/bin/time %M is in KiB
        r["rss_source"] = "/usr/bin/time"
print(json.dumps(r))
EOF
}

for config in $CONFIGS; do
  for round in $(seq 1 "$ROUNDS"); do
    for side in $SIDES; do
      run_one "$side" "$config" "$round"
    done
  done
done

# The table.
"$PY" - "$RESULTS" "$STEPS" "$ROUNDS" <<'EOF'
import json, statistics, sys
path, steps, rounds = sys.argv[1], sys.argv[2], sys.argv[3]
runs = [json.loads(l) for l in open(path) if l.strip()]
configs = list(dict.fromkeys(r["config"] for r in runs))

def side(config, impl):
    """(median ms/step, median tok/s, max peak RSS MB, RSS source) over the rounds, or None."""
    rs = [r for r in runs if r["config"] == config and r["impl"] == impl]
    if not rs:
        return None
    rss = [r["rss_mb"] for r in rs if r.get("rss_mb") is not None]
    return (statistics.median(r["median_step_ms"] for r in rs),
            statistics.median(r["tokens_per_s"] for r in rs),
            max(rss) if rss else None, rs[0]["rss_source"])

def cell(x, fmt):
    return "—" if x is None else fmt.format(x)

torch_version = next((r.get("torch_version") for r in runs if r["impl"] == "pytorch"), "?")
sources = sorted({r["rss_source"] for r in runs})
print(f"Dense GPT training step (zero_grad, forward, loss, backward, AdamW), f32, 2 threads each; "
      f"median of {rounds} rounds of median-of-{steps}-steps; PyTorch {torch_version}; "
      f"peak RSS from {', '.join(sources)}\n")
print("| config | dyngrad ms/step | PyTorch ms/step | dyngrad tok/s | PyTorch tok/s | ratio | "
      "peak RSS dyngrad | peak RSS PyTorch |")
print("|---|---:|---:|---:|---:|---:|---:|---:|")
for c in configs:
    d, t = side(c, "dyngrad"), side(c, "pytorch")
    ratio = f"{d[1] / t[1]:.2f}x" if d and t else "—"
    print(f"| {c} | {cell(d and d[0], '{:.1f}')} | {cell(t and t[0], '{:.1f}')} | "
          f"{cell(d and d[1], '{:,.0f}')} | {cell(t and t[1], '{:,.0f}')} | {ratio} | "
          f"{cell(d and d[2], '{:.0f} MB')} | {cell(t and t[2], '{:.0f} MB')} |")
print("\nratio = dyngrad tok/s ÷ PyTorch tok/s (above 1: dyngrad is faster)")
EOF
