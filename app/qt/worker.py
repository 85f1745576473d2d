"""Run one core job off the GUI thread and report through five signals.

A job is a plain callable `job(ctx: JobContext) -> result` from the Qt-free world: it reports lines
and progress through `ctx` and checks `ctx.cancel`. The Worker lives in its own QThread; the GUI
connects the signals to bound @Slot methods of objects living in the GUI thread, so Qt queues every
call into the GUI thread and no widget is ever touched from the worker.
"""

from __future__ import annotations

import logging
import threading
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import IO, Any

from PySide6.QtCore import QCoreApplication, QObject, QThread, Signal, Slot

from app.core.errors import CancelledError
from app.core.runner import CancelToken, Progress

log = logging.getLogger(__name__)


@dataclass
class JobContext:
    """What a job gets: callbacks (safe to call from the worker thread), the cancel token, its log."""

    on_line: Callable[[str], None]
    on_progress: Callable[[Progress], None]
    cancel: CancelToken
    log_path: Path | None


Job = Callable[[JobContext], Any]


class JobState(Enum):
    IDLE = "idle"
    RUNNING = "running"
    CANCELLING = "cancelling"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"


class Worker(QObject):
    """Runs `job` once in the thread it was moved to. Signals are named as events."""

    started = Signal()
    progress = Signal(object)  # app.core.runner.Progress
    line = Signal(str)
    finished = Signal(object)  # the job's return value
    failed = Signal(object)  # the exception (UnlockedError for expected failures, CancelledError on cancel)

    def __init__(self, job: Job, *, log_path: Path | None = None, cancel: CancelToken | None = None) -> None:
        super().__init__()
        self._job = job
        self.log_path = log_path
        self.cancel = cancel or CancelToken()
        self._log: IO[str] | None = None
        self._log_lock = threading.Lock()

    def _on_line(self, text: str) -> None:
        with self._log_lock:
            if self._log is not None:
                self._log.write(text + "\n")
        self.line.emit(text)

    @Slot()
    def run(self) -> None:
        """The whole job; call it in the worker thread (or directly in a unit test)."""
        if self.log_path is not None:
            self.log_path.parent.mkdir(parents=True, exist_ok=True)
            self._log = open(self.log_path, "a", encoding="utf-8", errors="backslashreplace")  # noqa: SIM115
        self.started.emit()
        ctx = JobContext(on_line=self._on_line, on_progress=self.progress.emit, cancel=self.cancel,
                         log_path=self.log_path)
        try:
            try:
                result = self._job(ctx)
                if self.cancel.cancelled:
                    raise CancelledError("The job was cancelled.")
            except BaseException as exc:  # every failure goes to the GUI as data, never a traceback
                if self._log is not None:
                    self._log.write("".join(traceback.format_exception(exc)))
                self._close_log()
                self._go_home()
                self.failed.emit(exc)
                return
            self._close_log()
            self._go_home()
            self.finished.emit(result)
        finally:
            self._close_log()
            # End the thread's event loop from here too, so wait() works even while the GUI thread is
            # blocked (e.g. closing the window) and cannot run JobController's queued slot.
            thread = QThread.currentThread()
            app = QCoreApplication.instance()
            if app is not None and thread is not app.thread():
                thread.quit()

    def _go_home(self) -> None:
        """Hand this object back to the GUI thread before the last signal, so it dies there and not in a
        finished thread (Qt warns 'Timers cannot be stopped from another thread' otherwise)."""
        app = QCoreApplication.instance()
        if app is not None and self.thread() is not app.thread():
            self.moveToThread(app.thread())

    def _close_log(self) -> None:
        with self._log_lock:
            if self._log is not None:
                self._log.close()
                self._log = None


class JobController(QObject):
    """Owns a Worker and its QThread for one run; lives in the GUI thread.

    Signals are the worker's own (connect to them before start()); `state` follows the job.
    """

    def __init__(self, job: Job, *, log_path: Path | None = None, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.worker = Worker(job, log_path=log_path)
        self.state = JobState.IDLE
        self._thread = QThread()
        self._thread.setObjectName("job-worker")
        self.worker.moveToThread(self._thread)
        self._thread.started.connect(self.worker.run)
        self.worker.finished.connect(self._on_worker_finished)
        self.worker.failed.connect(self._on_worker_failed)

    @property
    def log_path(self) -> Path | None:
        return self.worker.log_path

    def start(self) -> None:
        if self.state is not JobState.IDLE:
            raise RuntimeError("a JobController runs its job once")
        self.state = JobState.RUNNING
        self._thread.start()

    def is_running(self) -> bool:
        return self.state in (JobState.RUNNING, JobState.CANCELLING)

    def cancel(self) -> None:
        """Ask the job to stop; the process tree is killed by the runner that sees the token."""
        if self.is_running():
            self.state = JobState.CANCELLING
            self.worker.cancel.cancel()

    def wait(self, msecs: int = 30000) -> bool:
        """Block until the thread has ended (used on close/teardown)."""
        if not self._thread.isRunning():
            return True
        return bool(self._thread.wait(msecs))

    @Slot(object)
    def _on_worker_finished(self, _result: object) -> None:
        self.state = JobState.SUCCEEDED
        self._thread.quit()

    @Slot(object)
    def _on_worker_failed(self, exc: object) -> None:
        self.state = JobState.CANCELLED if isinstance(exc, CancelledError) else JobState.FAILED
        self._thread.quit()
