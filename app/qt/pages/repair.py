"""Repair: probe the hardware and run the doctor off the GUI thread, show every finding in words (each automatic
fix a visible, ticked line), confirm the list, fix, and show before/after."""

from __future__ import annotations

import itertools
import re
from pathlib import Path
from typing import Any

from PySide6.QtCore import Slot
from PySide6.QtWidgets import (
    QButtonGroup,
    QCheckBox,
    QGroupBox,
    QLayout,
    QPlainTextEdit,
    QRadioButton,
    QSizePolicy,
    QVBoxLayout,
    QWidget,
)

from app.core.flow import PageId
from app.core.hardware import probe
from app.core.lmstudio import crashlog, doctor
from app.qt.errors import show_error
from app.qt.pages.base import Background, FlowPage, card, clear_layout, confirm, esc, para, path_link, push, row
from app.qt.text import SEVERITY_WORDS, cpu_summary, finding_title
from app.qt.worker import JobContext


def finding_heading(f: Any) -> str:
    """'Warning: The same backend is installed twice — llama.cpp-…@2.14.0'."""
    sev = SEVERITY_WORDS.get(getattr(f, "severity", ""), "Note")
    backend = getattr(f, "backend", "")
    return f"{sev}: {finding_title(f.code)}" + (f" — {backend}" if backend else "")


def finding_text(f: Any) -> str:
    """The heading, the explanation and what fixes it, in plain text (the code only in brackets at the end)."""
    text = finding_heading(f) + f"\n    {f.explanation}"
    if f.fix:
        text += f"\n    {'Fix' if f.auto else 'What to do'}: {f.fix}"
    return text + f"\n    [{f.code}]"


def in_words(sentence: str) -> str:
    """The doctor's '[json-bom] removed the BOM …' as 'A title: removed the BOM …' (codes stay in the logs)."""
    m = re.match(r"\[([a-z0-9-]+)\] ", sentence)
    return f"{finding_title(m.group(1))}: {sentence[m.end():]}" if m else sentence


def fix_line(f: Any) -> str:
    backend = f" ({f.backend})" if f.backend else ""
    return f"{finding_title(f.code)}{backend}: {f.fix}"


def doctor_job(home: Any, report: Any, report_file: Path | None, keep: list[Path]) -> Any:
    """Probe this computer (or read the saved report) when the wizard has no report yet, then diagnose with it:
    GPU findings (a Vulkan backend without a usable Vulkan device) need the hardware. Also the duplicated backends
    whose copy to keep the user must choose (`keep`: the choices made so far)."""

    def job(_ctx: JobContext) -> tuple[Any, list[Any], list[Any]]:
        rep = report
        if rep is None:
            rep = (probe.load_report_file(report_file) if report_file is not None
                   else probe.probe_hardware(disk_path=home.path))
        findings = list(doctor.diagnose(home, report=rep, keep=keep))
        return rep, findings, [g for g in doctor.duplicate_groups(home, report=rep, keep=keep) if g.doubt]

    return job


def candidate_words(c: Any) -> str:
    """'llama.cpp-…-avx2 (third-party, works here, newest)'."""
    bits = [str(c.kind or "unknown kind")]
    if c.compatible is not None:
        bits.append("works here" if c.compatible else f"LM Studio will refuse it here ({c.status})")
    if c.newest:
        bits.append("newest")
    return f"{c.folder.name} ({', '.join(bits)})"


