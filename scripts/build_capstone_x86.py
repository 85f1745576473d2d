"""Build an x86-only libcapstone.so for the installed capstone Python binding (Linux only).

The capstone wheel ships a library built for every architecture (~9.6 MB). The app only disassembles x86-64
(the ISA audit: ``Cs(CS_ARCH_X86, CS_MODE_64).disasm_lite``), so the bundle can carry a library built with X86
alone. It is built from the C sources vendored in PyPI's capstone sdist of EXACTLY the installed version
(importlib.metadata), so it matches the binding's ABI, with the full x86 tables: not CAPSTONE_X86_REDUCE, not
diet, AT&T printer kept. Exported symbols are hidden except the cs_* API, as in the wheel's own build.

Steps: look the sdist up on PyPI (PEP 691 JSON of the simple index, falling back to the JSON API), download it and
check its sha256, configure with CMake (Release; only X86; shared library; no tests, cstool or install rules),
build, strip, then load it through the installed binding (LIBCAPSTONE_PATH) in a child process and disassemble
AVX2/FMA/F16C/AVX-512 samples. Everything lives in the cache dir; a later run with the same version and options
reuses the built library without touching the network.

Usage: .venv/bin/python scripts/build_capstone_x86.py --out FILE [--cache DIR] [--jobs N] [--sdist TARBALL]
                                                      [--force] [--quiet]
Prints one line at the end: the output path and its size in MB. Exit status: 0 ok, 1 failure (one-line message
on stderr), 3 not Linux (macOS and Windows bundles keep the wheel's library).
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import http.client
import importlib.metadata
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

PROG = "build_capstone_x86"
PYPI_SIMPLE = "https://pypi.org/simple/capstone/"
PYPI_JSON = "https://pypi.org/pypi/capstone/{version}/json"
PYPI_JSON_ALL = "https://pypi.org/pypi/capstone/json"
NET_TIMEOUT = 60
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
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def installed_version() -> str:
    try:
        return importlib.metadata.version("capstone")
    except importlib.metadata.PackageNotFoundError:
        raise BuildError(f"the capstone Python package is not installed for {sys.executable}") from None


# ---------------------------------------------------------------------------------------------- sdist from PyPI


def _get_json(url: str, accept: str = "application/json") -> dict:
    req = urllib.request.Request(url, headers={"Accept": accept, "User-Agent": f"{PROG} (python urllib)"})
    with urllib.request.urlopen(req, timeout=NET_TIMEOUT) as resp:
        ctype = resp.headers.get("Content-Type", "")
        if "json" not in ctype:
            raise ValueError(f"{url} answered {ctype or 'no content type'}, not JSON")
        return json.loads(resp.read())


def _is_sdist_of(filename: str, version: str) -> bool:
    return filename.lower() == f"capstone-{version}.tar.gz".lower()


def find_sdist(version: str) -> tuple[str, str, str]:
    """(filename, url, sha256) of capstone's sdist for `version`, from PyPI."""
    errors: list[str] = []
    try:
        data = _get_json(PYPI_SIMPLE, "application/vnd.pypi.simple.v1+json")
        for f in data.get("files", []):
            sha = f.get("hashes", {}).get("sha256")
            if _is_sdist_of(f.get("filename", ""), version) and sha and not f.get("yanked"):
                return f["filename"], f["url"], sha
        errors.append(f"{PYPI_SIMPLE}: no capstone-{version}.tar.gz with a sha256")
    except (OSError, ValueError, http.client.HTTPException) as e:
        errors.append(f"{PYPI_SIMPLE}: {_reason(e)}")
    for url in (PYPI_JSON.format(version=version), PYPI_JSON_ALL):
        try:
            data = _get_json(url)
            files = data.get("releases", {}).get(version, []) if url == PYPI_JSON_ALL else data.get("urls", [])
            for f in files:
                sha = f.get("digests", {}).get("sha256")
                if f.get("packagetype") == "sdist" and _is_sdist_of(f.get("filename", ""), version) and sha:
                    return f["filename"], f["url"], sha
            errors.append(f"{url}: no sdist for capstone {version}")
        except (OSError, ValueError, http.client.HTTPException) as e:
            errors.append(f"{url}: {_reason(e)}")
    raise BuildError(f"cannot find the capstone {version} sdist on PyPI ({'; '.join(errors)})")


def _reason(e: BaseException) -> str:
    if isinstance(e, urllib.error.HTTPError):
        return f"HTTP {e.code}"
    if isinstance(e, urllib.error.URLError):
        return f"network error: {e.reason}"
    return f"{type(e).__name__}: {e}"


