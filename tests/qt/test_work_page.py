"""The Work page inside the wizard, driven by a REAL child process that talks like Ninja."""

from __future__ import annotations

from pathlib import Path

import pytest
from PySide6.QtCore import Qt, QTimer
from PySide6.QtWidgets import QApplication, QMessageBox, QWizard

from app.core.errors import CancelledError, SubprocessFailed
from app.core.flow import Method, PageId
from app.qt.jobs import plans_job
from app.qt.pages.work import DONE, FAILED, PENDING
from app.qt.state import WizardConfig
from app.qt.wizard import UnlockedWizard
from app.qt.worker import JobState
from tests.qt.conftest import close_error_dialogs, gone, ninja_plan


def hanging_build(pidfile: Path):
    """A build that hangs at step 2 of 50 with a grandchild alive (pids in `pidfile`)."""
    return ninja_plan(50, "--hang-at", "2", "--grandchild", "--pidfile", str(pidfile), label="build")


def work_wizard(make_wizard, tmp_path: Path, plans) -> UnlockedWizard:
    cfg = WizardConfig(home=tmp_path / "home", log_dir=tmp_path / "logs", job_factory=lambda _st: plans_job(plans))
    w = make_wizard(cfg)
    w.state.method = Method.BUILD
    w.setStartId(int(PageId.WORK))
    return w


def test_build_stages_progress_log_and_next(qtbot, make_wizard, tmp_path: Path) -> None:
    plans = [
        ninja_plan(3, label="source"),
        ninja_plan(2, label="patches"),
        ninja_plan(4, label="configure"),
        ninja_plan(40, label="build"),
    ]
    w = work_wizard(make_wizard, tmp_path, plans)
    w.show()
    page = w.page_of(PageId.WORK)
    assert page.is_running()
    assert not w.button(QWizard.WizardButton.NextButton).isEnabled()
    qtbot.waitUntil(lambda: page.controller.state is JobState.SUCCEEDED, timeout=30000)
    assert page.progress.value() == 1000
    # The plans cover the first three stages; a finished job marks every stage done.
    assert all(page.stage_state[s] == DONE for s in page.stages)
    assert page.stage_list.count() == 7
    assert w.button(QWizard.WizardButton.NextButton).isEnabled()
    assert w.state.work_succeeded
    text = page.log_view.toPlainText()
    assert "[40/40] Building CXX" in text and "== configure" in text
    assert "[40/40] Building CXX" in w.state.log_path.read_text(encoding="utf-8")
    w.next()
    assert w.current_page_id() is PageId.VERIFY


def test_progress_is_determinate_with_eta_during_build(qtbot, make_wizard, tmp_path: Path) -> None:
    w = work_wizard(make_wizard, tmp_path, [ninja_plan(60, "--delay", "0.05", label="build")])
    w.show()
    page = w.page_of(PageId.WORK)
    qtbot.waitUntil(lambda: "of 60 steps" in page.status.text(), timeout=20000)
    assert page.stage_state["source"] == DONE and page.stage_state["build"] == "running"
    assert page.stage_state["install"] == PENDING
    qtbot.waitUntil(lambda: "left" in page.eta.text() and "Overall" in page.eta.text(), timeout=10000)
    assert "left" in page.status.text()  # this stage's time left, next to its steps
    # Stages are weighted by their cost: the build (stage 3 of 7) is most of the bar, from 25/412 to 385/412.
    assert 60 <= page.progress.value() <= 935
    qtbot.waitUntil(lambda: page.controller.state is JobState.SUCCEEDED, timeout=30000)


def test_failure_shows_one_error_dialog_and_keeps_next_disabled(qtbot, make_wizard, tmp_path: Path) -> None:
    w = work_wizard(make_wizard, tmp_path, [ninja_plan(20, "--fail-at", "9", label="build")])
    w.show()
    page = w.page_of(PageId.WORK)
    qtbot.waitUntil(lambda: page.controller.state is JobState.FAILED, timeout=20000)
    assert isinstance(page.error, SubprocessFailed)
    dialogs = close_error_dialogs()
    assert len(dialogs) == 1
    assert "build exited with code 1" in dialogs[0].error.message
    assert "ninja: build stopped" in dialogs[0].details.toPlainText()
    assert page.stage_state["build"] == FAILED
    assert page.title() == "It did not work"  # no longer "Working"
    assert page.retry_button.isVisible()
    assert not w.button(QWizard.WizardButton.NextButton).isEnabled()
    diag = page.diagnostics()
    assert "Full log:" in diag and "FAILED: ggml/src" in diag
    # The full log is on disk with the failure and the exit code.
    log = w.state.log_path.read_text(encoding="utf-8")
    assert "error: 'vpdpbusd' is not supported" in log


