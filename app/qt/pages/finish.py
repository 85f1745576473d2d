"""Finish: what to do now, clickable paths to logs and backups, and help to quit and restart LM Studio."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from PySide6.QtCore import Slot
from PySide6.QtWidgets import QWidget

from app.core.flow import Branch, PageId
from app.core.lmstudio import journal, prefs, processes
from app.core.paths import user_log_dir
from app.qt.errors import show_error
from app.qt.pages.base import Background, FlowPage, esc, open_folder, para, path_link, push, row, set_html
from app.qt.text import ALL_SET, BATCH_SIZE_TIP, GET_LMSTUDIO_URL, RESTART_STEPS, WHERE_TO_PICK
from app.qt.worker import JobContext


def needs_batch_tip(state: Any) -> bool:
    """The evaluation-batch-size tip applies to Vulkan and CUDA-on-Kepler variants (docs/lmstudio-contract.md §16.2)."""
    cand = state.candidate
    variant = str(getattr(cand, "variant", "") or "")
    warnings = " ".join(getattr(cand, "warnings", ()) or ())
    return "vulkan" in variant or "batch" in warnings.lower() or any(
        (g.cc_tuple() or (9, 9)) < (5, 0) for g in (state.report.nvidia_gpus if state.report else ())
    )


def auto_update_warnings(state: Any) -> list[str]:
    """LM Studio's auto-update / auto-delete toggles can deselect or remove the backend
    (docs/lmstudio-contract.md §14)."""
    if state.home is None or not state.has_lmstudio:
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
    """The Finish page's text for this run, as plain paragraphs (pure; unit-tested). Paths: :func:`where_items`."""
    paras: list[str] = []
    if state.branch is Branch.INSTALL:
        if not state.has_lmstudio:
            paras.append("Nothing was installed: LM Studio is not installed on this computer (or was not found). "
                         f"Get it from {GET_LMSTUDIO_URL}, start it once so it downloads its own runtimes, then "
                         "run this wizard again. A hardware report exported on the hardware page lets you build "
                         "for this computer elsewhere.")
        elif state.official_works and not state.expert_continue:
            paras.append(ALL_SET)
        elif not state.has_candidate:
            paras.append("Nothing was installed: none of the backends this tool can provide fits this computer.")
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
            if state.report is not None and state.report.source != "live":
                paras.append("It was made for the computer of the saved report. To use it there, copy its folder "
                             "(linked below) into that computer's LM Studio backends folder "
                             "(~/.lmstudio/extensions/backends), or run “lms-unlocked install --from FOLDER” there; "
                             "Uninstall removes it from this computer.")
    elif state.branch is Branch.REPAIR:
        paras.append(state.repair_summary or "No repair was made.")
        paras.append(RESTART_STEPS)
    else:
        paras.append(state.uninstall_summary or "Nothing was removed.")
        paras.append(RESTART_STEPS)
    return paras


def where_items(state: Any, log_dir: Path | None = None) -> list[tuple[str, Path]]:
    """(what, path) pairs the Finish page links to: logs, this run's log, the backed-up files."""
    items = [("Logs", Path(log_dir or user_log_dir()))]
    folder = getattr(state.outcome, "folder", None)
    if state.work_succeeded and folder:
        items.insert(0, ("The installed backend's folder", Path(folder)))
    if state.log_path:
        items.append(("This run's log", Path(state.log_path)))
    if state.has_lmstudio:
        items.append(("Backups of anything replaced or removed",
                      journal.state_dir(state.require_home().path) / "backups"))
    return items


def finish_html(state: Any, log_dir: Path | None = None) -> str:
    paras = [esc(p).replace("\n", "<br>") for p in finish_paragraphs(state)]
    paras.append("<br>".join(f"{esc(what)}: {path_link(p)}" for what, p in where_items(state, log_dir)))
    return "".join(f"<p>{p}</p>" for p in paras)


class FinishPage(FlowPage):
    page_id = PageId.FINISH

    def __init__(self) -> None:
        super().__init__()
        self.setFinalPage(True)
        self.body_label = para(links=True, name="What to do now")
        self.lay.addWidget(self.body_label)
        self.logs_button = push("Open &logs folder", self._on_logs_clicked)
        self.quit_button = push("&Quit LM Studio for me", self._on_quit_clicked,
                                tip="Ask LM Studio, its tray process and its daemon to quit (it only looks for new "
                                    "backends when it starts)")
        self.restart_button = push("Start LM Studio a&gain", self._on_restart_clicked)
        self.restart_button.setVisible(False)
        self.lms_status = para(name="LM Studio status")
        self.lay.addLayout(row(self.logs_button, None, self.quit_button, self.restart_button))
        self.lay.addWidget(self.lms_status)
        self.lay.addStretch(1)
        self._bg: Background | None = None
        self._restart: tuple[str, ...] = ()

    @property
    def body(self):  # type: ignore[no-untyped-def]
        """The text label (tests and the screenshot script read `body.text()`)."""
        return self.body_label

    def initializePage(self) -> None:
        st = self.wiz().state
        set_html(self.body_label, finish_html(st, self.wiz().config.log_dir))
        self.quit_button.setVisible(st.has_lmstudio and self._running())
        self.lms_status.setText("LM Studio is running: quit it (and start it again) so it sees the change."
                                if self.quit_button.isVisible() else "")

    def focus_target(self) -> QWidget | None:
        return None

    def _running(self) -> bool:
        try:
            home = self.wiz().state.home
            return bool(processes.lmstudio_running(home.path if home else None))
        except Exception:
            return False

    @Slot()
    def _on_logs_clicked(self) -> None:
        d = Path(self.wiz().config.log_dir or user_log_dir())
        d.mkdir(parents=True, exist_ok=True)
        open_folder(d)

    @Slot()
    def _on_quit_clicked(self) -> None:
        if self._bg is not None and not self._bg.done:
            return
        home = self.wiz().state.home
        path = home.path if home is not None else None

        def job(_ctx: JobContext) -> Any:
            return processes.quit_lmstudio(path)

        self.quit_button.setEnabled(False)
        self.lms_status.setText("Asking LM Studio to quit…")
        self._bg = Background(self, job, self._on_quit_finished, self._on_quit_failed).start()

    @Slot(object)
    def _on_quit_finished(self, result: Any) -> None:
        self.quit_button.setEnabled(True)
        self._restart = tuple(result.restart_argv)
        if result.still_running:
            names = ", ".join(f"{p.name} (pid {p.pid})" for p in result.still_running)
            self.lms_status.setText(f"Still running: {names}. Quit it from the system tray (or run "
                                    "“lms daemon down”), then start it again.")
            return
        self.quit_button.setVisible(False)
        self.restart_button.setVisible(bool(self._restart))
        self.lms_status.setText("LM Studio has quit." + (" Start it again to use the change." if self._restart
                                                         else " Start it again from your menu."))

    @Slot(object)
    def _on_quit_failed(self, exc: BaseException) -> None:
        self.quit_button.setEnabled(True)
        show_error(self, exc, title="Could not quit LM Studio")

    @Slot()
    def _on_restart_clicked(self) -> None:
        try:
            processes.start_detached(self._restart)
        except OSError as exc:
            show_error(self, exc, title="Could not start LM Studio")
            return
        self.restart_button.setVisible(False)
        self.lms_status.setText("LM Studio is starting; it will look for backends now.")
