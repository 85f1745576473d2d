#!/usr/bin/env bash
# The whole test suite, from a fresh Debian machine: system packages, a virtualenv, lint, types, tests.
# Usage: bash scripts/test.sh [extra pytest args]
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES=(
  python3-venv cmake ninja-build ccache build-essential patchelf binutils
  qemu-user                                   # run builds under an emulated Ivy Bridge / Westmere / Core 2
  libvulkan1 libvulkan-dev mesa-vulkan-drivers vulkan-tools glslc spirv-headers  # lavapipe: a real Vulkan device
  libegl1 libgl1 libxkbcommon0 libxkbcommon-x11-0 libfontconfig1 libdbus-1-3 libxcb-cursor0  # Qt offscreen
  libxcb-icccm4 libxcb-keysyms1 libwayland-cursor0 libwayland-egl1  # Qt xcb/wayland libs the bundle carries
  xvfb xauth                                  # the frozen wizard is started on a real X server
  xdotool                                     # real key presses into the wizard on that X server
  curl                                        # baseline of the download benchmark
  gcc-mingw-w64-x86-64                        # real PE DLLs for the ISA audit / ABI guard tests
  g++-mingw-w64-x86-64                        # a C++ DLL that needs libstdc++-6.dll (runtime check of Windows builds)
  wine64                                      # smoke-test Windows backends (cross-built with zig) under Wine
)
missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo ">> installing system packages: ${missing[*]}"
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  echo ">> creating .venv"
  "$PY" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip >/dev/null
.venv/bin/python -m pip install -q -e '.[test,bundle]'  # bundle: PyInstaller for tests/test_bundle.py

export QT_QPA_PLATFORM=offscreen
export XDG_RUNTIME_DIR="${XDG_RUNTIME_DIR:-$(mktemp -d)}"
# llama.cpp source and build trees are cached here between runs (the first run builds, later runs reuse).
export LMS_UNLOCKED_TEST_CACHE="${LMS_UNLOCKED_TEST_CACHE:-$HOME/.cache/lms-unlocked-tests}"

echo ">> ruff"
.venv/bin/ruff check app tests bench scripts
echo ">> mypy (strict on app/core; every function typed and checked in app/qt and the CLI)"
.venv/bin/mypy
echo ">> import-linter (layer rules in pyproject.toml)"
.venv/bin/lint-imports --no-cache
echo ">> pytest"
set +e
.venv/bin/python -m pytest "$@"
rc=$?
set -e
# pytest exit 5 = no tests collected: that is a failure for us, not a success.
exit $rc
