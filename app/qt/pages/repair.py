"""Repair: doctor's findings as a checklist with explanations, Fix selected, before/after."""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import Qt, Slot
from PySide6.QtWidgets import QHBoxLayout, QListWidget, QListWidgetItem, QPushButton, QVBoxLayout

from app.core.flow import PageId
from app.core.lmstudio import doctor
from app.qt.errors import show_error
from app.qt.pages.base import Background, FlowPage, para
from app.qt.worker import JobContext


def finding_text(f: Any) -> str:
    title = getattr(f, "title", "") or getattr(f, "message", "") or str(f)
    expl = getattr(f, "explanation", "") or getattr(f, "hint", "")
    fix = getattr(f, "fix", "") or getattr(f, "action", "")
    text = str(title)
    if expl:
        text += f"\n    {expl}"
    if fix and isinstance(fix, str):
        text += f"\n    Fix: {fix}"
    return text


class RepairPage(FlowPage):
    page_id = PageId.REPAIR

    def __init__(self) -> None:
        super().__init__()
        self.setTitle("Repair")
        self.setSubTitle("Why LM Studio does not list or load a backend — checked in order.")
        lay = QVBoxLayout(self)
        self.status = para(name="Repair status")
        lay.addWidget(self.status)
        self.list = QListWidget()
        self.list.setAccessibleName("Findings")
        self.list.setWordWrap(True)
        self.list.setSpacing(4)
        self.list.setAlternatingRowColors(True)
        lay.addWidget(self.list, 1)
        row = QHBoxLayout()
        self.rescan_button = QPushButton("Check a&gain")
        self.fix_button = QPushButton("&Fix selected")
        self.fix_button.setToolTip("Apply the ticked fixes (everything replaced is backed up first)")
        row.addWidget(self.rescan_button)
        row.addStretch(1)
        row.addWidget(self.fix_button)
        lay.addLayout(row)
        self.before_after = para(name="Before and after")
        lay.addWidget(self.before_after)
        self.rescan_button.clicked.connect(self._on_rescan_clicked)
        self.fix_button.clicked.connect(self._on_fix_clicked)
        self.findings: list[Any] = []
        self._bg: Background | None = None

    def initializePage(self) -> None:
        if not self.findings and (self._bg is None or self._bg.done):
            self.run_doctor()

    def busy(self) -> bool:
        return self._bg is not None and not self._bg.done

    def run_doctor(self) -> None:
        st = self.wiz().state
        report = st.report

        def job(_ctx: JobContext) -> Any:
            return doctor.diagnose(st.require_home(), report=report)

        self.status.setText("Checking…")
        self.fix_button.setEnabled(False)
        self._bg = Background(self, job, self._on_doctor_finished, self._on_job_failed).start()

    @Slot(object)
    def _on_doctor_finished(self, result: Any) -> None:
        self.show_findings(list(result))

    def show_findings(self, findings: list[Any]) -> None:
        self.findings = findings
        self.list.clear()
        for f in findings:
            item = QListWidgetItem(finding_text(f))
            fixable = bool(getattr(f, "fixable", False))
            flags = item.flags() | Qt.ItemFlag.ItemIsUserCheckable
            if not fixable:
                flags &= ~Qt.ItemFlag.ItemIsUserCheckable
            item.setFlags(flags)
            if fixable:
                item.setCheckState(Qt.CheckState.Checked)
            self.list.addItem(item)
        n = len(findings)
        self.status.setText("No problems found." if n == 0 else f"{n} problem{'s' if n != 1 else ''} found:")
        self.fix_button.setEnabled(any(getattr(f, "fixable", False) for f in findings))
        self.completeChanged.emit()

    @Slot(object)
    def _on_job_failed(self, exc: BaseException) -> None:
        self.status.setText("The check could not run.")
        show_error(self, exc, title="Repair")
        self.completeChanged.emit()

    def checked_findings(self) -> list[Any]:
        return [f for i, f in enumerate(self.findings)
                if self.list.item(i).checkState() == Qt.CheckState.Checked]

    @Slot()
    def _on_rescan_clicked(self) -> None:
        if not self.busy():
            self.run_doctor()

    @Slot()
    def _on_fix_clicked(self) -> None:
        chosen = self.checked_findings()
        if not chosen or self.busy():
            return
        st = self.wiz().state
        report = st.report

        def job(_ctx: JobContext) -> Any:
            return doctor.repair(st.require_home(), chosen, report=report)

        self.status.setText("Fixing…")
        self.fix_button.setEnabled(False)
        self._bg = Background(self, job, self._on_fix_finished, self._on_job_failed).start()

    @Slot(object)
    def _on_fix_finished(self, outcome: Any) -> None:
        self.show_findings(list(outcome.after))
        lines = [f"Before: {len(outcome.before)} problem(s). After: {len(outcome.after)} problem(s)."]
        lines += [f"✓ {a}" for a in outcome.applied]
        lines += [f"– skipped: {s}" for s in outcome.skipped]
        if outcome.backup_dir:
            lines.append(f"Everything changed was backed up to {outcome.backup_dir}")
        self.before_after.setText("\n".join(lines))
        self.wiz().state.repair_summary = self.before_after.text()

    def isComplete(self) -> bool:
        return not self.busy()
