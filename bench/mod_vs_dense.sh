#!/usr/bin/env bash
# Mixture-of-Depths step time against the dense GPT of the same size, in one
# run: does MoD's time fall with its FLOPs? For each config the two models run
# alternately (dense, mod, dense, mod, ...), ROUNDS times each, as separate
# processes of bench/bench_gpt_step (a full training step: forward, loss,
# backward, AdamW; MoD with capacity 12.5 %, every other block routed, the
# defaults of models/mod.h). Prints a markdown table: median step time of
# each, the time ratio MoD/dense, the forward FLOP ratio MoD/dense (both as
# the models count them: MoD's include the routers and the predictors), and
# whether time ratio <= FLOP ratio + 0.10 (the target of issue 4).
#
#   bash bench/mod_vs_dense.sh                       # tiny and small, 3 rounds of 20 steps
#   CONFIGS=tiny ROUNDS=1 STEPS=5 bash bench/mod_vs_dense.sh
#   BUILD=build-bench bash bench/mod_vs_dense.sh
#
# Runs with OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE unset and 2 threads.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
STEPS=${STEPS:-20}
ROUNDS=${ROUNDS:-3}
CONFIGS=${CONFIGS:-"tiny small"}
BIN="$BUILD/bench/bench_gpt_step"
PY=/usr/bin/python3
if [ ! -x "$BIN" ]; then
  echo "mod_vs_dense.sh: error: $BIN not found; build it first: cmake --build $BUILD --target bench_gpt_step" >&2
  exit 1
fi
OUT=$(mktemp)
trap 'rm -f "$OUT"' EXIT
for config in $CONFIGS; do
  for round in $(seq 1 "$ROUNDS"); do
    for model in dense mod; do
      echo "== $model $config (round $round)" >&2
      env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE DG_NUM_THREADS=2 OMP_NUM_THREADS=2 \
        "$BIN" --model "$model" --config "$config" --steps "$STEPS" --warmup 3 --threads 2 | grep '"impl"' | tee -a "$OUT" >&2
    done
  done
done
"$PY" - "$OUT" "$STEPS" "$ROUNDS" <<'EOF'
import json, statistics, sys
runs = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
steps, rounds = sys.argv[2], sys.argv[3]
print(f"MoD (capacity 12.5%, every other block) vs dense GPT, training step, f32, 2 threads; "
      f"median of {rounds} rounds of median-of-{steps}-steps\n")
print("| config | dense ms/step | MoD ms/step | time ratio | FLOP ratio | time ≤ FLOP + 0.10 |")
print("|---|---:|---:|---:|---:|---|")
for config in dict.fromkeys(r["config"] for r in runs):
    side = {m: [r for r in runs if r["config"] == config and r["model"] == m] for m in ("dense", "mod")}
    ms = {m: statistics.median(r["median_step_ms"] for r in rs) for m, rs in side.items()}
    fl = {m: rs[0]["forward_flops_per_token"] for m, rs in side.items()}
    t, f = ms["mod"] / ms["dense"], fl["mod"] / fl["dense"]
    print(f"| {config} | {ms['dense']:.1f} | {ms['mod']:.1f} | {t:.3f} | {f:.3f} | {'yes' if t <= f + 0.10 else 'no'} |")
EOF
