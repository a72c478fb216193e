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
assert len(table) == 2 + 4 + 2 and table[2].startswith("| dense-4 |"), table
# One seed: differences against the best dense run are shown, never marked, and the legend says why.
best = min((r for r in rows if r["kind"] == "dense"), key=lambda r: r["val_loss"])
assert all(r["vs_run"] == best["run"] and not r["beyond_noise"] for r in rows), rows
assert "noise is unknown" in table[-1], table[-1]
assert table[5].count(" / ") == 3, table[5]  # mob's depth by level 1/2/3/4
print("compare_routing: ok,", ", ".join(f'{r["run"]} {r["steps"]} steps' for r in rows))
PY
# Seeds and an isoFLOP sweep, tiny model: 3 runs x 2 budgets x 2 seeds.
"$BIN" --seeds 2 --budgets 2e8,4e8 --run dense-2=dense --run dense-1=dense:n_layer=1 --run mob=mob \
  --layers 2 --embd 32 --heads 2 --blocks 2 --max-depth 3 --warmup 1 --evals 2 --eval-batches 1 --batch 4 \
  --block 32 --threads 1 --no-plot --out "$OUT/sweep" > "$OUT/sweep.txt"
python3 - "$OUT/sweep" <<'PY'
import json, math, os, statistics, sys
out = sys.argv[1]
rows = [json.loads(l) for l in open(os.path.join(out, "summary.jsonl"))]
assert [(r["budget"], r["run"]) for r in rows] == [(b, n) for b in (2e8, 4e8) for n in ("dense-2", "dense-1", "mob")], rows
for r in rows:
    seeds = r["per_seed"]
    assert r["seeds"] == 2 and len(seeds) == 2, r
    assert [s["seed"] for s in seeds] == [1337, 1338] and [s["config"]["seed"] for s in seeds] == [1337, 1338], seeds
    losses = [s["val_loss"] for s in seeds]
    assert losses[0] != losses[1], (r["run"], losses)  # the seeds differ
    assert abs(r["val_loss"] - statistics.mean(losses)) < 1e-12 and abs(r["val_loss_sd"] - statistics.stdev(losses)) < 1e-12, r
    for s in seeds:
        # Within one step of the budget (MoB's steps grow as its depth moves: up to 1.5 mean steps).
        slack = 1.0001 if r["kind"] == "dense" else 1.5
        assert r["budget"] <= s["train_flops"] <= r["budget"] + s["train_flops"] / s["steps"] * slack, s
        assert os.path.exists(os.path.join(out, s["dir"], "metrics.jsonl")), s["dir"]
    best = min((x for x in rows if x["kind"] == "dense" and x["budget"] == r["budget"]), key=lambda x: x["val_loss"])
    se = math.hypot(r["val_loss_sd"], best["val_loss_sd"]) / math.sqrt(2)
    assert r["vs_run"] == best["run"] and abs(r["vs_dense_se"] - se) < 1e-12, r
    assert r["beyond_noise"] == (r["run"] != best["run"] and abs(r["val_loss"] - best["val_loss"]) > 2 * se), r
mob = rows[2]
assert mob["mean_depth"] is not None and len(mob["depth_by_level"]) == 4, mob
assert os.path.exists(os.path.join(out, "budget-2e8", "mob", "seed1", "routing.json"))
table = open(os.path.join(out, "table.md")).read()
assert table.count("### budget") == 2 and "### budget 4e+08 training FLOPs" in table, table
assert table.count("Welch's standard error") == 2 and " ± " in table, table
print("compare_routing --seeds 2 --budgets: ok,", ", ".join(f'{r["run"]}@{r["budget"]:.0e} {r["val_loss"]:.3f}±{r["val_loss_sd"]:.3f}' for r in rows))
PY
# The isoFLOP picture, where Debian's python has matplotlib.
if /usr/bin/python3 -c "import matplotlib" 2> /dev/null; then
  /usr/bin/python3 "$(dirname "$0")/../../tools/plot_compare.py" "$OUT/sweep" > /dev/null
  [ -s "$OUT/sweep/isoflop.png" ] || { echo "plot_compare.py wrote no isoflop.png" >&2; exit 1; }
fi
# Bad input: a one-line error naming the run and the field, exit 1.
if "$BIN" --run x=mob:nope=1 --out "$OUT/bad" 2> "$OUT/err.txt"; then
  echo "compare_routing accepted an unknown config field" >&2; exit 1
fi
grep -q "no config field 'nope'" "$OUT/err.txt" || { cat "$OUT/err.txt" >&2; exit 1; }
