#!/usr/bin/env bash
# The command lines check what they can before any model is built or any step
# runs: each bad flag or data file is a one-line error naming the flag and the
# allowed range, with a non-zero exit. Also: compare_routing --layers 1 runs
# (dense-1, mod, mob; no second dense-1), and sample_lm generates past the
# model's context (the window slides) instead of stopping there.
#   bash tests/cli/run.sh BUILD_DIR SOURCE_DIR
set -euo pipefail
BUILD=$1
SRC=$2
TRAIN="$BUILD/examples/train_lm"
COMPARE="$BUILD/examples/compare_routing"
SAMPLE="$BUILD/examples/sample_lm"
DIR=$(mktemp -d)
trap 'rm -rf "$DIR"' EXIT
TINY=(--steps 2 --warmup 1 --batch 2 --block 16 --layers 2 --heads 2 --embd 16 --blocks 2 --max-depth 2
      --eval-every 0 --eval-batches 1 --samples 0 --threads 1)
failures=0

# expect_error MESSAGE COMMAND...: the command exits non-zero, prints MESSAGE
# on stderr, and never got as far as building a model.
expect_error() {
  local want=$1
  shift
  if "$@" > "$DIR/out.txt" 2> "$DIR/err.txt"; then
    echo "FAIL: accepted: $*" >&2; failures=$((failures + 1)); return
  fi
  if ! grep -qF -- "$want" "$DIR/err.txt"; then
    echo "FAIL: $* -> expected '$want' in:" >&2; cat "$DIR/err.txt" >&2; failures=$((failures + 1)); return
  fi
  if grep -q "parameters" "$DIR/out.txt"; then
    echo "FAIL: $* built a model before refusing" >&2; failures=$((failures + 1))
  fi
}

expect_error "--batch must be an integer in [1, 1048576], got 0" "$TRAIN" "${TINY[@]}" --batch 0
expect_error "--batch must be an integer in [1, 1048576], got 1.5" "$TRAIN" "${TINY[@]}" --batch 1.5
expect_error "--eval-batches must be an integer in [1, 1048576], got 0" "$TRAIN" "${TINY[@]}" --eval-batches 0
expect_error "--kl must be a number >= 0, got -5" "$TRAIN" "${TINY[@]}" --kl -5
expect_error "--min-lr 0.5 must be at most --lr 0.1" "$TRAIN" "${TINY[@]}" --lr 0.1 --min-lr 0.5
expect_error "--warmup 10 must be at most --steps 2" "$TRAIN" "${TINY[@]}" --warmup 10
# The default --warmup (100) is cut to a short run's --steps instead of refused.
"$TRAIN" "${TINY[@]:0:2}" "${TINY[@]:4}" --out "$DIR/short" >"$DIR/short.log" 2>&1 \
  || { echo "FAIL: a 2-step run with the default --warmup was refused:"; cat "$DIR/short.log"; failures=$((failures + 1)); }
expect_error "--capacity must be a number in (0, 1], got 1.5" "$TRAIN" "${TINY[@]}" --model mod --capacity 1.5
expect_error "--max-depth must be an integer in [1, 1024], got 0" "$TRAIN" "${TINY[@]}" --max-depth 0
expect_error "--layers must be an integer in [1, 1024], got 1e+300" "$TRAIN" "${TINY[@]}" --layers 1e300
expect_error "--seed must be an integer in [0, 2^64 - 1], got -1" "$TRAIN" "${TINY[@]}" --seed -1
expect_error "--prior must be a number in (0, 1), got 1" "$TRAIN" "${TINY[@]}" --prior 1
expect_error "--halting must be one of ponder | bias, got \"sometimes\"" "$TRAIN" "${TINY[@]}" --halting sometimes
expect_error "n_head (--heads) 3 must divide n_embd (--embd) 16" "$TRAIN" "${TINY[@]}" --heads 3
expect_error "depth_target (--depth-target) 5 must be at most max_depth (--max-depth) 2" \
  "$TRAIN" "${TINY[@]}" --depth-target 5
