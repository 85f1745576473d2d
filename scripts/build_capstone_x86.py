"""Build an x86-only libcapstone.so for the installed capstone Python binding (Linux only).

The capstone wheel ships a library built for every architecture (~9.6 MB). The app only disassembles x86-64
(the ISA audit: ``Cs(CS_ARCH_X86, CS_MODE_64).disasm_lite``), so the bundle can carry a library built with X86
alone. It is built from the C sources vendored in PyPI's capstone sdist of EXACTLY the installed version
(importlib.metadata), so it matches the binding's ABI, with the full x86 tables: not CAPSTONE_X86_REDUCE, not
diet, AT&T printer kept. Exported symbols are hidden except the cs_* API, as in the wheel's own build.

Steps: look the sdist up in PyPI's JSON API, download it with its sha256 checked and extract it (the app's own
download cache and safe extraction, app.core.fetch), configure with CMake (Release; only X86; shared library; no
tests, cstool or install rules), build, strip, then load it through the installed binding (LIBCAPSTONE_PATH) in a
child process and disassemble AVX2/FMA/F16C/AVX-512 samples. Everything lives in the cache dir; a later run with
the same version and options reuses the built library without touching the network.

Usage: .venv/bin/python scripts/build_capstone_x86.py --out FILE [--cache DIR] [--jobs N] [--force] [--quiet]
Prints one line at the end: the output path and its size in MB. Exit status: 0 ok, 1 failure (one-line message
on stderr), 3 not Linux (macOS and Windows bundles keep the wheel's library).
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.metadata
import json
import os
import re
import shutil
import subprocess
import sys
import time
import urllib.parse
from collections.abc import Iterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the app package, run from the checkout

from app.core.errors import UnlockedError
from app.core.fetch.archives import extract_archive
from app.core.fetch.download import cached_download, fetch_small, hash_file
from app.core.lmstudio.jsondoc import atomic_write_bytes

PROG = "build_capstone_x86"
PYPI_JSON = "https://pypi.org/pypi/capstone/json"
EXIT_FAIL = 1
EXIT_UNSUPPORTED = 3
LIB_NAME = "libcapstone.so"
INFO_NAME = "build-info.json"
INFO_SCHEMA = 1

# Options the chosen source must declare, and the values that make it an x86-only, full (non-reduced) build.
REQUIRED_OPTIONS = ("CAPSTONE_ARCHITECTURE_DEFAULT", "BUILD_SHARED_LIBS", "CAPSTONE_X86_REDUCE", "CAPSTONE_BUILD_DIET")
CMAKE_ARGS = (
    "-DCMAKE_BUILD_TYPE=Release",
    "-DCMAKE_C_VISIBILITY_PRESET=hidden",
    "-DBUILD_SHARED_LIBS=ON",
    "-DBUILD_STATIC_LIBS=OFF",
    "-DCAPSTONE_ARCHITECTURE_DEFAULT=OFF",
    "-DCAPSTONE_X86_SUPPORT=ON",
    "-DCAPSTONE_X86_REDUCE=OFF",
    "-DCAPSTONE_X86_ATT_DISABLE=OFF",
    "-DCAPSTONE_BUILD_DIET=OFF",
    "-DCAPSTONE_BUILD_TESTS=OFF",
    "-DCAPSTONE_BUILD_CSTOOL=OFF",
    "-DCAPSTONE_BUILD_CSTEST=OFF",
    "-DCAPSTONE_INSTALL=OFF",
    "-DCAPSTONE_DEBUG=OFF",
)

# (bytes, expected "mnemonic op_str") decoded in 64-bit mode: what the ISA audit relies on.
SAMPLES = (
    ("c4e275b8c2", "vfmadd231ps ymm0, ymm1, ymm2"),  # FMA3
    ("c4e27d58c1", "vpbroadcastd ymm0, xmm1"),  # AVX2
    ("c4e27d13c1", "vcvtph2ps ymm0, xmm1"),  # F16C
    ("62f37548 25c2ff", "vpternlogd zmm0, zmm1, zmm2, 0xff"),  # AVX-512F
    ("c5fc58c1", "vaddps ymm0, ymm0, ymm1"),  # AVX
    ("4889d8", "mov rax, rbx"),
)

# Run by the installed binding's interpreter with LIBCAPSTONE_PATH pointing at the new library.
CHECK_CODE = r"""
import json, os, sys
import capstone
samples = json.loads(sys.argv[1])
md = capstone.Cs(capstone.CS_ARCH_X86, capstone.CS_MODE_64)
got = []
for hexcode, _ in samples:
    code = bytes.fromhex(hexcode.replace(" ", ""))
    got.append([" ".join(x for x in (i[2], i[3]) if x) for i in md.disasm_lite(code, 0)])
