"""Run a BuildPlan: configure (verified), then build only the planned targets, streaming lines and progress."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from app.core.builder.plan import BuildPlan, verify_configure_output
from app.core.runner import CancelToken, Progress, run_process


@dataclass(frozen=True)
class BuildResult:
    plan: BuildPlan
    bin_dir: Path
    configure_seconds: float
    build_seconds: float
    reused_build_dir: bool


def run_build(
    plan: BuildPlan,
    *,
    on_line: Callable[[str], None] | None = None,
    on_progress: Callable[[Progress], None] | None = None,
    cancel: CancelToken | None = None,
) -> BuildResult:
    """Configure (re-using an existing build dir), check the configure output, build the planned targets.

    Raises:
        SubprocessFailed: cmake/ninja failed (message with the log tail, log path in details).
        ConfigureCheckError: the configure output shows -march=native, ignored options or wrong CPU flags.
        CancelledError: cancelled (the whole process tree is killed).
    """
    log = Path(plan.log_path)
    reused = (Path(plan.build_dir) / "CMakeCache.txt").is_file()
    if plan.toolchain is not None and plan.wrappers_dir:
        from app.core.builder.toolchain import compiler_wrappers

        compiler_wrappers(plan.toolchain, Path(plan.wrappers_dir))
    lines: list[str] = []

    def keep(line: str) -> None:
        lines.append(line)
        if on_line:
            on_line(line)

    t0 = time.monotonic()
    run_process(
        plan.configure,
        on_line=keep,
        cancel=cancel,
        log_path=log,
        check=True,
        hint="See the configure log; `lms-unlocked build … --plan-only` lists missing prerequisites.",
    )
    # A re-configure of an existing dir prints the same variant line: verification works in both cases.
    verify_configure_output(plan, lines)
    t1 = time.monotonic()
    run_process(
        plan.build,
        on_line=on_line,
        on_progress=on_progress,
        cancel=cancel,
        log_path=log,
        check=True,
        hint="The compiler failed; the log tail above shows the first error.",
    )
    return BuildResult(plan, Path(plan.bin_dir), t1 - t0, time.monotonic() - t1, reused)
