#!/usr/bin/env bash
# The main job: set up, build (Release) and train the default model — a
# Mixture-of-Blocks language model on the embedded arithmetic corpus (no
# download) — then print its routing summary and samples. Extra arguments go
# to train_lm (see train_lm --help), e.g. bash tools/main.sh --model dense.
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/setup.sh --no-torch
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build --target train_lm sample_lm
# runs/main is the demo's own folder: a rerun starts it over (--overwrite),
# unless the arguments ask to --resume it.
fresh=(--overwrite)
for a in "$@"; do [ "$a" = "--resume" ] && fresh=(); done
./build/examples/train_lm --out runs/main "${fresh[@]}" "$@"
