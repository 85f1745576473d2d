"""Work: stage list, determinate progress + ETA, live log, Open log, Copy diagnostics, Cancel."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path

from PySide6.QtCore import QSize, QTimer, QUrl, Slot
from PySide6.QtGui import QDesktopServices, QGuiApplication, QIcon
from PySide6.QtWidgets import QHBoxLayout, QLabel, QListWidget, QListWidgetItem, QProgressBar, QStyle, QVBoxLayout

from app.core.errors import CancelledError
from app.core.flow import STAGES, Method, PageId
from app.core.paths import user_log_dir
from app.core.progress import ProgressTracker
from app.core.runner import Progress
from app.qt.errors import as_unlocked_error, diagnostics_text, show_error
from app.qt.logview import LogView
from app.qt.pages.base import PAGE_TEXT, FlowPage, open_folder, para, push, row
from app.qt.text import format_duration, overall_progress_text, stage_progress_text
from app.qt.worker import JobController, JobState

PENDING, RUNNING, DONE, FAILED = "pending", "running", "done", "failed"


TITLES = {
    "running": PAGE_TEXT[PageId.WORK],
    "done": ("Done", "Every stage finished. Next shows what was checked."),
    "failed": ("It did not work",
               "Nothing half-done was left in LM Studio. Try again, or go Back and pick another way."),
    "cancelled": ("Cancelled", "Nothing was installed. Try again, or go Back and pick another way."),
}


class WorkPage(FlowPage):
    page_id = PageId.WORK

    def __init__(self) -> None:
        super().__init__()
        top = QHBoxLayout()
        self.stage_list = QListWidget()
        self.stage_list.setAccessibleName("Stages")
        self.stage_list.setMaximumWidth(200)
        self.stage_list.setIconSize(QSize(16, 16))
        top.addWidget(self.stage_list)
        right = QVBoxLayout()
        self.status = para(name="Current stage")
        self.progress = QProgressBar()
        self.progress.setRange(0, 1000)
        self.progress.setFormat("%p %")
        self.progress.setAccessibleName("Overall progress")
        self.eta = QLabel()
        self.eta.setWordWrap(True)
        self.eta.setAccessibleName("Time left")
        self.log_view = LogView()
        self.log_view.setMinimumHeight(120)
        right.addWidget(self.status)
        right.addWidget(self.progress)
        right.addWidget(self.eta)
        right.addWidget(self.log_view, 1)
        top.addLayout(right, 1)
        self.lay.addLayout(top, 1)
        self.open_log_button = push("Open &log", self._on_open_log_clicked, tip="Open the full log file")
        self.logs_folder_button = push("Logs &folder", self._on_logs_folder_clicked,
                                       tip="Open the folder with every job's log")
        self.copy_button = push("Copy dia&gnostics", self._on_copy_clicked,
                                tip="Copy the error, versions and the last lines of the log")
        self.retry_button = push("&Try again", self._on_retry_clicked)
        self.cancel_button = push("Cancel &job", self._on_cancel_clicked,
                                  tip="Stop the job and every program it started")
        self.lay.addLayout(row(self.open_log_button, self.logs_folder_button, self.copy_button, None,
                               self.retry_button, self.cancel_button))
        self.controller: JobController | None = None
        self.stages: tuple[str, ...] = ()
        self.stage_state: dict[str, str] = {}
        self.current_stage = ""
        self.error: BaseException | None = None
        self.tracker: ProgressTracker | None = None
        self._t0 = 0.0
        # The estimate moves on its own once a second (a stalled stage's time left grows instead of freezing).
        self._tick = QTimer(self)
        self._tick.setInterval(1000)
        self._tick.timeout.connect(self._on_tick_timeout)
        self._icons = {
            DONE: self.style().standardIcon(QStyle.StandardPixmap.SP_DialogApplyButton),
            RUNNING: self.style().standardIcon(QStyle.StandardPixmap.SP_MediaPlay),
            FAILED: self.style().standardIcon(QStyle.StandardPixmap.SP_DialogCancelButton),
        }
        self._set_idle_buttons()

    def set_phase(self, phase: str) -> None:
        title, sub = TITLES[phase]
        self.setTitle(title)
        self.setSubTitle(sub)

    # -- lifecycle -------------------------------------------------------------------------------

    def initializePage(self) -> None:
        # initializePage runs each time the page is entered with Next: start at most one job. Entered again
        # after a failure or cancel (Back, another way, Start), it starts the new choice.
        if self.controller is None or self.controller.state in (JobState.FAILED, JobState.CANCELLED):
            self.start_job()

    def focus_target(self):  # type: ignore[no-untyped-def]
        return self.cancel_button if self.is_running() else None

    def _method_page_commits(self, on: bool) -> None:
        """While a job runs (or after it succeeded) there is no way Back; after a failure or cancel there is."""
        self.wiz().page_of(PageId.METHOD).setCommitPage(on)

    def isComplete(self) -> bool:
        return self.controller is not None and self.controller.state is JobState.SUCCEEDED

    def is_running(self) -> bool:
        return self.controller is not None and self.controller.is_running()

    def start_job(self) -> None:
        wiz = self.wiz()
        st = wiz.state
        method = st.method or Method.BUILD
        self.stages = STAGES[method]
        st.work_succeeded = False
        st.outcome = None
        self.error = None
        self.stage_state = dict.fromkeys(self.stages, PENDING)
        self.current_stage = ""
        self._fill_stages()
        self.log_view.clear_log()
        self.progress.setValue(0)
        self.eta.setText("")
        self.status.setText("Starting…")
        self.set_phase("running")
        self._method_page_commits(True)
        opt = next((o for o in st.method_options if o.method is method), None)
        self.tracker = ProgressTracker.for_method(method, time.monotonic(), getattr(opt, "time_seconds", None))
        log_dir = wiz.config.log_dir or user_log_dir()
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
        st.log_path = Path(log_dir) / f"job-{method.value}-{stamp}.log"
        job = wiz.make_job()
        self.controller = JobController(job, log_path=st.log_path, parent=self)
        w = self.controller.worker
        w.started.connect(self._on_worker_started)
        w.line.connect(self.log_view.append_line)
        w.progress.connect(self._on_worker_progress)
        w.finished.connect(self._on_worker_finished)
        w.failed.connect(self._on_worker_failed)
        self._t0 = time.monotonic()
        self.controller.start()
        self._tick.start()
        self._set_running_buttons()
        self.completeChanged.emit()

    def cancel_job(self) -> None:
        if self.controller is not None and self.controller.is_running():
            self.status.setText("Cancelling — stopping every program the job started…")
            self.cancel_button.setEnabled(False)
            self.controller.cancel()

    # -- view --------------------------------------------------------------------------------------

    def _fill_stages(self) -> None:
        self.stage_list.clear()
        for s in self.stages:
            QListWidgetItem(s, self.stage_list)
        self._paint_stages()

    def _paint_stages(self) -> None:
        for i, s in enumerate(self.stages):
            item = self.stage_list.item(i)
            state = self.stage_state.get(s, PENDING)
            item.setIcon(self._icons.get(state, QIcon()))
            item.setToolTip(state)
            item.setData(0x0100, state)  # Qt.UserRole: the state, for tests and accessibility tools

    def _set_idle_buttons(self) -> None:
        self.cancel_button.setVisible(False)
        self.retry_button.setVisible(False)

    def _set_running_buttons(self) -> None:
        self.cancel_button.setVisible(True)
        self.cancel_button.setEnabled(True)
        self.retry_button.setVisible(False)

    def _show_estimate(self) -> None:
        if self.tracker is None:
            return
        snap = self.tracker.snapshot(time.monotonic())
        self.status.setText(stage_progress_text(snap))
        self.progress.setValue(round(snap.overall_fraction * 1000))
        self.eta.setText(overall_progress_text(snap))

    # -- worker slots (run in the GUI thread) ------------------------------------------------------

    @Slot()
    def _on_worker_started(self) -> None:
        self.status.setText("Working…")

    @Slot()
    def _on_tick_timeout(self) -> None:
        if self.is_running():
            self._show_estimate()

    @Slot(object)
    def _on_worker_progress(self, p: Progress) -> None:
        if self.tracker is not None:
            self.tracker.update(time.monotonic(), p.label, p.done, p.total)
        if p.label in self.stage_state and p.label != self.current_stage:
            if self.current_stage in self.stage_state:
                self.stage_state[self.current_stage] = DONE
            # Stages skipped over (nothing to do for them) count as done.
            for s in self.stages[: self.stages.index(p.label)]:
                if self.stage_state[s] == PENDING:
                    self.stage_state[s] = DONE
            self.current_stage = p.label
            self.stage_state[p.label] = RUNNING
            self._paint_stages()
        self._show_estimate()

    @Slot(object)
    def _on_worker_finished(self, outcome: object) -> None:
        st = self.wiz().state
        for s in self.stages:
            self.stage_state[s] = DONE
        self._paint_stages()
        self.log_view.flush()
        self.progress.setValue(1000)
        self.eta.setText("")
        self.status.setText(f"Done in {format_duration(time.monotonic() - self._t0).removeprefix('about ')}.")
        self._tick.stop()
        st.outcome = outcome
        st.work_succeeded = True
        self.set_phase("done")
        self._set_idle_buttons()
        self.completeChanged.emit()

    @Slot(object)
    def _on_worker_failed(self, exc: BaseException) -> None:
        self.error = exc
        if self.current_stage in self.stage_state:
            self.stage_state[self.current_stage] = FAILED
        self._paint_stages()
        self.log_view.flush()
        self._tick.stop()
        self._set_idle_buttons()
        self.retry_button.setVisible(True)
        self.eta.setText("")
        self.set_phase("cancelled" if isinstance(exc, CancelledError) else "failed")
        self._method_page_commits(False)  # Back leads to the Method page again
        if isinstance(exc, CancelledError):
            self.status.setText("Cancelled. Nothing was installed; every program the job started was stopped.")
        else:
            self.status.setText(f"Failed at “{self.current_stage or 'start'}”: {as_unlocked_error(exc).message}")
            if not self.wiz().closing:
                show_error(self, exc, title="The job failed", extra=self._log_extra())
        self.completeChanged.emit()

    # -- buttons -------------------------------------------------------------------------------------

    def _log_extra(self) -> str:
        path = self.wiz().state.log_path
        return f"Full log: {path}" if path else ""

    def diagnostics(self) -> str:
        err = as_unlocked_error(self.error) if self.error is not None else None
        tail = "\n".join(self.log_view.toPlainText().splitlines()[-50:])
        stages = ", ".join(f"{s}: {self.stage_state.get(s, PENDING)}" for s in self.stages)
        head = diagnostics_text(err, extra=self._log_extra()) if err else self._log_extra()
        return f"{head}\nStages: {stages}\n\nLast log lines:\n{tail}"

    @Slot()
    def _on_open_log_clicked(self) -> None:
        path = self.wiz().state.log_path
        if path is not None:
            QDesktopServices.openUrl(QUrl.fromLocalFile(str(path)))

    @Slot()
    def _on_logs_folder_clicked(self) -> None:
        path = self.wiz().state.log_path
        open_folder(path.parent if path is not None else self.wiz().config.log_dir or user_log_dir())

    @Slot()
    def _on_copy_clicked(self) -> None:
        QGuiApplication.clipboard().setText(self.diagnostics())

    @Slot()
    def _on_cancel_clicked(self) -> None:
        self.cancel_job()

    @Slot()
    def _on_retry_clicked(self) -> None:
        if not self.is_running():
            self.start_job()
