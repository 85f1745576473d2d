#!/usr/bin/env bash
# Repeat the GPU proof (issue #8) on any Linux machine with an NVIDIA GPU, nvcc, cmake and ninja:
#   bash bench/gpu_device.sh [OUT_DIR]
# On the lent device machine the caller carries .whl (Python wheels: bench/gpu_device_wheels.txt), .gl (the Vulkan
# loader .debs) and .devcarry/llama-src.tar.gz (the llama.cpp 0c1e57098 tree from the llama-cpp-python 0.3.36 sdist).
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-${OUT:-/tmp/gpu-device-out}}
mkdir -p "$OUT"
if compgen -G ".gl/*.deb" >/dev/null; then for f in .gl/*.deb; do dpkg -x "$f" /; done; ldconfig; fi
if compgen -G ".whl/*.whl" >/dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
  export PYTHONPATH=/tmp/site
fi
icd=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
if [ -f "$icd" ] && [ -z "${VK_DRIVER_FILES:-}" ]; then export VK_DRIVER_FILES=$icd; fi
export XDG_RUNTIME_DIR=${XDG_RUNTIME_DIR:-$(mktemp -d)}
SRC=.devwork/src
if [ ! -f "$SRC/CMakeLists.txt" ]; then
  mkdir -p "$SRC"
  if [ -f .devcarry/llama-src.tar.gz ]; then tar xzf .devcarry/llama-src.tar.gz -C "$SRC"; else
    echo "need the llama.cpp source in $SRC or .devcarry/llama-src.tar.gz" >&2; exit 2; fi
fi
export PYTHONUNBUFFERED=1
python3 bench/gpu_device.py --out "$OUT" --src "$SRC" --jobs "$(nproc)"
