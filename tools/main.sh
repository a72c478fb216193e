#!/usr/bin/env bash
# The main job: set up, build (Release) and run the autodiff tour.
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/setup.sh --no-torch
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release -DDG_BUILD_TESTS=OFF -DDG_BUILD_BENCH=OFF >/dev/null
cmake --build build --target autodiff_tour
./build/examples/autodiff_tour build/autodiff_tour.dot "$@"
