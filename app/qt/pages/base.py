"""What every page shares: one skeleton (title, the current choice, a scrollable body), nextId() through the one
pure flow function, and small widget helpers."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from PySide6.QtCore import QObject, Qt, QUrl, Slot
from PySide6.QtGui import QDesktopServices
from PySide6.QtWidgets import (
    QAbstractButton,
    QButtonGroup,
    QFrame,
    QHBoxLayout,
    QLabel,
    QLayout,
    QMessageBox,
    QPushButton,
    QScrollArea,
    QVBoxLayout,
    QWidget,
    QWizardPage,
)

from app.core.flow import PageId, next_page
from app.qt.worker import Job, JobController

if TYPE_CHECKING:
    from app.qt.wizard import UnlockedWizard


W = TypeVar("W", bound=QWidget)

# Each page's title and subtitle (the Work page changes its own while a job runs, fails or is cancelled).
PAGE_TEXT: dict[PageId, tuple[str, str]] = {
    PageId.WELCOME: ("Welcome to LM Studio Unlocked", ""),
    PageId.HARDWARE: ("Your hardware", "What this computer can run, in plain words."),
    PageId.RECOMMENDATION: ("Recommended backend", "Ranked for this computer; the first one is preselected."),
    PageId.METHOD: ("How to get it", "The cheapest safe way is preselected. Start begins the job."),
    PageId.WORK: ("Working", "You can keep using the computer; a build can take a while."),
    PageId.VERIFY: ("Installed — checks", "What was checked before the backend went into LM Studio."),
    PageId.FINISH: ("What to do now", ""),
    PageId.REPAIR: ("Repair", "Why LM Studio does not list or load a backend — checked in order, with this "
                    "computer's hardware."),
    PageId.UNINSTALL: ("Uninstall", "Only backends this tool installed are listed; LM Studio's own are never "
                       "touched."),
}


class FlowPage(QWizardPage):
    """A page: its PAGE_TEXT title and subtitle, a one-line "your choice so far" (Raspberry Pi Imager's
    always-visible current choice), and `self.lay`, the layout of a frameless scroll area, so a page never
    pushes the wizard's buttons off a small screen (1366x768 at 150 %)."""

    page_id: PageId = PageId.END

    def __init__(self) -> None:
        super().__init__()
        title, subtitle = PAGE_TEXT.get(self.page_id, ("", ""))
        self.setTitle(title)
        if subtitle:
            self.setSubTitle(subtitle)
        outer = QVBoxLayout(self)
        outer.setContentsMargins(0, 0, 0, 0)
        self.choice_label = para(name="Your choice so far")
        self.choice_label.setObjectName("choice")
        self.choice_label.setVisible(False)
        outer.addWidget(self.choice_label)
        self.scroller = QScrollArea()
        self.scroller.setWidgetResizable(True)
        self.scroller.setFrameShape(QFrame.Shape.NoFrame)
        # Not a Tab stop of its own (its children are); QScrollArea scrolls the focused child into view.
        self.scroller.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        self.scroller.setAccessibleName(f"{title} page")
        self.content = QWidget()
        self.lay = QVBoxLayout(self.content)
        self.lay.setContentsMargins(0, 0, 4, 0)
        self.scroller.setWidget(self.content)
        outer.addWidget(self.scroller, 1)

    def wiz(self) -> UnlockedWizard:
        w = self.wizard()
        assert w is not None
        return w  # type: ignore[return-value]

    def nextId(self) -> int:
        w = self.wizard()
        if w is None:
            return int(PageId.END)
        return int(next_page(self.wiz().state.flow(self.page_id)))

    def add(self, w: W) -> W:
        """Append a widget to the page's body; returns it."""
        self.lay.addWidget(w)
        return w

    def radio_group(self, on_toggled: Callable[[int, bool], None]) -> QButtonGroup:
        """One exclusive choice (cards with a radio button each), reporting (index, checked)."""
        group = QButtonGroup(self)
        group.idToggled.connect(on_toggled)
        return group

    def focus_target(self) -> QWidget | None:
        """The widget that should have the keyboard focus when the page is shown (None: the Next button)."""
        return None

    def show_choice(self, text: str) -> None:
        self.choice_label.setText(text)
        self.choice_label.setVisible(bool(text))


