#!/usr/bin/env bash
# Packs the C++ dependencies dyngrad builds against (Eigen, fmt, GoogleTest,
# Google Benchmark, CLI11, nlohmann-json, zlib: headers, libraries and their
# CMake package files, in the /usr layout) from THIS machine (Debian 12) into
# DIR, for a GPU machine that has CUDA and PyTorch but none of these and no
# network. tools/gpu_check.sh uses DIR as a CMake prefix when DG_DEPS_PREFIX
# names it, or when the repository root holds .gpudeps/.
#
#   tools/gpu_deps_pack.sh .gpudeps      # ~15 MB
#   echo /.gpudeps/ >> "$(git rev-parse --git-common-dir)/info/exclude"
#   # then carry .gpudeps with the device run; gpu_check.sh finds it.
#
# The package files are relocatable (their prefix is computed from their own
# path), so DIR can live anywhere. Shared libraries (libfmt, libbenchmark)
# travel too: gpu_check.sh puts DIR/lib/x86_64-linux-gnu on LD_LIBRARY_PATH.
set -euo pipefail
DIR=${1:?usage: tools/gpu_deps_pack.sh DIR}
MA=x86_64-linux-gnu
mkdir -p "$DIR/include" "$DIR/lib/$MA/cmake" "$DIR/share/cmake" "$DIR/share/eigen3"
copy() {  # copy PATH (under /usr) to the same place under DIR; missing = error
  local src=/usr/$1
  [ -e "$src" ] || { echo "gpu_deps_pack: $src is missing on this machine" >&2; exit 1; }
  mkdir -p "$DIR/$(dirname "$1")"
  cp -a "$src" "$DIR/$1"
}
for h in eigen3 fmt gtest gmock benchmark CLI nlohmann zlib.h zconf.h; do copy "include/$h"; done
for c in fmt GTest benchmark; do copy "lib/$MA/cmake/$c"; done
copy share/eigen3/cmake
for c in CLI11 nlohmann_json; do copy "share/cmake/$c"; done
for pattern in 'libfmt.so*' 'libbenchmark*' 'libgtest*.a' 'libgmock*.a' libz.a; do
  for f in /usr/lib/$MA/$pattern; do copy "lib/$MA/$(basename "$f")"; done
done
du -sh "$DIR"
