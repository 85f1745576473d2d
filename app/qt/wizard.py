"""The wizard: pages registered by id, rich state in one dataclass, a clean close while a job runs."""

from __future__ import annotations

import logging
from typing import Any

from PySide6.QtCore import QEventLoop, QTimer, Slot
from PySide6.QtGui import QPixmap
from PySide6.QtWidgets import QApplication, QMessageBox, QWidget, QWizard

from app import APP_NAME
from app.core.flow import PageId
from app.qt.icon import app_icon, draw_app_icon
from app.qt.pages.finish import FinishPage
from app.qt.pages.hardware import HardwarePage
from app.qt.pages.method import MethodPage
from app.qt.pages.recommend import RecommendationPage
from app.qt.pages.repair import RepairPage
from app.qt.pages.uninstall import UninstallPage
from app.qt.pages.verify import VerifyPage
from app.qt.pages.welcome import WelcomePage
from app.qt.pages.work import WorkPage
from app.qt.state import WizardConfig, WizardState
from app.qt.text import choice_line
from app.qt.worker import Job

log = logging.getLogger(__name__)

# Fits 1366x768 at 150 % (911x512 logical pixels, less a taskbar and the title bar): every page scrolls, so
# this is the only floor. The preferred size is used where the screen has room.
MINIMUM_SIZE = (600, 400)
PREFERRED_SIZE = (860, 640)
BUTTON_TEXTS = {
    QWizard.WizardButton.BackButton: "< &Back",
    QWizard.WizardButton.NextButton: "&Next >",
    QWizard.WizardButton.FinishButton: "&Finish",
    QWizard.WizardButton.CancelButton: "Cancel",  # Esc; no letter, so it never steals a page's mnemonic
}


class UnlockedWizard(QWizard):
    def __init__(self, config: WizardConfig | None = None, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.config = config or WizardConfig()
        self.state = WizardState()
        self.closing = False
        self.setWindowTitle(APP_NAME)
        self.setWindowIcon(app_icon())
        self.setPixmap(QWizard.WizardPixmap.LogoPixmap, QPixmap.fromImage(draw_app_icon(48)))
        self.setWizardStyle(QWizard.WizardStyle.ModernStyle)
        self.setOption(QWizard.WizardOption.NoBackButtonOnStartPage, True)
        self.setOption(QWizard.WizardOption.NoCancelButtonOnLastPage, True)
        self.setMinimumSize(*MINIMUM_SIZE)
        for which, text in BUTTON_TEXTS.items():
            self.setButtonText(which, text)
        self.pages: dict[PageId, Any] = {
            PageId.WELCOME: WelcomePage(),
            PageId.HARDWARE: HardwarePage(),
            PageId.RECOMMENDATION: RecommendationPage(),
            PageId.METHOD: MethodPage(),
            PageId.WORK: WorkPage(),
            PageId.VERIFY: VerifyPage(),
            PageId.FINISH: FinishPage(),
            PageId.REPAIR: RepairPage(),
            PageId.UNINSTALL: UninstallPage(),
        }
        for pid, page in self.pages.items():
            self.setPage(int(pid), page)
        self.setStartId(int(PageId.WELCOME))
        self.currentIdChanged.connect(self._on_current_id_changed)
        self.fit_to_screen()

    def fit_to_screen(self) -> None:
        """The preferred size, or the screen's free area where that is smaller (never below the minimum)."""
        screen = self.screen() or QApplication.primaryScreen()
        w, h = PREFERRED_SIZE
        if screen is not None:
            avail = screen.availableGeometry()
            # leave room for the window frame and title bar
            w, h = min(w, avail.width() - 16), min(h, avail.height() - 40)
        self.resize(max(w, MINIMUM_SIZE[0]), max(h, MINIMUM_SIZE[1]))

    @Slot(int)
    def _on_current_id_changed(self, pid: int) -> None:
        page = self.pages.get(PageId(pid)) if pid in set(PageId) else None
        if page is None:
            return
        log.debug("page: %s", PageId(pid).name)  # `lms-unlocked -v` shows the way through the wizard
        if pid not in (int(PageId.WELCOME), int(PageId.HARDWARE)):
            page.show_choice(choice_line(self.state))
        else:
            page.show_choice("")
        # After QWizard's own focus choice (it may pick a hidden widget or a page button): the page's.
        QTimer.singleShot(0, self._focus_page)

    @Slot()
    def _focus_page(self) -> None:
        """Put the focus where the current page wants it (its focus_target), else on the first usable button."""
        page = self.pages.get(self.current_page_id()) if self.currentId() in set(PageId) else None
        if page is None:
            return
        target = page.focus_target()
        if target is not None and target.isVisible() and target.isEnabled():
            target.setFocus()
            return
        # Never leave the focus on a widget of the page just left (hidden now): the first button that can act.
        for which in (QWizard.WizardButton.CommitButton, QWizard.WizardButton.NextButton,
                      QWizard.WizardButton.FinishButton, QWizard.WizardButton.BackButton,
                      QWizard.WizardButton.CancelButton):
            b = self.button(which)
            if b.isVisible() and b.isEnabled():
                b.setFocus()
                return

    def focus_page_later(self) -> None:
        """A page whose content arrived late (background call) asks for its focus target again."""
        QTimer.singleShot(0, self._focus_page)

    def page_of(self, pid: PageId) -> Any:
        return self.pages[pid]

    def current_page_id(self) -> PageId:
        return PageId(self.currentId())

    def make_job(self) -> Job:
        """The Work page's job for the current state (tests inject a real child-process job)."""
        if self.config.job_factory is not None:
            return self.config.job_factory(self.state)
        from app.qt.jobs import install_job

        return install_job(self.state, self.config)

    # -- closing while a job runs -----------------------------------------------------------------

    def _running_work(self) -> WorkPage | None:
        work: WorkPage = self.pages[PageId.WORK]
        return work if work.is_running() else None

    def ask_cancel(self) -> bool:
        box = QMessageBox(QMessageBox.Icon.Question, "Stop the job?",
                          "A job is still running. Stop it (and every program it started) and close?",
                          QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No, self)
        box.setDefaultButton(QMessageBox.StandardButton.No)
        return box.exec() == QMessageBox.StandardButton.Yes

    def cancel_and_wait(self, timeout_ms: int = 30000) -> bool:
        """Cancel the running job and keep the GUI alive until its thread has ended."""
        work = self._running_work()
        if work is None or work.controller is None:
            return True
        ctl = work.controller
        loop = QEventLoop()
        ctl.worker.failed.connect(loop.quit)
        ctl.worker.finished.connect(loop.quit)
        QTimer.singleShot(timeout_ms, loop.quit)
        work.cancel_job()
        if ctl.is_running():
            loop.exec()
        return ctl.wait(5000)

    def _may_close(self) -> bool:
        if self._running_work() is not None:
            if not self.ask_cancel():
                return False
            self.closing = True
            if not self.cancel_and_wait():
                return False
        self.closing = True
        self.wait_background()
        return True

    def wait_background(self, timeout_ms: int = 30000) -> None:
        """Let short background calls (probe, costs, doctor) end, so no QThread dies while running."""
        from app.qt.pages.base import Background

        for bg in self.findChildren(Background):
            bg.controller.wait(timeout_ms)

    # QDialog.closeEvent (the window's X) calls reject() too, and keeps the window if it stays visible.
    @Slot()
    def reject(self) -> None:
        if self._may_close():
            super().reject()
