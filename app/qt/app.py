"""Start the Qt application and show the wizard."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Sequence

from PySide6.QtCore import Qt, QTimer
from PySide6.QtGui import QGuiApplication
from PySide6.QtWidgets import QApplication

from app import APP_NAME
from app.qt.errors import install_excepthook
from app.qt.icon import app_icon
from app.qt.state import WizardConfig


def run_gui(argv: Sequence[str] = (), config: WizardConfig | None = None) -> int:
    """Open the wizard and run the event loop; returns the exit code."""
    # High-DPI: Qt 6 scales by default; pass fractional factors through instead of rounding them.
    QGuiApplication.setHighDpiScaleFactorRoundingPolicy(Qt.HighDpiScaleFactorRoundingPolicy.PassThrough)
    app = QApplication.instance() or QApplication([sys.argv[0], *argv])
    assert isinstance(app, QApplication)
    app.setApplicationName(APP_NAME)
    app.setApplicationDisplayName(APP_NAME)
    app.setWindowIcon(app_icon())
    install_excepthook()
    from app.qt.wizard import UnlockedWizard

    wizard = UnlockedWizard(config)
    wizard.show()
    _smoke_exit_hook(app)
    return int(app.exec())


def _smoke_exit_hook(app: QApplication) -> None:
    """LMS_UNLOCKED_SMOKE_EXIT_MS=N (tests/test_bundle.py, bench/bundle.py): once a top-level window is exposed,
    write `smoke: first window shown at <epoch seconds>: <title>` to stderr and quit N ms later."""
    ms = os.environ.get("LMS_UNLOCKED_SMOKE_EXIT_MS")
    if not ms:
        return
    timer = QTimer(app)

    def check() -> None:
        for w in app.topLevelWidgets():
            handle = w.windowHandle()
            if w.isVisible() and handle is not None and handle.isExposed():
                timer.stop()
                if sys.stderr is not None:
                    sys.stderr.write(f"smoke: first window shown at {time.time():.6f}: {w.windowTitle()}\n")
                    sys.stderr.flush()
                QTimer.singleShot(int(ms), app.quit)
                return

    timer.timeout.connect(check)
    timer.start(5)
