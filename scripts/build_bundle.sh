#!/usr/bin/env bash
# Build the onedir PyInstaller bundle (installer.spec) and check that the frozen program starts.
#
# Usage: bash scripts/build_bundle.sh [--clean-venv] [--dist DIR] [--work DIR] [--archive]
#   (default)     build with the project venv .venv (created with the `bundle` extra if needed). The spec excludes
#                 the test-only packages that venv also holds, so the result is the same as a clean build.
#   --clean-venv  build in a fresh venv (build/bundle-venv) holding only our dependencies + PyInstaller, from a
#                 regular (non-editable) install: what the release workflow does.
#   --dist DIR    where the bundle goes (default dist/; the bundle is DIR/lms-unlocked/)
#   --work DIR    PyInstaller's work directory (default build/pyinstaller)
#   --archive     also pack DIR/lms-unlocked-<version>-<os>-<arch>.zip (Windows) or .tar.gz (elsewhere; the .app
#                 on macOS)
# Environment: PYTHON (interpreter for a new venv, default python3), LMS_UNLOCKED_BUNDLE_DEBUG=1 (console +
# bootloader debug build), LMS_UNLOCKED_BUNDLE_NOPRUNE=1, LMS_UNLOCKED_BUNDLE_FULL_ICU=1 (see installer.spec).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)

CLEAN=0; ARCHIVE=0; DIST="$ROOT/dist"; WORK="$ROOT/build/pyinstaller"
while (($#)); do
  case "$1" in
    --clean-venv) CLEAN=1 ;;
    --archive) ARCHIVE=1 ;;
    --dist) DIST=$2; shift ;;
    --work) WORK=$2; shift ;;
    -h|--help) sed -n '2,15p' "$0"; exit 0 ;;
    *) echo "build_bundle.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done

venv_python() {  # POSIX venvs have bin/python, Windows ones Scripts/python.exe (Git Bash on the CI runner)
  if [ -x "$1/bin/python" ]; then echo "$1/bin/python"; else echo "$1/Scripts/python.exe"; fi
}

PY=${PYTHON:-python3}
if ((CLEAN)); then
  VENV="$ROOT/build/bundle-venv"
  rm -rf "$VENV"
  echo ">> clean venv $VENV"
  "$PY" -m venv "$VENV"
  VPY=$(venv_python "$VENV")
  "$VPY" -m pip install -q --upgrade pip
  "$VPY" -m pip install -q "$ROOT[bundle]"
else
  VENV="$ROOT/.venv"
  [ -d "$VENV" ] || "$PY" -m venv "$VENV"
  VPY=$(venv_python "$VENV")
  "$VPY" -c "import PyInstaller, app" 2>/dev/null || "$VPY" -m pip install -q -e "$ROOT[bundle]"
fi

echo ">> pyinstaller ($("$VPY" -m PyInstaller --version)) -> $DIST/lms-unlocked"
CLEAN_CACHE=(); ((CLEAN)) && CLEAN_CACHE=(--clean)  # a release build also empties PyInstaller's cache
"$VPY" -m PyInstaller --noconfirm "${CLEAN_CACHE[@]}" --log-level WARN --distpath "$DIST" --workpath "$WORK" "$ROOT/installer.spec"

BUNDLE="$DIST/lms-unlocked"
EXE="$BUNDLE/lms-unlocked"
[ -f "$BUNDLE/lms-unlocked-cli.exe" ] && EXE="$BUNDLE/lms-unlocked-cli.exe"  # Windows: the console twin
echo ">> $("$EXE" --version)  ($(du -sh "$BUNDLE" | cut -f1) in $BUNDLE)"
# The frozen program checks itself: every app.* module imports, data files are where app.core.paths looks
# (scripts/bundle_entry.py), then the wizard opens on Qt's offscreen platform and quits after its first window.
mkdir -p "$WORK"
if ! LMS_UNLOCKED_BUNDLE_SELFTEST="$WORK/selftest.json" QT_QPA_PLATFORM=offscreen "$BUNDLE/lms-unlocked"; then
  cat "$WORK/selftest.json" >&2 || true
  echo "build_bundle.sh: the frozen self-test failed (a module did not import; see above)" >&2
  exit 1
fi
QT_QPA_PLATFORM=offscreen LMS_UNLOCKED_SMOKE_EXIT_MS=0 "$BUNDLE/lms-unlocked" \
  || { echo "build_bundle.sh: the frozen wizard did not open and close cleanly" >&2; exit 1; }
echo ">> frozen self-test and wizard smoke passed"

if ((ARCHIVE)); then
  "$VPY" - "$DIST" <<'EOF'
import platform, shutil, sys
from pathlib import Path

import app

dist = Path(sys.argv[1])
system = {"win32": "windows", "darwin": "macos"}.get(sys.platform, sys.platform)
machine = platform.machine().lower().replace("amd64", "x86_64")
base = dist / f"lms-unlocked-{app.__version__}-{system}-{machine}"
fmt = "zip" if sys.platform == "win32" else "gztar"
what = "LM Studio Unlocked.app" if (dist / "LM Studio Unlocked.app").is_dir() else "lms-unlocked"  # macOS: the .app
print(">> archive", shutil.make_archive(str(base), fmt, root_dir=dist, base_dir=what))
EOF
fi
