#!/usr/bin/env bash
# Crash safety end to end: train_lm checkpoints every step (--eval-every 1)
# and is killed with SIGKILL at random moments, KILLS times (bounded by
# MAX_SECONDS). After each kill the last checkpoint must load (sample_lm),
# and the run continues with --resume (or --overwrite when no checkpoint was
# written yet). At the end: the final checkpoint equals an uninterrupted
# run's byte for byte, metrics.jsonl logs every train step exactly once, and
# no temporary file of an interrupted save is left.
#   run.sh <build dir> [kills]
set -euo pipefail
BUILD=$1
KILLS=${2:-15}
MAX_SECONDS=120
TRAIN="$BUILD/examples/train_lm"
SAMPLE="$BUILD/examples/sample_lm"
DIR=$(mktemp -d)
trap 'rm -rf "$DIR"' EXIT
ARGS=(--model mob --steps 300 --batch 4 --block 32 --embd 32 --heads 2 --blocks 2 --max-depth 3
      --eval-every 1 --eval-batches 1 --samples 0 --threads 1 --seed 7)
"$TRAIN" "${ARGS[@]}" --out "$DIR/straight" >/dev/null

OUT="$DIR/killed"
RANDOM=42
tried=0 survived=0 with_temp=0
start=$SECONDS
while (( tried < KILLS && SECONDS - start < MAX_SECONDS )); do
  if [[ -f "$OUT/ckpt.safetensors" ]]; then mode=--resume; else mode=--overwrite; fi
  "$TRAIN" "${ARGS[@]}" --out "$OUT" "$mode" >"$DIR/log" 2>&1 &
  pid=$!
  sleep "$(printf '0.%03d' $(( 20 + RANDOM % 300 )))"
  if ! kill -KILL "$pid" 2>/dev/null; then
    wait "$pid" || { cat "$DIR/log"; exit 1; }  # finished before the kill: it must have succeeded
    break
  fi
  wait "$pid" 2>/dev/null || true
  tried=$((tried + 1))
  compgen -G "$OUT/ckpt.safetensors.tmp.*" >/dev/null && with_temp=$((with_temp + 1))
  if [[ -f "$OUT/ckpt.safetensors" ]]; then
    "$SAMPLE" "$OUT/ckpt.safetensors" --tokens 1 --prompt "1" >/dev/null || {
      echo "kill $tried: the last checkpoint does not load"; exit 1; }
  fi
  survived=$((survived + 1))
done
# Finish the run (from the last checkpoint, or from scratch if none was written).
if [[ -f "$OUT/ckpt.safetensors" ]]; then mode=--resume; else mode=--overwrite; fi
"$TRAIN" "${ARGS[@]}" --out "$OUT" "$mode" >/dev/null
cmp "$DIR/straight/ckpt.safetensors" "$OUT/ckpt.safetensors"
if compgen -G "$OUT/ckpt.safetensors.tmp.*" >/dev/null; then echo "temporary files left:"; ls "$OUT"; exit 1; fi
/usr/bin/python3 - "$OUT/metrics.jsonl" <<'PY'
import json, sys
steps = [json.loads(l)["step"] for l in open(sys.argv[1]) if json.loads(l)["kind"] == "train"]
assert steps == list(range(1, 301)), f"train steps logged: {steps}"
PY
echo "kill test: $survived kills survived of $tried tried ($with_temp left a temporary file, removed by the next start);" \
     "final checkpoint byte-identical to an uninterrupted run; each of 300 steps logged once"