def download(url: str, sha256: str, dest: Path) -> None:
    part = dest.with_name(dest.name + ".part")
    h = hashlib.sha256()
    try:
        req = urllib.request.Request(url, headers={"User-Agent": f"{PROG} (python urllib)"})
        with urllib.request.urlopen(req, timeout=NET_TIMEOUT) as resp, part.open("wb") as out:
            for chunk in iter(lambda: resp.read(1 << 16), b""):
                h.update(chunk)
                out.write(chunk)
    except (OSError, http.client.HTTPException) as e:
        part.unlink(missing_ok=True)
        raise BuildError(f"cannot download {url}: {_reason(e)}") from None
    if h.hexdigest() != sha256:
        part.unlink(missing_ok=True)
        raise BuildError(f"sha256 mismatch for {url}: got {h.hexdigest()}, PyPI says {sha256}")
    os.replace(part, dest)


def get_sdist(version: str, cache: Path, given: Path | None) -> tuple[Path, str]:
    """The sdist tarball (cached, or downloaded and verified) and its sha256."""
    if given is not None:
        if not given.is_file():
            raise BuildError(f"--sdist {given}: no such file")
        return given, sha256_file(given)
    filename = f"capstone-{version}.tar.gz"
    tarball, hash_file = cache / filename, cache / (filename + ".sha256")
    if tarball.is_file() and hash_file.is_file():
        want = hash_file.read_text().strip()
        if sha256_file(tarball) == want:
            return tarball, want
        log(f"cached {tarball.name} does not match its recorded sha256; downloading again")
    log(f"looking up capstone {version} on PyPI")
    filename, url, sha = find_sdist(version)
    tarball, hash_file = cache / filename, cache / (filename + ".sha256")
    log(f"downloading {url}")
    download(url, sha, tarball)
    hash_file.write_text(sha + "\n")
    return tarball, sha


def extract(tarball: Path, version: str, dest: Path) -> Path:
    """Unpack the sdist into dest (replacing it); return the directory holding capstone's top CMakeLists.txt."""
    shutil.rmtree(dest, ignore_errors=True)
    tmp = dest.with_name(dest.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        with tarfile.open(tarball, "r:*") as tf:
            if hasattr(tarfile, "data_filter"):
                tf.extractall(tmp, filter="data")
            else:  # Python < 3.11.4: refuse anything that could escape tmp
                for m in tf.getmembers():
                    if m.name.startswith("/") or ".." in Path(m.name).parts or not (m.isfile() or m.isdir()):
                        raise BuildError(f"{tarball.name}: refusing to extract {m.name!r}")
                tf.extractall(tmp)
    except (tarfile.TarError, OSError) as e:
        raise BuildError(f"cannot unpack {tarball}: {e}") from None
    os.replace(tmp, dest)
    pkg_info = next(dest.glob("*/PKG-INFO"), None)
    if pkg_info is not None:
        m = re.search(r"^Version:\s*(\S+)", pkg_info.read_text(errors="replace"), re.M)
        if m and m.group(1) != version:
            raise BuildError(f"{tarball.name} is capstone {m.group(1)}, but the installed binding is {version}")
    for cand in sorted(dest.glob("*/src/CMakeLists.txt")) + sorted(dest.glob("*/CMakeLists.txt")):
        if re.search(r"project\s*\(\s*capstone\b", cand.read_text(errors="replace"), re.I):
            return cand.parent
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


def produce(version: str, cache: Path, jobs: int, sdist: Path | None, force: bool) -> Path:
    if not force and (lib := cached_lib(cache, version)) is not None:
        log(f"reusing {lib} (capstone {version}, x86 only)")
        return lib
    t0 = time.monotonic()
    tarball, sdist_sha = get_sdist(version, cache, sdist)
    src = extract(tarball, version, cache / "src")
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
        "sdist": tarball.name,
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
    fd, tmp = tempfile.mkstemp(prefix=f".{out.name}.", dir=out.parent)
    os.close(fd)
    try:
        shutil.copyfile(lib, tmp)
        os.chmod(tmp, 0o755)
        os.replace(tmp, out)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def main(argv: list[str] | None = None) -> int:
    global _quiet
    ap = argparse.ArgumentParser(prog=PROG, description=__doc__.split("\n", 1)[0])
    ap.add_argument("--out", required=True, type=Path, help="where to write the x86-only libcapstone.so")
    ap.add_argument("--cache", type=Path, help="cache dir (default ~/.cache/lms-unlocked-build/capstone-<version>)")
    ap.add_argument("--jobs", type=int, default=2, help="parallel build jobs (default 2)")
    ap.add_argument("--sdist", type=Path, help="use this capstone-<version>.tar.gz instead of downloading it")
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
            lib = produce(version, cache, args.jobs, args.sdist, args.force)
            out = args.out.expanduser().resolve()
            try:
                install(lib, out)
            except OSError as e:
                raise BuildError(f"cannot write --out {out}: {e.strerror or e}") from None
    except BuildError as e:
        print(f"{PROG}: error: {e}", file=sys.stderr)
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
