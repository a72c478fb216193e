#!/usr/bin/env bash
# dyngrad vs PyTorch on a full training step (zero_grad, forward, objective,
# backward, AdamW step) of the dense GPT, MoD, MoB, MoE and MoR, f32, 2 threads each, for
# the tiny and small configs. Prints one markdown table.
#
#   bash bench/compare_gpt.sh                    # all models, tiny then small, 2 rounds, 20 steps
#   BUILD=build-bench bash bench/compare_gpt.sh  # where bench/bench_gpt_step was built
#   STEPS=5 ROUNDS=1 CONFIGS=tiny MODELS="mod mob" bash bench/compare_gpt.sh
#   STEPS=3 ROUNDS=1 CONFIGS=tiny MODELS="mor mor-token" bash bench/compare_gpt.sh   # MoR, both routers
#   SIDES=pytorch bash bench/compare_gpt.sh      # only the PyTorch half (no binary needed, no check)
#
# The dyngrad side is $BUILD/bench/bench_gpt_step (default BUILD=build; build
# it first, Release, e.g. cmake --build build --target bench_gpt_step); the
# PyTorch side is bench/torch_gpt.py run by Debian's /usr/bin/python3, with the
# reference models of bench/torch_models.py. Both take --model dense|mod|mob|moe
# --config tiny|small --steps N --warmup 3 --threads 2 and print one JSON line.
# The routed configs, and why MoB is timed with a uniform gate, are described
# at the top of bench/bench_gpt_step.cpp.
#
# Same work first. For every model and config, before any timing:
#   1. check (f64): bench_gpt_step --dtype f64 --save-init writes its initial
#      weights, first batch, objective, gradients (and MoB's per-token routes);
#      torch_gpt.py --check rebuilds the model in f64 from that file and must
#      get the same objective and LM loss (relative difference <= 1e-9), the
#      same gradients (<= 1e-8 of each tensor's largest) and, for MoB, the same
#      route for every token (MoE: the same expert for every assignment, and
#      the same ones dropped; MoR: the same recursions for every token). f64 because in f32 a near-tie in MoD's top-k or
#      MoB's argmax could flip on rounding alone. A failure stops the script.
#   2. weights (f32): bench_gpt_step --save-init --batches WARMUP+STEPS writes
#      the f32 initial weights and every batch the timing uses; torch_gpt.py
#      --weights trains on exactly those (the dyngrad side rebuilds the same
#      weights from its seed and draws the same batches from its generator),
#      so both sides do the same steps on the same data: their final_loss in
#      results.jsonl agree up to f32 rounding.
# Then the sides run alternately (dyngrad, pytorch, dyngrad, pytorch, ...),
# ROUNDS times each; a side's time is the median of its rounds' median step
# times. Both run with OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE unset and 2 threads
# (DG_NUM_THREADS=2, OMP_NUM_THREADS=2, --threads 2). Peak RSS is measured
# from outside with /usr/bin/time -f %M when it exists (Debian package
# `time`), otherwise taken from the program's own peak_rss_mb; the table shows
# the largest over the rounds. Raw results: $OUT/results.jsonl (timings) and
# $OUT/checks.jsonl (the f64 checks).
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
STEPS=${STEPS:-20}
WARMUP=${WARMUP:-3}
ROUNDS=${ROUNDS:-2}
CONFIGS=${CONFIGS:-"tiny small"}
MODELS=${MODELS:-"dense mod mob moe mor"}
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
for model in $MODELS; do
  case "$model" in
    dense|mod|mob|moe|mor|mor-token) ;;
    *) echo "compare_gpt.sh: error: unknown model '$model' in MODELS (dense, mod, mob, moe, mor, mor-token)" >&2; exit 1 ;;
  esac
done
for config in $CONFIGS; do
  case "$config" in
    tiny|small) ;;
    *) echo "compare_gpt.sh: error: unknown config '$config' in CONFIGS (tiny, small)" >&2; exit 1 ;;
  esac
done
BOTH=0
case " $SIDES " in *" dyngrad "*) case " $SIDES " in *" pytorch "*) BOTH=1 ;; esac ;; esac

