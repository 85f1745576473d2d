"""Recommendation: ranked cards, the recommended one preselected, reasons, warnings, why-not on demand."""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import Slot
from PySide6.QtWidgets import (
    QButtonGroup,
    QCheckBox,
    QHBoxLayout,
    QPushButton,
    QRadioButton,
    QScrollArea,
    QVBoxLayout,
    QWidget,
)

from app.core.flow import PageId
from app.core.recommend import recommend
from app.qt.errors import show_error
from app.qt.pages.base import FlowPage, card, esc, para


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
        self.setTitle("Recommended backend")
        self.setSubTitle("Ranked for this computer; the first one is preselected.")
        lay = QVBoxLayout(self)
        self.summary = para(name="Recommendation summary")
        lay.addWidget(self.summary)
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
        lay.addWidget(self.official_box)

        self.cards_widget = QWidget()
        self.cards_layout = QVBoxLayout(self.cards_widget)
        self.cards_layout.setContentsMargins(0, 0, 0, 0)
        scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setWidget(self.cards_widget)
        scroll.setFrameShape(QScrollArea.Shape.NoFrame)
        lay.addWidget(scroll, 1)
        self.why_not_button = QPushButton("Why &not the others?")
        self.why_not_button.setCheckable(True)
        self.why_not_text = para(rich=True, name="Why not the others")
        self.why_not_text.setVisible(False)
        self.why_not_button.toggled.connect(self._on_why_not_toggled)
        row = QHBoxLayout()
        row.addWidget(self.why_not_button)
        row.addStretch(1)
        lay.addLayout(row)
        lay.addWidget(self.why_not_text)
        self.group = QButtonGroup(self)
        self.group.idToggled.connect(self._on_candidate_toggled)
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
        self._fill(list(getattr(rec, "candidates", ()) or ()))
        rejected = list(getattr(rec, "rejected", ()) or ())
        self.why_not_text.setText(
            "<br>".join(f"<b>{esc(str(r.variant))}</b>: {esc(str(r.why_not))}" for r in rejected)
            or "No other variants were considered."
        )
        self.completeChanged.emit()

    def _fill(self, candidates: list[Any]) -> None:
        for r in self.radios:
            self.group.removeButton(r)
        while self.cards_layout.count():
            item = self.cards_layout.takeAt(0)
            w = item.widget() if item is not None else None
            if w is not None:
                w.deleteLater()
        self.radios = []
        self._candidates = candidates
        st = self.wiz().state
        recommended = getattr(st.recommendation, "recommended", None)
        rec_variant = getattr(recommended, "variant", recommended)
        for i, c in enumerate(candidates):
            is_rec = c.variant == rec_variant or (rec_variant is None and i == 0)
            label = str(getattr(c, "label", "") or c.variant)
            radio = QRadioButton(f"{label}{'  (recommended)' if is_rec else ''}")
            radio.setAccessibleName(f"Backend {c.variant}")
            detail = para(candidate_html(c, recommended=is_rec), rich=True, name=f"Why {c.variant}")
            self.cards_layout.addWidget(card(radio, detail, name=f"Card {c.variant}"))
            self.group.addButton(radio, i)
            self.radios.append(radio)
        self.cards_layout.addStretch(1)
        if not candidates:
            self.cards_layout.insertWidget(0, para("Nothing this tool can install fits this computer."))
        prev = st.candidate
        pick = next((i for i, c in enumerate(candidates) if prev is not None and c.variant == prev.variant), None)
        if pick is None:
            pick = next((i for i, c in enumerate(candidates) if c.variant == rec_variant), 0)
        if candidates:
            self.radios[pick].setChecked(True)
            st.candidate = candidates[pick]

    def isComplete(self) -> bool:
        st = self.wiz().state if self.wizard() else None
        return st is not None and st.recommendation is not None

    def select_variant(self, variant: str) -> None:
        for i, c in enumerate(self._candidates):
            if c.variant == variant:
                self.radios[i].setChecked(True)
                return
        raise KeyError(variant)

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
