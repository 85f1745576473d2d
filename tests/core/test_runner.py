"""The process runner on real subprocesses: streaming, \\r, bad bytes, Ninja progress, cancel, errors."""

from __future__ import annotations

import sys
import threading
import time
from pathlib import Path

import psutil
import pytest

from app.core.errors import CancelledError, SubprocessFailed, UnlockedError
from app.core.runner import (
    CancelToken,
    LineSplitter,
    NinjaProgress,
    ProcessPlan,
    Progress,
    run_process,
)

PY = sys.executable


def py(code: str, **kw: object) -> ProcessPlan:
    return ProcessPlan(argv=(PY, "-c", code), **kw)  # type: ignore[arg-type]


def test_lines_are_streamed_while_the_process_runs(tmp_path: Path) -> None:
    # The child prints a line, then waits until the parent has seen it (file handshake): proves streaming.
    flag = tmp_path / "seen"
    code = (
        "import sys, time, pathlib\n"
        "print('first', flush=True)\n"
        f"p = pathlib.Path({str(flag)!r})\n"
        "t = time.time()\n"
        "while not p.exists() and time.time() - t < 20: time.sleep(0.02)\n"
        "print('second' if p.exists() else 'timeout', flush=True)\n"
    )
    got: list[str] = []

    def on_line(line: str) -> None:
        got.append(line)
        if line == "first":
            flag.write_text("x")

    log = tmp_path / "log" / "run.log"
    res = run_process(py(code), on_line=on_line, log_path=log)
    assert res.ok and got == ["first", "second"]
    text = log.read_text()
    assert "first\nsecond\n" in text and "[exit code 0]" in text


def test_carriage_returns_keep_the_last_redraw() -> None:
    code = "import sys; sys.stdout.write('10%\\r50%\\r100%\\nnext\\r\\n'); sys.stdout.flush()"
    got: list[str] = []
    assert run_process(py(code), on_line=got.append).ok
    assert got == ["100%", "next"]


def test_undecodable_bytes_do_not_break_the_job() -> None:
    code = "import sys; sys.stdout.buffer.write(b'ok \\xff\\xfe bytes\\n\\xc3\\xa9t\\xc3\\xa9\\n'); sys.stdout.flush()"
    got: list[str] = []
    assert run_process(py(code), on_line=got.append).ok
    assert got == ["ok \\xff\\xfe bytes", "été"]


def test_splitter_handles_lines_split_across_chunks() -> None:
    s = LineSplitter()
    assert s.feed(b"ab") == []
    assert s.feed(b"c\r\nde\xc3") == ["abc"]
    assert s.feed(b"\xa9\n") == ["deé"]
    assert s.feed(b"tail") == [] and s.flush() == ["tail"]


def test_ninja_progress_and_eta_from_a_real_child() -> None:
    code = (
        "import time\n"
        "for i in range(1, 6):\n"
        "    print(f'[{i}/5] Building CXX object x{i}.o', flush=True)\n"
        "    time.sleep(0.05)\n"
    )
    seen: list[Progress] = []
    assert run_process(py(code, label="build"), on_progress=seen.append).ok
    assert [(p.done, p.total) for p in seen] == [(1, 5), (2, 5), (3, 5), (4, 5), (5, 5)]
    assert seen[0].eta_seconds is None and seen[-1].eta_seconds == 0.0
    assert seen[2].eta_seconds is not None and seen[2].eta_seconds > 0
    assert seen[-1].fraction == 1.0 and seen[0].label == "build"


def test_ninja_eta_is_linear_with_a_fake_clock() -> None:
    t = iter([0.0, 10.0, 20.0])
    n = NinjaProgress("b", clock=lambda: next(t))
    n.parse("[10/110] a")
    p = n.parse("[20/110] b")
    assert p is not None and p.eta_seconds == pytest.approx(90.0)
    assert n.parse("not ninja") is None


def test_cancel_kills_the_whole_process_tree() -> None:
    code = "bash -c 'sleep 300 & sleep 300 & echo started; wait'"
    plan = ProcessPlan(argv=("bash", "-c", code))
    token = CancelToken()
    pids: list[int] = []

    def on_line(line: str) -> None:
        if line == "started":
            me = psutil.Process()
            for child in me.children(recursive=True):
                pids.append(child.pid)
            token.cancel()

    start = time.monotonic()
    res = run_process(plan, on_line=on_line, cancel=token)
    assert res.cancelled and not res.ok
    assert time.monotonic() - start < 30
    assert len(pids) >= 3  # bash, inner bash, two sleeps (at least the sleeps and one bash)
    time.sleep(0.2)
    alive = [p for p in pids if psutil.pid_exists(p) and psutil.Process(p).status() != psutil.STATUS_ZOMBIE]
    assert alive == []


def test_cancel_with_check_raises_cancelled() -> None:
    token = CancelToken()
    threading.Timer(0.3, token.cancel).start()
    with pytest.raises(CancelledError):
        run_process(ProcessPlan(argv=("sleep", "30")), cancel=token, check=True)


def test_nonzero_exit_raises_with_tail(tmp_path: Path) -> None:
    code = "import sys\nfor i in range(80): print(f'line {i}')\nprint('error: boom', flush=True)\nsys.exit(3)"
    log = tmp_path / "x.log"
    with pytest.raises(SubprocessFailed) as ei:
        run_process(py(code, label="build"), check=True, log_path=log, hint="look at it")
    e = ei.value
    assert e.returncode == 3 and "exited with code 3" in e.message
    assert e.log_tail.splitlines()[-1] == "error: boom"
    assert "line 0" not in e.log_tail and len(e.log_tail.splitlines()) == 50
    assert str(log) in e.details and e.hint == "look at it"


def test_timeout_kills_and_reports(tmp_path: Path) -> None:
    res = run_process(ProcessPlan(argv=("sleep", "30")), timeout=0.5)
    assert res.timed_out and not res.ok


def test_missing_program_is_a_clear_error() -> None:
    with pytest.raises(UnlockedError, match="Could not start"):
        run_process(ProcessPlan(argv=("/nonexistent/cmake-xyz", "--version")))


def test_env_is_layered_on_the_environment() -> None:
    plan = py("import os; print(os.environ['LMSU_X'], os.environ.get('HOME') is not None)", env={"LMSU_X": "42"})
    got: list[str] = []
    run_process(plan, on_line=got.append, check=True)
    assert got == ["42 True"]


def test_a_callback_that_raises_still_kills_the_tree() -> None:
    """Ctrl+C in the CLI or an exception in a UI callback must not leave the compilers running."""
    pids: list[int] = []

    def on_line(line: str) -> None:
        if line == "started":
            pids.extend(c.pid for c in psutil.Process().children(recursive=True))
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_process(ProcessPlan(argv=("bash", "-c", "sleep 300 & sleep 300 & echo started; wait")), on_line=on_line)
    assert len(pids) >= 2
    time.sleep(0.2)
    alive = [p for p in pids if psutil.pid_exists(p) and psutil.Process(p).status() != psutil.STATUS_ZOMBIE]
    assert alive == []
