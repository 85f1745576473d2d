"""Qt tests run on the offscreen platform; helpers for real child processes."""

from __future__ import annotations

import os
import sys
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import psutil

from app.core.runner import ProcessPlan

FAKE_NINJA = Path(__file__).with_name("fake_ninja.py")


def ninja_plan(total: int, *args: str, label: str = "build") -> ProcessPlan:
    """A ProcessPlan for the real fake-Ninja child process."""
    return ProcessPlan(argv=(sys.executable, str(FAKE_NINJA), str(total), *args), label=label)


def gone(pid: int) -> bool:
    """The process no longer exists (or is a zombie nobody has reaped yet)."""
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True
