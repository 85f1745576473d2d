"""The one error dialog and the unexpected-exception hook."""

from __future__ import annotations

import sys

from PySide6.QtWidgets import QApplication

from app.core.errors import UnlockedError
from app.core.paths import user_log_dir
from app.qt.errors import ErrorDialog, as_unlocked_error, install_excepthook
from tests.qt.conftest import close_error_dialogs


def test_dialog_shows_message_hint_and_copies_details(qtbot) -> None:
    err = UnlockedError("The catalog signature is wrong.", context="https://x/catalog.json",
                        hint="Check the catalog source.", details="sig mismatch: expected A, got B")
    dlg = ErrorDialog(err)
    qtbot.addWidget(dlg)
    dlg.show()
    assert "The catalog signature is wrong." in dlg.message_label.text()
    assert "Check the catalog source." in dlg.hint_label.text()
    assert not dlg.details.isVisible()
    dlg.details_button.click()
    assert dlg.details.isVisible()
    dlg.copy_button.click()
    copied = QApplication.clipboard().text()
    assert "sig mismatch: expected A, got B" in copied and "Hint: Check the catalog source." in copied
    assert "LM Studio Unlocked" in copied and "PySide6" in copied


def test_unexpected_exception_becomes_an_internal_error_with_traceback() -> None:
    try:
        raise KeyError("boom")
    except KeyError as exc:
        err = as_unlocked_error(exc)
    assert err.message.startswith("Unexpected internal error: KeyError")
    assert "Traceback" in err.details and "raise KeyError" in err.details


def test_excepthook_writes_the_crash_log_and_shows_the_dialog(qtbot, monkeypatch) -> None:
    monkeypatch.setattr(sys, "excepthook", sys.excepthook)  # restored after the test
    install_excepthook()
    try:
        raise RuntimeError("unexpected in a slot")
    except RuntimeError as exc:
        sys.excepthook(type(exc), exc, exc.__traceback__)
    dialogs = close_error_dialogs()
    assert len(dialogs) == 1
    assert "RuntimeError" in dialogs[0].error.message
    logs = list(user_log_dir().glob("crash-*.log"))
    assert logs and "unexpected in a slot" in logs[0].read_text(encoding="utf-8")
    assert str(logs[0]) in dialogs[0].error.hint
