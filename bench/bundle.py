"""Bundle size and cold-start time to the first window, measured in one run against baselines.

    .venv/bin/python bench/bundle.py [--runs N] [--no-build]

* Size: the shipped bundle (installer.spec as is) vs the same spec with LMS_UNLOCKED_BUNDLE_NOPRUNE=1 (every file
  the PyInstaller hooks collect, full ICU data, no plugin pruning), both built here by scripts/build_bundle.sh;
  the biggest files of the shipped bundle with why each is needed.
* Start: time from spawning the process to the wizard's first exposed window (the app's
  LMS_UNLOCKED_SMOKE_EXIT_MS hook prints the wall-clock time it was shown), on Qt's offscreen platform and on a
  real X server (Xvfb, xcb platform) when installed, frozen vs
  `python -m app` from source (the baseline), plus `--version` (CLI start) for both. The first frozen run is taken
  after dropping the page cache when this user may (root outside a container), else it is only "first".
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "build" / "bench-bundle"
SMOKE_RE = re.compile(r"^smoke: first window shown at (\d+\.\d+)", re.M)

# Why the biggest files are there (first matching pattern wins).
WHY = (
    ("libicudata", "ICU data (Qt 6 links ICU); the stub replaces 32 MB on Linux"),
    ("libicui18n", "ICU i18n (Qt 6 links it); the stub replaces 3.5 MB on Linux"),
    ("libicu", "ICU common code (converters, case mapping), linked by libQt6Core"),
    ("libQt6Gui", "Qt GUI: painting, fonts, windows"),
    ("libQt6Widgets", "Qt Widgets: the wizard"),
    ("libQt6Core", "Qt core"),
    ("PySide6/Qt/", "Qt library / plugin"),
    ("PySide6/", "PySide6 binding module"),
    ("Cryptodome", "pycryptodomex: ed25519 catalog signatures, AES for py7zr"),
    ("capstone", "capstone disassembler (x86-only build on Linux): the ISA audit"),
    ("tiny-llama", "tiny GGUF model for the smoke test"),
    ("certifi", "CA certificates for HTTPS"),
    ("rpds", "rpds (jsonschema's referencing)"),
    ("libpython", "the Python interpreter"),
    ("libcrypto", "OpenSSL for Python's ssl/hashlib (HTTPS downloads)"),
    ("libssl", "OpenSSL TLS for Python's ssl (HTTPS downloads)"),
    ("libstdc++", "C++ runtime of Qt"),
    ("base_library.zip", "Python standard library (bytecode)"),
    ("lms-unlocked", "bootloader + our code and pure-Python packages (PYZ)"),
    ("zstd", "zstandard for py7zr (7z archives)"),
    ("brotli", "brotli for py7zr / urllib3"),
    ("unicodedata", "unicodedata (idna, requests)"),
    ("_decimal", "decimal (stdlib)"),
    ("libX11", "X11 client library (Qt xcb)"),
    ("libglib", "GLib (Qt event loop integration)"),
    ("libgcrypt", "libgcrypt, via libdbus-1 -> libsystemd"),
    ("libsystemd", "libsystemd, via libdbus-1"),
    ("libQt6Wayland", "Qt Wayland client"),
)


def build(dist: Path, *, noprune: bool) -> Path:
    env = {**os.environ, "LMS_UNLOCKED_BUNDLE_NOPRUNE": "1" if noprune else ""}
    subprocess.run(["bash", str(REPO / "scripts" / "build_bundle.sh"), "--dist", str(dist), "--work",
                    str(dist.parent / "work")], check=True, env=env, cwd=REPO, stdin=subprocess.DEVNULL)
    return dist / "lms-unlocked"


def tree_size(root: Path) -> tuple[int, int]:
    files = [p for p in root.rglob("*") if p.is_file() and not p.is_symlink()]
    return sum(p.stat().st_size for p in files), len(files)


def why(rel: str) -> str:
    return next((reason for pat, reason in WHY if pat in rel), "")


def drop_caches() -> bool:
    try:
        os.sync()
        Path("/proc/sys/vm/drop_caches").write_text("3\n")
        return True
    except OSError:
        return False


def time_to_window(argv: list[str], env: dict[str, str]) -> float:
    start = time.time()
    r = subprocess.run(argv, env={**env, "LMS_UNLOCKED_SMOKE_EXIT_MS": "0"}, capture_output=True, text=True,
                       stdin=subprocess.DEVNULL, timeout=120, cwd=REPO, check=False)
    m = SMOKE_RE.search(r.stderr)
    if r.returncode != 0 or m is None:
        raise SystemExit(f"{argv[0]} did not show its window: rc={r.returncode}\n{r.stderr[-2000:]}")
    return float(m.group(1)) - start


@contextlib.contextmanager
def xvfb() -> Iterator[str | None]:
    """A real X server for the xcb platform users get (None when Xvfb is not installed)."""
    exe = shutil.which("Xvfb")
    if exe is None:
        yield None
        return
    read, write = os.pipe()
    proc = subprocess.Popen([exe, "-displayfd", str(write), "-screen", "0", "1280x800x24", "-nolisten", "tcp"],
                            pass_fds=(write,), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    os.close(write)
    try:
        with os.fdopen(read) as fh:
            yield ":" + fh.readline().strip()
    finally:
        proc.terminate()
        proc.wait(10)


def time_cli(argv: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    subprocess.run([*argv, "--version"], env=env, capture_output=True, check=True, stdin=subprocess.DEVNULL)
    return time.perf_counter() - start


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=7)
    ap.add_argument("--no-build", action="store_true", help="reuse build/bench-bundle from an earlier run")
    args = ap.parse_args()

    shipped, baseline = OUT / "shipped" / "dist", OUT / "noprune" / "dist"
    if not args.no_build:
        shutil.rmtree(OUT, ignore_errors=True)
        build(baseline, noprune=True)
        build(shipped, noprune=False)
    bundle, full = shipped / "lms-unlocked", baseline / "lms-unlocked"

    size, count = tree_size(bundle)
    base_size, base_count = tree_size(full)
    print(f"bundle (shipped):  {size / 1e6:7.1f} MB in {count} files   [{bundle}]")
    print(f"baseline (no prune, full ICU): {base_size / 1e6:7.1f} MB in {base_count} files")
    print(f"ratio shipped/baseline: {size / base_size:.2f}   goal <= 80 MB: {'met' if size <= 80e6 else 'NOT met'}")
    print("\nbiggest files of the shipped bundle:")
    files = sorted((p for p in bundle.rglob("*") if p.is_file() and not p.is_symlink()),
                   key=lambda p: p.stat().st_size, reverse=True)
    for p in files[:20]:
        rel = p.relative_to(bundle).as_posix()
        print(f"  {p.stat().st_size / 1e6:6.2f} MB  {rel:<62} {why(rel)}")
    groups: dict[str, int] = {}
    for p in files:
        rel = p.relative_to(bundle).as_posix()
        key = ("ICU (common code; data + i18n are stubs on Linux)" if "/libicu" in rel
               else "Qt libraries + plugins" if "PySide6/Qt/" in rel else "PySide6 bindings" if "PySide6/" in rel
               else "pycryptodomex" if "Cryptodome" in rel else "capstone" if "capstone" in rel
               else "Python (interpreter, stdlib, extensions)" if "python3" in rel or "base_library" in rel
               else "executable (PYZ of our + pure-Python code)" if rel == "lms-unlocked"
               else "bundled libraries (OpenSSL, xcb-util, zlib, lzma, ...)" if rel.startswith("_internal/lib")
               else "other")
        groups[key] = groups.get(key, 0) + p.stat().st_size
    print("\nby group:")
    for k, v in sorted(groups.items(), key=lambda kv: -kv[1]):
        print(f"  {v / 1e6:6.1f} MB  {k}")

    with tempfile.TemporaryDirectory() as tmp:
        xdg = Path(tmp) / "xdg"
        xdg.mkdir(mode=0o700)
        env = {**os.environ, "QT_QPA_PLATFORM": "offscreen", "HOME": tmp, "XDG_RUNTIME_DIR": str(xdg),
               "LMS_UNLOCKED_LOG_DIR": str(Path(tmp) / "log"), "LMS_UNLOCKED_DATA_DIR": str(Path(tmp) / "data"),
               "LMS_UNLOCKED_CACHE_DIR": str(Path(tmp) / "cache")}
        frozen_argv = [str(bundle / "lms-unlocked")]
        source_argv = [sys.executable, "-m", "app"]
        cold = drop_caches()
        first = time_to_window(frozen_argv, env)
        cold_src = drop_caches() and time_to_window(source_argv, env)
        fw = [time_to_window(frozen_argv, env) for _ in range(args.runs)]
        sw = [time_to_window(source_argv, env) for _ in range(args.runs)]
        fc = [time_cli(frozen_argv, env) for _ in range(args.runs)]
        sc = [time_cli(source_argv, env) for _ in range(args.runs)]
        with xvfb() as display:
            if display:
                x_env = {**env, "QT_QPA_PLATFORM": "xcb", "DISPLAY": display}
                fx = [time_to_window(frozen_argv, x_env) for _ in range(args.runs)]
                sx = [time_to_window(source_argv, x_env) for _ in range(args.runs)]
    fm, sm = statistics.median(fw), statistics.median(sw)
    print(f"\nstart to first window (offscreen, median of {args.runs}):")
    print(f"  frozen {'cold (page cache dropped)' if cold else 'first run'}: {first:.3f} s"
          + (f"   source cold: {cold_src:.3f} s" if cold else ""))
    print(f"  frozen: {fm:.3f} s   source (python -m app): {sm:.3f} s   ratio frozen/source: {fm / sm:.2f}")
    if display:
        fxm, sxm = statistics.median(fx), statistics.median(sx)
        print(f"  on Xvfb (xcb platform): frozen {fxm:.3f} s   source {sxm:.3f} s   ratio {fxm / sxm:.2f}")
    fcm, scm = statistics.median(fc), statistics.median(sc)
    print(f"CLI --version: frozen {fcm:.3f} s   source {scm:.3f} s   ratio {fcm / scm:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
