#!/usr/bin/env bash
# Resume determinism, end to end, in fresh processes: train_lm for 20 steps
# straight, and stopped at step 10 (--stop-at, same 20-step schedule) then
# --resume to 20 in a second process; the
# final checkpoints (weights, AdamW moments, step, generator states) must be
# byte-identical and the per-step losses of steps 11..20 equal.
#   run.sh <build dir> <model kind> [train_lm flags...]
set -euo pipefail
BUILD=$1
MODEL=$2
shift 2  # the rest: train_lm flags for this kind (e.g. --mor-router token)
BIN="$BUILD/examples/train_lm"
DIR=$(mktemp -d)
trap 'rm -rf "$DIR"' EXIT
ARGS=(--model "$MODEL" --steps 20 --warmup 5 --batch 4 --block 32 --embd 32 --heads 2 --layers 2 --blocks 2 --max-depth 3
      --eval-every 10 --eval-batches 2 --samples 0 --threads 2 --seed 7 "$@")
"$BIN" "${ARGS[@]}" --out "$DIR/straight" >/dev/null
"$BIN" "${ARGS[@]}" --stop-at 10 --out "$DIR/split" >/dev/null
"$BIN" "${ARGS[@]}" --out "$DIR/split" --resume >/dev/null
cmp "$DIR/straight/ckpt.safetensors" "$DIR/split/ckpt.safetensors"
# The train losses of every step, in order (the split run logged steps 1..10 once, 11..20 after resuming).
losses() { /usr/bin/python3 -c '
import json, sys
for line in open(sys.argv[1]):
    r = json.loads(line)
    if r["kind"] == "train": print(r["step"], repr(r["loss"]))' "$1"; }
diff <(losses "$DIR/straight/metrics.jsonl") <(losses "$DIR/split/metrics.jsonl")
echo "resume ($MODEL): checkpoints byte-identical, losses of 20 steps equal"
