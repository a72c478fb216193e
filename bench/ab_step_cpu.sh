#!/usr/bin/env bash
# A/B of two bench_gpt_step binaries (e.g. before and after a refactor) by CPU
# seconds (user + sys) of 20 tiny-config steps on one thread, alternated, the
# order flipped each round, so both sides see the same machine phases. CPU time
# on one thread is less noisy than wall time on a shared machine. Prints one
# line per run, then the median per model and side.
#   bash bench/ab_step_cpu.sh OLD_BIN NEW_BIN [ROUNDS=5] [MODELS="dense mod mob"]
set -euo pipefail
OLD=$1 NEW=$2 ROUNDS=${3:-5} MODELS=${4:-dense mod mob}
export OMP_WAIT_POLICY=PASSIVE
out=$(mktemp)
trap 'rm -f "$out"' EXIT
for r in $(seq 1 "$ROUNDS"); do
  order="old new"; [ $((r % 2)) = 0 ] && order="new old"
  for m in $MODELS; do
    for side in $order; do
      bin=$OLD; [ "$side" = new ] && bin=$NEW
      t=$( { /usr/bin/time -f "%U %S" "$bin" --model "$m" --config tiny --steps 20 --warmup 2 --threads 1 >/dev/null; } 2>&1 |
           tail -1 | awk '{print $1 + $2}')
      echo "$r $m $side $t" | tee -a "$out"
    done
  done
done
echo "median CPU seconds (model side median):"
sort -k2,2 -k3,3 -k4,4n "$out" | awk '{k = $2 " " $3; v[k] = v[k] " " $4; n[k]++}
  END {for (k in v) {split(substr(v[k], 2), a, " "); print k, a[int((n[k] + 1) / 2)]}}' | sort
