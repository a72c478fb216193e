#!/usr/bin/env bash
# Runs one libFuzzer target for a bounded time from the committed seeds:
#   fuzz/run.sh BINARY NAME SECONDS WORKDIR
# New inputs go to WORKDIR/corpus/NAME (the committed corpus/NAME is only
# read); a finding is saved as WORKDIR/fuzz-artifacts/NAME-<kind>-<hash>.
# The last lines are libFuzzer's final statistics (execs, coverage).
set -euo pipefail
bin=$1 name=$2 seconds=$3 work=$4
here="$(cd "$(dirname "$0")" && pwd)"
mkdir -p "$work/corpus/$name" "$work/fuzz-artifacts"
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1}
exec "$bin" -max_total_time="$seconds" -rss_limit_mb=2048 -timeout=10 -print_final_stats=1 \
  -dict="$here/$name.dict" -artifact_prefix="$work/fuzz-artifacts/$name-" \
  "$work/corpus/$name" "$here/corpus/$name"
