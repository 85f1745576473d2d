"""Keyboard and screen-reader basics on every page, the window icon, and exporting the hardware report."""

from __future__ import annotations

import json
from pathlib import Path

from PySide6.QtWidgets import (
    QAbstractButton,
    QAbstractItemView,
    QCheckBox,
    QHeaderView,
    QPlainTextEdit,
)

from app.core.flow import PageId
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