@pytest.mark.timeout(60)
def test_cancel_button_stops_the_process_tree(qtbot, make_wizard, tmp_path: Path) -> None:
    pidfile = tmp_path / "pids"
    w = work_wizard(make_wizard, tmp_path, [hanging_build(pidfile)])
    w.show()
    page = w.page_of(PageId.WORK)
    qtbot.waitUntil(lambda: "2 of 50 steps" in page.status.text(), timeout=20000)
    child, grandchild = (int(x) for x in pidfile.read_text().split())
    qtbot.mouseClick(page.cancel_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: page.controller.state is JobState.CANCELLED, timeout=20000)
    assert isinstance(page.error, CancelledError)
    assert close_error_dialogs() == []  # a cancel is not an error
    assert "Cancelled" in page.status.text() and page.title() == "Cancelled"
    assert not page.cancel_button.isVisible()  # nothing left to cancel
    qtbot.waitUntil(lambda: gone(child) and gone(grandchild), timeout=10000)
    # Try again runs a fresh job.
    pidfile.unlink()
    qtbot.mouseClick(page.retry_button, Qt.MouseButton.LeftButton)
    assert page.is_running()
    qtbot.waitUntil(lambda: pidfile.exists() and len(pidfile.read_text().split()) == 2, timeout=20000)
    page.cancel_job()
    qtbot.waitUntil(lambda: not page.is_running(), timeout=20000)


@pytest.mark.timeout(60)
def test_closing_the_window_during_work_asks_then_cancels_cleanly(qtbot, make_wizard, tmp_path: Path) -> None:
    pidfile = tmp_path / "pids"
    w = work_wizard(make_wizard, tmp_path, [hanging_build(pidfile)])
    w.show()
    page = w.page_of(PageId.WORK)
    qtbot.waitUntil(lambda: "2 of 50 steps" in page.status.text(), timeout=20000)
    child, grandchild = (int(x) for x in pidfile.read_text().split())
    answers: list[str] = []

    def answer(button: QMessageBox.StandardButton) -> None:
        box = QApplication.activeModalWidget()
        assert isinstance(box, QMessageBox), box
        answers.append(box.text())
        box.button(button).click()

    # First "No": the window stays and the job keeps running.
    QTimer.singleShot(200, lambda: answer(QMessageBox.StandardButton.No))
    w.close()
    assert w.isVisible() and page.is_running()
    # Then "Yes": the job is cancelled, its process tree killed, and the window closes.
    QTimer.singleShot(200, lambda: answer(QMessageBox.StandardButton.Yes))
    w.close()
    assert len(answers) == 2 and "still running" in answers[0]
    assert not w.isVisible()
    assert page.controller.state is JobState.CANCELLED
    qtbot.waitUntil(lambda: gone(child) and gone(grandchild), timeout=10000)
    assert close_error_dialogs() == []


def test_closing_waits_for_a_short_background_call(qtbot, make_wizard, tmp_path: Path) -> None:
    """Closing while a one-shot core call (probe, costs, doctor) runs must not destroy a running QThread."""
    import time as _time

    from app.qt.pages.base import Background

    w = make_wizard(WizardConfig(home=tmp_path / "home"))
    w.show()
    page = w.page_of(PageId.REPAIR)
    results: list[object] = []
    bg = Background(page, lambda _ctx: _time.sleep(0.5) or (None, [], []), page._on_doctor_finished,
                    page._on_job_failed)
    bg.controller.worker.finished.connect(results.append)  # Qt queues it; recorded only if the GUI ran on
    bg.start()
    assert bg.controller.is_running()
    w.close()
    assert not w.isVisible()
    assert not bg.controller._thread.isRunning()
