#!/usr/bin/env bash
# The whole test suite: set up, regenerate the PyTorch references, build
# (Release), run every test with ctest. Extra arguments go to ctest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/setup.sh
# The references come from Debian's interpreter (pyenv's python3 has no torch).
/usr/bin/python3 tests/parity/make_reference.py tests/parity/reference.json
/usr/bin/python3 tests/parity/make_optim_reference.py tests/parity/optim_reference.json
/usr/bin/python3 tests/parity/make_gpt_reference.py tests/parity
# ctest runs nproc tests at once, each with nproc OpenMP threads: with
# spinning waits those threads burn the cores their neighbours need. Passive
# waits make oversubscription cost little (tests are not timed).
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-PASSIVE}
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build
ctest --test-dir build --output-on-failure -j "$(nproc)" "$@"
