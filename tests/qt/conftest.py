"""Qt tests run on the offscreen platform; helpers for real child processes."""

from __future__ import annotations

import os
import sys
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import psutil
import pytest
from PySide6.QtWidgets import QApplication

from app.core.runner import ProcessPlan
from app.qt.errors import ErrorDialog
from app.qt.state import WizardConfig
from app.qt.wizard import UnlockedWizard

FAKE_NINJA = Path(__file__).with_name("fake_ninja.py")


def ninja_plan(total: int, *args: str, label: str = "build") -> ProcessPlan:
    """A ProcessPlan for the real fake-Ninja child process."""
    return ProcessPlan(argv=(sys.executable, str(FAKE_NINJA), str(total), *args), label=label)


def gone(pid: int) -> bool:
    """The process no longer exists (or is a zombie nobody has reaped yet)."""
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def close_error_dialogs() -> list[ErrorDialog]:
    """Close every visible error dialog; returns them (so a test can assert how many there were)."""
    found = [d for d in QApplication.topLevelWidgets() if isinstance(d, ErrorDialog) and d.isVisible()]
    for d in found:
        d.close()
    return found


@pytest.fixture
def make_wizard(qtbot):
    """Build wizards; at teardown cancel any job still running (before qtbot closes the windows, which
    would otherwise ask "stop the job?" in a modal box nobody answers)."""
    made: list[UnlockedWizard] = []

    def make(config: WizardConfig) -> UnlockedWizard:
        w = UnlockedWizard(config)
        qtbot.addWidget(w)
        made.append(w)
        return w

    yield make
    for w in made:
        w.closing = True
        w.cancel_and_wait()
    close_error_dialogs()


def pytest_collection_modifyitems(items: list) -> None:
    """The offscreen platform warns when any window is shown; that is platform noise, not our bug."""
    for item in items:
        if "tests/qt/" in str(item.fspath).replace("\\", "/"):
            item.add_marker(pytest.mark.qt_log_ignore("This plugin does not support propagateSizeHints"))


def answer_box(qtbot, text: str) -> list[str]:
    """Arrange for the next modal QMessageBox to be answered by clicking its button labelled `text` (mnemonic
    '&' ignored); returns a list that receives the box's text, so a test can check what it asked."""
    from PySide6.QtCore import QTimer
    from PySide6.QtWidgets import QMessageBox

    seen: list[str] = []

    def click() -> None:
        box = QApplication.activeModalWidget()
        if not isinstance(box, QMessageBox):
            QTimer.singleShot(20, click)
            return
        seen.append(box.text())
        for b in box.buttons():
            if b.text().replace("&", "") == text:
                b.click()
                return
        raise AssertionError(f"no button {text!r} in {[b.text() for b in box.buttons()]}")

    QTimer.singleShot(0, click)
    return seen
