#!/usr/bin/env bash
# train_lm and sample_lm on the guarded test device (CPU kernels on memory the
# host cannot touch), end to end in fresh processes, per model kind: a run on
# the CPU straight through, and one on guarded stopped at step 4 (--stop-at)
# then --resume'd to 8 on guarded. The guarded run's final checkpoint must be
# byte-identical to the CPU's and its per-step losses equal; sample_lm
# --device guarded on it must print what sample_lm on the CPU prints. Then
# --device for a GPU this machine does not have exits 1 naming the device.
#   run.sh <build dir> <model kind> [train_lm flags...]
set -euo pipefail
BUILD=$1
MODEL=$2
shift 2  # the rest: train_lm flags for this kind (e.g. --mor-router token)
TRAIN="$BUILD/examples/train_lm"
SAMPLE="$BUILD/examples/sample_lm"
DIR=$(mktemp -d)
trap 'rm -rf "$DIR"' EXIT
ARGS=(--model "$MODEL" --steps 8 --warmup 2 --batch 2 --block 16 --embd 16 --heads 2 --layers 2 --blocks 2 --max-depth 2
      --eval-every 4 --eval-batches 1 --samples 1 --sample-tokens 8 --threads 2 --seed 7 "$@")
"$TRAIN" "${ARGS[@]}" --device cpu --out "$DIR/cpu" >/dev/null
"$TRAIN" "${ARGS[@]}" --device guarded --stop-at 4 --out "$DIR/guarded" >/dev/null
"$TRAIN" "${ARGS[@]}" --device guarded --resume --out "$DIR/guarded" >/dev/null
cmp "$DIR/cpu/ckpt.safetensors" "$DIR/guarded/ckpt.safetensors"
# Every logged value but the timings, in order (train and eval lines).
values() { /usr/bin/python3 -c '
import json, sys
for line in open(sys.argv[1]):
    r = json.loads(line)
    print(sorted((k, repr(v)) for k, v in r.items() if k not in ("tokens_per_s", "seconds")))' "$1"; }
values "$DIR/cpu/metrics.jsonl" >"$DIR/cpu.values"
values "$DIR/guarded/metrics.jsonl" >"$DIR/guarded.values"
[ "$(grep -c "'train'" "$DIR/cpu.values")" = 8 ] || { echo "expected 8 train lines"; cat "$DIR/cpu.values"; exit 1; }
diff "$DIR/cpu.values" "$DIR/guarded.values"
SAMPLE_ARGS=("$DIR/guarded/ckpt.safetensors" --prompt "12+7=" --tokens 16 --seed 3)
"$SAMPLE" "${SAMPLE_ARGS[@]}" --device cpu >"$DIR/cpu.sample"
"$SAMPLE" "${SAMPLE_ARGS[@]}" --device guarded >"$DIR/guarded.sample"
[ -s "$DIR/cpu.sample" ] && cmp "$DIR/cpu.sample" "$DIR/guarded.sample"

# A device that does not exist: exit 1 before any training, the message naming it.
refused() {  # refused <device> <program and arguments...>
  local want=$1 msg rc
  shift
  set +e
  msg=$("$@" 2>&1 >/dev/null)
  rc=$?
  set -e
  [ "$rc" = 1 ] && grep -q "$want" <<<"$msg" || { echo "$*: exit $rc, message: $msg (want 1 naming $want)"; exit 1; }
}
if ! nvidia-smi -L 2>/dev/null | grep -q GPU; then  # no GPU here: plain --device cuda is refused too
  refused cuda:0 "$TRAIN" --device cuda --steps 1 --out "$DIR/never"
  [ ! -e "$DIR/never" ] || { echo "train_lm --device cuda made $DIR/never before failing"; exit 1; }
  refused cuda:0 "$SAMPLE" "$DIR/cpu/ckpt.safetensors" --device cuda
fi
refused cuda:7 "$TRAIN" --device cuda:7 --steps 1
refused tpu "$TRAIN" --device tpu
echo "device ($MODEL): guarded run + resume == CPU run (checkpoint bytes, every logged value), samples equal, missing devices refused"