expect_error "--experts-per-token must be an integer in [1, 2], got 3" "$TRAIN" "${TINY[@]}" --model moe --experts-per-token 3
expect_error "top_k (--experts-per-token) 2 is larger than n_experts (--experts) 1 (allowed: 1..n_experts, at most 2)" \
  "$TRAIN" "${TINY[@]}" --model moe --experts 1 --experts-per-token 2
expect_error "--capacity-factor must be a number >= 0, got -1" "$TRAIN" "${TINY[@]}" --model moe --capacity-factor -1
expect_error "moe_every (--moe-every) 3 is larger than n_layer (--layers) 2" "$TRAIN" "${TINY[@]}" --model moe --moe-every 3
expect_error "'top_k' must be an integer in [1, 2], got 3" "$COMPARE" --run moe=moe:top_k=3 --no-plot --out "$DIR/c2"
# A validation split shorter than one window: refused before training.
head -c 300 "$SRC/README.md" > "$DIR/short.txt"
expect_error "the validation split has 30 bytes, fewer than one window of --block 64 plus 1" \
  "$TRAIN" "${TINY[@]}" --data "$DIR/short.txt" --block 64
expect_error "--batch must be an integer in [1, 1048576], got 0" "$COMPARE" --batch 0 --no-plot --out "$DIR/c0"
expect_error "--warmup 100 must be at most --steps 12" "$COMPARE" --steps 12 --warmup 100 --no-plot --out "$DIR/c1"
expect_error "--tokens must be an integer >= 0, got -3" "$SAMPLE" "$SRC/tests/data/legacy/dense/ckpt.safetensors" --tokens -3

# Mixture-of-Recursions: N_r < 1, capacity outside (0, 1], an unknown router, as flags and in --run specs.
expect_error "--recursions must be an integer in [1, 64], got 0" "$TRAIN" "${TINY[@]}" --model mor --recursions 0
expect_error "--mor-capacity must be a number in (0, 1], got 0" "$TRAIN" "${TINY[@]}" --model mor --mor-capacity 0
expect_error "--mor-router must be one of expert | token, got \"soft\"" "$TRAIN" "${TINY[@]}" --model mor --mor-router soft
expect_error "MoR config: 'n_recursions' must be an integer in [1, 64], got 0" \
  "$COMPARE" --run m=mor:n_recursions=0 --no-plot --out "$DIR/c2"
expect_error "MoR config: 'router' must be one of expert | token, got \"soft\"" \
  "$COMPARE" --run m=mor:router=soft --no-plot --out "$DIR/c3"
expect_error "MoR config: 'capacity' must be a number in (0, 1], got 1.5" \
  "$COMPARE" --run m=mor:capacity=1.5 --no-plot --out "$DIR/c4"

# compare_routing --layers 1: dense-1, mod and mob (no dense-L/2 of 0 layers, no duplicate name).
"$COMPARE" --steps 2 --warmup 1 --batch 2 --block 16 --layers 1 --heads 2 --embd 16 --blocks 2 --max-depth 2 \
  --evals 1 --eval-batches 1 --threads 1 --no-plot --out "$DIR/one" > "$DIR/one.txt"
runs=$(python3 -c 'import json,sys; print(" ".join(json.loads(l)["run"] for l in open(sys.argv[1])))' "$DIR/one/summary.jsonl")
[ "$runs" = "dense-1 mod mob" ] || { echo "FAIL: compare_routing --layers 1 ran: $runs" >&2; failures=$((failures + 1)); }

# sample_lm past the context (block_size 16): 40 new bytes after a 4-byte prompt, plus the newline.
bytes=$("$SAMPLE" "$SRC/tests/data/legacy/dense/ckpt.safetensors" --prompt "1+1=" --tokens 40 --temperature 0 | wc -c)
[ "$bytes" -eq 45 ] || { echo "FAIL: sample_lm --tokens 40 wrote $bytes bytes, expected 45" >&2; failures=$((failures + 1)); }

[ "$failures" -eq 0 ] || exit 1
echo "cli: ok"
