#!/usr/bin/env bash
# shellcheck disable=SC2317  # probe_env and probe_deps run through step (bash -c)
# The GPU check of issue #12, from a fresh clone on a GPU machine (no network;
# CUDA toolkit and PyTorch 2.x installed), in at most ~8 minutes:
#   1. environment and dependency probe (what is missing is said, by name);
#   2. configure with -DDG_CUDA=ON -DDG_CUDA_ARCHITECTURES=90 and build, on all
#      cores, only the targets needed below;
#   3. ctest -L cuda (CPU-vs-CUDA op and model parity), and the CUDA cases of
#      the device tests where those binaries exist;
#   4. bench_cuda: cuBLAS TF32 GEMM rate and dg::matmul at 4096^3 and the
#      GPT-2-small shapes; the 4-op chain's host time per op, and PyTorch's
#      (bench/torch_ops.py --device cuda);
#   5. training steps at GPT-2-small shape (12 layers, 12 heads, C=768,
#      T=1024, vocab 256, batch 8), dense / MoD / MoB, dyngrad
#      (bench_gpt_step --device cuda, DG_TF32=1) vs PyTorch eager
#      (bench/torch_gpt.py --device cuda --sdpa, TF32 on): tokens/s and peak
#      memory, the two sides alternating, 3 rounds, medians;
#   6. a markdown table (printed last) and everything written to OUT_DIR.
#
#   tools/gpu_check.sh OUT_DIR            # on the GPU machine
#   tools/gpu_check.sh OUT_DIR --cpu      # dry run of the same steps here:
#                                         # no CUDA, tiny shapes, parity tests
#                                         # against the guarded device
#
# Every step has its own timeout inside a total budget (DG_GPU_CHECK_BUDGET
# seconds, default 470); a failing or timed-out step is reported and the
# script goes on. Exit status 0 when every step passed, 1 otherwise.
#
# Environment: BUILD_DIR (default build-gpu; --cpu: build-gpu-cpu),
# DG_DEPS_PREFIX (a folder made by tools/gpu_deps_pack.sh; .gpudeps/ in the
# repository root is used when present), PYTHON (default: the first of
# python3, /usr/bin/python3 that imports torch), JOBS (default nproc).
#
# OUT_DIR receives four files (the device tool brings back at most 8):
#   table.md      the markdown table (also printed)
#   results.json  every figure, step status and environment fact
#   runs.jsonl    one JSON line per benchmark run (both sides, all rounds)
#   steps.log     the full output of every step, one section each
set -u -o pipefail

