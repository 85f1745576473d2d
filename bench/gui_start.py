"""Start to first window of the wizard on a real X server (Xvfb, xcb platform), median of runs, against a baseline
measured in the same run: a bare PySide6 program that shows one empty QWidget (what any Qt Widgets app pays).

    .venv/bin/python bench/gui_start.py [--runs N]

Both are started as fresh processes from source (`python -m app`), alternating, with an empty HOME (no LM Studio:
nothing to recover) and Qt's xcb platform at 150 % (QT_SCALE_FACTOR=1.5, the wizard's smallest target screen);
the time is from spawning the process to the first exposed window (the app's LMS_UNLOCKED_SMOKE_EXIT_MS hook
prints the wall-clock time it was shown; the baseline prints the same line).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.bundle import time_to_window, xvfb

BASELINE = r"""
import sys, time
from PySide6.QtCore import QTimer
from PySide6.QtWidgets import QApplication, QWidget
app = QApplication(sys.argv[:1])
w = QWidget(); w.setWindowTitle("baseline"); w.resize(860, 640); w.show()
def check():
    h = w.windowHandle()
    if h is not None and h.isExposed():
        sys.stderr.write(f"smoke: first window shown at {time.time():.6f}: baseline\n"); sys.stderr.flush()
        app.quit()
t = QTimer(); t.timeout.connect(check); t.start(5)
app.exec()
"""


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=9)
    args = ap.parse_args()
    with xvfb() as display, tempfile.TemporaryDirectory() as home:
        if display is None:
            raise SystemExit("Xvfb is not installed (apt-get install xvfb)")
        env = {k: v for k, v in os.environ.items() if k not in ("WAYLAND_DISPLAY", "QT_QPA_PLATFORM")}
        env.update(DISPLAY=display, QT_QPA_PLATFORM="xcb", QT_SCALE_FACTOR="1.5", HOME=home,
                   LMS_UNLOCKED_LOG_DIR=str(Path(home) / "logs"), LMS_UNLOCKED_DATA_DIR=str(Path(home) / "data"),
                   LMS_UNLOCKED_CACHE_DIR=str(Path(home) / "cache"))
        wizard = [sys.executable, "-m", "app"]
        baseline = [sys.executable, "-c", BASELINE]
        time_to_window(wizard, env)  # warm the page cache for both (the numbers are warm starts)
        time_to_window(baseline, env)
        ours, base = [], []
        for _ in range(args.runs):
            ours.append(time_to_window(wizard, env))
            base.append(time_to_window(baseline, env))
    om, bm = statistics.median(ours), statistics.median(base)
    print(f"start to first window on Xvfb (xcb, 150 %), median of {args.runs} warm runs:")
    print(f"  wizard (python -m app)   {om:.3f} s   (min {min(ours):.3f}, max {max(ours):.3f})")
    print(f"  bare PySide6 QWidget     {bm:.3f} s   (min {min(base):.3f}, max {max(base):.3f})")
    print(f"  ratio wizard / baseline  {om / bm:.2f}x   (the wizard's own cost: {om - bm:.3f} s)")
    print(f"  load average: {os.getloadavg()[0]:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
