"""Keyboard and screen-reader basics on every page, the window icon, and exporting the hardware report."""

from __future__ import annotations

import json
from pathlib import Path

from PySide6.QtCore import Qt
from PySide6.QtTest import QTest
from PySide6.QtWidgets import (
    QAbstractButton,
    QAbstractItemView,
    QApplication,
    QCheckBox,
    QHeaderView,
    QPlainTextEdit,
    QWidget,
    QWizard,
)

from app.core.flow import Branch, PageId
from app.qt.state import WizardConfig
from tests.conftest import FIXTURES
from tests.lmstudio_homes import make_home


def test_every_control_has_a_mnemonic_or_a_name(make_wizard, tmp_path: Path) -> None:
    w = make_wizard(WizardConfig(home=make_home(tmp_path)))
    assert not w.windowIcon().isNull()
    for pid, page in w.pages.items():
        for b in page.findChildren(QAbstractButton):
            if isinstance(b, QCheckBox) or b.text():
                assert "&" in b.text(), f"{pid.name}: button {b.text()!r} has no keyboard mnemonic"
        for v in page.findChildren(QPlainTextEdit) + page.findChildren(QAbstractItemView):
            if isinstance(v, QHeaderView):
                continue
            assert v.accessibleName(), f"{pid.name}: {type(v).__name__} has no accessible name"


def _focus_after(qtbot, key: Qt.Key, modifier: Qt.KeyboardModifier = Qt.KeyboardModifier.NoModifier) -> QWidget:
    before = QApplication.focusWidget()
    assert before is not None, "nothing has keyboard focus"
    QTest.keyClick(before, key, modifier)
    qtbot.wait(10)
    after = QApplication.focusWidget()
    assert after is not None
    return after


def test_tab_order_on_welcome_reaches_folder_then_tasks(qtbot, make_wizard, tmp_path: Path) -> None:
    """Real key presses on the shown wizard: Tab goes from the folder button to the task choice (one stop for the
    radio group), on to the wizard's buttons, and around; Shift+Tab goes back; arrows move within the group."""
    w = make_wizard(WizardConfig(home=make_home(tmp_path)))
    w.show()
    qtbot.waitExposed(w)
    w.activateWindow()
    page = w.page_of(PageId.WELCOME)
    page.choose_button.setFocus(Qt.FocusReason.OtherFocusReason)
    qtbot.waitUntil(lambda: QApplication.focusWidget() is page.choose_button, timeout=5000)

    assert _focus_after(qtbot, Qt.Key.Key_Tab) is page.install_radio
    assert _focus_after(qtbot, Qt.Key.Key_Tab, Qt.KeyboardModifier.ShiftModifier) is page.choose_button
    assert _focus_after(qtbot, Qt.Key.Key_Tab) is page.install_radio

    stops: list[QWidget] = []
    for _ in range(12):
        widget = _focus_after(qtbot, Qt.Key.Key_Tab)
        if widget is page.choose_button:
            break
        stops.append(widget)
    else:
        raise AssertionError(f"Tab never came back to the folder button: {[type(x).__name__ for x in stops]}")
    # the unchecked radio buttons are not separate stops; the wizard's Next button is one
    assert page.repair_radio not in stops and page.uninstall_radio not in stops
    next_button = w.button(QWizard.WizardButton.NextButton)
    assert next_button in stops, [type(x).__name__ for x in stops]

    # arrow keys choose within the group, and the choice is what the wizard will do
    page.install_radio.setFocus(Qt.FocusReason.TabFocusReason)
    qtbot.waitUntil(lambda: QApplication.focusWidget() is page.install_radio, timeout=5000)
    assert _focus_after(qtbot, Qt.Key.Key_Down) is page.repair_radio
    assert page.repair_radio.isChecked() and w.state.branch is Branch.REPAIR


def test_export_report_round_trips(qtbot, make_wizard, tmp_path: Path) -> None:
    w = make_wizard(WizardConfig(home=make_home(tmp_path), report_file=FIXTURES / "reports" / "ivybridge.json"))
    w.show()
    w.next()
    hw = w.page_of(PageId.HARDWARE)
    qtbot.waitUntil(lambda: w.state.report is not None, timeout=20000)
    out = tmp_path / "export" / "report.json"
    out.parent.mkdir()
    hw.export_to(out)
    from app.core.hardware.report import HardwareReport

    assert HardwareReport.from_json(out.read_text(encoding="utf-8")) == w.state.report
    assert json.loads(out.read_text())["cpu"]["brand"].startswith("Intel")
