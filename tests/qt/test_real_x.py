"""The real program on a real X server (Xvfb, Qt's xcb platform, 1366x768 at 150 %), driven through one branch
by real key events (xdotool's XTEST presses, the same path a keyboard takes): Enter on Welcome, Alt+N twice,
Alt+F on the "You're all set" page; the program reports each page it shows (`-v`) and exits 0."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from tests.conftest import FIXTURES
from tests.lmstudio_homes import make_home

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.skipif(not (shutil.which("Xvfb") and shutil.which("xdotool")),
                                reason="needs Xvfb and xdotool (scripts/test.sh installs both)")


class Lines:
    """Collect a pipe's lines in a thread, so the test can wait for one."""

    def __init__(self, stream) -> None:  # type: ignore[no-untyped-def]
        self.lines: list[str] = []
        self._t = threading.Thread(target=self._read, args=(stream,), daemon=True)
        self._t.start()

    def _read(self, stream) -> None:  # type: ignore[no-untyped-def]
        for line in stream:
            self.lines.append(line.rstrip("\n"))

    def wait_for(self, text: str, timeout: float = 60) -> None:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if any(text in x for x in self.lines):
                return
            time.sleep(0.05)
        raise AssertionError(f"never saw {text!r}; got:\n" + "\n".join(self.lines[-40:]))


@pytest.fixture
def xserver(tmp_path: Path):  # -> the DISPLAY of a fresh Xvfb
    r, w = os.pipe()
    xvfb = subprocess.Popen(["Xvfb", "-displayfd", str(w), "-screen", "0", "1366x768x24", "-nolisten", "tcp"],
                            pass_fds=(w,), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    os.close(w)
    with os.fdopen(r) as f:
        display = f.readline().strip()
    try:
        yield f":{display}"
    finally:
        xvfb.terminate()
        xvfb.wait(10)


def xdo(display: str, *args: str) -> str:
    env = dict(os.environ, DISPLAY=display)
    return subprocess.run(["xdotool", *args], env=env, capture_output=True, text=True, timeout=30, check=True).stdout


def test_real_program_on_xvfb_driven_by_key_presses(xserver: str, tmp_path: Path) -> None:
    make_home(tmp_path, dirname=".lmstudio")  # LM Studio at its standard place in this HOME
    env = dict(os.environ, DISPLAY=xserver, HOME=str(tmp_path), QT_QPA_PLATFORM="xcb", QT_SCALE_FACTOR="1.5",
               LMS_UNLOCKED_LOG_DIR=str(tmp_path / "logs"), LMS_UNLOCKED_DATA_DIR=str(tmp_path / "data"),
               LMS_UNLOCKED_CACHE_DIR=str(tmp_path / "cache"))
    env.pop("WAYLAND_DISPLAY", None)
    argv = [sys.executable, "-m", "app", "-v", "--report", str(FIXTURES / "reports" / "haswell.json")]
    proc = subprocess.Popen(argv, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        err = Lines(proc.stderr)
        err.wait_for("page: WELCOME")
        win = xdo(xserver, "search", "--sync", "--onlyvisible", "--name", "LM Studio Unlocked").split()[0]
        geometry = xdo(xserver, "getwindowgeometry", win)
        w, h = (int(v) for v in geometry.split("Geometry:")[1].split()[0].split("x"))
        assert w <= 1366 and h <= 768, geometry  # the window opens inside the 1366x768 screen at 150 %
        xdo(xserver, "windowfocus", "--sync", win)
        time.sleep(0.3)
        xdo(xserver, "key", "Return")  # Enter on Welcome is Next (not the folder picker)
        err.wait_for("page: HARDWARE")
        time.sleep(0.5)  # the saved report is read off the GUI thread; Next is enabled once it is shown
        xdo(xserver, "key", "alt+n")
        err.wait_for("page: RECOMMENDATION")
        time.sleep(0.3)
        xdo(xserver, "key", "alt+n")  # a modern PC: the official backend runs, so Next ends on "You're all set"
        err.wait_for("page: FINISH")
        time.sleep(0.3)
        xdo(xserver, "key", "alt+f")
        assert proc.wait(30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert not any("Traceback" in x for x in err.lines), "\n".join(err.lines)