class RepairPage(FlowPage):
    page_id = PageId.REPAIR

    def __init__(self) -> None:
        super().__init__()
        self.status = para(name="Repair status")
        self.lay.addWidget(self.status)
        self.cards = QVBoxLayout()
        self.lay.addLayout(self.cards)
        self.to_apply = para(name="Fixes that will be applied")
        self.lay.addWidget(self.to_apply)
        self.choices = QVBoxLayout()  # "which copy stays?" when the doctor is in doubt
        self.lay.insertLayout(1, self.choices)
        self.rescan_button = push("Check a&gain", self._on_rescan_clicked)
        self.fix_button = push("&Fix the ticked problems…", self._on_fix_clicked,
                               tip="Lists the fixes and asks first; everything changed is backed up")
        self.lay.addLayout(row(self.rescan_button, None, self.fix_button))
        self.before_after = para(name="Before and after")
        self.lay.addWidget(self.before_after)
        # A crash: paste LM Studio's error (or read its logs) and the core explains it (and audits the backend).
        box = QGroupBox("LM Studio crashed or a model fails to load? Paste its error or log here")
        bl = QVBoxLayout(box)
        self.crash_text = QPlainTextEdit()
        self.crash_text.setAccessibleName("Pasted error or log")
        self.crash_text.setPlaceholderText("e.g. “exit code 18446744072635812000” or the lines around the error")
        self.crash_text.setMaximumHeight(90)
        self.crash_text.setTabChangesFocus(True)
        self.explain_button = push("E&xplain", self._on_explain_clicked,
                                   tip="Read the text, decode exit codes, audit the backend it names (or the "
                                       "selected one)")
        self.read_logs_button = push("Read LM Studio's &logs", self._on_read_logs_clicked,
                                     tip="Put the text of LM Studio's newest log files into the box")
        self.crash_result = para(name="What the crash means")
        bl.addWidget(self.crash_text)
        bl.addLayout(row(self.read_logs_button, None, self.explain_button))
        bl.addWidget(self.crash_result)
        self.lay.addWidget(box)
        self.lay.addStretch(1)
        self.keep: dict[str, Path] = {}
        self.choice_radios: dict[str, list[tuple[QRadioButton, Path]]] = {}
        self._crash_bg: Background | None = None
        self.findings: list[Any] = []
        self.fix_boxes: dict[int, QCheckBox] = {}
        self._bg: Background | None = None

    def initializePage(self) -> None:
        if not self.findings and (self._bg is None or self._bg.done):
            self.run_doctor()

    def focus_target(self) -> QWidget | None:
        return self.fix_button if self.fix_button.isEnabled() else self.rescan_button

    def busy(self) -> bool:
        return self._bg is not None and not self._bg.done

    def run_doctor(self) -> None:
        st = self.wiz().state
        job = doctor_job(st.require_home(), st.report, self.wiz().config.report_file, list(self.keep.values()))
        self._start(job, "Looking at the hardware and LM Studio's backends…", self._on_doctor_finished)

    def _start(self, job: Any, status: str, on_ok: Any) -> None:
        self.status.setText(status)
        self.fix_button.setEnabled(False)
        self._bg = Background(self, job, on_ok, self._on_job_failed).start()
        self.completeChanged.emit()

    @Slot(object)
    def _on_doctor_finished(self, result: Any) -> None:
        report, findings, doubts = result
        self.wiz().state.report = report
        self.show_choices(doubts)
        self.show_findings(findings)

    def show_choices(self, groups: list[Any]) -> None:
        """When in doubt the wizard asks: which copy of a duplicated backend stays (the others are moved out)."""
        clear_layout(self.choices)
        self.choice_radios = {}
        for g in groups:
            radios = []
            parts: list[QWidget | QLayout] = [
                para(f"<b>Which copy of {esc(g.ident)} should stay?</b> {esc(g.reason)}", rich=True,
                     name="Which copy stays")]
            group = QButtonGroup(self)
            for c in g.candidates:
                r = QRadioButton(candidate_words(c))
                group.addButton(r)
                radios.append((r, c.folder))
                r.toggled.connect(self._on_keep_toggled)
                parts.append(r)
            self.choice_radios[g.ident] = radios
            self.choices.addWidget(card(*parts, name=f"Which copy of {g.ident} stays"))

    @Slot(bool)
    def _on_keep_toggled(self, on: bool) -> None:
        if not on or self.busy():
            return
        for ident, radios in self.choice_radios.items():
            for r, folder in radios:
                if r.isChecked():
                    self.keep[ident] = folder
        self.run_doctor()  # the doctor now knows the keeper: moving the other copies becomes an automatic fix

    def choose_keep(self, ident: str, folder: Path) -> None:
        """What clicking a copy's radio button does (tests)."""
        for r, f in self.choice_radios[ident]:
            if f == folder:
                r.setChecked(True)

    def show_findings(self, findings: list[Any]) -> None:
        self.findings = findings
        clear_layout(self.cards)
        self.fix_boxes = {}
        for i, f in enumerate(findings):
            heading = para(f"<b>{esc(finding_heading(f))}</b>", rich=True, name="Finding")
            heading.setToolTip(f"code: {f.code}")
            parts: list[QWidget | QLayout] = [heading, para(f.explanation, name="Explanation")]
            if f.auto:
                box = QCheckBox("Fix automatically:")
                box.setChecked(True)
                box.setAccessibleDescription(f.fix)
                box.setToolTip(f"code: {f.code}" + (" — needs LM Studio closed" if f.needs_closed else ""))
                box.toggled.connect(self._on_fix_toggled)
                self.fix_boxes[i] = box
                fix = para(f.fix, name="The fix")  # wraps (a long check box label would not)
                parts.append(row(box, fix))
                fix.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Preferred)
            elif f.fix:
                target = Path(f.target) if f.target else None
                link = f" — {path_link(target, 'Open folder')}" if target is not None and target.exists() else ""
                parts.append(para(f"What to do: {esc(f.fix)}{link}", links=True, name="What to do"))
            self.cards.addWidget(card(*parts, name=finding_title(f.code)))
        report = self.wiz().state.report
        hw = f" Checked with the hardware of {cpu_summary(report.cpu)}." if report is not None else ""
        n = len(findings)
        self.status.setText(("No problems found." if n == 0 else f"{n} finding{'s' if n != 1 else ''}:") + hw)
        self._on_fix_toggled(True)
        # Cards are made after the page's buttons: put everything back in reading order for Tab.
        chain: list[QWidget] = [r for radios in self.choice_radios.values() for r, _f in radios]
        chain += [*self.fix_boxes.values(), self.rescan_button, self.fix_button, self.crash_text,
                  self.read_logs_button, self.explain_button]
        for a, b in itertools.pairwise(chain):
            self.setTabOrder(a, b)
        self.completeChanged.emit()

    @Slot(bool)
    def _on_fix_toggled(self, _on: bool) -> None:
        chosen = self.checked_findings()
        self.fix_button.setEnabled(bool(chosen) and not self.busy())
        self.to_apply.setText(
            ("Will be fixed when you press Fix:\n" + "\n".join(f"• {fix_line(f)}" for f in chosen)) if chosen
            else ("Nothing is ticked to fix automatically." if self.fix_boxes else ""))

    @Slot(object)
    def _on_job_failed(self, exc: BaseException) -> None:
        self.status.setText("The check could not run.")
        show_error(self, exc, title="Repair")
        self.completeChanged.emit()

    def checked_findings(self) -> list[Any]:
        return [self.findings[i] for i, box in self.fix_boxes.items() if box.isChecked()]

    @Slot()
    def _on_rescan_clicked(self) -> None:
        if not self.busy():
            self.before_after.setText("")
            self.run_doctor()

    @Slot()
    def _on_fix_clicked(self) -> None:
        chosen = self.checked_findings()
        if not chosen or self.busy():
            return
        listing = "\n".join(f"• {fix_line(f)}" for f in chosen)
        if not confirm(self, "Apply these fixes?",
                       f"These {len(chosen)} fix(es) will be applied (everything changed is backed up first):\n\n"
                       f"{listing}", yes="&Apply fixes"):
            return
        st = self.wiz().state
        home, report = st.require_home(), st.report

        keep = list(self.keep.values())

        def job(_ctx: JobContext) -> Any:
            return doctor.repair(home, chosen, report=report, keep=keep)

        self._start(job, "Fixing…", self._on_fix_finished)

    @Slot(object)
    def _on_fix_finished(self, outcome: Any) -> None:
        self.show_findings(list(outcome.after))
        lines = [f"Before: {len(outcome.before)} finding(s). After: {len(outcome.after)} finding(s)."]
        lines += [f"✓ {in_words(a)}" for a in outcome.applied]
        lines += [f"– skipped: {in_words(s)}" for s in outcome.skipped]
        if outcome.backup_dir:
            lines.append(f"Everything changed was backed up to {outcome.backup_dir}")
        self.before_after.setText("\n".join(lines))
        self.wiz().state.repair_summary = self.before_after.text()

    def isComplete(self) -> bool:
        return not self.busy()

    # -- a crash log ----------------------------------------------------------------------------------------------

    @Slot()
    def _on_read_logs_clicked(self) -> None:
        text, files, locations = crashlog.collect_lmstudio_logs(self.wiz().state.home)
        if text:
            self.crash_text.setPlainText(text)
            self.crash_result.setText("Read " + ", ".join(str(f) for f in files) + ". Press Explain.")
        else:
            where = "; ".join(str(loc.path) for loc in locations[:4])
            self.crash_result.setText(f"No LM Studio log was found (looked in {where}). Paste the error instead.")

    @Slot()
    def _on_explain_clicked(self) -> None:
        text = self.crash_text.toPlainText()
        if not text.strip() or (self._crash_bg is not None and not self._crash_bg.done):
            return
        st = self.wiz().state
        home, report = st.home, st.report

        def job(_ctx: JobContext) -> Any:
            return crashlog.diagnose_crash(text, home=home, report=report)

        self.crash_result.setText("Reading…")
        self._crash_bg = Background(self, job, self._on_explained, self._on_job_failed).start()

    @Slot(object)
    def _on_explained(self, diag: Any) -> None:
        self.crash_result.setText("\n".join(diag.describe()))
