"""Welcome: what the tool does, where LM Studio is, and the three branches."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import Slot
from PySide6.QtWidgets import QButtonGroup, QFileDialog, QGroupBox, QHBoxLayout, QPushButton, QRadioButton, QVBoxLayout

from app.core.flow import Branch, PageId
from app.core.lmstudio import install
from app.core.lmstudio.home import resolve_home
from app.qt.errors import show_error
from app.qt.pages.base import FlowPage, para
from app.qt.text import INTRO

HOW_FOUND = {
    "override": "the folder you chose",
    "pointer": "LM Studio's pointer file (~/.lmstudio-home-pointer)",
    "legacy": "the older location (~/.cache/lm-studio)",
    "default": "the standard location (~/.lmstudio)",
}


class WelcomePage(FlowPage):
    page_id = PageId.WELCOME

    def __init__(self) -> None:
        super().__init__()
        self.setTitle("Welcome to LM Studio Unlocked")
        lay = QVBoxLayout(self)
        lay.addWidget(para(INTRO, name="What this tool does"))

        box = QGroupBox("LM Studio")
        bl = QVBoxLayout(box)
        self.home_label = para(name="Where LM Studio was found")
        row = QHBoxLayout()
        self.choose_button = QPushButton("&Choose LM Studio folder…")
        self.choose_button.setToolTip("Point to LM Studio's home folder (the one that holds extensions/backends)")
        self.choose_button.clicked.connect(self._on_choose_clicked)
        row.addWidget(self.home_label, 1)
        row.addWidget(self.choose_button)
        bl.addLayout(row)
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
        self.setTabOrder(self.choose_button, self.install_radio)
        self.recovered: list[str] = []

    def initializePage(self) -> None:
        wiz = self.wiz()
        if wiz.state.home is None:
            self.set_home(wiz.config.home)
        else:
            self._show_home()

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
        home = self.wiz().state.home
        if home is None:
            self.home_label.setText("LM Studio was not found. Choose its folder.")
        else:
            how = HOW_FOUND.get(home.how_found, home.how_found)
            text = f"LM Studio's folder: {home.path}\nFound through {how}."
            if home.problem:
                text += f"\n⚠ {home.problem}"
            for msg in self.recovered:
                text += f"\nRecovered an interrupted change: {msg}"
            self.home_label.setText(text)
        self.completeChanged.emit()

    def isComplete(self) -> bool:
        home = self.wiz().state.home if self.wizard() else None
        return bool(home is not None and home.exists)

    @Slot()
    def _on_choose_clicked(self) -> None:
        home = self.wiz().state.home
        start = str(home.path) if home is not None else str(Path.home())
        d = QFileDialog.getExistingDirectory(self, "LM Studio's home folder", start)
        if d:
            self.set_home(d)

    @Slot(int, bool)
    def _on_branch_toggled(self, bid: int, on: bool) -> None:
        if on:
            self.wiz().state.branch = (Branch.INSTALL, Branch.REPAIR, Branch.UNINSTALL)[bid]

    def choose(self, branch: Branch) -> None:
        {Branch.INSTALL: self.install_radio, Branch.REPAIR: self.repair_radio,
         Branch.UNINSTALL: self.uninstall_radio}[branch].setChecked(True)
