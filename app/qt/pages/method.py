"""Method: patch-only / download / build, each with its cost; the cheapest safe one preselected."""

from __future__ import annotations

from typing import TYPE_CHECKING

from PySide6.QtCore import Slot
from PySide6.QtWidgets import QRadioButton, QVBoxLayout, QWidget, QWizard

from app.core.flow import PageId
from app.qt.errors import show_error
from app.qt.pages.base import Background, FlowPage, card, check_first, clear_layout, esc, para
from app.qt.text import choice_line, format_duration, format_size

if TYPE_CHECKING:
    from app.qt.jobs import MethodOption


def _method_options(state: object, config: object) -> list[MethodOption]:
    """The costs, asked in the background thread; app.qt.jobs (and the download, archive and build code under it,
    ~0.5 s of imports) is loaded there, not while the window opens (bench/gui_start.py)."""
    from app.qt.jobs import method_options

    return method_options(state, config)  # type: ignore[arg-type]


def option_html(opt: MethodOption) -> str:
    """The cost of one option in a few short lines."""
    if not opt.available:
        text = f"<i>Not possible here: {esc(opt.note)}</i>"
        return text + (f"<br>{esc(opt.needs)}" if opt.needs else "")
    lines = [f"Time: {esc(opt.time_range or format_duration(opt.time_seconds))}"]
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
    if opt.needs:
        lines.append(esc(opt.needs))
    return "<br>".join(lines)


class MethodPage(FlowPage):
    page_id = PageId.METHOD

    def __init__(self) -> None:
        super().__init__()
        # A commit page while its job runs or has succeeded (no Back into a running job); after a failure or a
        # cancel the Work page lifts it, so Back leads here to pick another way (and Start again).
        self.setCommitPage(True)
        self.setButtonText(QWizard.WizardButton.CommitButton, "&Start")
        self.setButtonText(QWizard.WizardButton.NextButton, "&Start")
        self.intro = para(name="Chosen backend")
        self.lay.addWidget(self.intro)
        self.cards = QVBoxLayout()
        self.lay.addLayout(self.cards)
        self.none_left = para(name="No way left")
        self.none_left.setVisible(False)
        self.lay.addWidget(self.none_left)
        self.lay.addStretch(1)
        self.group = self.radio_group(self._on_option_toggled)
        self.radios: list[QRadioButton] = []
        self.options: list[MethodOption] = []
        self._bg: Background | None = None

    def initializePage(self) -> None:
        st = self.wiz().state
        label = getattr(st.candidate, "label", "") or getattr(st.candidate, "variant", "?")
        self.intro.setVisible(True)
        self.intro.setText(f"Backend: {label}\nChecking what each way costs (auditing installed packs, reading "
                           "the catalog, looking for build tools)…")
        self._clear()
        self.options = []
        st.method = None
        cfg = self.wiz().config
        self._bg = Background(self, lambda _ctx: _method_options(st, cfg), self._on_options_finished,
                              self._on_options_failed).start()
        self.completeChanged.emit()

    def busy(self) -> bool:
        return self._bg is not None and not self._bg.done

    @Slot(object)
    def _on_options_failed(self, exc: BaseException) -> None:
        self.intro.setText("The costs could not be worked out.")
        show_error(self, exc, title="Method")

    def _clear(self) -> None:
        clear_layout(self.cards)
        for r in self.radios:
            self.group.removeButton(r)
        self.radios = []

    @Slot(object)
    def _on_options_finished(self, options: list[MethodOption]) -> None:
        st = self.wiz().state
        self.intro.setText("")  # the choice line above the page names the backend
        self.intro.setVisible(False)
        self.options = options
        st.method_options = list(self.options)
        self._clear()
        for i, opt in enumerate(self.options):
            radio = QRadioButton(opt.title)
            radio.setEnabled(opt.available)
            radio.setAccessibleName(opt.title.replace("&", ""))
            self.group.addButton(radio, i)
            self.radios.append(radio)
            self.cards.addWidget(card(radio, para(option_html(opt), rich=True,
                                                  name=f"Cost: {opt.title.replace('&', '')}")))
        from app.qt.jobs import cheapest_safe  # loaded by now (the background call imported it)

        best = cheapest_safe(self.options)
        pick = best.method if best else None
        st.method = pick
        for i, opt in enumerate(self.options):
            if opt.method is pick:
                self.radios[i].setChecked(True)
        # Nothing possible: say plainly what the cheapest remaining way (a build) needs, not just "not possible".
        build = next((o for o in self.options if o.method.value == "build"), None)
        self.none_left.setVisible(pick is None)
        self.none_left.setText(
            "None of the ways is possible on this computer yet. " + (build.needs if build and build.needs else "")
            + " Install what is missing, then press Back and Next to check again.")
        self.completeChanged.emit()
        if self.wiz().currentPage() is self:
            self.wiz().focus_page_later()

    def focus_target(self) -> QWidget | None:
        return self.group.checkedButton()

    def isComplete(self) -> bool:
        return self.wizard() is not None and self.wiz().state.method is not None

    def choose(self, method: object) -> None:
        check_first(self.radios, self.options, lambda o: o.method is method)

    @Slot(int, bool)
    def _on_option_toggled(self, idx: int, on: bool) -> None:
        if on and 0 <= idx < len(self.options):
            self.wiz().state.method = self.options[idx].method
            self.show_choice(choice_line(self.wiz().state))
            self.completeChanged.emit()
