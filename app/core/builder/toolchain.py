"""The build toolchain: the system's CMake/Ninja/C compiler when present, else a portable one from PyPI.

Portable toolchain (no developer setup needed): the ``cmake``, ``ninja`` and ``ziglang`` wheels from PyPI
(``zig cc``/``zig c++``: a clang-based C/C++ compiler that also cross-compiles, with its own C library and
libc++), pinned by version and sha256 per platform in ``app/data/toolchain.json``, downloaded with the app's
verified download cache, extracted safely into ``<cache>/toolchain/<name>-<version>/``, reused and removable.

`choose_toolchain()` is pure: from the tools found (prereq.find_tools) and what is installed in the cache it
decides which program each role uses and why; the plan carries that choice. Cross-compiling Windows backends
on Linux always uses zig (``-target x86_64-windows-gnu``): Debian 12's mingw-w64 headers lack
``THREAD_POWER_THROTTLING_STATE``, which ggml-cpu.c needs (docs/build-anywhere.md).
"""

from __future__ import annotations

import json
import os
import platform as _platform
import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from app.core.builder.prereq import Tools
from app.core.errors import UsageError
from app.core.fetch.archives import ArchiveLimits, extract_archive
from app.core.fetch.download import DownloadProgress, cached_download
from app.core.paths import data_path
from app.core.runner import CancelToken

PORTABLE = ("cmake", "ninja", "ziglang")
MARKER = ".lms-unlocked-toolchain.json"
# Tests and offline mirrors: a base URL that serves the wheels by file name.
MIRROR_ENV = "LMS_UNLOCKED_TOOLCHAIN_MIRROR"
WIN_TARGET = "x86_64-windows-gnu"


def native_zig_target(system: str | None = None, machine: str | None = None) -> str:
    """zig's target for this OS, named explicitly: with no -target, zig compiles for the build machine's own CPU
    (-mcpu=native), which put AVX-512/AVX2/BMI2 into ggml-base (the ISA audit refused that folder). A named target
    means zig's baseline CPU, so only the -m flags ggml adds enable instruction sets."""
    key = host_platform_key(system, machine)
    arch = "aarch64" if key.endswith("arm64") else "x86_64"
    if key.startswith("win"):
        return f"{arch}-windows-gnu"
    if key.startswith("mac"):
        return f"{arch}-macos"
    return f"{arch}-linux-gnu"


class ToolchainError(UsageError):
    code = "toolchain"


@dataclass(frozen=True)
class Wheel:
    package: str
    version: str
    platform_key: str
    file: str
    size: int
    sha256: str
    url: str
    exe_rel: str
    unpacked_bytes: int
    what: str


def host_platform_key(system: str | None = None, machine: str | None = None) -> str:
    system = system or sys.platform
    machine = (machine or _platform.machine()).lower()
    arch = "arm64" if machine in ("arm64", "aarch64") else "x86_64"
    if system == "win32":
        return f"win-{arch}"
    if system == "darwin":
        return f"mac-{arch}"
    return f"linux-{arch}"


def load_pins() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(data_path("toolchain.json").read_text(encoding="utf-8"))
    return data


def wheel_for(package: str, key: str | None = None, pins: dict[str, Any] | None = None) -> Wheel:
    """The pinned wheel of `package` for this (or `key`'s) platform; mac wheels may be universal ("mac")."""
    pins = pins or load_pins()
    key = key or host_platform_key()
    p = pins["packages"][package]
    wheels = p["wheels"]
    w = wheels.get(key) or (wheels.get("mac") if key.startswith("mac-") else None)
    if w is None:
        raise ToolchainError(
            f"No portable {package} is pinned for this platform ({key}).",
            hint="Install CMake, Ninja and a C/C++ compiler from your system's packages instead.",
        )
    exe = p["exe"]["win" if key.startswith("win") else "posix"]
    return Wheel(
        package,
        p["version"],
        key,
        w["file"],
        int(w["size"]),
        w["sha256"],
        w["url"],
        exe,
        int(p.get("unpacked_bytes", 0)),
        p.get("what", package),
    )


def toolchain_dir(cache_root: Path) -> Path:
    return Path(cache_root) / "toolchain"