print(json.dumps({
    "lib": os.path.realpath(capstone._cs._name),
    "version": list(capstone.cs_version()[:2]),
    "api": [capstone.CS_API_MAJOR, capstone.CS_API_MINOR],
    "x86": bool(capstone.cs_support(capstone.CS_ARCH_X86)),
    "arm": bool(capstone.cs_support(capstone.CS_ARCH_ARM)),
    "diet": bool(capstone.cs_support(capstone.CS_SUPPORT_DIET)),
    "reduce": bool(capstone.cs_support(capstone.CS_SUPPORT_X86_REDUCE)),
    "got": got,
}))
"""


class BuildError(Exception):
    """A failure reported as one line, without a traceback."""


_quiet = False


def log(msg: str) -> None:
    if not _quiet:
        print(f"{PROG}: {msg}", file=sys.stderr, flush=True)


def sha256_file(path: Path) -> str:
    return hash_file(path)[0]


def installed_version() -> str:
    try:
        return importlib.metadata.version("capstone")
    except importlib.metadata.PackageNotFoundError:
        raise BuildError(f"the capstone Python package is not installed for {sys.executable}") from None


# ---------------------------------------------------------------------------------------------- sdist from PyPI


def find_sdist(version: str) -> tuple[str, str, str]:
    """(filename, url, sha256) of capstone's sdist for `version`, from PyPI's JSON API."""
    body = fetch_small(PYPI_JSON, max_bytes=16 << 20)
    if body is None:
        raise BuildError(f"{PYPI_JSON}: not found")
    try:
        files = json.loads(body).get("releases", {}).get(version, [])
    except (ValueError, AttributeError) as e:
        raise BuildError(f"{PYPI_JSON}: not the JSON API's answer ({e})") from None
    for f in files:
        sha = f.get("digests", {}).get("sha256")
        if f.get("packagetype") == "sdist" and f.get("filename", "").lower() == f"capstone-{version}.tar.gz" and sha:
            return f["filename"], urllib.parse.urljoin(PYPI_JSON, f["url"]), sha  # a mirror may answer relative URLs
    raise BuildError(f"PyPI has no sdist of capstone {version}")


def get_source(version: str, cache: Path) -> tuple[Path, str]:
    """Download (or reuse from the download cache) the verified sdist, extract it; (capstone's source dir, sha256)."""
    filename, url, sha = find_sdist(version)
    log(f"capstone {version} sdist: {url}")
    tarball = cached_download([url], sha256=sha, filename=filename, cache_root=cache).path
    dest = cache / "src"
    shutil.rmtree(dest, ignore_errors=True)
    extract_archive(tarball, dest, require_manifest=False)
    pkg_info = next(dest.glob("*/PKG-INFO"), None)
    if pkg_info is not None:
        m = re.search(r"^Version:\s*(\S+)", pkg_info.read_text(errors="replace"), re.M)
        if m and m.group(1) != version:
            raise BuildError(f"{tarball.name} is capstone {m.group(1)}, but the installed binding is {version}")
    for cand in sorted(dest.glob("*/src/CMakeLists.txt")) + sorted(dest.glob("*/CMakeLists.txt")):
        if re.search(r"project\s*\(\s*capstone\b", cand.read_text(errors="replace"), re.I):
            return cand.parent, sha
    raise BuildError(f"{tarball.name} holds no capstone CMakeLists.txt (looked in */src and */)")


# ---------------------------------------------------------------------------------------------- build


def check_tools(src: Path) -> tuple[str, str]:
    """(cmake, strip) paths; fails if cmake is missing or too old, or no C compiler or strip is found."""
    cmake = shutil.which("cmake")
    if cmake is None:
        raise BuildError("cmake not found on PATH (install cmake >= 3.15, e.g. `apt-get install cmake`)")
    text = (src / "CMakeLists.txt").read_text(errors="replace")
    need = re.search(r"cmake_minimum_required\s*\(\s*VERSION\s+([0-9.]+)", text, re.I)
    try:
        out = subprocess.run([cmake, "--version"], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError) as e:
        raise BuildError(f"cannot run {cmake} --version: {e}") from None
    have = re.search(r"version\s+([0-9]+(?:\.[0-9]+)*)", out)
    if need and have and _vtuple(have.group(1)) < _vtuple(need.group(1)):
        raise BuildError(f"cmake {have.group(1)} is too old: capstone needs >= {need.group(1)}")
    cc = os.environ.get("CC", "").split()
    if not (cc and shutil.which(cc[0])) and not any(shutil.which(c) for c in ("cc", "gcc", "clang")):
        raise BuildError("no C compiler found (set CC or install gcc, e.g. `apt-get install build-essential`)")
    strip = shutil.which("strip")
    if strip is None:
        raise BuildError("strip not found on PATH (install binutils)")
    declared = set(re.findall(r"option\s*\(\s*\"?([A-Za-z0-9_]+)", text))
    missing = [o for o in REQUIRED_OPTIONS if o not in declared]
    if not re.search(r"SUPPORTED_ARCHITECTURES[^)]*\bX86\b", text):
        missing.append("CAPSTONE_X86_SUPPORT")
    if missing:
        raise BuildError(f"{src}/CMakeLists.txt lacks the options {', '.join(missing)} (written for capstone 5)")
    return cmake, strip


def _vtuple(v: str) -> tuple[int, ...]:
    return tuple(int(x) for x in v.split(".") if x.isdigit())


def run_logged(cmd: list[str], logfile: Path, what: str) -> None:
    with logfile.open("a") as f:
        f.write(f"\n$ {' '.join(cmd)}\n")
        f.flush()
        try:
            rc = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL).returncode
        except OSError as e:
            raise BuildError(f"{what}: cannot run {cmd[0]}: {e}") from None
    if rc != 0:
        raise BuildError(f"{what} failed (exit {rc}); see {logfile}")


