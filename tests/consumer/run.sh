#!/usr/bin/env bash
# ctest: install the built dyngrad into a scratch prefix, then configure,
# build and run tests/consumer against it with find_package(dyngrad).
set -euo pipefail
build_dir=$1; source_dir=$2
work="$build_dir/consumer-test"
rm -rf "$work"
cmake --install "$build_dir" --prefix "$work/prefix" >/dev/null
cmake -S "$source_dir/tests/consumer" -B "$work/build" -G Ninja -DCMAKE_PREFIX_PATH="$work/prefix" >/dev/null
cmake --build "$work/build" >/dev/null
"$work/build/consumer"
