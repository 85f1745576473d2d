"""Recommendation: ranked cards, the recommended one preselected, reasons, warnings, why-not on demand."""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import Slot
from PySide6.QtWidgets import QCheckBox, QRadioButton, QVBoxLayout, QWidget

from app.core.flow import PageId
from app.core.recommend import recommend
from app.qt.errors import show_error
from app.qt.pages.base import FlowPage, card, check_first, clear_layout, esc, para, push, row
from app.qt.text import ALL_SET


def candidate_html(c: Any, *, recommended: bool) -> str:
    reasons = list(getattr(c, "reasons", ()) or ())
    warnings = list(getattr(c, "warnings", ()) or ())
    parts = []
    if reasons:
        parts.append("<br>".join("✓ " + esc(r) for r in reasons))
    if warnings:
        parts.append("<br>".join("<b>⚠ " + esc(w) + "</b>" for w in warnings))
    return "<br>".join(parts) if parts else ("Recommended for this computer." if recommended else "")


class RecommendationPage(FlowPage):
    page_id = PageId.RECOMMENDATION

    def __init__(self) -> None:
        super().__init__()
        self.summary = self.add(para(name="Recommendation summary"))
        self.official_box = QWidget()
        ol = QVBoxLayout(self.official_box)
        ol.setContentsMargins(0, 0, 0, 0)
        self.official_label = para(
            "You don't need this: LM Studio's official backend already runs on this computer. "
            "Installing another one only makes sense if you know why you want it.",
            name="You don't need this",
        )
        self.expert_check = QCheckBox("I know what I'm doing — &continue anyway")
        self.expert_check.toggled.connect(self._on_expert_toggled)
        ol.addWidget(self.official_label)
        ol.addWidget(self.expert_check)
        self.lay.addWidget(self.official_box)
        self.no_lmstudio = para(name="LM Studio not found")
        self.no_lmstudio.setVisible(False)
        self.lay.addWidget(self.no_lmstudio)

        self.cards_widget = QWidget()
        self.cards_layout = QVBoxLayout(self.cards_widget)
        self.cards_layout.setContentsMargins(0, 0, 0, 0)
        self.lay.addWidget(self.cards_widget)
        self.why_not_button = push("&Why not the others?", checkable=True)
        self.why_not_text = para(rich=True, name="Why not the others")
        self.why_not_text.setVisible(False)
        self.why_not_button.toggled.connect(self._on_why_not_toggled)
        self.lay.addLayout(row(self.why_not_button, None))
        self.lay.addWidget(self.why_not_text)
        self.lay.addStretch(1)
        self.group = self.radio_group(self._on_candidate_toggled)
        self.radios: list[QRadioButton] = []
        self._candidates: list[Any] = []

    def initializePage(self) -> None:
        st = self.wiz().state
        if st.report is None:
            return
        try:
            st.recommendation = recommend(st.report)
        except Exception as exc:
            st.recommendation = None
            self.summary.setText("No recommendation could be made.")
            show_error(self, exc, title="Recommendation failed")
            self._fill([])
            return
        rec = st.recommendation
        self.summary.setText(str(getattr(rec, "summary", "")))
        self.official_box.setVisible(st.official_works)
        # "Continue anyway" only makes sense when there is something to continue with.
        self.expert_check.setVisible(st.has_candidate)
        self.expert_check.setChecked(st.expert_continue)
        self.no_lmstudio.setVisible(not st.has_lmstudio)
        self.no_lmstudio.setText(
            "LM Studio was not found, so nothing can be installed here: Next ends with how to get it. "
            "Back on the hardware page, Export report… saves this computer's report to build for it elsewhere.")
        self._fill(list(getattr(rec, "candidates", ()) or ()))
        rejected = list(getattr(rec, "rejected", ()) or ())
        self.why_not_text.setText(
            "<br>".join(f"<b>{esc(str(r.label or r.variant))}</b>: {esc(str(r.why_not))}" for r in rejected)
            or "No other variants were considered."
        )
        self.completeChanged.emit()

    def _fill(self, candidates: list[Any]) -> None:
        for r in self.radios:
            self.group.removeButton(r)
        clear_layout(self.cards_layout)
        self.radios = []
        self._candidates = candidates
        st = self.wiz().state
        recommended = getattr(st.recommendation, "recommended", None)
        rec_variant = getattr(recommended, "variant", recommended)
        for i, c in enumerate(candidates):
            is_rec = c.variant == rec_variant or (rec_variant is None and i == 0)
            label = str(getattr(c, "label", "") or c.variant)
            radio = QRadioButton(f"{label}{'  (recommended)' if is_rec else ''}")
            radio.setAccessibleName(f"Backend: {label}")
            detail = para(candidate_html(c, recommended=is_rec), rich=True, name=f"Why {label}")
            self.cards_layout.addWidget(card(radio, detail, name=f"Card: {label}"))
            self.group.addButton(radio, i)
            self.radios.append(radio)
        if not candidates:
            self.cards_layout.addWidget(para(ALL_SET if st.official_works
                                             else "Nothing this tool can install fits this computer.",
                                             name="No backend to install"))
        prev = st.candidate
        pick = next((i for i, c in enumerate(candidates) if prev is not None and c.variant == prev.variant), None)
        if pick is None:
            pick = next((i for i, c in enumerate(candidates) if c.variant == rec_variant), 0)
        if candidates:
            self.radios[pick].setChecked(True)
            st.candidate = candidates[pick]
        # Cards are made after the page's other widgets: put them back in reading order for Tab.
        chain = [w for w in (self.expert_check, *self.radios) if w is not None]
        for a, b in zip(chain, [*chain[1:], self.why_not_button], strict=True):
            self.setTabOrder(a, b)

    def isComplete(self) -> bool:
        st = self.wiz().state if self.wizard() else None
        return st is not None and st.recommendation is not None

    def focus_target(self) -> QWidget | None:
        checked = self.group.checkedButton()
        if checked is not None:
            return checked
        return self.expert_check if self.expert_check.isVisible() else None

    def select_variant(self, variant: str) -> None:
        check_first(self.radios, self._candidates, lambda c: c.variant == variant)

    @Slot(int, bool)
    def _on_candidate_toggled(self, idx: int, on: bool) -> None:
        if on and 0 <= idx < len(self._candidates):
            self.wiz().state.candidate = self._candidates[idx]

    @Slot(bool)
    def _on_expert_toggled(self, on: bool) -> None:
        self.wiz().state.expert_continue = on
        self.completeChanged.emit()

    @Slot(bool)
    def _on_why_not_toggled(self, on: bool) -> None:
        self.why_not_text.setVisible(on)