def para(text: str = "", *, rich: bool = False, name: str = "", links: bool = False) -> QLabel:
    """A word-wrapped paragraph label; with `links`, its file:// and https:// links open with a click or Enter."""
    lab = QLabel()
    lab.setWordWrap(True)
    lab.setTextFormat(Qt.TextFormat.RichText if rich or links else Qt.TextFormat.PlainText)
    lab.setOpenExternalLinks(links)
    set_html(lab, text)
    if name:
        lab.setAccessibleName(name)
    return lab


def set_html(lab: QLabel, text: str) -> None:
    """Set a label's text; only a label that shows a link is a Tab stop (Enter opens the link)."""
    lab.setText(text)
    has_link = lab.openExternalLinks() and "<a " in text
    lab.setTextInteractionFlags(Qt.TextInteractionFlag.TextBrowserInteraction if has_link
                                else Qt.TextInteractionFlag.TextSelectableByMouse)


def push(text: str, on: Callable[[], None] | None = None, *, tip: str = "", checkable: bool = False) -> QPushButton:
    """A page button. Never an auto-default button: Enter on a page always means the wizard's Next."""
    b = QPushButton(text)
    b.setAutoDefault(False)
    b.setDefault(False)
    b.setCheckable(checkable)
    if tip:
        b.setToolTip(tip)
    if on is not None:
        b.clicked.connect(on)
    return b


def row(*items: QWidget | QLayout | None) -> QHBoxLayout:
    """A horizontal row; None is a stretch."""
    r = QHBoxLayout()
    for it in items:
        if it is None:
            r.addStretch(1)
        elif isinstance(it, QLayout):
            r.addLayout(it)
        else:
            r.addWidget(it)
    return r


def card(*widgets: QWidget | QLayout, name: str = "") -> QFrame:
    """A bordered box that groups widgets (a recommendation card, a method option, a finding)."""
    f = QFrame()
    f.setFrameShape(QFrame.Shape.StyledPanel)
    f.setObjectName("card")
    lay = QVBoxLayout(f)
    lay.setContentsMargins(10, 8, 10, 8)
    for w in widgets:
        if isinstance(w, QLayout):
            lay.addLayout(w)
        else:
            lay.addWidget(w)
    if name:
        f.setAccessibleName(name)
    return f


def clear_layout(lay: QLayout) -> None:
    """Remove and delete everything in `lay` (cards rebuilt on each visit)."""
    while lay.count():
        item = lay.takeAt(0)
        w = item.widget() if item is not None else None
        if w is not None:
            w.hide()
            w.deleteLater()
        elif item is not None and (sub := item.layout()) is not None:
            clear_layout(sub)


def confirm(parent: QWidget, title: str, text: str, *, yes: str, no: str = "&Keep it as it is") -> bool:
    """Ask before a step that changes or removes something; the safe answer is the default."""
    box = QMessageBox(QMessageBox.Icon.Question, title, text, QMessageBox.StandardButton.NoButton, parent)
    yes_button = box.addButton(yes, QMessageBox.ButtonRole.AcceptRole)
    no_button = box.addButton(no, QMessageBox.ButtonRole.RejectRole)
    box.setDefaultButton(no_button)
    box.setEscapeButton(no_button)
    box.exec()
    return box.clickedButton() is yes_button


def check_first(radios: Sequence[QAbstractButton], items: Sequence[Any], match: Callable[[Any], bool]) -> None:
    """Check the radio button of the first item that matches (KeyError if none does)."""
    for radio, item in zip(radios, items, strict=False):
        if match(item):
            radio.setChecked(True)
            return
    raise KeyError("no such choice")


def esc(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def path_link(path: Path | str, text: str = "") -> str:
    """A clickable link to a file or folder (opens in the file manager)."""
    url = QUrl.fromLocalFile(str(path)).toString()
    return f'<a href="{esc(url)}">{esc(text or str(path))}</a>'


def open_folder(path: Path | str) -> bool:
    """Open a folder (or the folder holding a file) in the system's file manager."""
    p = Path(path)
    target = p if p.is_dir() else p.parent
    return bool(QDesktopServices.openUrl(QUrl.fromLocalFile(str(target))))


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
