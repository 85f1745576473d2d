"""Is LM Studio (the app, its tray process, the ``llmster`` daemon, an engine child) running?

docs/lmstudio-contract.md §15 #2: LM Studio must be fully quit while backends change.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import psutil

# Process names of the app (Linux AppImage "lm-studio", Windows "LM Studio.exe", macOS "LM Studio")
# and of the headless daemon.
APP_NAMES = frozenset({"lm studio", "lm studio.exe", "lm-studio", "lmstudio", "lmstudio.exe"})
DAEMON_NAMES = frozenset({"llmster", "llmster.exe"})


@dataclass(frozen=True)
class LmsProcess:
    pid: int
    name: str
    kind: str  # "app", "daemon", "engine"
    exe: str = ""


def _norm(name: str) -> str:
    return name.strip().lower()


def lmstudio_processes(home: Path | None = None) -> list[LmsProcess]:
    """Running LM Studio processes; with ``home``, also ``llama-server`` children started from its backends."""
    found: list[LmsProcess] = []
    me = os.getpid()
    backends = str(home / "extensions" / "backends") if home is not None else None
    for proc in psutil.process_iter(["pid", "name", "exe"]):
        try:
            info = proc.info
            pid = int(info.get("pid") or 0)
            if pid == me:
                continue
            name = str(info.get("name") or "")
            exe = str(info.get("exe") or "")
            names = {_norm(name), _norm(Path(exe).name) if exe else ""}
            if names & APP_NAMES:
                found.append(LmsProcess(pid, name, "app", exe))
            elif names & DAEMON_NAMES:
                found.append(LmsProcess(pid, name, "daemon", exe))
            elif backends and exe.startswith(backends):
                found.append(LmsProcess(pid, name, "engine", exe))
        except (psutil.Error, OSError):
            continue
    return found


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
