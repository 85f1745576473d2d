"""Finish: what to do now, and where logs and backups are."""

from __future__ import annotations

from typing import Any

from PySide6.QtWidgets import QVBoxLayout

from app.core.flow import Branch, PageId
from app.core.lmstudio import journal, prefs
from app.core.paths import user_log_dir
from app.qt.pages.base import FlowPage, para
from app.qt.text import BATCH_SIZE_TIP, RESTART_STEPS, WHERE_TO_PICK


def needs_batch_tip(state: Any) -> bool:
    """The evaluation-batch-size tip applies to Vulkan and CUDA-on-Kepler variants (docs/lmstudio-contract.md §16.2)."""
    cand = state.candidate
    variant = str(getattr(cand, "variant", "") or "")
    warnings = " ".join(getattr(cand, "warnings", ()) or ())
    return "vulkan" in variant or "batch" in warnings.lower() or any(
        (g.cc_tuple() or (9, 9)) < (5, 0) for g in (state.report.nvidia_gpus if state.report else ())
    )


def auto_update_warnings(state: Any) -> list[str]:
    """LM Studio's auto-update / auto-delete toggles can deselect or remove the backend.

    docs/lmstudio-contract.md §14.
    """
    if state.home is None:
        return []
    settings = prefs.read_settings(state.home)
    out = []
    if settings.auto_update_extension_packs:
        out.append("LM Studio's “Auto-update selected Runtime Extension Packs” is on: an update can move the "
                   "selection back to an official pack. Turn it off in Mission Control → Runtime (the Repair "
                   "branch of this wizard can do it for you).")
    if settings.auto_delete_extension_packs:
        out.append("LM Studio's “Auto-delete least recently used Runtime Extension Packs” is on: it can delete "
                   "this backend. Turn it off in Mission Control → Runtime.")
    return out


def finish_paragraphs(state: Any) -> list[str]:
    """The Finish page's text for this run, as paragraphs (pure; unit-tested)."""
    paras: list[str] = []
    if state.branch is Branch.INSTALL:
        if not state.has_candidate:
            paras.append("Nothing was installed: none of the backends this tool can provide fits this computer.")
        elif state.official_works and not state.expert_continue:
            paras.append(
                "Nothing was installed: LM Studio's official backend already runs on this computer. "
                "Keep using it; you can run this wizard again any time."
            )
        elif state.work_succeeded:
            ident = getattr(state.outcome, "ident", "")
            paras.append(f"The backend {ident} is installed." if ident else "The job finished.")
            paras.append(RESTART_STEPS)
            if state.selected_in_lmstudio:
                paras.append("It is selected for GGUF models; after the restart LM Studio uses it.")
            else:
                paras.append(WHERE_TO_PICK)
            if needs_batch_tip(state):
                paras.append(BATCH_SIZE_TIP)
            paras += auto_update_warnings(state)
    elif state.branch is Branch.REPAIR:
        paras.append(state.repair_summary or "No repair was made.")
        paras.append(RESTART_STEPS)
    else:
        paras.append(state.uninstall_summary or "Nothing was removed.")
        paras.append(RESTART_STEPS)
    where = [f"Logs: {user_log_dir()}"]
    if state.log_path:
        where.append(f"This run's log: {state.log_path}")
    if state.home is not None:
        backups = journal.state_dir(state.home.path) / "backups"
        where.append(f"Backups of anything replaced or removed: {backups}")
    paras.append("\n".join(where))
    return paras


class FinishPage(FlowPage):
    page_id = PageId.FINISH

    def __init__(self) -> None:
        super().__init__()
        self.setTitle("What to do now")
        self.setFinalPage(True)
        self.lay = QVBoxLayout(self)
        self.body = para(name="What to do now")
        self.lay.addWidget(self.body)
        self.lay.addStretch(1)

    def initializePage(self) -> None:
        self.body.setText("\n\n".join(finish_paragraphs(self.wiz().state)))