mkdir -p "$OUT"
RESULTS="$OUT/results.jsonl"
CHECKS="$OUT/checks.jsonl"
: > "$RESULTS"
: > "$CHECKS"

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

# prepare MODEL CONFIG: the f64 same-loss check (stops the script when it
# fails), then the f32 initial weights and first batch the PyTorch side loads.
prepare() {
  local model=$1 config=$2 file line
  file="$OUT/check_${model}_${config}.safetensors"
  echo "== check $model $config (f64, same weights and batch on both sides)" >&2
  if ! "${RUN[@]}" "$BIN" --model "$model" --config "$config" --dtype f64 --save-init "$file" --steps 0 \
      --threads 2 > "$OUT/last.txt" 2>&1; then
    echo "compare_gpt.sh: error: dyngrad failed to write the f64 check file for $model $config:" >&2
    cat "$OUT/last.txt" >&2
    exit 1
  fi
  grep '"check"' "$OUT/last.txt" >&2 || true
  if ! "${RUN[@]}" "${TORCH_ENV[@]}" "$PY" bench/torch_gpt.py --check "$file" --model "$model" \
      --config "$config" --threads 2 > "$OUT/last.txt" 2> "$OUT/last_err.txt"; then
    cat "$OUT/last.txt" "$OUT/last_err.txt" >&2
    echo "compare_gpt.sh: error: SAME-LOSS CHECK FAILED for $model $config: PyTorch and dyngrad do not" \
         "compute the same objective / gradients / routes from the same f64 weights and batch ($file)," \
         "so their timings would not compare the same work. Stopping." >&2
    exit 1
  fi
  line=$(grep '"check"' "$OUT/last.txt" | tail -n 1)
  echo "$line" >&2
  echo "$line" >> "$CHECKS"
  if ! "${RUN[@]}" "$BIN" --model "$model" --config "$config" --save-init "$OUT/init_${model}_${config}.safetensors" \
      --batches $((WARMUP + STEPS)) --steps 0 --threads 2 > "$OUT/last.txt" 2>&1; then
    echo "compare_gpt.sh: error: dyngrad failed to write the f32 initial weights for $model $config:" >&2
    cat "$OUT/last.txt" >&2
    exit 1
  fi
}

