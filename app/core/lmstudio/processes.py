"""Is LM Studio (the app, its tray process, the ``llmster`` daemon, an engine child) running?

docs/lmstudio-contract.md §15 #2: LM Studio must be fully quit while backends change.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import psutil

# Process names of the app (Linux AppImage "lm-studio", Windows "LM Studio.exe", macOS "LM Studio" and its
# Electron children "LM Studio Helper", "LM Studio Helper (GPU)", ...) and of the headless daemon. A name is
# matched as psutil reports it, as the executable's file name, and as argv[0]'s file name (a process started
# with another argv[0], or whose executable cannot be read, is still seen).
APP_NAMES = frozenset({"lm studio", "lm studio.exe", "lm-studio", "lmstudio", "lmstudio.exe"})
APP_PREFIXES = ("lm studio helper",)  # Linux truncates names to 15 characters: "LM Studio Helpe" counts too
DAEMON_NAMES = frozenset({"llmster", "llmster.exe"})


@dataclass(frozen=True)
class LmsProcess:
    pid: int
    name: str
    kind: str  # "app", "daemon", "engine"
    exe: str = ""


def _norm(name: str) -> str:
    return name.strip().lower()


def _is_app(names: set[str]) -> bool:
    return bool(names & APP_NAMES) or any(
        n and (n.startswith(APP_PREFIXES) or (len(n) == 15 and APP_PREFIXES[0].startswith(n))) for n in names
    )


def lmstudio_processes(home: Path | None = None) -> list[LmsProcess]:
    """Running LM Studio processes; with ``home``, also ``llama-server`` children started from its backends."""
    found: list[LmsProcess] = []
    me = os.getpid()
    backends = str(home / "extensions" / "backends") if home is not None else None
    for proc in psutil.process_iter(["pid", "name", "exe", "cmdline"]):
        try:
            info = proc.info
            pid = int(info.get("pid") or 0)
            if pid == me:
                continue
            name = str(info.get("name") or "")
            exe = str(info.get("exe") or "")
            argv = info.get("cmdline") or []
            argv0 = str(argv[0]) if argv else ""
            names = {_norm(name), _norm(_basename(exe)), _norm(_basename(argv0))} - {""}
            shown = name if _is_app({_norm(name)}) or not argv0 else _basename(argv0)
            if _is_app(names):
                found.append(LmsProcess(pid, shown, "app", exe))
            elif names & DAEMON_NAMES:
                found.append(LmsProcess(pid, name, "daemon", exe))
            elif backends and exe.startswith(backends):
                found.append(LmsProcess(pid, name, "engine", exe))
        except (psutil.Error, OSError):
            continue
    return found


def _basename(path: str) -> str:
    return path.replace("\\", "/").rsplit("/", 1)[-1] if path else ""


def engines_in(procs: list[LmsProcess], folder: Path) -> list[LmsProcess]:
    """The engine processes among ``procs`` whose executable lies in the backend ``folder``."""
    root = os.path.join(os.path.abspath(folder), "")
    return [p for p in procs if p.exe and os.path.abspath(p.exe).startswith(root)]


def lmstudio_running(home: Path | None = None) -> bool:
    """True while the LM Studio app, its daemon or (with ``home``) one of its engine servers runs."""
    return bool(lmstudio_processes(home))


def running_message(procs: list[LmsProcess]) -> str:
    what = ", ".join(f"{p.name} (pid {p.pid})" for p in procs)
    return f"LM Studio is running: {what}"


CLOSE_HINT = (
    "close LM Studio first: quit it from the system tray (closing the window is not enough) and stop the "
    "headless daemon with `lms daemon down`, then try again"
)


@dataclass(frozen=True)
class QuitResult:
    """What :func:`quit_lmstudio` did: who stopped, who is still running, how to start the app again."""

    stopped: tuple[LmsProcess, ...]
    still_running: tuple[LmsProcess, ...]
    restart_argv: tuple[str, ...] = ()  # the app's own program ("" when only the daemon or engines ran)


def quit_lmstudio(home: Path | None = None, *, timeout: float = 10.0,
                  processes: list[LmsProcess] | None = None) -> QuitResult:
    """Ask every LM Studio process to quit (SIGTERM on POSIX; TerminateProcess on Windows), wait up to `timeout`.

    Never kills harder: what does not quit is reported in `still_running` (the user quits it from the tray).
    """
    procs = lmstudio_processes(home) if processes is None else processes
    handles: dict[int, psutil.Process] = {}
    for p in procs:
        try:
            h = psutil.Process(p.pid)
            h.terminate()
            handles[p.pid] = h
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    _gone, alive = psutil.wait_procs(list(handles.values()), timeout=timeout)
    alive_pids = {h.pid for h in alive}
    app = next((p for p in procs if p.kind == "app" and p.exe), None)
    return QuitResult(
        stopped=tuple(p for p in procs if p.pid in handles and p.pid not in alive_pids),
        still_running=tuple(p for p in procs if p.pid in alive_pids or p.pid not in handles),
        restart_argv=(app.exe,) if app is not None else (),
    )


def start_detached(argv: tuple[str, ...]) -> int:
    """Start a program (LM Studio again) on its own, not as our child: it outlives this tool. Returns its pid."""
    import subprocess

    from app.core.runner import popen_platform_kwargs

    # own session / process group (so it outlives us), no console window, all three streams set
    proc = subprocess.Popen(list(argv), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, **popen_platform_kwargs())
    return int(proc.pid)
