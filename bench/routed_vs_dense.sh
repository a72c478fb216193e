#!/usr/bin/env bash
# Every routed kind's training step time against the dense GPT of the same
# width and layer count, in one run: does each kind's time follow its FLOPs?
# For each config and round, each kind runs beside a dense run (dense, kind;
# the order flipped every other round, so both sides see the same machine
# phases), as separate processes of bench/bench_gpt_step (a full training
# step: forward, loss, backward, AdamW; each kind with the configuration
# bench_gpt_step's header describes). By default each step is timed by the
# process's CPU time on one thread (CLOCK=cpu THREADS=1), which a loaded
# machine disturbs far less than wall time. Prints a markdown table: median
# step time of dense and of the kind (median over rounds of each run's
# median-of-STEPS), the time ratio kind/dense, the forward FLOP ratio
# kind/dense (both as the models count them, routers and per-step heads
# included; each run's mean over its timed steps, as MoB's depth moves while
# it trains; median over rounds), and whether time ratio <= FLOP ratio + 0.10 (issue 14's target).
#
#   bash bench/routed_vs_dense.sh                 # tiny; mod mob moe mor mor-token; 3 rounds of 20 steps
#   KINDS="mob" CONFIGS="tiny small" ROUNDS=5 bash bench/routed_vs_dense.sh
#   CLOCK=wall THREADS=2 BUILD=build-bench bash bench/routed_vs_dense.sh
#   KINDS=mob MOB_GATE_INIT=dense-path bash bench/routed_vs_dense.sh   # MoB's library init (one path)
#
# MoB runs with --gate-init MOB_GATE_INIT (default uniform: the tokens spread
# over the blocks and run max_depth blocks, bench_gpt_step's default).
#
# Runs with OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE unset.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
STEPS=${STEPS:-20}
ROUNDS=${ROUNDS:-3}
CONFIGS=${CONFIGS:-tiny}
KINDS=${KINDS:-"mod mob moe mor mor-token"}
THREADS=${THREADS:-1}
CLOCK=${CLOCK:-cpu}
MOB_GATE_INIT=${MOB_GATE_INIT:-uniform}
BIN="$BUILD/bench/bench_gpt_step"
PY=/usr/bin/python3
if [ ! -x "$BIN" ]; then
  echo "routed_vs_dense.sh: error: $BIN not found; build it first: cmake --build $BUILD --target bench_gpt_step" >&2
  exit 1
fi
case "$CLOCK" in
  cpu) clock_flag=--cpu-time ;;
  wall) clock_flag= ;;
  *) echo "routed_vs_dense.sh: error: CLOCK must be cpu or wall, got '$CLOCK'" >&2; exit 1 ;;
esac
OUT=$(mktemp)
trap 'rm -f "$OUT"' EXIT
for config in $CONFIGS; do
  for round in $(seq 1 "$ROUNDS"); do
    for kind in $KINDS; do
      order="dense $kind"; [ $((round % 2)) = 0 ] && order="$kind dense"
      for model in $order; do
        echo "== $model $config (round $round, beside $kind)" >&2
        env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE DG_NUM_THREADS="$THREADS" OMP_NUM_THREADS="$THREADS" \
          "$BIN" --model "$model" --config "$config" --steps "$STEPS" --warmup 3 --threads "$THREADS" --gate-init "$MOB_GATE_INIT" $clock_flag |
          grep '"impl"' | sed "s/^{/{\"pair\":\"$kind\",/" | tee -a "$OUT" >&2
      done
    done
  done
done
"$PY" - "$OUT" "$STEPS" "$ROUNDS" "$THREADS" "$CLOCK" "$MOB_GATE_INIT" <<'PYEOF'
import json, statistics, sys
runs = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
steps, rounds, threads, clock, mob_init = sys.argv[2:7]
print(f"Routed kinds vs the dense GPT of the same width and layers, training step, f32, {threads} thread(s), "
      f"{clock} time; median of {rounds} rounds of median-of-{steps}-steps, each kind beside its own dense runs; "
      f"MoB gate init {mob_init}\n")
print("| config | kind | dense ms/step | kind ms/step | time ratio | FLOP ratio | time ≤ FLOP + 0.10 |")
print("|---|---|---:|---:|---:|---:|---|")
for config in dict.fromkeys(r["config"] for r in runs):
    for kind in dict.fromkeys(r["pair"] for r in runs if r["config"] == config):
        side = {m: [r for r in runs if r["config"] == config and r["pair"] == kind and r["model"] == m]
                for m in ("dense", kind)}
        ms = {m: statistics.median(r["median_step_ms"] for r in rs) for m, rs in side.items()}
        fl = {m: statistics.median(r["timed_forward_flops_per_token"] for r in rs) for m, rs in side.items()}
        t, f = ms[kind] / ms["dense"], fl[kind] / fl["dense"]
        print(f"| {config} | {kind} | {ms['dense']:.1f} | {ms[kind]:.1f} | {t:.3f} | {f:.3f} | "
              f"{'yes' if t <= f + 0.10 else 'no'} |")
PYEOF
