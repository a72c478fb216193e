#!/usr/bin/env bash
# Divergence end to end: train_lm with a huge learning rate must stop with a
# non-zero exit and a message naming the step and the value, keeping the
# last good checkpoint (which loads); --on-nonfinite skip counts skipped
# steps; a hand-made checkpoint holding a NaN is refused by sample_lm, naming
# the file and the tensor, unless --allow-nonfinite.
#   run.sh <build dir>
set -euo pipefail
BUILD=$1
TRAIN="$BUILD/examples/train_lm"
SAMPLE="$BUILD/examples/sample_lm"
DIR=$(mktemp -d)
trap 'rm -rf "$DIR"' EXIT
ARGS=(--model mob --steps 40 --batch 4 --block 32 --embd 32 --heads 2 --blocks 2 --max-depth 3
      --warmup 5 --eval-every 2 --eval-batches 1 --samples 0 --threads 1 --lr 1e3)
for clip in 1 0; do
  if "$TRAIN" "${ARGS[@]}" --grad-clip "$clip" --out "$DIR/clip$clip" >"$DIR/log" 2>&1; then
    echo "--lr 1e3 --grad-clip $clip: train_lm exited 0"; exit 1
  fi
  grep -E "train: step [0-9]+: the (loss|LM loss|gradient norm|validation loss) is|holds NaN or infinity" "$DIR/log" \
    || { echo "--grad-clip $clip: no divergence message:"; cat "$DIR/log"; exit 1; }
  "$SAMPLE" "$DIR/clip$clip/ckpt.safetensors" --tokens 1 >/dev/null  # the last good checkpoint loads
done
# Skip mode: the run completes only if no weight became non-finite; either way it says what it skipped or why it stopped.
"$TRAIN" "${ARGS[@]}" --on-nonfinite skip --out "$DIR/skip" >"$DIR/log" 2>&1 || true
grep -qE "steps skipped \(non-finite\)|train: step|holds NaN" "$DIR/log" || { cat "$DIR/log"; exit 1; }
/usr/bin/python3 - "$DIR/skip/metrics.jsonl" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
skipped = [r["skipped"] for r in rows if r["kind"] == "train"]
assert skipped == sorted(skipped), skipped                      # a running count
assert all(r["loss"] is not None for r in rows if r["kind"] == "train" and r["skipped"] == 0)
PY
# A hand-made NaN checkpoint: the first F32 tensor's first value set to NaN.
cp "$DIR/clip1/ckpt.safetensors" "$DIR/nan.safetensors"
name=$(/usr/bin/python3 - "$DIR/nan.safetensors" <<'PY'
import json, struct, sys
path = sys.argv[1]
with open(path, "r+b") as f:
    n = struct.unpack("<Q", f.read(8))[0]
    header = json.loads(f.read(n))
    name = sorted(k for k, v in header.items() if k.startswith("model.") and v["dtype"] == "F32")[0]
    f.seek(8 + n + header[name]["data_offsets"][0])
    f.write(struct.pack("<f", float("nan")))
print(name)
PY
)
if "$SAMPLE" "$DIR/nan.safetensors" --tokens 1 >"$DIR/log" 2>&1; then echo "sample_lm loaded a NaN checkpoint"; exit 1; fi
grep -q "$DIR/nan.safetensors: tensor '$name' holds NaN or infinity" "$DIR/log" || { cat "$DIR/log"; exit 1; }
"$SAMPLE" "$DIR/nan.safetensors" --tokens 1 --allow-nonfinite >/dev/null
echo "nonfinite: --lr 1e3 stops (exit 1) with and without clipping, last checkpoint loads; skip counts;" \
     "NaN checkpoint refused ($name) unless --allow-nonfinite"
