"""The wizard fits 1366x768 at 150 %: at its minimum size and at that screen's free area, every button of every page
is inside the window (page buttons at least after scrolling the page), never pushed off by the page's content."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from app.qt.state import WizardConfig
from app.qt.wizard import MINIMUM_SIZE
from tests.qt.fit import SCREEN_150, WINDOW_150, walk

REPO = Path(__file__).resolve().parents[2]


# 1366x768 at 125 % is 1093x614 logical pixels, less the same taskbar and title bar
WINDOW_125 = (1093, 614 - 38 - 30)


@pytest.mark.parametrize("size", [MINIMUM_SIZE, WINDOW_150, WINDOW_125],
                         ids=["minimum", "1366x768-at-150", "1366x768-at-125"])
def test_every_button_is_inside_the_window(qtbot, make_wizard, tmp_path: Path, size: tuple[int, int]) -> None:
    """In logical pixels (what 150 % scaling lays out in), in this test process."""
    made = []

    def make(cfg: WizardConfig):
        w = make_wizard(cfg)
        made.append(w)
        return w

    bad = list(walk(make, tmp_path, size))
    assert bad == []
    assert made[0].minimumSizeHint().width() <= WINDOW_150[0]
    assert made[0].minimumSizeHint().height() <= WINDOW_150[1]
    from tests.qt.conftest import close_error_dialogs

    close_error_dialogs()


def test_on_a_real_150_percent_screen(tmp_path: Path) -> None:
    """A child process on Qt's offscreen platform set up as a 1366x768 screen at 150 % (device pixel ratio 1.5):
    the window opens small enough for it, and no button is out of reach."""
    config = tmp_path / "screen.json"
    config.write_text(json.dumps({"screens": [{"name": "laptop", "x": 0, "y": 0, "width": SCREEN_150[0],
                                               "height": SCREEN_150[1], "logicalDpi": 96, "logicalBaseDpi": 96,
                                               "dpr": 1.5}]}))
    out = tmp_path / "fit.json"
    env = dict(os.environ, QT_QPA_PLATFORM=f"offscreen:configfile={config}", LMS_UNLOCKED_LOG_DIR=str(tmp_path / "l"))
    argv = [sys.executable, "-m", "tests.qt.fit", str(out), str(WINDOW_150[0]), str(WINDOW_150[1])]
    r = subprocess.run(argv, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    result = json.loads(out.read_text())
    assert result["dpr"] == 1.5 and result["screen"] == list(SCREEN_150)
    assert result["outside"] == []
    hint_w, hint_h, min_w, min_h = result["minimum"]
    assert max(hint_w, min_w) <= WINDOW_150[0] and max(hint_h, min_h) <= WINDOW_150[1]