# run_one SIDE MODEL CONFIG ROUND: runs one side once and appends its JSON
# line, with round and rss_mb added, to $RESULTS.
run_one() {
  local side=$1 model=$2 config=$3 round=$4 cmd line
  if [ "$side" = dyngrad ]; then
    cmd=("${RUN[@]}" "$BIN" --model "$model" --config "$config" "${FLAGS[@]}")
  else
    cmd=("${RUN[@]}" "${TORCH_ENV[@]}" "$PY" bench/torch_gpt.py --model "$model" --config "$config" "${FLAGS[@]}")
    if [ "$BOTH" = 1 ]; then cmd+=(--weights "$OUT/init_${model}_${config}.safetensors"); fi
  fi
  echo "== $side $model $config (round $round)" >&2
  rm -f "$OUT/rss.txt"
  if ! "${TIME[@]}" "${cmd[@]}" > "$OUT/last.txt"; then
    echo "compare_gpt.sh: error: $side $model $config failed:" >&2
    cat "$OUT/last.txt" >&2
    exit 1
  fi
  line=$(grep '"impl"' "$OUT/last.txt" | tail -n 1 || true)
  echo "$line" >&2
  "$PY" - "$side" "$model" "$config" "$round" "$OUT/rss.txt" "$line" >> "$RESULTS" <<'EOF'
import json, os, sys
side, model, config, rnd, rss_file, line = sys.argv[1:]
try:
    r = json.loads(line)
except ValueError:
    sys.exit(f"compare_gpt.sh: error: {side} {model} {config} printed no JSON line with \"impl\" (got {line!r})")
impl = "dyngrad" if side == "dyngrad" else "pytorch"
for key in ("impl", "median_step_ms", "tokens_per_s"):
    if key not in r:
        sys.exit(f"compare_gpt.sh: error: {side} {model} {config}: JSON line lacks {key!r}: {line}")
if r["impl"] != impl or r.get("config", config) != config or r.get("model", model) != model:
    sys.exit(f"compare_gpt.sh: error: {side} {model} {config}: unexpected impl/model/config in {line}")
r["model"] = model
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

if [ "$BOTH" = 1 ]; then
  for config in $CONFIGS; do
    for model in $MODELS; do
      prepare "$model" "$config"
    done
  done
else
  echo "compare_gpt.sh: warning: SIDES=\"$SIDES\": the same-loss check needs both sides and is skipped;" \
       "PyTorch starts from its own init" >&2
fi

for config in $CONFIGS; do
  for model in $MODELS; do
    for round in $(seq 1 "$ROUNDS"); do
      for side in $SIDES; do
        run_one "$side" "$model" "$config" "$round"
      done
    done
  done
done

# The tables.
"$PY" - "$RESULTS" "$CHECKS" "$STEPS" "$ROUNDS" <<'EOF'
import json, statistics, sys
path, checks_path, steps, rounds = sys.argv[1:]
runs = [json.loads(l) for l in open(path) if l.strip()]
checks = [json.loads(l) for l in open(checks_path) if l.strip()]
keys = list(dict.fromkeys((r["model"], r["config"]) for r in runs))

def side(key, impl):
    """(median ms/step, median tok/s, max peak RSS MB, RSS source) over the rounds, or None."""
    rs = [r for r in runs if (r["model"], r["config"]) == key and r["impl"] == impl]
    if not rs:
        return None
    rss = [r["rss_mb"] for r in rs if r.get("rss_mb") is not None]
    return (statistics.median(r["median_step_ms"] for r in rs),
            statistics.median(r["tokens_per_s"] for r in rs),
            max(rss) if rss else None, rs[0]["rss_source"], rs[-1].get("final_loss"))

def cell(x, fmt):
    return "—" if x is None else fmt.format(x)

if checks:
    print("Same-work check (f64, same initial weights and batch): relative differences PyTorch vs dyngrad\n")
    print("| model | config | objective | rel. diff objective | rel. diff LM loss | max grad diff (rel.) | routes differing (MoB, MoE, MoR) | mean depth (MoB, MoR) |")
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    for c in checks:
        print(f"| {c['model']} | {c['config']} | {c['objective']:.10f} | {c['objective_rel_diff']:.1e} | "
              f"{c['lm_rel_diff']:.1e} | {c['grad_max_rel_diff']:.1e} | "
              f"{cell(c.get('paths_mismatch'), '{}')} | {cell(c.get('mean_depth'), '{:.2f}')} |")
    print()
else:
    print("(no same-work check: it needs both sides)\n")
torch_version = next((r.get("torch_version") for r in runs if r["impl"] == "pytorch"), "?")
sources = sorted({r["rss_source"] for r in runs})
print(f"Training step (zero_grad, forward, objective, backward, AdamW), f32, 2 threads each; "
      f"median of {rounds} rounds of median-of-{steps}-steps; PyTorch {torch_version}; "
      f"peak RSS from {', '.join(sources)}\n")
print("| model | config | dyngrad ms/step | PyTorch ms/step | dyngrad tok/s | PyTorch tok/s | ratio | "
      "peak RSS dyngrad | peak RSS PyTorch | final loss dyngrad / PyTorch |")
print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|")
for key in keys:
    d, t = side(key, "dyngrad"), side(key, "pytorch")
    ratio = f"{d[1] / t[1]:.2f}x" if d and t else "—"
    print(f"| {key[0]} | {key[1]} | {cell(d and d[0], '{:.1f}')} | {cell(t and t[0], '{:.1f}')} | "
          f"{cell(d and d[1], '{:,.0f}')} | {cell(t and t[1], '{:,.0f}')} | {ratio} | "
          f"{cell(d and d[2], '{:.0f} MB')} | {cell(t and t[2], '{:.0f} MB')} | "
          f"{cell(d and d[4], '{:.4f}')} / {cell(t and t[4], '{:.4f}')} |")
print("\nratio = dyngrad tok/s ÷ PyTorch tok/s (above 1: dyngrad is faster). final loss: LM loss of the "
      "last step (MoB: its ponder objective); with both sides they train on the same batches from the same "
      "weights, so these agree up to f32 rounding.")
EOF
