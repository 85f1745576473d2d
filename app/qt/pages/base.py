"""What every page shares: nextId() through the one pure flow function, and small widget helpers."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from PySide6.QtCore import QObject, Qt, Slot
from PySide6.QtWidgets import QFrame, QLabel, QVBoxLayout, QWidget, QWizardPage

from app.core.flow import PageId, next_page
from app.qt.worker import Job, JobController

if TYPE_CHECKING:
    from app.qt.wizard import UnlockedWizard


class FlowPage(QWizardPage):
    page_id: PageId = PageId.END

    def wiz(self) -> UnlockedWizard:
        w = self.wizard()
        assert w is not None
        return w  # type: ignore[return-value]

    def nextId(self) -> int:
        w = self.wizard()
        if w is None:
            return int(PageId.END)
        return int(next_page(self.wiz().state.flow(self.page_id)))


def para(text: str = "", *, rich: bool = False, name: str = "") -> QLabel:
    """A word-wrapped paragraph label."""
    lab = QLabel(text)
    lab.setWordWrap(True)
    lab.setTextFormat(Qt.TextFormat.RichText if rich else Qt.TextFormat.PlainText)
    lab.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
    if name:
        lab.setAccessibleName(name)
    return lab


def card(*widgets: QWidget, name: str = "") -> QFrame:
    """A bordered box that groups widgets (a recommendation card, a method option)."""
    f = QFrame()
    f.setFrameShape(QFrame.Shape.StyledPanel)
    f.setObjectName("card")
    lay = QVBoxLayout(f)
    lay.setContentsMargins(10, 8, 10, 8)
    for w in widgets:
        lay.addWidget(w)
    if name:
        f.setAccessibleName(name)
    return f


def esc(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


class Background(QObject):
    """A one-shot core call off the GUI thread (a probe, a doctor run); results come back to bound slots.

    The owner passes bound methods; they are connected with Qt's automatic (queued) connection, and the
    owner keeps this object alive while it runs.
    """

    def __init__(self, parent: QObject, job: Job, on_ok: Any, on_err: Any) -> None:
        super().__init__(parent)
        self.controller = JobController(job, parent=self)
        # _on_done first: the owner's slot then already sees done == True (e.g. in isComplete()).
        self.controller.worker.finished.connect(self._on_done)
        self.controller.worker.failed.connect(self._on_done)
        self.controller.worker.finished.connect(on_ok)
        self.controller.worker.failed.connect(on_err)
        self.done = False

    def start(self) -> Background:
        self.controller.start()
        return self

    @Slot(object)
    def _on_done(self, _obj: object) -> None:
        self.done = True
        self.controller.wait(5000)
