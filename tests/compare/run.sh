#!/usr/bin/env bash
# examples/compare_routing end to end, tiny budget: the four default runs
# train for one FLOP budget, the table and JSON lines hold what the README
# says, and a bad --run is a one-line error with a non-zero exit.
#   bash tests/compare/run.sh BUILD_DIR
set -euo pipefail
BIN="$1/examples/compare_routing"
OUT=$(mktemp -d)
trap 'rm -rf "$OUT"' EXIT
"$BIN" --steps 12 --warmup 2 --evals 2 --eval-batches 1 --batch 4 --block 32 --no-plot --threads 1 --out "$OUT" > "$OUT/log.txt"
python3 - "$OUT" <<'PY'
import json, os, sys
out = sys.argv[1]
rows = [json.loads(l) for l in open(os.path.join(out, "summary.jsonl"))]
names = [r["run"] for r in rows]
assert names == ["dense-4", "dense-2", "mod", "mob"], names
budget = rows[0]["train_flops"]
assert rows[0]["steps"] == 12, rows[0]["steps"]
for r in rows:
    per_step = r["train_flops"] / r["steps"]
    # Equal budgets: nobody spends more than the budget plus its last step.
    assert r["train_flops"] <= budget + per_step * 1.0001, (r["run"], r["train_flops"], budget)
    assert r["val_loss"] > 0 and r["flops_per_token"] > 0, r
    evals = [json.loads(l) for l in open(os.path.join(out, r["dir"], "metrics.jsonl"))]
    assert sum(1 for e in evals if e["kind"] == "eval") >= 2, r["run"]
# The half-depth dense model spends half the FLOPs per token, so about twice the steps.
assert abs(rows[1]["train_flops"] / budget - 1) < 0.1, rows[1]
assert rows[1]["steps"] > rows[0]["steps"] * 1.6, rows[1]["steps"]
assert rows[2]["val_loss_causal"] is not None and rows[2]["predictor_accuracy"] is not None, rows[2]
assert rows[0]["val_loss_causal"] is None and rows[0]["mean_depth"] is None, rows[0]
mob = rows[3]
assert mob["mean_depth"] is not None and abs(sum(mob["depth_histogram"]) - 1) < 1e-9, mob
assert os.path.exists(os.path.join(out, "mob", "routing.json"))
assert "<script type=\"application/json\" id=\"trace\">" in open(os.path.join(out, "mob", "routing.html")).read()
table = open(os.path.join(out, "table.md")).read().splitlines()
assert len(table) == 2 + 4 and table[2].startswith("| dense-4 |"), table
print("compare_routing: ok,", ", ".join(f'{r["run"]} {r["steps"]} steps' for r in rows))
PY
# Bad input: a one-line error naming the run and the field, exit 1.
if "$BIN" --run x=mob:nope=1 --out "$OUT/bad" 2> "$OUT/err.txt"; then
  echo "compare_routing accepted an unknown config field" >&2; exit 1
fi
grep -q "no config field 'nope'" "$OUT/err.txt" || { cat "$OUT/err.txt" >&2; exit 1; }
