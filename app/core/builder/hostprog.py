"""The smoke test's host program (``resources/smoke/lms_smoke.c``): compiled in seconds, run against a folder.

The program loads the backend folder's own llama library (``libllama.so*`` / ``llama.dll``: the template's,
kept) by path, so the loader takes the ggml libraries next to it, and generates tokens with the tiny model. It
is compiled against the tag's ``include/llama.h`` when the source tree is at hand, else in its header-less
"opaque" mode (see the C file). Nothing from the build tree runs: what is proven is the folder as it ships.

`plan_host_program()` is pure (argv and output path, keyed by the source, the header and the compiler);
`ensure_host_program()` compiles it once into the cache and reuses it.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from app.core.errors import UnlockedError
from app.core.paths import resource_path
from app.core.runner import CancelToken, ProcessPlan, run_process

SOURCE_NAME = "lms_smoke.c"


class HostProgramError(UnlockedError):
    code = "smoke-host-program"


def host_source() -> Path:
    return resource_path("smoke", SOURCE_NAME)


@dataclass(frozen=True)
class HostProgramPlan:
    compile: ProcessPlan
    exe: Path
    target: str  # "linux" | "win"
    mode: str  # "header" (the tag's llama.h) | "opaque"


def plan_host_program(
    cache_dir: Path,
    *,
    target: str,
    compiler: Sequence[str],
    include_dirs: Sequence[Path] = (),
    env: dict[str, str] | None = None,
) -> HostProgramPlan:
    """The exact compile command (pure apart from reading the C source and headers to key the cache).

    Args:
        target: "linux" (ELF, run natively or under qemu-x86_64) or "win" (PE, run under Wine or on Windows).
        compiler: the C compiler's argv prefix, e.g. ("gcc",), ("zig", "cc", "-target", "x86_64-windows-gnu")
            or ("x86_64-w64-mingw32-gcc",).
        include_dirs: the tag's ``include`` and ``ggml/include`` (empty: opaque mode, no header).
    """
    src = host_source()
    mode = "header" if include_dirs else "opaque"
    h = hashlib.sha256(src.read_bytes())
    for d in include_dirs:
        for name in ("llama.h", "ggml.h"):
            p = Path(d) / name
            if p.is_file():
                h.update(p.read_bytes())
    h.update("\0".join([target, mode, *compiler]).encode())
    exe = (
        Path(cache_dir)
        / f"{target}-{mode}-{h.hexdigest()[:12]}"
        / ("lms_smoke.exe" if target == "win" else "lms_smoke")
    )
    if Path(compiler[0]).stem.lower() == "cl":  # MSVC (not verified here: no Windows machine; needs VS 17.9+)
        argv = [*compiler, "/nologo", "/O1", "/std:clatest", f"/Fe:{exe}", str(src)]
        argv += [f"/I{d}" for d in include_dirs]
        if mode == "opaque":
            argv.append("/DLMS_SMOKE_OPAQUE")
        return HostProgramPlan(
            ProcessPlan(tuple(argv), env=dict(env or {}), label="compile smoke host"), exe, target, mode
        )
    argv = [*compiler, "-O1", "-std=gnu11", "-o", str(exe), str(src)]
    argv += [f"-I{d}" for d in include_dirs]
    if mode == "opaque":
        argv.append("-DLMS_SMOKE_OPAQUE")
    if target == "win":
        # No C runtime DLL of the compiler's to ship next to it (mingw's libgcc); zig links statically anyway.
        argv.append("-static")
    else:
        argv.append("-ldl")
    return HostProgramPlan(ProcessPlan(tuple(argv), env=dict(env or {}), label="compile smoke host"), exe, target, mode)


def ensure_host_program(plan: HostProgramPlan, *, cancel: CancelToken | None = None) -> Path:
    """Compile the host program unless the cache already holds it; returns the executable."""
    if plan.exe.is_file():
        return plan.exe
    plan.exe.parent.mkdir(parents=True, exist_ok=True)
    lines: list[str] = []
    res = run_process(plan.compile, on_line=lines.append, cancel=cancel, timeout=900)
    if res.returncode != 0 or not plan.exe.is_file():
        raise HostProgramError(
            "Could not compile the smoke test's host program.",
            context=" ".join(plan.compile.argv),
            hint="The C compiler of the build is needed for the smoke test; see the compiler output in the details.",
            details="\n".join(lines[-40:]),
        )
    return plan.exe


def llama_library(folder: Path, target: str) -> Path:
    """The folder's own llama library: ``llama.dll`` (Windows) or the ``libllama.so*`` LM Studio loads."""
    folder = Path(folder)
    if target == "win":
        hits = sorted(p for p in folder.iterdir() if p.name.lower() == "llama.dll")
    else:
        hits = sorted(
            (p for p in folder.iterdir() if p.name.startswith("libllama.so") or p.name == "libllama.dylib"),
            key=lambda p: (len(p.name), p.name),
        )
    if not hits:
        want = "llama.dll" if target == "win" else "libllama.so"
        raise HostProgramError(
            f"The folder has no {want} to smoke-test.",
            context=str(folder),
            hint="Only llama.cpp backend folders (with LM Studio's llama library) can be smoke-tested this way.",
        )
    return hits[0]


def folder_target(folder: Path) -> str:
    """ "win" when the folder holds Windows DLLs (llama.dll), else "linux"."""
    try:
        names = {p.name.lower() for p in Path(folder).iterdir()}
    except OSError:
        return "linux"
    return "win" if "llama.dll" in names else "linux"


def is_inside(path: str, folder: Path) -> bool:
    """Whether a loaded library's path (a Linux path, or Wine's Z:\\ form) lies in `folder`."""
    p = path.strip()
    if len(p) > 2 and p[1] == ":" and p[0].upper() == "Z":
        p = p[2:].replace("\\", "/")
    real = os.path.realpath(p)
    base = os.path.realpath(folder)
    return real == base or real.startswith(base + os.sep)
