#!/usr/bin/env bash
# examples/custom_routing end to end, tiny budget: the kind it registers
# (expert-choice MoB) trains beside dense and MoB through train::compare_runs,
# and its row has its FLOPs and its routing (mean depth, depth by level, the
# trace in routing.json).
#   bash tests/compare/custom_routing.sh BUILD_DIR
set -euo pipefail
OUT=$(mktemp -d)
trap 'rm -rf "$OUT"' EXIT
DG_NUM_THREADS=1 "$1/examples/custom_routing" --steps 6 --out "$OUT" > "$OUT/log.txt"
python3 - "$OUT" <<'PY'
import json, os, sys
out = sys.argv[1]
table = open(os.path.join(out, "table.md")).read()
assert "\n| ec-mob |" in table, table
rows = {r["run"]: r for r in map(json.loads, open(os.path.join(out, "summary.jsonl")))}
assert list(rows) == ["dense-2", "dense-1", "mob", "ec-mob"], list(rows)
ec = rows["ec-mob"]
assert ec["kind"] == "ec-mob" and ec["config"]["capacity"] == 0.5, ec
# Counted FLOPs: at least the head (2 C V per token), at most every token through both blocks at all 3 steps.
C, V, T = 64, 256, 64
head, block = 2 * C * V, 24 * C * C + 2 * C * (T + 1)
assert head < ec["flops_per_token"] < head + 3 * 2 * (block + 2 * C * 2), ec["flops_per_token"]
assert ec["train_flops"] <= rows["dense-2"]["train_flops"] * 1.5, (ec["train_flops"], rows["dense-2"]["train_flops"])
assert 0 < ec["mean_depth"] <= 6 and len(ec["depth_by_level"]) == 4, ec
assert abs(sum(ec["depth_histogram"]) - 1) < 1e-9, ec["depth_histogram"]
trace = json.load(open(os.path.join(out, "ec-mob", "routing.json")))
assert trace["n_blocks"] == 2 and len(trace["paths"]) == trace["B"] * trace["T"], list(trace)
# The gate is on the gradient path: its per-step bias, zeros at init, has moved.
import struct
raw = open(os.path.join(out, "ec-mob", "ckpt.safetensors"), "rb").read()
header = json.loads(raw[8:8 + struct.unpack("<Q", raw[:8])[0]])
lo, hi = header["model.step_bias"]["data_offsets"]
bias = struct.unpack(f"<{(hi - lo) // 4}f", raw[8 + struct.unpack("<Q", raw[:8])[0] + lo:][:hi - lo])
assert len(bias) == 6 and max(abs(b) for b in bias) > 1e-4, bias
print(f'custom_routing: ok, ec-mob {ec["steps"]} steps, val loss {ec["val_loss"]:.3f}, mean depth {ec["mean_depth"]:.2f}')
PY
