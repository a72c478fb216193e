#!/usr/bin/env bash
# Installs the Debian packages dyngrad needs, only those missing (root, or sudo).
#   compilers/build: g++ cmake ninja-build
#   libraries:       libeigen3-dev (GEMM), libfmt-dev (formatting), libomp-dev (OpenMP),
#                    nlohmann-json3-dev (safetensors headers, parity references),
#                    libcli11-dev (command lines of the examples), zlib1g-dev (idx.gz files)
#   data:            dataset-fashion-mnist (the idx files examples/fashion_mnist trains on),
#                    bible-kjv (`bible` prints the 4.3 MB English text of tools/study.sh)
#   pictures:        python3-matplotlib (routing and loss plots)
#   GEMM:            libopenblas-openmp-dev (our CPU GEMM where OpenBLAS runs its AVX-512 kernels,
#                    ~1.5x Eigen's GFLOP/s; also PyTorch's BLAS in the side-by-side runs)
#   tests/benches:   libgtest-dev libbenchmark-dev, python3-torch + python3-numpy (PyTorch
#                    references; Debian's own /usr/bin/python3 imports them)
#   second compiler: clang-14 (CI builds with it too), libclang-rt-14-dev (its ASan/UBSan and
#                    libFuzzer runtimes, for DG_SANITIZE and DG_FUZZ; clang-14 does not pull them
#                    in); clang's OpenMP is libomp-dev's libomp-14-dev
#   browser:         chromium (headless: ctest trace_page_chromium renders the routing-trace page,
#                    models/trace_page.h, and checks what it displays; skipped without it)
set -euo pipefail
packages=(g++ cmake ninja-build libeigen3-dev libfmt-dev libomp-dev nlohmann-json3-dev libcli11-dev zlib1g-dev
          libgtest-dev libbenchmark-dev python3-torch python3-numpy python3-matplotlib dataset-fashion-mnist
          libopenblas-openmp-dev clang-14 libclang-rt-14-dev chromium
          bible-kjv)
if [ "${1:-}" = "--no-torch" ]; then packages=("${packages[@]/python3-torch}"); fi
missing=()
for p in "${packages[@]}"; do
  [ -n "$p" ] || continue
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}"
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi
