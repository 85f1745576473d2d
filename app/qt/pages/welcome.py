"""Welcome: what the tool does, where LM Studio is (or how to get it), a saved report, and the three branches."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QDir, Slot
from PySide6.QtWidgets import QButtonGroup, QFileDialog, QGroupBox, QRadioButton, QVBoxLayout, QWidget

from app.core.flow import Branch, PageId
from app.core.hardware import probe
from app.core.lmstudio import install
from app.core.lmstudio.home import resolve_home
from app.qt.errors import show_error
from app.qt.pages.base import FlowPage, esc, para, push, row, set_html
from app.qt.text import GET_LMSTUDIO_URL, INTRO, NO_LMSTUDIO, cpu_summary

HOW_FOUND = {
    "override": "the folder you chose",
    "pointer": "LM Studio's pointer file (~/.lmstudio-home-pointer)",
    "legacy": "the older location (~/.cache/lm-studio)",
    "default": "the standard location (~/.lmstudio)",
}


def folder_dialog(parent: QWidget, title: str, start: str) -> QFileDialog:
    """Qt's own folder picker, showing hidden folders: LM Studio's home is ~/.lmstudio (a platform dialog may
    hide it and offers no way to show it)."""
    dlg = QFileDialog(parent, title, start)
    dlg.setFileMode(QFileDialog.FileMode.Directory)
    dlg.setOption(QFileDialog.Option.ShowDirsOnly, True)
    dlg.setOption(QFileDialog.Option.DontUseNativeDialog, True)
    dlg.setFilter(QDir.Filter.AllDirs | QDir.Filter.Hidden | QDir.Filter.NoDotAndDotDot)
    return dlg


def load_report_into(page: FlowPage, path: Path) -> bool:
    """Read a saved hardware report (probe --json) into the wizard's state; errors go to the error dialog."""
    wiz = page.wiz()
    try:
        report = probe.load_report_file(path)
    except Exception as exc:
        show_error(page, exc, title="Could not load the report")
        return False
    wiz.config.report_file = path
    st = wiz.state
    st.report, st.recommendation, st.candidate, st.method = report, None, None, None
    return True


def pick_and_load_report(page: FlowPage) -> None:
    """"Load a saved report…": ask for the file, then the page's own `load_report(path)`."""
    path, _ = QFileDialog.getOpenFileName(page, "Load a saved hardware report", str(Path.home()),
                                          "Hardware report (*.json);;All files (*)")
    if path:
        page.load_report(Path(path))  # type: ignore[attr-defined]


class WelcomePage(FlowPage):
    page_id = PageId.WELCOME

    def __init__(self) -> None:
        super().__init__()
        lay = self.lay
        lay.addWidget(para(INTRO, name="What this tool does"))

        box = QGroupBox("LM Studio")
        bl = QVBoxLayout(box)
        self.home_label = para(links=True, name="Where LM Studio was found")
        self.choose_button = push("&Choose LM Studio folder…", self._on_choose_clicked,
                                  tip="Point to LM Studio's home folder (the one that holds extensions/backends)")
        bl.addWidget(self.home_label)
        self.report_label = para(name="Saved report")
        self.report_label.setVisible(False)
        bl.addWidget(self.report_label)
        self.load_button = push("&Load a saved report…", self._on_load_clicked,
                                tip="Use a hardware report saved on another computer (Export report… on the hardware "
                                    "page, or lms-unlocked probe --json) and build for that computer")
        bl.addLayout(row(self.choose_button, self.load_button, None))
        lay.addWidget(box)

        tasks = QGroupBox("What do you want to do?")
        tl = QVBoxLayout(tasks)
        self.install_radio = QRadioButton("&Install a backend that runs on this computer")
        self.repair_radio = QRadioButton("&Repair: LM Studio doesn't list my backend, or it fails to load")
        self.uninstall_radio = QRadioButton("&Uninstall a backend this tool installed")
        self.group = QButtonGroup(self)
        for i, r in enumerate((self.install_radio, self.repair_radio, self.uninstall_radio)):
            self.group.addButton(r, i)
            tl.addWidget(r)
        self.install_radio.setChecked(True)
        self.group.idToggled.connect(self._on_branch_toggled)
        lay.addWidget(tasks)
        lay.addStretch(1)
        self.setTabOrder(self.install_radio, self.choose_button)
        self.setTabOrder(self.choose_button, self.load_button)
        self.recovered: list[str] = []

    def initializePage(self) -> None:
        wiz = self.wiz()
        if wiz.state.home is None:
            self.set_home(wiz.config.home)
        else:
            self._show_home()
        if wiz.config.report_file is not None and wiz.state.report is None:
            load_report_into(self, wiz.config.report_file)  # --report FILE: a small JSON file, read at once
        self._show_report()

    def focus_target(self) -> QWidget | None:
        checked = self.group.checkedButton()
        return checked if checked is not None and checked.isEnabled() else self.install_radio

    def set_home(self, override: Path | str | None) -> None:
        home = resolve_home(override)
        self.wiz().state.home = home
        self.recovered = []
        if home.exists:
            # Finish or undo a change a crash or kill interrupted, before anything else touches this home.
            try:
                self.recovered = install.recover(home)
            except Exception as exc:
                show_error(self, exc, title="Could not finish an interrupted change")
        self._show_home()

    def _show_home(self) -> None:
        st = self.wiz().state
        home = st.home
        if not st.has_lmstudio:
            where = f" (looked in {esc(str(home.path))})" if home is not None else ""
            set_html(self.home_label,
                f"⚠ {esc(NO_LMSTUDIO)}{where}<br>Get LM Studio: <a href=\"{GET_LMSTUDIO_URL}\">{GET_LMSTUDIO_URL}</a>"
                " — or, if it is installed somewhere else, choose its folder.")
            self.install_radio.setText("&Install: see what this computer needs (LM Studio not found)")
        else:
            home = st.require_home()
            how = HOW_FOUND.get(home.how_found, home.how_found)
            text = f"LM Studio's folder: {esc(str(home.path))}<br>Found through {esc(how)}."
            if home.problem:
                text += f"<br>⚠ {esc(home.problem)}"
            for msg in self.recovered:
                text += f"<br>Recovered an interrupted change: {esc(msg)}"
            set_html(self.home_label, text)
            self.install_radio.setText("&Install a backend that runs on this computer")
        # Repair and Uninstall work on an LM Studio folder: without one they are not offered.
        for r in (self.repair_radio, self.uninstall_radio):
            r.setEnabled(st.has_lmstudio)
        if not st.has_lmstudio and not self.install_radio.isChecked():
            self.install_radio.setChecked(True)
        self.completeChanged.emit()

    def _show_report(self) -> None:
        st = self.wiz().state
        cfg = self.wiz().config
        if cfg.report_file is not None:
            cpu = cpu_summary(st.report.cpu) if st.report is not None else ""
            self.report_label.setText(f"Using the saved report {cfg.report_file}" + (f": {cpu}" if cpu else "")
                                      + ". Install builds or downloads for that computer.")
        self.report_label.setVisible(cfg.report_file is not None)

    def isComplete(self) -> bool:
        return self.wizard() is not None and self.wiz().state.home is not None

    @Slot()
    def _on_choose_clicked(self) -> None:
        home = self.wiz().state.home
        start = str(home.path if home is not None and home.exists else Path.home())
        dlg = folder_dialog(self, "LM Studio's home folder", start)
        if dlg.exec() and dlg.selectedFiles():
            self.set_home(dlg.selectedFiles()[0])

    @Slot()
    def _on_load_clicked(self) -> None:
        pick_and_load_report(self)

    def load_report(self, path: Path) -> None:
        """Use a saved report: Install then recommends, and downloads or builds, for that computer."""
        if load_report_into(self, path):
            self.install_radio.setChecked(True)
            self._show_report()

    @Slot(int, bool)
    def _on_branch_toggled(self, bid: int, on: bool) -> None:
        if on:
            self.wiz().state.branch = (Branch.INSTALL, Branch.REPAIR, Branch.UNINSTALL)[bid]

    def choose(self, branch: Branch) -> None:
        {Branch.INSTALL: self.install_radio, Branch.REPAIR: self.repair_radio,
         Branch.UNINSTALL: self.uninstall_radio}[branch].setChecked(True)