def build(src: Path, build_dir: Path, logfile: Path, cmake: str, jobs: int) -> Path:
    """Configure and build in a fresh build_dir; return the real (non-symlink) shared library."""
    shutil.rmtree(build_dir, ignore_errors=True)
    logfile.write_text("")
    run_logged([cmake, "-S", str(src), "-B", str(build_dir), *CMAKE_ARGS], logfile, "cmake configure")
    run_logged([cmake, "--build", str(build_dir), "--parallel", str(jobs)], logfile, "cmake build")
    libs = [p for p in build_dir.glob(f"{LIB_NAME}*") if p.is_file() and not p.is_symlink()]
    if not libs:
        raise BuildError(f"the build produced no {LIB_NAME}* in {build_dir}; see {logfile}")
    return max(libs, key=lambda p: len(p.name))


def self_check(stage: Path) -> None:
    """Load stage/libcapstone.so through the installed binding and disassemble the samples."""
    env = dict(os.environ, LIBCAPSTONE_PATH=str(stage))
    cmd = [sys.executable, "-c", CHECK_CODE, json.dumps(SAMPLES)]
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=stage, timeout=120)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise BuildError(f"self-check could not run: {e}") from None
    if p.returncode != 0:
        last = (p.stderr.strip().splitlines() or ["no output"])[-1]
        raise BuildError(f"self-check: the installed binding cannot use the new library: {last}")
    r = json.loads(p.stdout)
    want_lib = os.path.realpath(stage / LIB_NAME)
    problems = []
    if r["lib"] != want_lib:
        problems.append(f"binding loaded {r['lib']}, not {want_lib}")
    if r["version"] != r["api"]:
        problems.append(f"library API {r['version']} != binding API {r['api']}")
    if not r["x86"] or r["arm"] or r["diet"] or r["reduce"]:
        problems.append(f"support x86={r['x86']} arm={r['arm']} diet={r['diet']} x86_reduce={r['reduce']}")
    for (hexcode, want), got in zip(SAMPLES, r["got"]):
        if got != [want]:
            problems.append(f"{hexcode} -> {got}, want {want!r}")
    if problems:
        raise BuildError("self-check failed: " + "; ".join(problems))


# ---------------------------------------------------------------------------------------------- cache + main


def read_info(cache: Path) -> dict:
    try:
        return json.loads((cache / INFO_NAME).read_text())
    except (OSError, ValueError):
        return {}


