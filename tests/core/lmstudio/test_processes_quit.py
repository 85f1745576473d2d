"""Quit LM Studio for the user and start it again: real processes named like LM Studio's app and daemon."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import psutil

from app.core.lmstudio.processes import lmstudio_processes, quit_lmstudio, start_detached


def _named(tmp_path: Path, name: str, src: str) -> Path:
    exe = tmp_path / name
    shutil.copy(src, exe)
    return exe


def _wait_seen(pid: int) -> None:
    for _ in range(100):
        if any(p.pid == pid for p in lmstudio_processes()):
            return
        time.sleep(0.05)
    raise AssertionError(f"pid {pid} not seen as LM Studio")


def test_quit_stops_the_app_and_reports_a_daemon_that_ignores_it_then_start_again(tmp_path: Path) -> None:
    app_exe = _named(tmp_path, "lm-studio", shutil.which("sleep") or "/bin/sleep")
    app = subprocess.Popen([str(app_exe), "60"])
    # a "daemon" that ignores SIGTERM: never killed harder, reported as still running
    daemon_exe = _named(tmp_path, "llmster", os.path.realpath(sys.executable))
    daemon = subprocess.Popen([str(daemon_exe), "-c", "import signal, time; signal.signal(signal.SIGTERM, "
                               "signal.SIG_IGN); print('ready', flush=True); time.sleep(60)"],
                              stdout=subprocess.PIPE, text=True)
    started: list[int] = []
    try:
        assert daemon.stdout is not None and daemon.stdout.readline().strip() == "ready"
        _wait_seen(app.pid)
        _wait_seen(daemon.pid)
        mine = [p for p in lmstudio_processes() if p.pid in (app.pid, daemon.pid)]
        result = quit_lmstudio(timeout=3.0, processes=mine)
        assert [p.pid for p in result.stopped] == [app.pid]
        assert [p.pid for p in result.still_running] == [daemon.pid]
        assert app.wait(5) is not None and daemon.poll() is None
        assert result.restart_argv == (str(app_exe),)
        pid = start_detached((*result.restart_argv, "60"))  # LM Studio again, not our child's child
        started.append(pid)
        assert psutil.Process(pid).exe() == str(app_exe)
        assert os.getsid(pid) == pid  # its own session: it outlives this tool
    finally:
        for p in (app, daemon):
            p.kill()
            p.wait()
        for pid in started:
            psutil.Process(pid).kill()
