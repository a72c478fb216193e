#!/usr/bin/env bash
# dyngrad vs PyTorch, side by side: builds the Release benchmarks (build-bench),
# runs bench_ops + bench_nn and bench/torch_ops.py in one go, both on 2 threads,
# and prints one markdown table (median time per call; speed-up = torch / dyngrad).
#
#   bash bench/compare.sh                 # everything, 10 repetitions
#   REPS=3 bash bench/compare.sh          # quicker, noisier
#   FILTER=attention bash bench/compare.sh
#
# PyTorch is Debian's python3-torch (run by /usr/bin/python3). It finds its
# BLAS as libblas.so.3; Debian's default is the slow reference BLAS, so when
# OpenBLAS is installed (libopenblas0-openmp) the torch side is pointed at it
# with LD_LIBRARY_PATH, without changing the system's choice. Both sides run
# without OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE, so OpenBLAS picks its kernels
# for this CPU. Timings on a shared machine are noisy: close other work first.
set -euo pipefail
cd "$(dirname "$0")/.."
REPS=${REPS:-10}
FILTER=${FILTER:-}
OUT=build-bench/compare
mkdir -p "$OUT"

echo "== building the Release benchmarks (build-bench)" >&2
cmake -S . -B build-bench -G Ninja -DCMAKE_BUILD_TYPE=Release -DDG_BUILD_BENCH=ON -DDG_BUILD_TESTS=OFF \
  -DDG_BUILD_EXAMPLES=OFF >/dev/null
cmake --build build-bench --target bench_ops bench_nn >&2

RUN=(env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE DG_NUM_THREADS=2 OMP_NUM_THREADS=2)
TORCH_ENV=()
OPENBLAS_DIR=/usr/lib/x86_64-linux-gnu/openblas-openmp
if [ -e "$OPENBLAS_DIR/libblas.so.3" ]; then
  TORCH_ENV=(LD_LIBRARY_PATH="$OPENBLAS_DIR${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}")
  BLAS="OpenBLAS (openmp)"
else
  BLAS="$(readlink -f /usr/lib/x86_64-linux-gnu/libblas.so.3) -- install libopenblas0-openmp for a fair matmul"
  echo "compare.sh: warning: no OpenBLAS; torch uses $BLAS" >&2
fi

GB=(--benchmark_repetitions="$REPS" --benchmark_report_aggregates_only=true --benchmark_out_format=json)
[ -n "$FILTER" ] && GB+=(--benchmark_filter="$FILTER")
for b in bench_ops bench_nn; do
  echo "== dyngrad: $b" >&2
  "${RUN[@]}" "build-bench/bench/$b" "${GB[@]}" --benchmark_out="$OUT/$b.json" >&2
done
echo "== PyTorch: bench/torch_ops.py (BLAS: $BLAS)" >&2
"${RUN[@]}" "${TORCH_ENV[@]}" /usr/bin/python3 bench/torch_ops.py --reps "$REPS" --filter "$FILTER" \
  --json "$OUT/torch.json" >&2

# The table: one row per case both sides ran.
/usr/bin/python3 - "$OUT" "$BLAS" <<'EOF'
import json, os, sys
out, blas = sys.argv[1], sys.argv[2]
scale = {"ns": 1e-9, "us": 1e-6, "ms": 1e-3, "s": 1.0}
dg, context = {}, None
for b in ("bench_ops", "bench_nn"):
    with open(os.path.join(out, b + ".json")) as f:
        data = json.load(f)
    context = context or data["context"]
    for r in data["benchmarks"]:
        if r.get("aggregate_name") == "median" and not r.get("error_occurred"):
            dg[r["run_name"]] = r
with open(os.path.join(out, "torch.json")) as f:
    torch = json.load(f)

def fmt(s):
    return f"{s * 1e3:.2f} ms" if s >= 1e-3 else f"{s * 1e6:.2f} µs"

print(f"dyngrad vs PyTorch {torch['torch_version']} ({blas}), f32, 2 threads each, "
      f"median of {torch.get('reps', '?')} repetitions; {context.get('num_cpus')} CPUs at {context.get('mhz_per_cpu')} MHz\n")
print("| case | dyngrad | PyTorch | speed-up |")
print("|---|---:|---:|---:|")
for name, t in torch["cases"].items():
    r = dg.get(name)
    if r is None:
        print(f"| {name} | (not run) | {fmt(t['median_s'])} | |")
        continue
    s = r["real_time"] * scale[r["time_unit"]]
    cell_dg, cell_t = fmt(s), fmt(t["median_s"])
    if "GFLOP/s" in r:
        cell_dg += f" ({r['GFLOP/s']:.1f} GFLOP/s)"
        cell_t += f" ({t['gflops']:.1f} GFLOP/s)"
    label = name[3:] if name.startswith("BM_") else name
    print(f"| {label} | {cell_dg} | {cell_t} | {t['median_s'] / s:.2f}x |")
EOF
