#!/usr/bin/env bash
# Mixture-of-Depths step time against the dense GPT of the same size (issue
# 4's check): bench/routed_vs_dense.sh for MoD alone, on wall time with 2
# threads as before. See that script for the method and the table.
#
#   bash bench/mod_vs_dense.sh                       # tiny and small, 3 rounds of 20 steps
#   CONFIGS=tiny ROUNDS=1 STEPS=5 bash bench/mod_vs_dense.sh
#   BUILD=build-bench bash bench/mod_vs_dense.sh
set -euo pipefail
KINDS=mod CONFIGS=${CONFIGS:-"tiny small"} CLOCK=${CLOCK:-wall} THREADS=${THREADS:-2} \
  exec bash "$(dirname "$0")/routed_vs_dense.sh"
