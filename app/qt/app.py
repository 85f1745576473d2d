"""Start the Qt application and show the wizard."""

from __future__ import annotations

import sys
from collections.abc import Sequence

from PySide6.QtCore import Qt
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
    return int(app.exec())