def install_dir(cache_root: Path, wheel: Wheel) -> Path:
    return toolchain_dir(cache_root) / f"{wheel.package}-{wheel.version}-{wheel.platform_key}"


def installed_exe(cache_root: Path, wheel: Wheel) -> Path | None:
    """The unpacked tool's executable, when its install is complete (marker names the verified wheel)."""
    d = install_dir(cache_root, wheel)
    try:
        marker = json.loads((d / MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    exe = d / wheel.exe_rel
    if marker.get("sha256") != wheel.sha256 or not exe.is_file():
        return None
    return exe


@dataclass(frozen=True)
class PortableStatus:
    wheel: Wheel
    installed: bool
    path: str | None
    disk_bytes: int


def _du(path: Path) -> int:
    total = 0
    for root, _dirs, files in os.walk(path):
        for f in files:
            try:
                total += (Path(root) / f).lstat().st_size
            except OSError:
                pass
    return total


def portable_status(cache_root: Path, key: str | None = None) -> list[PortableStatus]:
    out = []
    for name in PORTABLE:
        w = wheel_for(name, key)
        exe = installed_exe(cache_root, w)
        d = install_dir(cache_root, w)
        out.append(PortableStatus(w, exe is not None, str(exe) if exe else None, _du(d) if d.exists() else 0))
    return out


def wheel_urls(wheel: Wheel, env: dict[str, str] | None = None) -> list[str]:
    env = dict(os.environ) if env is None else env
    mirror = env.get(MIRROR_ENV)
    if mirror:
        return [mirror.rstrip("/") + "/" + wheel.file]
    return [wheel.url]


@dataclass(frozen=True)
class FetchResult:
    wheel: Wheel
    exe: Path
    reused: bool
    download_seconds: float
    unpack_seconds: float


def fetch_portable(
    names: tuple[str, ...],
    cache_root: Path,
    *,
    progress: Callable[[DownloadProgress], None] | None = None,
    on_step: Callable[[str], None] | None = None,
    cancel: CancelToken | None = None,
    key: str | None = None,
) -> list[FetchResult]:
    """Download (verified against the pinned sha256) and unpack the named tools, or reuse them."""
    out: list[FetchResult] = []
    for name in names:
        w = wheel_for(name, key)
        exe = installed_exe(cache_root, w)
        if exe is not None:
            out.append(FetchResult(w, exe, True, 0.0, 0.0))
            continue
        if on_step:
            on_step(f"downloading {w.package} {w.version} ({w.size / 1e6:.1f} MB)")
        t0 = time.monotonic()
        dl = cached_download(
            wheel_urls(w),
            sha256=w.sha256,
            size=w.size,
            filename=w.file,
            cache_root=Path(cache_root),
            progress=progress,
            cancel=cancel,
        )
        t1 = time.monotonic()
        if on_step:
            on_step(f"unpacking {w.package} ({w.unpacked_bytes / 1e6:.0f} MB)")
        d = install_dir(cache_root, w)
        staging = d.with_name(d.name + ".partial")
        shutil.rmtree(staging, ignore_errors=True)
        if d.exists():
            shutil.rmtree(d)
        extract_archive(
            dl.path,
            staging,
            limits=ArchiveLimits(max_total_bytes=2 << 30, max_files=50_000),
            cancel=cancel,
            require_manifest=False,
        )
        exe_path = staging / w.exe_rel
        if not exe_path.is_file():
            shutil.rmtree(staging, ignore_errors=True)
            raise ToolchainError(
                f"{w.file} has no {w.exe_rel}.", context=str(dl.path), hint="Report this pin as broken."
            )
        exe_path.chmod(exe_path.stat().st_mode | 0o111)
        (staging / MARKER).write_text(json.dumps({"sha256": w.sha256, "file": w.file, "version": w.version}))
        os.replace(staging, d)
        out.append(FetchResult(w, d / w.exe_rel, False, t1 - t0, time.monotonic() - t1))
    return out


def remove_portable(cache_root: Path, names: tuple[str, ...] = PORTABLE) -> list[str]:
    """Remove the unpacked tools and their downloaded wheels; returns what was removed."""
    from app.core.fetch.download import cache_dir_for_downloads

    removed: list[str] = []
    base = toolchain_dir(cache_root)
    for name in names:
        for d in sorted(base.glob(f"{name}-*")) if base.is_dir() else []:
            shutil.rmtree(d, ignore_errors=True)
            removed.append(str(d))
        pins = load_pins()["packages"][name]
        for w in pins["wheels"].values():
            d = cache_dir_for_downloads(Path(cache_root)) / w["sha256"]
            if d.exists():
                shutil.rmtree(d, ignore_errors=True)
                removed.append(str(d))
    return removed


# --- choosing the toolchain (pure) ------------------------------------------------------------------------------


@dataclass(frozen=True)
class ToolchainChoice:
    """Which program plays each role of the build, and why."""

    target_os: str  # "linux" | "win" | "mac"
    cmake: str | None
    ninja: str | None
    cc: tuple[str, ...]  # argv prefix of the C compiler (empty: CMake's default)
    cxx: tuple[str, ...]
    kind: str  # "system" | "portable" | "mixed"
    reasons: tuple[str, ...]
    zig: str | None = None  # the zig executable when zig compiles
    need_fetch: tuple[Wheel, ...] = ()  # portable tools to download before building
    cross: bool = False
    notes: tuple[str, ...] = field(default_factory=tuple)

    @property
    def ready(self) -> bool:
        return not self.need_fetch and self.cmake is not None

    def fetch_bytes(self) -> int:
        return sum(w.size for w in self.need_fetch)

    def to_dict(self) -> dict[str, Any]:
        return {
            "target_os": self.target_os,
            "kind": self.kind,
            "cmake": self.cmake,
            "ninja": self.ninja,
            "cc": list(self.cc),
            "cxx": list(self.cxx),
            "cross": self.cross,
            "reasons": list(self.reasons),
            "download": [
                {
                    "package": w.package,
                    "version": w.version,
                    "file": w.file,
                    "bytes": w.size,
                    "sha256": w.sha256,
                    "unpacked_bytes": w.unpacked_bytes,
                }
                for w in self.need_fetch
            ],
        }


def host_os(system: str | None = None) -> str:
    s = system or sys.platform
    return {"win32": "win", "darwin": "mac"}.get(s, "linux")


def choose_toolchain(
    tools: Tools,
    *,
    target_os: str,
    cache_root: Path,
    system: str | None = None,
    portable: str = "auto",
) -> ToolchainChoice:
    """Decide the toolchain (no downloads, no processes).

    Args:
        portable: "auto" (system tools where present, portable ones for what is missing), "always" (use the
            portable toolchain even where system tools exist), "never" (system tools only).
    """
    hos = host_os(system)
    key = host_platform_key(system)
    cross = target_os != hos
    reasons: list[str] = []
    need: list[Wheel] = []
    used_portable: list[str] = []
    used_system: list[str] = []

    def portable_exe(name: str) -> str:
        w = wheel_for(name, key)
        exe = installed_exe(cache_root, w)
        if exe is None:
            need.append(w)
            return str(install_dir(cache_root, w) / w.exe_rel)
        return str(exe)

    def pick(role: str, system_path: str | None, package: str) -> str | None:
        if system_path and portable != "always":
            used_system.append(role)
            reasons.append(f"{role}: {system_path} (found on this system)")
            return system_path
        if portable == "never":
            reasons.append(f"{role}: not found, and the portable toolchain is turned off")
            return None
        used_portable.append(role)
        why = "asked for the portable toolchain" if system_path else "none on this system"
        exe = portable_exe(package)
        reasons.append(f"{role}: portable {package} from PyPI ({why})")
        return exe

    cmake = pick("cmake", tools.cmake, "cmake")
    ninja = pick("ninja", tools.ninja, "ninja")
    zig: str | None = None
    cc: tuple[str, ...] = ()
    cxx: tuple[str, ...] = ()
    system_zig = shutil.which("zig") if portable != "always" else None
    if cross:
        if target_os != "win":
            raise ToolchainError(
                f"Building {target_os} backends on {hos} is not supported.",
                hint="Build on the target system, or build Windows backends (cross-compiled with zig).",
            )
        # ggml-cpu.c needs Windows 8+ thread APIs Debian's mingw-w64 headers lack; zig's headers have them.
        if system_zig:
            zig = system_zig
            used_system.append("C/C++ compiler")
            reasons.append(f"C/C++ compiler: {system_zig} cc -target {WIN_TARGET} (cross-compiling for Windows)")
        elif portable == "never":
            reasons.append("C/C++ compiler: cross-compiling for Windows needs zig, and the portable toolchain is off")
        else:
            zig = portable_exe("ziglang")
            used_portable.append("C/C++ compiler")
            reasons.append(f"C/C++ compiler: portable zig cc -target {WIN_TARGET} (cross-compiling for Windows)")
        if zig:
            cc, cxx = (zig, "cc", "-target", WIN_TARGET), (zig, "c++", "-target", WIN_TARGET)
    elif tools.cc and tools.cxx and portable != "always":
        used_system.append("C/C++ compiler")
        reasons.append(f"C/C++ compiler: {tools.cc} / {tools.cxx} (found on this system)")
        cc, cxx = (tools.cc,), (tools.cxx,)
    elif portable == "never":
        reasons.append("C/C++ compiler: none found, and the portable toolchain is turned off")
    else:
        zig = system_zig or portable_exe("ziglang")
        used_portable.append("C/C++ compiler")
        why = "asked for the portable toolchain" if tools.cc else "none on this system"
        reasons.append(f"C/C++ compiler: zig cc / zig c++ ({why})")
        tgt = native_zig_target(system)
        cc, cxx = (zig, "cc", "-target", tgt), (zig, "c++", "-target", tgt)
    kind = "portable" if not used_system else ("system" if not used_portable else "mixed")
    return ToolchainChoice(target_os, cmake, ninja, cc, cxx, kind, tuple(reasons), zig, tuple(need), cross)


def compiler_wrappers(choice: ToolchainChoice, dest: Path) -> dict[str, Path]:
    """CMake wants one executable per compiler: write tiny wrapper scripts around ``zig cc``/``zig c++``
    (and ``zig ar``/``ranlib``/``rc``). Returns role -> script. No-op (empty) when zig is not used."""
    if not choice.zig:
        return {}
    dest.mkdir(parents=True, exist_ok=True)
    roles = {
        "cc": list(choice.cc[1:]),
        "c++": list(choice.cxx[1:]),
        "ar": ["ar"],
        "ranlib": ["ranlib"],
        "rc": ["rc"],
    }
    out: dict[str, Path] = {}
    for role, args in roles.items():
        if os.name == "nt":
            p = dest / f"zig-{role}.cmd"
            text = "@echo off\r\n" + f'"{choice.zig}" ' + " ".join(args) + " %*\r\n"
        else:
            p = dest / f"zig-{role}"
            quoted = " ".join(f"'{a}'" for a in args)
            text = f"#!/bin/sh\nexec '{choice.zig}' {quoted} \"$@\"\n"
        if not p.is_file() or p.read_text() != text:
            p.write_text(text)
            p.chmod(0o755)
        out[role] = p
    return out


def host_compiler(target_os: str, tools: Tools, cache_root: Path) -> tuple[tuple[str, ...], dict[str, str]]:
    """The C compiler for the smoke test's host program outside a build: (argv prefix, env).

    Linux: the system C compiler, else zig. Windows target on Linux: mingw-w64's gcc when installed (the host
    program needs no new Windows headers), else zig (system or the portable one already fetched)."""
    zig_env = {"ZIG_GLOBAL_CACHE_DIR": str(toolchain_dir(cache_root) / "zig-cache")}
    zig = shutil.which("zig") or (str(p) if (p := installed_exe(cache_root, wheel_for("ziglang"))) else None)
    if target_os == "win" and host_os() != "win":
        mingw = shutil.which("x86_64-w64-mingw32-gcc")
        if mingw:
            return (mingw,), {}
        if zig:
            return (zig, "cc", "-target", WIN_TARGET), zig_env
        raise ToolchainError(
            "No C compiler for Windows programs: install mingw-w64 or fetch the portable zig.",
            hint="lms-unlocked toolchain fetch ziglang   (or: sudo apt-get install gcc-mingw-w64-x86-64)",
        )
    if tools.cc:
        return (tools.cc,), {}
    if zig:
        return (zig, "cc", "-target", native_zig_target()), zig_env
    raise ToolchainError(
        "No C compiler found for the smoke test's host program.",
        hint="lms-unlocked toolchain fetch ziglang   (or install gcc/clang)",
    )
