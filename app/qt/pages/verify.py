"""Install & verify: audit / ABI / smoke results, and selecting the backend in LM Studio when Next is pressed."""

from __future__ import annotations

from PySide6.QtCore import Slot
from PySide6.QtWidgets import QCheckBox, QWidget

from app.core.errors import UnlockedError
from app.core.flow import PageId
from app.core.lmstudio import install, processes
from app.qt.errors import show_error
from app.qt.pages.base import FlowPage, esc, para, path_link, push, row, set_html

MARKS = {True: "✓", False: "✗", None: "–"}


def checks_html(outcome: object) -> str:
    """One line per check: ✓ passed, ✗ failed, – did not run (never shown as passed)."""
    checks = getattr(outcome, "checks", None)
    if not checks:
        return "<i>The job reported no checks.</i>"
    rows = []
    for c in checks:
        name = f"<b>{MARKS[c.ok]} {esc(c.name)}</b>" if c.ok is not None else f"{MARKS[None]} {esc(c.name)}"
        rows.append(f"{name}: {esc(c.summary)}")
    return "<br>".join(rows)


class VerifyPage(FlowPage):
    page_id = PageId.VERIFY

    def __init__(self) -> None:
        super().__init__()
        self.where = para(links=True, name="Installed backend")
        self.checks = para(rich=True, name="Check results")
        self.lay.addWidget(self.where)
        self.lay.addWidget(self.checks)
        self.select_check = QCheckBox("&Select it for GGUF models in LM Studio (when you press Next)")
        self.select_check.setToolTip("Writes LM Studio's runtime selection (backed up first)")
        self.check_again_button = push("Check &again", self._on_check_again_clicked,
                                       tip="Look again whether LM Studio is still running")
        self.lay.addLayout(row(self.select_check, None, self.check_again_button))
        self.select_status = self.add(para(name="Selection status"))
        self.lay.addStretch(1)
        self.select_check.toggled.connect(self._on_select_toggled)

    def initializePage(self) -> None:
        st = self.wiz().state
        o = st.outcome
        ident = getattr(o, "ident", "")
        folder = getattr(o, "folder", "")
        where = f"{esc(ident)}<br>in {path_link(folder)}" if ident else "The job did not install a backend."
        set_html(self.where, where)
        self.checks.setText(checks_html(o))
        can_select = bool(ident) and not st.selected_in_lmstudio
        self.select_check.setEnabled(can_select)
        # Ticked by default only where Next can really write the selection (LM Studio closed).
        self.select_check.setChecked(can_select and not self._running_or_none())
        self.refresh_select_state()

    def focus_target(self) -> QWidget | None:
        return self.select_check if self.select_check.isEnabled() else None

    def lmstudio_running(self) -> bool:
        home = self.wiz().state.home
        return bool(processes.lmstudio_running(home.path if home else None))

    def _running_or_none(self) -> bool | None:
        try:
            return self.lmstudio_running()
        except Exception:
            return None

    def refresh_select_state(self) -> None:
        st = self.wiz().state
        self.check_again_button.setVisible(False)
        if st.selected_in_lmstudio:
            self.select_status.setText("Selected for GGUF models.")
            return
        if not self.select_check.isEnabled():
            self.select_status.setText("")
            return
        running = self._running_or_none()
        if running is None:
            self.select_status.setText("Whether LM Studio runs could not be checked; selecting may fail.")
        elif running:
            self.check_again_button.setVisible(True)
            self.select_status.setText(
                "LM Studio is running. Quit it first (also from the system tray) and press Check again — "
                "or leave the box unticked and pick the backend in LM Studio yourself.")
        elif self.select_check.isChecked():
            self.select_status.setText("LM Studio is closed: Next writes the selection (backed up first).")
        else:
            self.select_status.setText("Not selected: you can pick it in LM Studio later.")

    def validatePage(self) -> bool:
        """Next selects the backend when the box is ticked; on failure the page stays and says why."""
        st = self.wiz().state
        if not self.select_check.isChecked() or not self.select_check.isEnabled() or st.selected_in_lmstudio:
            return True
        return self.select_now()

    def select_now(self) -> bool:
        st = self.wiz().state
        try:
            if self.lmstudio_running():
                raise UnlockedError("LM Studio is running, so its selection cannot be written now.",
                                    hint="Quit LM Studio (also from the system tray), then press Next again — or "
                                         "untick the box and pick the backend in LM Studio yourself.")
            install.execute_select(install.plan_select(st.require_home(), st.outcome.ident))
        except Exception as exc:
            show_error(self, exc, title="Selecting failed")
            self.refresh_select_state()
            return False
        st.selected_in_lmstudio = True
        self.select_check.setEnabled(False)
        self.refresh_select_state()
        return True

    @Slot(bool)
    def _on_select_toggled(self, _on: bool) -> None:
        self.refresh_select_state()

    @Slot()
    def _on_check_again_clicked(self) -> None:
        running = self._running_or_none()
        if running is False and self.select_check.isEnabled():
            self.select_check.setChecked(True)
        self.refresh_select_state()
