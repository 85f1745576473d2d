"""Run an external program: stream its lines, report progress, cancel the whole process tree.

A long job is a pure plan (`ProcessPlan`: argv, env, cwd) plus this runner. The runner
- merges stdout/stderr, reads raw bytes on a thread and decodes them leniently (undecodable bytes
  become backslash escapes instead of crashing the job);
- treats a carriage return like a terminal does: only the text after the last `\\r` of a line counts;
- turns Ninja's `[n/total]` status into a `Progress` with an ETA;
- writes every line to a log file and keeps the last lines for error messages;
- starts the child in its own process group (POSIX session / Windows process group) and on cancel
  kills that whole group, so no compiler is left orphaned.
"""

from __future__ import annotations

import contextlib
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from app.core.errors import CancelledError, SubprocessFailed, UnlockedError

NINJA_STATUS_RE = re.compile(r"^\[(\d+)/(\d+)\]")
TAIL_LINES = 50


class CancelToken:
    """Thread-safe cancel flag shared between a UI/CLI and a running job."""

    def __init__(self) -> None:
        self._event = threading.Event()

    def cancel(self) -> None:
        self._event.set()

    @property
    def cancelled(self) -> bool:
        return self._event.is_set()

    def raise_if_cancelled(self) -> None:
        if self._event.is_set():
            raise CancelledError("The job was cancelled.")

    def wait(self, timeout: float) -> bool:
        return self._event.wait(timeout)


@dataclass(frozen=True)
class ProcessPlan:
    """One external command, fully decided before anything runs (unit-test it exactly)."""

    argv: tuple[str, ...]
    cwd: str | None = None
    env: Mapping[str, str] = field(default_factory=dict)  # added on top of os.environ
    unset_env: tuple[str, ...] = ()
    label: str = ""  # "configure", "build", "smoke test"

    def full_env(self, base: Mapping[str, str] | None = None) -> dict[str, str]:
        env = dict(os.environ if base is None else base)
        for k in self.unset_env:
            env.pop(k, None)
        env.update(self.env)
        return env


@dataclass(frozen=True)
class Progress:
    label: str
    done: int
    total: int
    elapsed: float
    eta_seconds: float | None

    @property
    def fraction(self) -> float:
        return self.done / self.total if self.total else 0.0


@dataclass(frozen=True)
class ProcessResult:
    argv: tuple[str, ...]
    returncode: int | None
    cancelled: bool
    duration: float
    tail: tuple[str, ...]
    timed_out: bool = False

    @property
    def ok(self) -> bool:
        return self.returncode == 0 and not self.cancelled and not self.timed_out


class LineSplitter:
    """Incremental bytes -> lines decoder that handles `\\r`, `\\r\\n` and bad UTF-8."""

    def __init__(self) -> None:
        self._buf = b""

    @staticmethod
    def _finish(raw: bytes) -> str:
        text = raw.decode("utf-8", errors="backslashreplace")
        if text.endswith("\r"):
            text = text[:-1]
        if "\r" in text:
            # A progress bar redrawn with \r: keep what a terminal would show last.
            parts = [p for p in text.split("\r") if p]
            text = parts[-1] if parts else ""
        return text

    def feed(self, data: bytes) -> list[str]:
        self._buf += data
        *lines, self._buf = self._buf.split(b"\n")
        return [self._finish(x) for x in lines]

    def flush(self) -> list[str]:
        if not self._buf:
            return []
        rest, self._buf = self._buf, b""
        return [self._finish(rest)]


class NinjaProgress:
    """Turns `[n/total]` lines into Progress with a linear ETA."""

    def __init__(self, label: str, clock: Callable[[], float] = time.monotonic) -> None:
        self.label = label
        self._clock = clock
        self._start: float | None = None
        self._start_done = 0

    def parse(self, line: str) -> Progress | None:
        m = NINJA_STATUS_RE.match(line)
        if not m:
            return None
        done, total = int(m.group(1)), int(m.group(2))
        now = self._clock()
        if self._start is None:
            self._start, self._start_done = now, done
        elapsed = now - self._start
        eta: float | None = None
        advanced = done - self._start_done
        if advanced > 0 and total > done:
            eta = elapsed / advanced * (total - done)
        elif total == done:
            eta = 0.0
        return Progress(self.label, done, total, elapsed, eta)


def popen_platform_kwargs() -> dict[str, Any]:
    """Own process group, no console window on Windows, and all three standard streams set."""
    if sys.platform == "win32":
        flags = getattr(subprocess, "CREATE_NEW_PROCESS_GROUP", 0) | getattr(subprocess, "CREATE_NO_WINDOW", 0)
        return {"creationflags": flags}
    return {"start_new_session": True}


