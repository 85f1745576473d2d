"""Method: patch-only / download / build, each with its cost; the cheapest safe one preselected."""

from __future__ import annotations

from PySide6.QtCore import Slot
from PySide6.QtWidgets import QButtonGroup, QRadioButton, QVBoxLayout, QWizard

from app.core.flow import PageId
from app.qt.errors import show_error
from app.qt.jobs import MethodOption, cheapest_safe, method_options
from app.qt.pages.base import Background, FlowPage, card, esc, para
from app.qt.text import format_duration, format_size


def option_html(opt: MethodOption) -> str:
    """The cost of one option in a few short lines."""
    if not opt.available:
        return f"<i>Not possible here: {esc(opt.note)}</i>"
    lines = [f"Time: {esc(format_duration(opt.time_seconds))}"]
    if opt.download_bytes is not None:
        lines.append(f"Download: {esc(format_size(opt.download_bytes))}")
    for p in opt.prereqs:
        if p.found:
            lines.append(f"✓ {esc(p.name)} found")
        else:
            lines.append(f"✗ {esc(p.name)} missing — {esc(p.how_to_get)}")
    if not opt.safe:
        lines.append("<b>⚠ Not safe for this computer</b>")
    if opt.note:
        lines.append(esc(opt.note))
    return "<br>".join(lines)


class MethodPage(FlowPage):
    page_id = PageId.METHOD

    def __init__(self) -> None:
        super().__init__()
        self.setTitle("How to get it")
        self.setSubTitle("The cheapest safe way is preselected. Next starts the job.")
        self.setCommitPage(True)
        self.setButtonText(QWizard.WizardButton.CommitButton, "&Start")
        self.lay = QVBoxLayout(self)
        self.intro = para(name="Chosen backend")
        self.lay.addWidget(self.intro)
        self.cards = QVBoxLayout()
        self.lay.addLayout(self.cards)
        self.lay.addStretch(1)
        self.group = QButtonGroup(self)
        self.group.idToggled.connect(self._on_option_toggled)
        self.radios: list[QRadioButton] = []
        self.options: list[MethodOption] = []
        self._bg: Background | None = None

    def initializePage(self) -> None:
        st = self.wiz().state
        label = getattr(st.candidate, "label", "") or getattr(st.candidate, "variant", "?")
        self.intro.setText(f"Backend: {label}\nChecking what each way costs (auditing installed packs, reading "
                           "the catalog, looking for build tools)…")
        self._clear()
        self.options = []
        st.method = None
        cfg = self.wiz().config
        self._bg = Background(self, lambda _ctx: method_options(st, cfg), self._on_options_finished,
                              self._on_options_failed).start()
        self.completeChanged.emit()

    def busy(self) -> bool:
        return self._bg is not None and not self._bg.done

    @Slot(object)
    def _on_options_failed(self, exc: BaseException) -> None:
        self.intro.setText("The costs could not be worked out.")
        show_error(self, exc, title="Method")

    def _clear(self) -> None:
        while self.cards.count():
            item = self.cards.takeAt(0)
            w = item.widget() if item is not None else None
            if w is not None:
                w.deleteLater()
        for r in self.radios:
            self.group.removeButton(r)
        self.radios = []

    @Slot(object)
    def _on_options_finished(self, options: list[MethodOption]) -> None:
        st = self.wiz().state
        label = getattr(st.candidate, "label", "") or getattr(st.candidate, "variant", "?")
        self.intro.setText(f"Backend: {label}")
        self.options = options
        st.method_options = list(self.options)
        self._clear()
        for i, opt in enumerate(self.options):
            radio = QRadioButton(opt.title)
            radio.setEnabled(opt.available)
            radio.setAccessibleName(f"Method {opt.method.value}")
            self.group.addButton(radio, i)
            self.radios.append(radio)
            self.cards.addWidget(card(radio, para(option_html(opt), rich=True, name=f"Cost of {opt.method.value}")))
        best = cheapest_safe(self.options)
        pick = best.method if best else None
        st.method = pick
        for i, opt in enumerate(self.options):
            if opt.method is pick:
                self.radios[i].setChecked(True)
        self.completeChanged.emit()

    def isComplete(self) -> bool:
        return self.wizard() is not None and self.wiz().state.method is not None

    def choose(self, method: object) -> None:
        for i, opt in enumerate(self.options):
            if opt.method is method:
                self.radios[i].setChecked(True)
                return
        raise KeyError(method)

    @Slot(int, bool)
    def _on_option_toggled(self, idx: int, on: bool) -> None:
        if on and 0 <= idx < len(self.options):
            self.wiz().state.method = self.options[idx].method
            self.completeChanged.emit()
