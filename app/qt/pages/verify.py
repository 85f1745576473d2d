"""Install & verify: audit / ABI / smoke results, and selecting the backend in LM Studio."""

from __future__ import annotations

from PySide6.QtCore import Slot
from PySide6.QtWidgets import QCheckBox, QHBoxLayout, QPushButton, QVBoxLayout

from app.core.flow import PageId
from app.core.lmstudio import install, processes
from app.qt.errors import show_error
from app.qt.pages.base import FlowPage, esc, para


def checks_html(outcome: object) -> str:
    checks = getattr(outcome, "checks", None)
    if not checks:
        return "<i>The job reported no checks.</i>"
    rows = []
    for c in checks:
        mark = "✓" if c.ok else "✗"
        rows.append(f"<b>{mark} {esc(c.name)}</b>: {esc(c.summary)}")
    return "<br>".join(rows)


class VerifyPage(FlowPage):
    page_id = PageId.VERIFY

    def __init__(self) -> None:
        super().__init__()
        self.setTitle("Installed — checks")
        self.setSubTitle("What was checked before the backend went into LM Studio.")
        lay = QVBoxLayout(self)
        self.where = para(name="Installed backend")
        self.checks = para(rich=True, name="Check results")
        lay.addWidget(self.where)
        lay.addWidget(self.checks)
        self.select_check = QCheckBox("&Select it for GGUF models in LM Studio")
        self.select_check.setToolTip("Writes LM Studio's runtime selection (backed up first)")
        self.select_button = QPushButton("Select &now")
        self.select_button.clicked.connect(self._on_select_clicked)
        self.check_again_button = QPushButton("Check &again")
        self.check_again_button.clicked.connect(self._on_check_again_clicked)
        row = QHBoxLayout()
        row.addWidget(self.select_check)
        row.addStretch(1)
        row.addWidget(self.check_again_button)
        row.addWidget(self.select_button)
        lay.addLayout(row)
        self.select_status = para(name="Selection status")
        lay.addWidget(self.select_status)
        lay.addStretch(1)
        self.select_check.toggled.connect(self._on_select_toggled)

    def initializePage(self) -> None:
        st = self.wiz().state
        o = st.outcome
        ident = getattr(o, "ident", "")
        folder = getattr(o, "folder", "")
        self.where.setText(f"{ident}\nin {folder}" if ident else "The job did not install a backend.")
        self.checks.setText(checks_html(o))
        can_select = bool(ident)
        self.select_check.setEnabled(can_select)
        self.select_check.setChecked(can_select and not st.selected_in_lmstudio)
        self.refresh_select_state()

    def lmstudio_running(self) -> bool:
        home = self.wiz().state.home
        return bool(processes.lmstudio_running(home.path if home else None))

    def refresh_select_state(self) -> None:
        st = self.wiz().state
        if st.selected_in_lmstudio:
            self.select_status.setText("Selected for GGUF models.")
            self.select_button.setEnabled(False)
            self.check_again_button.setVisible(False)
            return
        if not self.select_check.isChecked() or not self.select_check.isEnabled():
            self.select_status.setText("")
            self.select_button.setEnabled(False)
            self.check_again_button.setVisible(False)
            return
        try:
            running = self.lmstudio_running()
        except Exception as exc:
            self.select_status.setText(f"Selecting is not possible: {getattr(exc, 'message', exc)}")
            self.select_button.setEnabled(False)
            self.check_again_button.setVisible(False)
            return
        blocked = running
        self.select_button.setEnabled(not blocked)
        self.check_again_button.setVisible(blocked)
        self.select_status.setText(
            "LM Studio is running. Close LM Studio first (quit it from the system tray too) — then check again."
            if blocked else "LM Studio is closed; the selection can be written."
        )

    @Slot(bool)
    def _on_select_toggled(self, _on: bool) -> None:
        self.refresh_select_state()

    @Slot()
    def _on_check_again_clicked(self) -> None:
        self.refresh_select_state()

    @Slot()
    def _on_select_clicked(self) -> None:
        st = self.wiz().state
        try:
            plan = install.plan_select(st.require_home(), st.outcome.ident)
            install.execute_select(plan)
        except Exception as exc:
            show_error(self, exc, title="Selecting failed")
            return
        st.selected_in_lmstudio = True
        self.refresh_select_state()
