"""One error dialog for everything: message, hint, details and a Copy button — never a traceback."""

from __future__ import annotations

import logging
import platform
import sys
import traceback
from types import TracebackType

from PySide6 import __version__ as PYSIDE_VERSION
from PySide6.QtCore import Qt, Slot
from PySide6.QtGui import QGuiApplication
from PySide6.QtWidgets import (
    QApplication,
    QDialog,
    QDialogButtonBox,
    QLabel,
    QPlainTextEdit,
    QPushButton,
    QStyle,
    QVBoxLayout,
    QWidget,
)

from app import __version__
from app.core.crashlog import write_crash_log
from app.core.errors import UnlockedError

log = logging.getLogger(__name__)


def as_unlocked_error(exc: BaseException) -> UnlockedError:
    """Expected errors pass through; anything else becomes an 'internal error' with the traceback as details."""
    if isinstance(exc, UnlockedError):
        return exc
    return UnlockedError(
        f"Unexpected internal error: {exc!r}",
        hint="This is a bug in LM Studio Unlocked. Copy the details below into a bug report.",
        details="".join(traceback.format_exception(exc)),
    )


def diagnostics_text(err: UnlockedError, *, extra: str = "") -> str:
    """Plain text for the clipboard: the error, versions and the details."""
    parts = [
        f"LM Studio Unlocked {__version__} (PySide6 {PYSIDE_VERSION}, Python {platform.python_version()}, "
        f"{platform.platform()})",
        f"Error: {err.message}",
    ]
    if err.context:
        parts.append(f"Context: {err.context}")
    if err.hint:
        parts.append(f"Hint: {err.hint}")
    if extra:
        parts.append(extra)
    if err.details:
        parts += ["", "Details:", err.details]
    return "\n".join(parts)


class ErrorDialog(QDialog):
    def __init__(self, err: UnlockedError, parent: QWidget | None = None, *, title: str = "Something went wrong",
                 extra: str = "") -> None:
        super().__init__(parent)
        self.error = err
        self.setWindowTitle(title)
        self.setMinimumWidth(520)
        lay = QVBoxLayout(self)

        self.message_label = QLabel(f"<b>{_esc(err.message)}</b>")
        self.message_label.setWordWrap(True)
        self.message_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        icon = self.style().standardIcon(QStyle.StandardPixmap.SP_MessageBoxCritical)
        self.setWindowIcon(icon)
        lay.addWidget(self.message_label)
        if err.context:
            ctx = QLabel(_esc(err.context))
            ctx.setWordWrap(True)
            lay.addWidget(ctx)
        self.hint_label = QLabel(f"What you can do: {_esc(err.hint)}" if err.hint else "")
        self.hint_label.setWordWrap(True)
        self.hint_label.setVisible(bool(err.hint))
        lay.addWidget(self.hint_label)

        self.details = QPlainTextEdit(diagnostics_text(err, extra=extra))
        self.details.setReadOnly(True)
        self.details.setAccessibleName("Error details")
        self.details.setVisible(False)
        self.details.setMinimumHeight(180)
        lay.addWidget(self.details)

        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        self.details_button = QPushButton("Show &details")
        self.details_button.setCheckable(True)
        self.details_button.toggled.connect(self._on_details_toggled)
        self.copy_button = QPushButton("&Copy")
        self.copy_button.setToolTip("Copy the message, hint, versions and details to the clipboard")
        self.copy_button.clicked.connect(self._on_copy_clicked)
        buttons.addButton(self.details_button, QDialogButtonBox.ButtonRole.ActionRole)
        buttons.addButton(self.copy_button, QDialogButtonBox.ButtonRole.ActionRole)
        buttons.rejected.connect(self.reject)
        lay.addWidget(buttons)

    def _on_details_toggled(self, on: bool) -> None:
        self.details.setVisible(on)
        self.details_button.setText("Hide &details" if on else "Show &details")
        self.adjustSize()

    @Slot(int)
    def _on_finished(self, _result: int) -> None:
        _OPEN.discard(self)

    def _on_copy_clicked(self) -> None:
        QGuiApplication.clipboard().setText(self.details.toPlainText())


def _esc(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace("\n", "<br>")


# Open dialogs without a parent would be garbage-collected (and vanish) as soon as show_error returns.
_OPEN: set[ErrorDialog] = set()


def show_error(parent: QWidget | None, exc: BaseException, *, title: str = "Something went wrong",
               extra: str = "") -> ErrorDialog:
    """Show the one error dialog (modal, non-blocking for the caller) and return it."""
    dlg = ErrorDialog(as_unlocked_error(exc), parent, title=title, extra=extra)
    dlg.setModal(True)
    _OPEN.add(dlg)
    dlg.finished.connect(dlg._on_finished)
    dlg.show()
    return dlg


def install_excepthook() -> None:
    """Unexpected exceptions (also those raised in slots) write the crash log and show the error dialog."""

    def hook(exc_type: type[BaseException], exc: BaseException, tb: TracebackType | None) -> None:
        if issubclass(exc_type, KeyboardInterrupt):
            sys.__excepthook__(exc_type, exc, tb)
            return
        path = write_crash_log(exc)
        log.error("unexpected exception", exc_info=(exc_type, exc, tb))
        if QApplication.instance() is None:
            sys.__excepthook__(exc_type, exc, tb)
            return
        err = as_unlocked_error(exc)
        if path:
            err.hint = f"{err.hint} The full report was written to {path}."
        show_error(QApplication.activeWindow(), err, title="Unexpected error")

    sys.excepthook = hook