def cached_lib(cache: Path, version: str) -> Path | None:
    info, lib = read_info(cache), cache / LIB_NAME
    if (
        info.get("schema") == INFO_SCHEMA
        and info.get("capstone_version") == version
        and info.get("cmake_args") == list(CMAKE_ARGS)
        and lib.is_file()
        and info.get("lib_sha256") == sha256_file(lib)
    ):
        return lib
    return None


@contextlib.contextmanager
def locked(cache: Path) -> Iterator[None]:
    import fcntl  # POSIX only: imported here so that the platform check in main() runs first on Windows

    with (cache / ".lock").open("w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def produce(version: str, cache: Path, jobs: int, force: bool) -> Path:
    if not force and (lib := cached_lib(cache, version)) is not None:
        log(f"reusing {lib} (capstone {version}, x86 only)")
        return lib
    t0 = time.monotonic()
    src, sdist_sha = get_source(version, cache)
    cmake, strip = check_tools(src)
    log(f"building capstone {version} (x86 only) with {jobs} jobs; log: {cache / 'build.log'}")
    built = build(src, cache / "build", cache / "build.log", cmake, jobs)
    stage = cache / "stage"
    shutil.rmtree(stage, ignore_errors=True)
    stage.mkdir()
    staged = stage / LIB_NAME
    shutil.copyfile(built, staged)
    run_logged([strip, "--strip-unneeded", str(staged)], cache / "build.log", "strip")
    self_check(stage)
    lib = cache / LIB_NAME
    (cache / INFO_NAME).unlink(missing_ok=True)
    os.replace(staged, lib)
    stage.rmdir()
    info = {
        "schema": INFO_SCHEMA,
        "capstone_version": version,
        "sdist_sha256": sdist_sha,
        "cmake_args": list(CMAKE_ARGS),
        "lib_sha256": sha256_file(lib),
        "lib_size": lib.stat().st_size,
        "build_seconds": round(time.monotonic() - t0, 1),
    }
    (cache / INFO_NAME).write_text(json.dumps(info, indent=2) + "\n")
    log(f"built in {info['build_seconds']} s")
    return lib


def install(lib: Path, out: Path) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(out, lib.read_bytes(), mode=0o755)


def main(argv: list[str] | None = None) -> int:
    global _quiet
    ap = argparse.ArgumentParser(prog=PROG, description=__doc__.split("\n", 1)[0])
    ap.add_argument("--out", required=True, type=Path, help="where to write the x86-only libcapstone.so")
    ap.add_argument("--cache", type=Path, help="cache dir (default ~/.cache/lms-unlocked-build/capstone-<version>)")
    ap.add_argument("--jobs", type=int, default=2, help="parallel build jobs (default 2)")
    ap.add_argument("--force", action="store_true", help="rebuild even if the cache holds a matching library")
    ap.add_argument("--quiet", action="store_true", help="print only the final line (and errors)")
    args = ap.parse_args(argv)
    _quiet = args.quiet

    if not sys.platform.startswith("linux"):
        print(
            f"{PROG}: skipped: only Linux is supported (on {sys.platform} the bundle keeps the wheel's library)",
            file=sys.stderr,
        )
        return EXIT_UNSUPPORTED
    try:
        if args.jobs < 1:
            raise BuildError("--jobs must be >= 1")
        version = installed_version()
        cache = (args.cache or Path.home() / ".cache" / "lms-unlocked-build" / f"capstone-{version}").expanduser()
        cache = cache.resolve()
        cache.mkdir(parents=True, exist_ok=True)
        with locked(cache):
            lib = produce(version, cache, args.jobs, args.force)
            out = args.out.expanduser().resolve()
            try:
                install(lib, out)
            except OSError as e:
                raise BuildError(f"cannot write --out {out}: {e.strerror or e}") from None
    except BuildError as e:
        print(f"{PROG}: error: {e}", file=sys.stderr)
        return EXIT_FAIL
    except UnlockedError as e:  # download / extraction (the app's hints are about catalogs: not shown)
        print(f"{PROG}: error: {e.message}", file=sys.stderr)
        return EXIT_FAIL
    except OSError as e:
        print(f"{PROG}: error: {e}", file=sys.stderr)
        return EXIT_FAIL
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130
    print(f"{out} {out.stat().st_size / 1e6:.2f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
