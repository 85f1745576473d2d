"""Benchmark: the longest event-loop stall while the log view receives 20,000 lines/s for 10 s.

The producer is the real Worker in its QThread (the path a build's output takes: runner callback ->
`line` signal -> queued into the GUI thread), writing the full log to disk as in the app. A 5 ms
QTimer in the GUI thread measures the stall (the largest gap between its ticks minus 5 ms) and the
run waits until every line has reached the view.

Compared against a baseline measured in the same run: the naive view that appends every line to a
QPlainTextEdit as it arrives, without a block limit (what the batching replaces).

Goal: longest stall <= 50 ms. Usage: QT_QPA_PLATFORM=offscreen .venv/bin/python bench/gui_log.py [SECONDS] [RATE]
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from PySide6.QtCore import QElapsedTimer, QObject, QTimer, Slot
from PySide6.QtWidgets import QApplication, QPlainTextEdit

from app.qt.logview import FLUSH_INTERVAL_MS, LogView
from app.qt.worker import JobContext, JobController

TICK_MS = 5
LINE = "[{i}/200000] Building CXX object ggml/src/CMakeFiles/ggml-cpu.dir/ggml-cpu/arch/x86/quants.c.o"


class NaiveView(QPlainTextEdit):
    """Baseline: one appendPlainText per line, no block limit."""

    def __init__(self) -> None:
        super().__init__()
        self.setReadOnly(True)
        self.lines_received = 0

    @Slot(str)
    def append_line(self, text: str) -> None:
        self.lines_received += 1
        self.appendPlainText(text)


class StallMeter(QObject):
    def __init__(self) -> None:
        super().__init__()
        self.clock = QElapsedTimer()
        self.clock.start()
        self.last = 0
        self.worst = 0
        self.timer = QTimer(self)
        self.timer.setInterval(TICK_MS)
        self.timer.timeout.connect(self._on_tick)
        self.timer.start()

    @Slot()
    def _on_tick(self) -> None:
        now = self.clock.elapsed()
        self.worst = max(self.worst, now - self.last - TICK_MS)
        self.last = now


def producer(seconds: float, rate: int):  # type: ignore[no-untyped-def]
    def job(ctx: JobContext) -> int:
        n = 0
        t0 = time.monotonic()
        per_ms = rate / 1000
        while True:
            elapsed = time.monotonic() - t0
            if elapsed >= seconds:
                return n
            due = int(elapsed * 1000 * per_ms)
            while n < due:
                ctx.on_line(LINE.format(i=n))
                n += 1
            time.sleep(0.001)

    return job


def run(app: QApplication, view, seconds: float, rate: int, log: Path) -> dict[str, float]:  # type: ignore[no-untyped-def]
    view.resize(800, 400)
    view.show()
    ctl = JobController(producer(seconds, rate), log_path=log)
    ctl.worker.line.connect(view.append_line)
    done: dict[str, int] = {}
    ctl.worker.finished.connect(lambda n: done.setdefault("n", n))
    meter = StallMeter()
    t0 = time.monotonic()
    ctl.start()
    meter.last = meter.clock.elapsed()
    deadline = t0 + seconds + 120
    while ("n" not in done or view.lines_received < done["n"]) and time.monotonic() < deadline:
        app.processEvents()
        time.sleep(0.0005)
    if hasattr(view, "flush"):
        view.flush()
    wall = time.monotonic() - t0
    ctl.wait(10000)
    meter.timer.stop()
    return {"stall_ms": float(meter.worst), "lines": float(view.lines_received), "wall_s": wall,
            "blocks": float(view.document().blockCount())}


def main() -> int:
    seconds = float(sys.argv[1]) if len(sys.argv) > 1 else 10.0
    rate = int(sys.argv[2]) if len(sys.argv) > 2 else 20000
    app = QApplication.instance() or QApplication(sys.argv[:1])
    tmp = Path(tempfile.mkdtemp(prefix="gui-log-bench-"))
    ours = run(app, LogView(), seconds, rate, tmp / "batched.log")
    rows = [(f"LogView, {FLUSH_INTERVAL_MS} ms flush (shipped)", ours)]
    for ms in (25, 50, 100):
        if ms != FLUSH_INTERVAL_MS:
            r = run(app, LogView(interval_ms=ms), seconds, rate, tmp / f"{ms}.log")
            rows.append((f"LogView, {ms} ms flush", r))
    base = run(app, NaiveView(), seconds, rate, tmp / "naive.log")
    rows.append(("naive per-line append (baseline)", base))
    print(f"rate {rate} lines/s for {seconds:.0f} s, PySide6 offscreen")
    for name, r in rows:
        print(f"{name:36s} longest stall {r['stall_ms']:7.0f} ms  lines {r['lines']:.0f}  "
              f"wall {r['wall_s']:.1f} s  blocks kept {r['blocks']:.0f}")
    ratio = base["stall_ms"] / max(ours["stall_ms"], 1.0)
    verdict = "met" if ours["stall_ms"] <= 50 else "NOT met"
    print(f"stall ratio baseline/batched: {ratio:.1f}x; goal <= 50 ms: {verdict}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
