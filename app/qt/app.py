"""Start the Qt application and show the wizard."""

from __future__ import annotations

import sys
from collections.abc import Sequence

from PySide6.QtWidgets import QApplication, QLabel


def run_gui(argv: Sequence[str] = ()) -> int:
    app = QApplication.instance() or QApplication([sys.argv[0], *argv])
    label = QLabel("LM Studio Unlocked — probing…")
    label.resize(480, 120)
    label.show()
    return int(app.exec())
