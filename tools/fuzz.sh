#!/usr/bin/env bash
# A longer fuzzing run, with the options of the ctest runs (fuzz/run.sh):
#   bash tools/fuzz.sh safetensors 300      # TARGET: safetensors | checkpoint | idx | text | all
# Builds build-fuzz first (clang 14, DG_FUZZ=ON: ASan + UBSan + coverage). New
# inputs collect in build-fuzz/fuzz/corpus/TARGET, findings in
# build-fuzz/fuzz/fuzz-artifacts/, the whole log in build-fuzz/fuzz/TARGET.log.
# Prints libFuzzer's final line (execs, cov: edges, ft: features) and stats.
set -euo pipefail
cd "$(dirname "$0")/.."
target=${1:?usage: tools/fuzz.sh safetensors|checkpoint|idx|text|all SECONDS}
seconds=${2:-300}
targets=("$target")
[ "$target" = all ] && targets=(safetensors checkpoint idx text)
launcher=()
command -v ccache >/dev/null && launcher=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache)
CXX=${CXX:-clang++-14} cmake -S . -B build-fuzz -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DDG_FUZZ=ON \
  -DDG_NATIVE=OFF -DDG_BUILD_BENCH=OFF -DDG_BUILD_EXAMPLES=OFF "${launcher[@]}" >/dev/null
for t in "${targets[@]}"; do
  cmake --build build-fuzz --target "fuzz_$t"
  echo "== fuzz_$t for $seconds s: bash fuzz/run.sh build-fuzz/fuzz/fuzz_$t $t $seconds build-fuzz/fuzz"
  status=0
  DG_NUM_THREADS=1 bash fuzz/run.sh "build-fuzz/fuzz/fuzz_$t" "$t" "$seconds" build-fuzz/fuzz \
    >"build-fuzz/fuzz/$t.log" 2>&1 || status=$?
  grep -E "^#[0-9]+[[:space:]]+(DONE|INITED)|^stat::|^SUMMARY|^==[0-9]+==ERROR|deadly signal" \
    "build-fuzz/fuzz/$t.log" || true
  [ "$status" -eq 0 ] || { echo "fuzz_$t: finding (exit $status), see build-fuzz/fuzz/$t.log"; exit "$status"; }
done