usage() { sed -n '3,/^set -u/p' "$0" | sed 's/^# \{0,1\}//;$d'; exit 2; }
[ $# -ge 1 ] || usage
case "$1" in -h|--help) usage ;; esac
OUT=$1
MODE=gpu
if [ $# -eq 2 ] && [ "$2" = "--cpu" ]; then
  MODE=cpu
elif [ $# -ne 1 ]; then
  usage
fi

START=$SECONDS
BUDGET=${DG_GPU_CHECK_BUDGET:-470}
RESERVE=15  # seconds kept for the table at the end
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT" || exit 2
mkdir -p "$OUT" && OUT=$(cd "$OUT" && pwd)
BUILD=${BUILD_DIR:-build-gpu$([ $MODE = cpu ] && echo -cpu)}
JOBS=${JOBS:-$(nproc)}
WORK=$(mktemp -d "${TMPDIR:-/tmp}/gpu_check.XXXXXX")
STATUS=$WORK/status.tsv   # name  status  seconds  note
: >"$STATUS"
: >"$OUT/steps.log"
: >"$OUT/runs.jsonl"

elapsed() { echo $((SECONDS - START)); }
left() { echo $((BUDGET - (SECONDS - START))); }
say() { echo "[$(elapsed)s] $*"; }
record() { printf '%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "${4:-}" >>"$STATUS"; }

# step NAME LIMIT CMD...: runs CMD under `timeout` (LIMIT seconds, cut to
# what the budget leaves), its output into steps.log; records OK / FAILED /
# TIMEOUT / SKIPPED and returns CMD's status.
step() {
  local name=$1 limit=$2
  shift 2
  local remain=$(($(left) - RESERVE))
  if [ "$remain" -lt 5 ]; then
    say "-- $name: SKIPPED (budget spent)"
    record "$name" SKIPPED 0 "budget spent"
    return 99
  fi
  [ "$limit" -gt "$remain" ] && limit=$remain
  local t0=$SECONDS log=$WORK/step.log
  say ">> $name (timeout ${limit}s)"
  if [ "$(type -t "$1")" = function ]; then  # a function of this script: run it in a child bash
    timeout --kill-after=5 "$limit" bash -c "$(declare -f "$1"); \"\$@\"" "$1" "$@" >"$log" 2>&1
  else
    timeout --kill-after=5 "$limit" "$@" >"$log" 2>&1
  fi
  local rc=$? dt=$((SECONDS - t0)) st=OK
  if [ $rc -eq 124 ] || [ $rc -eq 137 ]; then
    st=TIMEOUT
  elif [ $rc -ne 0 ]; then
    st="FAILED(rc=$rc)"
  fi
  { echo "===== $name: $st after ${dt}s: $*"; cat "$log"; echo; } >>"$OUT/steps.log"
  record "$name" "$st" "$dt"
  say "<< $name: $st (${dt}s)"
  if [ $st != OK ]; then tail -n 15 "$log" | sed 's/^/   | /'; fi
  cp "$log" "$WORK/$name.log"
  return "$rc"
}

# ---------------------------------------------------------------- 1. probe
say "gpu_check ($MODE mode) in $ROOT, budget ${BUDGET}s, results to $OUT"
if [ $MODE = gpu ] && ! command -v nvcc >/dev/null; then
  for d in /usr/local/cuda/bin /usr/local/cuda-*/bin; do
    [ -x "$d/nvcc" ] && export PATH="$d:$PATH" && break
  done
fi
DEPS=${DG_DEPS_PREFIX:-}
[ -z "$DEPS" ] && [ -d "$ROOT/.gpudeps" ] && DEPS=$ROOT/.gpudeps
CMAKE_DEPS=()
if [ -n "$DEPS" ]; then
  DEPS=$(cd "$DEPS" && pwd)
  CMAKE_DEPS=(-DCMAKE_PREFIX_PATH="$DEPS" -DCMAKE_CXX_FLAGS="-isystem $DEPS/include")
  export LD_LIBRARY_PATH="$DEPS/lib/x86_64-linux-gnu${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
  say "dependencies also from $DEPS (tools/gpu_deps_pack.sh)"
fi
export DEPS MODE WORK ROOT
PY=${PYTHON:-}
if [ -z "$PY" ]; then
  for p in python3 /usr/bin/python3; do
    if command -v "$p" >/dev/null && "$p" -c 'import torch' 2>/dev/null; then PY=$p; break; fi
  done
fi
export PY

probe_env() {
  echo "date: $(date -u +%FT%TZ)"
  echo "host: $(uname -srm), $(nproc) cores"
  git -C "$ROOT" log -1 --format='commit: %H %s' 2>/dev/null || echo "commit: (not a git checkout)"
  for tool in cmake ninja g++ nvcc; do
    if command -v "$tool" >/dev/null; then echo "$tool: $("$tool" --version | head -n 1)"; else echo "$tool: MISSING"; fi
  done
  command -v nvcc >/dev/null && nvcc --version | tail -n 2
  if command -v nvidia-smi >/dev/null; then
    nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.max.sm --format=csv,noheader
  else
    echo "nvidia-smi: MISSING"
  fi
  if [ -n "$PY" ]; then
    "$PY" -c 'import torch; print("torch:", torch.__version__, "cuda:", torch.version.cuda, "devices:", torch.cuda.device_count())'
  else
    echo "torch: MISSING (no python3 imports torch)"
  fi
}
step environment 30 probe_env

# The C++ packages dyngrad's CMake asks for, each found or MISSING.
probe_deps() {
  local d=$WORK/probe
  mkdir -p "$d"
  cat >"$d/CMakeLists.txt" <<'EOF'
cmake_minimum_required(VERSION 3.20)
project(probe LANGUAGES CXX)
include(CheckIncludeFileCXX)
set(missing "")
macro(need pkg)
  find_package(${pkg} ${ARGN} QUIET)
  if(${pkg}_FOUND)
    message(STATUS "dependency ${pkg}: found")
  else()
    message(STATUS "dependency ${pkg}: MISSING")
    list(APPEND missing ${pkg})
  endif()
endmacro()
need(Eigen3 3.3 NO_MODULE)
need(fmt)
need(OpenMP COMPONENTS CXX)
need(nlohmann_json 3)
need(GTest)
need(benchmark)
need(ZLIB)
need(Python3 COMPONENTS Interpreter)
check_include_file_cxx(CLI/CLI.hpp HAVE_CLI11)
if(NOT HAVE_CLI11)
  message(STATUS "dependency CLI11 (header CLI/CLI.hpp): MISSING")
  list(APPEND missing CLI11)
endif()
if(missing)
  message(FATAL_ERROR "missing: ${missing}. Install them (Debian/Ubuntu: libeigen3-dev libfmt-dev "
          "nlohmann-json3-dev libgtest-dev libbenchmark-dev libcli11-dev zlib1g-dev), or build a prefix "
          "with tools/gpu_deps_pack.sh on a machine that has them and pass DG_DEPS_PREFIX (or carry .gpudeps/).")
endif()
EOF
  local -a prefix=()
  [ -n "$DEPS" ] && prefix=(-DCMAKE_PREFIX_PATH="$DEPS" -DCMAKE_CXX_FLAGS="-isystem $DEPS/include")
  cmake -S "$d" -B "$d/build" "${prefix[@]}" >"$d/out.log" 2>&1
  local rc=$?
  grep -E "dependency|missing" "$d/out.log"
  return "$rc"
}
DEPS_OK=1
step dependencies 60 probe_deps || DEPS_OK=0
grep -E "dependency" "$WORK/dependencies.log" 2>/dev/null | sed 's/^-- /   /'

# ---------------------------------------------------------------- 2. build
GEN=()
command -v ninja >/dev/null && GEN=(-G Ninja)
CONFIG=(-DCMAKE_BUILD_TYPE=Release -DDG_BUILD_EXAMPLES=ON -DDG_BUILD_TESTS=ON -DDG_BUILD_BENCH=ON)
if [ $MODE = gpu ]; then
  CONFIG+=(-DDG_CUDA=ON -DDG_CUDA_ARCHITECTURES=90)
fi
command -v ccache >/dev/null && CONFIG+=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache -DCMAKE_CUDA_COMPILER_LAUNCHER=ccache)
TEST_TARGETS=()
for f in tests/test_cuda_*.cpp tests/test_devices*.cpp tests/test_models_device*.cpp; do
  [ -f "$f" ] && TEST_TARGETS+=("$(basename "$f" .cpp)")
done
BENCH_TARGETS=(bench_gpt_step)
[ $MODE = gpu ] && BENCH_TARGETS+=(bench_cuda)
BUILT=0
if [ $DEPS_OK = 1 ]; then
  if step configure 90 cmake -S . -B "$BUILD" "${GEN[@]}" "${CONFIG[@]}" "${CMAKE_DEPS[@]}"; then
    # One build call: the targets share the libraries, so all cores stay busy.
    step build 300 cmake --build "$BUILD" -j "$JOBS" --target "${TEST_TARGETS[@]}" "${BENCH_TARGETS[@]}" && BUILT=1
    if [ $BUILT = 0 ]; then  # say which targets did build, and go on with those
      for t in "${TEST_TARGETS[@]}" "${BENCH_TARGETS[@]}"; do
        [ -x "$(find "$BUILD" -name "$t" -type f -perm -u+x 2>/dev/null | head -n 1)" ] && say "   built anyway: $t"
      done
    fi
  fi
else
  record configure SKIPPED 0 "dependencies missing"
  record build SKIPPED 0 "dependencies missing"
  say "C++ build skipped: dependencies missing (see above); the PyTorch benchmarks still run"
fi
exe() { find "$BUILD" -name "$1" -type f -perm -u+x 2>/dev/null | head -n 1; }

# ---------------------------------------------------------------- 3. tests
if [ -d "$BUILD" ] && [ -n "$(exe test_cuda_parity)" ]; then
  PARITY_ENV=()
  [ $MODE = cpu ] && PARITY_ENV=(DG_PARITY_DEVICE=guarded)
  # DG_TF32 must be unset: the f32 tolerances assume exact f32 GEMMs.
  step ctest_cuda 150 env -u DG_TF32 "${PARITY_ENV[@]}" ctest --test-dir "$BUILD" -L cuda --output-on-failure \
    --timeout 120 -j 2
  grep -E "tests passed|tests failed|Skipped|\*\*\*Failed|Not Run" "$WORK/ctest_cuda.log" 2>/dev/null | head -n 20 |
    sed 's/^/   /'
  # The device-parameterised tests (tests/devices.h): their CUDA instances.
  for src in tests/test_devices*.cpp tests/test_models_device*.cpp; do
    [ -f "$src" ] || continue
    t=$(basename "$src" .cpp)
    bin=$(exe "$t")
    [ -n "$bin" ] && step "${t}_cuda" 90 env -u DG_TF32 "$bin" --gtest_filter='*Cuda*:*cuda*:*CUDA*' --gtest_brief=1
  done
else
  record ctest_cuda SKIPPED 0 "test_cuda_parity not built"
fi

# ---------------------------------------------------------------- 4. GEMM rate, chain
if [ $MODE = gpu ]; then
  if [ -n "$(exe bench_cuda)" ]; then
    step bench_cuda 60 env DG_TF32=1 "$(exe bench_cuda)" --json "$WORK/bench_cuda.json"
  else
    record bench_cuda SKIPPED 0 "not built"
  fi
  if [ -n "$PY" ]; then
    step torch_chain 45 env PYTHONUNBUFFERED=1 "$PY" bench/torch_ops.py --device cuda --filter Chain4 --reps 5 \
      --json "$WORK/torch_ops.json"
  fi
fi

# ---------------------------------------------------------------- 5. training steps
if [ $MODE = gpu ]; then
  CONFIG_NAME=gpt2 STEPS=5 WARMUP=2 DEVICE=cuda RUN_LIMIT=90
else
  CONFIG_NAME=tiny STEPS=2 WARMUP=1 DEVICE=cpu RUN_LIMIT=60
fi
ROUNDS=${DG_GPU_CHECK_ROUNDS:-3}
DG_BENCH=$(exe bench_gpt_step)
DG_FLAGS=()
if [ -n "$DG_BENCH" ]; then
  if "$DG_BENCH" --help 2>/dev/null | grep -q -- "--device"; then
    DG_FLAGS=(--device "$DEVICE")
  elif [ $MODE = gpu ]; then
    say "bench_gpt_step has no --device flag in this build: dyngrad's GPU training steps cannot run"
    record bench_gpt_step_device SKIPPED 0 "no --device flag"
    DG_BENCH=""
  fi
fi
TORCH_FLAGS=(--device "$DEVICE" --threads "$JOBS")
[ $MODE = gpu ] && TORCH_FLAGS+=(--sdpa)

# Peak GPU memory in use (MiB, nvidia-smi, sampled every 0.2 s) while a run
# goes, minus what was in use before: the driver's view, the same for both
# sides (CUDA context and the caching allocators' reserve included).
# start_gpu_memory FILE sets SAMPLER; stop_gpu_memory ends it.
SAMPLER=""
gpu_used_mb() { nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits -i 0 2>/dev/null | head -n 1; }
start_gpu_memory() {
  SAMPLER=""
  { [ $MODE = cpu ] || ! command -v nvidia-smi >/dev/null; } && return
  local base
  base=$(gpu_used_mb)
  [ -n "$base" ] || return
  (
    peak=0
    while :; do
      m=$(gpu_used_mb)
      if [ -n "$m" ] && [ "$m" -gt "$peak" ]; then
        peak=$m
        echo $((peak - base)) >"$1"
      fi
      sleep 0.2
    done
  ) &
  SAMPLER=$!
}
stop_gpu_memory() {
  [ -n "$SAMPLER" ] || return 0
  kill "$SAMPLER" 2>/dev/null
  wait "$SAMPLER" 2>/dev/null
  SAMPLER=""
}

run_side() {  # run_side SIDE MODEL ROUND
  local side=$1 model=$2 round=$3 name="${1}_${2}_r${3}" peak=$WORK/peak.$1.$2.$3
  local -a cmd
  if [ "$side" = dyngrad ]; then
    cmd=(env DG_TF32=1 "$DG_BENCH" --model "$model" --config "$CONFIG_NAME" --steps "$STEPS" --warmup "$WARMUP"
      --threads "$JOBS" "${DG_FLAGS[@]}")
  else
    cmd=(env PYTHONUNBUFFERED=1 "$PY" bench/torch_gpt.py --model "$model" --config "$CONFIG_NAME" --steps "$STEPS"
      --warmup "$WARMUP" "${TORCH_FLAGS[@]}")
  fi
  start_gpu_memory "$peak"
  step "$name" "$RUN_LIMIT" "${cmd[@]}"
  local rc=$?
  stop_gpu_memory
  local line
  line=$(grep '^{' "$WORK/$name.log" 2>/dev/null | tail -n 1)
  [ -z "$line" ] && line='{}'
  printf '{"side":"%s","model":"%s","round":%s,"rc":%s,"peak_smi_mb":%s,"result":%s}\n' "$side" "$model" "$round" \
    "$rc" "$(cat "$peak" 2>/dev/null || echo null)" "$line" >>"$OUT/runs.jsonl"
  return "$rc"
}

declare -A BROKEN  # side/model pairs that failed once: not retried
for round in $(seq 1 "$ROUNDS"); do
  for model in dense mod mob; do
    sides=(dyngrad pytorch)
    [ $((round % 2)) = 0 ] && sides=(pytorch dyngrad)  # alternate which side runs first
    for side in "${sides[@]}"; do
      [ -n "${BROKEN[$side/$model]:-}" ] && continue
      [ "$side" = dyngrad ] && [ -z "$DG_BENCH" ] && continue
      [ "$side" = pytorch ] && [ -z "$PY" ] && continue
      if [ $(($(left) - RESERVE)) -lt 20 ]; then
        say "budget nearly spent: round $round of $model/$side not run"
        continue
      fi
      run_side "$side" "$model" "$round" || BROKEN[$side/$model]=1
    done
  done
done

# ---------------------------------------------------------------- 6. table
TABLE_PY=${PY:-python3}
command -v "$TABLE_PY" >/dev/null || TABLE_PY=/usr/bin/python3
"$TABLE_PY" "$ROOT/tools/gpu_check_table.py" --mode "$MODE" --config "$CONFIG_NAME" --status "$STATUS" \
  --runs "$OUT/runs.jsonl" --bench-cuda "$WORK/bench_cuda.json" --torch-ops "$WORK/torch_ops.json" \
  --env "$WORK/environment.log" --json "$OUT/results.json" --elapsed "$(elapsed)" >"$OUT/table.md" ||
  echo "gpu_check: the table script failed" >>"$OUT/table.md"
echo
cat "$OUT/table.md"
say "done; results in $OUT"
rc=0
grep -qv $'\tOK\t' "$STATUS" && rc=1
rm -rf "$WORK"
exit $rc
