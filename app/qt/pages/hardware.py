"""Hardware: the probe in plain language, what the GPUs are good for, details on demand, export."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from PySide6.QtCore import Slot
from PySide6.QtWidgets import QFileDialog, QLabel, QPlainTextEdit

from app.core.errors import UnlockedError
from app.core.flow import PageId
from app.core.hardware import probe
from app.core.hardware.report import HardwareReport
from app.core.lmstudio.home import LmsHome
from app.qt.errors import show_error
from app.qt.pages.base import Background, FlowPage, para, push, row
from app.qt.pages.welcome import load_report_into, pick_and_load_report
from app.qt.text import WHAT_IS_AVX2, cpu_notes, cpu_summary, gpu_lines, report_details
from app.qt.worker import JobContext


def probe_job(report_file: Path | None, disk_path: Path | None = None) -> Any:
    """Load the saved report, or probe this machine measuring free space at `disk_path` (LM Studio's home)."""

    def job(_ctx: JobContext) -> HardwareReport:
        if report_file is not None:
            return probe.load_report_file(report_file)
        return probe.probe_hardware(disk_path=disk_path)

    return job


def _home_path(home: LmsHome | None) -> Path | None:
    return home.path if home is not None else None


class HardwarePage(FlowPage):
    page_id = PageId.HARDWARE

    def __init__(self) -> None:
        super().__init__()
        lay = self.lay
        self.status = para("Looking at the processor and graphics cards…", name="Probe status")
        self.cpu_label = QLabel()
        self.cpu_label.setWordWrap(True)
        self.cpu_label.setAccessibleName("Processor")
        f = self.cpu_label.font()
        f.setBold(True)
        self.cpu_label.setFont(f)
        self.cpu_notes = para(name="Processor notes")
        self.gpu_label = para(name="Graphics cards")
        self.errors_label = para(name="Probe problems")
        for w in (self.status, self.cpu_label, self.cpu_notes, self.gpu_label, self.errors_label):
            lay.addWidget(w)

        self.avx2_button = push("What is &AVX2?", checkable=True)
        self.avx2_text = para(WHAT_IS_AVX2, name="What is AVX2")
        self.avx2_text.setVisible(False)
        self.avx2_button.toggled.connect(self.avx2_text.setVisible)
        self.details_button = push("Show &details", checkable=True)
        self.details_button.toggled.connect(self._on_details_toggled)
        self.export_button = push("&Export report…", self._on_export_clicked,
                                  tip="Save this report as JSON, e.g. to build a backend for it on another machine")
        self.load_button = push("&Load a saved report…", self._on_load_clicked,
                                tip="Show and build for another computer's saved report instead of this one")
        lay.addLayout(row(self.avx2_button, self.details_button, self.export_button, self.load_button, None))
        lay.addWidget(self.avx2_text)
        self.details = QPlainTextEdit()
        self.details.setReadOnly(True)
        self.details.setAccessibleName("Hardware details")
        self.details.setVisible(False)
        self.details.setMinimumHeight(160)
        lay.addWidget(self.details, 1)
        lay.addStretch(0)
        self._bg: Background | None = None

    def initializePage(self) -> None:
        st = self.wiz().state
        if st.report is not None:
            self._show(st.report)
            return
        if self._bg is not None and not self._bg.done:
            return  # already probing (initializePage runs again after Back/Next)
        self.status.setText("Looking at the processor and graphics cards…")
        self.export_button.setEnabled(False)
        job = probe_job(self.wiz().config.report_file, _home_path(st.home))
        self._bg = Background(self, job, self._on_probe_finished, self._on_probe_failed).start()

    def isComplete(self) -> bool:
        return self.wizard() is not None and self.wiz().state.report is not None

    @Slot(object)
    def _on_probe_finished(self, report: HardwareReport) -> None:
        self.wiz().state.report = report
        self._show(report)
        self.completeChanged.emit()

    @Slot(object)
    def _on_probe_failed(self, exc: BaseException) -> None:
        self.status.setText("The hardware could not be probed.")
        show_error(self, exc, title="Probe failed")

    def _show(self, report: HardwareReport) -> None:
        src = "" if report.source == "live" else f" (from a saved report: {report.source})"
        self.status.setText(f"This computer{src}:")
        self.cpu_label.setText(cpu_summary(report.cpu))
        notes = cpu_notes(report.cpu)
        self.cpu_notes.setText(" ".join(notes))
        self.cpu_notes.setVisible(bool(notes))
        self.gpu_label.setText("Graphics:\n" + "\n".join("• " + g for g in gpu_lines(report)))
        errs = [f"• {e.message}" + (f" — {e.hint}" if e.hint else "") for e in report.errors if e.kind == "error"]
        self.errors_label.setText(("Some checks failed:\n" + "\n".join(errs)) if errs else "")
        self.errors_label.setVisible(bool(errs))
        self.details.setPlainText(report_details(report))
        self.export_button.setEnabled(True)

    @Slot()
    def _on_load_clicked(self) -> None:
        pick_and_load_report(self)

    def load_report(self, path: Path) -> None:
        if load_report_into(self, path):
            report = self.wiz().state.report
            assert report is not None
            self._show(report)
            self.completeChanged.emit()

    @Slot(bool)
    def _on_details_toggled(self, on: bool) -> None:
        self.details.setVisible(on)
        self.details_button.setText("Hide &details" if on else "Show &details")

    @Slot()
    def _on_export_clicked(self) -> None:
        report = self.wiz().state.report
        if report is None:
            return
        path, _ = QFileDialog.getSaveFileName(self, "Export hardware report", "hardware-report.json", "JSON (*.json)")
        if path:
            self.export_to(Path(path))

    def export_to(self, path: Path) -> None:
        report = self.wiz().state.report
        assert report is not None
        try:
            tmp = path.with_suffix(path.suffix + ".tmp")
            tmp.write_text(report.to_json() + "\n", encoding="utf-8")
            tmp.replace(path)
        except OSError as exc:
            err = UnlockedError(f"Could not write {path}: {exc.strerror or exc}",
                                hint="Choose a folder you can write to.")
            show_error(self, err, title="Export failed")
