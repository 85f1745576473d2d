"""The job worker with a REAL child process that talks like Ninja: success, failure, cancel."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from PySide6.QtCore import QObject, Slot

from app.core.errors import CancelledError, SubprocessFailed
from app.core.runner import Progress
from app.qt.jobs import plans_job
from app.qt.worker import JobController, JobState
from tests.qt.conftest import gone, ninja_plan


class Recorder(QObject):
    """Lives in the GUI thread; records what the worker reports, and in which thread the slots ran."""

    def __init__(self) -> None:
        super().__init__()
        self.lines: list[str] = []
        self.progress: list[Progress] = []
        self.threads: set[int] = set()

    @Slot(str)
    def on_line(self, text: str) -> None:
        self.threads.add(threading.get_ident())
        self.lines.append(text)

    @Slot(object)
    def on_progress(self, p: Progress) -> None:
        self.threads.add(threading.get_ident())
        self.progress.append(p)


def start(qtbot, job, tmp_path: Path) -> tuple[JobController, Recorder]:
    ctl = JobController(job, log_path=tmp_path / "job.log")
    rec = Recorder()
    ctl.worker.line.connect(rec.on_line)
    ctl.worker.progress.connect(rec.on_progress)
    return ctl, rec


def test_success_streams_lines_progress_and_log(qtbot, tmp_path: Path) -> None:
    ctl, rec = start(qtbot, plans_job([ninja_plan(30)]), tmp_path)
    with qtbot.waitSignals([ctl.worker.started, ctl.worker.finished], timeout=20000, order="strict"):
        ctl.start()
    assert ctl.wait(5000)
    assert ctl.state is JobState.SUCCEEDED
    build = [p for p in rec.progress if p.total == 30]
    assert [p.done for p in build] == list(range(1, 31))
    assert build[-1].eta_seconds == 0.0
    assert any(line.startswith("[30/30] Building CXX") for line in rec.lines)
    # Every slot ran in the GUI (test) thread, never in the worker thread.
    assert rec.threads == {threading.get_ident()}
    log = (tmp_path / "job.log").read_text(encoding="utf-8")
    assert "[17/30] Building CXX" in log and "== build" in log


def test_failure_reports_subprocess_error_with_tail(qtbot, tmp_path: Path) -> None:
    ctl, _rec = start(qtbot, plans_job([ninja_plan(30, "--fail-at", "7")], hint="see the log"), tmp_path)
    with qtbot.waitSignal(ctl.worker.failed, timeout=20000) as blocker:
        ctl.start()
    ctl.wait(5000)
    exc = blocker.args[0]
    assert isinstance(exc, SubprocessFailed)
    assert exc.returncode == 1
    assert "ninja: build stopped" in exc.details
    assert exc.hint == "see the log"
    assert ctl.state is JobState.FAILED
    assert "SubprocessFailed" in (tmp_path / "job.log").read_text(encoding="utf-8")


@pytest.mark.timeout(60)
def test_cancel_kills_the_whole_process_tree(qtbot, tmp_path: Path) -> None:
    pidfile = tmp_path / "pids"
    plan = ninja_plan(50, "--hang-at", "3", "--grandchild", "--pidfile", str(pidfile))
    ctl, rec = start(qtbot, plans_job([plan]), tmp_path)
    ctl.start()
    qtbot.waitUntil(lambda: any(p.done == 3 for p in rec.progress), timeout=20000)
    child, grandchild = (int(x) for x in pidfile.read_text().split())
    assert not gone(child) and not gone(grandchild)
    with qtbot.waitSignal(ctl.worker.failed, timeout=20000) as blocker:
        ctl.cancel()
    assert isinstance(blocker.args[0], CancelledError)
    assert ctl.wait(5000)
    assert ctl.state is JobState.CANCELLED
    qtbot.waitUntil(lambda: gone(child) and gone(grandchild), timeout=10000)
