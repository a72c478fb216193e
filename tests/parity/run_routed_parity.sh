#!/usr/bin/env bash
# ctest `routed_parity`: regenerates the PyTorch references of the routed
# models with Debian's interpreter, then runs the C++ comparison on them.
#   bash tests/parity/run_routed_parity.sh BINARY OUT_DIR
# Exits 77 (ctest: skipped) when /usr/bin/python3 cannot import torch.
set -euo pipefail
if [ $# -ne 2 ]; then
  echo "usage: $0 ROUTED_PARITY_BINARY REFERENCE_OUT_DIR" >&2
  exit 2
fi
bin=$1 out=$2
here=$(cd "$(dirname "$0")" && pwd)
if [ ! -x /usr/bin/python3 ] || ! /usr/bin/python3 -c 'import torch, numpy' 2>/dev/null; then
  echo "routed_parity: skipped: /usr/bin/python3 cannot import torch and numpy (Debian: python3-torch)"
  exit 77
fi
/usr/bin/python3 "$here/make_routed_reference.py" "$out"
DG_ROUTED_REFERENCE_DIR="$out" "$bin"