def kill_process_tree(proc: subprocess.Popen[bytes], *, grace: float = 3.0) -> None:
    """Terminate the child's whole process group, then kill what is left after `grace` seconds."""
    if sys.platform == "win32":
        # taskkill /T walks the tree of child processes; /F forces it.
        subprocess.run(
            ["taskkill", "/T", "/F", "/PID", str(proc.pid)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            check=False,
            **popen_platform_kwargs(),
        )
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(grace)
        return
    pgid = proc.pid  # start_new_session=True makes the child a group leader
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        if proc.poll() is not None and not _group_alive(pgid):
            return
        time.sleep(0.05)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(grace)


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _reader(stream: IO[bytes], q: queue.Queue[bytes | None]) -> None:
    try:
        while True:
            chunk = stream.read1(65536) if hasattr(stream, "read1") else stream.read(65536)
            if not chunk:
                break
            q.put(chunk)
    except (OSError, ValueError):
        pass
    finally:
        q.put(None)


def run_process(
    plan: ProcessPlan,
    *,
    on_line: Callable[[str], None] | None = None,
    on_progress: Callable[[Progress], None] | None = None,
    cancel: CancelToken | None = None,
    log_path: Path | None = None,
    timeout: float | None = None,
    check: bool = False,
    hint: str = "",
) -> ProcessResult:
    """Run `plan`, streaming each output line to `on_line` and to `log_path` (appended).

    Args:
        check: raise SubprocessFailed on a non-zero exit (with the log tail), CancelledError on cancel.
        timeout: seconds; the process tree is killed when exceeded.

    Raises:
        UnlockedError when the program cannot be started; SubprocessFailed / CancelledError with check.
    """
    cancel = cancel or CancelToken()
    tail: deque[str] = deque(maxlen=TAIL_LINES)
    ninja = NinjaProgress(plan.label)
    log: IO[str] | None = None
    if log_path is not None:
        log_path.parent.mkdir(parents=True, exist_ok=True)
        log = open(log_path, "a", encoding="utf-8", errors="backslashreplace")  # noqa: SIM115
        log.write(f"$ {' '.join(plan.argv)}\n")
        log.flush()
    start = time.monotonic()
    try:
        try:
            proc = subprocess.Popen(
                list(plan.argv),
                cwd=plan.cwd,
                env=plan.full_env(),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                bufsize=0,
                **popen_platform_kwargs(),
            )
        except OSError as exc:
            raise UnlockedError(
                f"Could not start {plan.argv[0]}: {exc.strerror or exc}",
                context=" ".join(plan.argv),
                hint=hint or "Check that the program is installed and on PATH.",
            ) from exc
        assert proc.stdout is not None
        q: queue.Queue[bytes | None] = queue.Queue()
        t = threading.Thread(target=_reader, args=(proc.stdout, q), daemon=True)
        t.start()
        splitter = LineSplitter()
        cancelled = timed_out = False

        def handle(lines: Iterable[str]) -> None:
            for line in lines:
                tail.append(line)
                if log is not None:
                    log.write(line + "\n")
                if on_line is not None:
                    on_line(line)
                if on_progress is not None:
                    p = ninja.parse(line)
                    if p is not None:
                        on_progress(p)

        eof = False
        try:
            while not eof:
                if cancel.cancelled and not cancelled:
                    cancelled = True
                    kill_process_tree(proc)
                if timeout is not None and not timed_out and time.monotonic() - start > timeout:
                    timed_out = True
                    kill_process_tree(proc)
                try:
                    chunk = q.get(timeout=0.1)
                except queue.Empty:
                    continue
                if chunk is None:
                    eof = True
                else:
                    handle(splitter.feed(chunk))
            handle(splitter.flush())
        except BaseException:
            # Ctrl+C in the CLI, or a callback that raised: the child runs in its own process group and would
            # not see the signal, so take the whole tree down before propagating.
            kill_process_tree(proc, grace=1.0)
            raise
        returncode = proc.wait()
        if sys.platform != "win32":
            # The leader is gone; kill anything it left in its group (e.g. a detached compiler).
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
        if log is not None:
            log.write(f"[exit code {returncode}{', cancelled' if cancelled else ''}]\n")
    finally:
        if log is not None:
            log.close()
    result = ProcessResult(
        argv=plan.argv,
        returncode=returncode,
        cancelled=cancelled,
        duration=time.monotonic() - start,
        tail=tuple(tail),
        timed_out=timed_out,
    )
    if check:
        if cancelled:
            raise CancelledError(f"{plan.label or plan.argv[0]} was cancelled.")
        if not result.ok:
            what = "timed out" if timed_out else f"exited with code {returncode}"
            raise SubprocessFailed(
                f"{plan.label or plan.argv[0]} {what}.",
                returncode=returncode,
                log_tail="\n".join(tail),
                log_path=str(log_path) if log_path else "",
                context=" ".join(plan.argv),
                hint=hint,
            )
    return result
