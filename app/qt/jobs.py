"""Jobs for the Work page: plain callables composed from core calls (no Qt here).

Each job reports its current stage as `Progress.label` (the stage names of app.core.flow.STAGES)
so the stage list, the progress bar and the ETA come from one stream.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

from app.core.runner import ProcessPlan, Progress, run_process
from app.qt.worker import Job, JobContext


def stage_start(ctx: JobContext, stage: str) -> None:
    """Announce a stage without fine-grained progress yet (0 of 0 = just started)."""
    ctx.cancel.raise_if_cancelled()
    ctx.on_line(f"== {stage}")
    ctx.on_progress(Progress(stage, 0, 0, 0.0, None))


def stage_done(ctx: JobContext, stage: str, started: float) -> None:
    ctx.on_progress(Progress(stage, 1, 1, time.monotonic() - started, 0.0))


def run_plan(ctx: JobContext, plan: ProcessPlan, *, hint: str = "") -> None:
    """Run one external command as a stage, streaming lines and Ninja progress; raises on failure/cancel."""
    stage = plan.label or plan.argv[0]
    stage_start(ctx, stage)
    ctx.on_line("$ " + " ".join(plan.argv))
    run_process(plan, on_line=ctx.on_line, on_progress=ctx.on_progress, cancel=ctx.cancel, check=True, hint=hint)


def plans_job(plans: Sequence[ProcessPlan], *, hint: str = "") -> Job:
    """A job that runs `plans` in order (each plan's label is its stage)."""

    def job(ctx: JobContext) -> dict[str, Any]:
        done = []
        for plan in plans:
            t0 = time.monotonic()
            run_plan(ctx, plan, hint=hint)
            stage_done(ctx, plan.label, t0)
            done.append(plan.label)
        return {"stages": done}

    return job


def step(ctx: JobContext, stage: str, fn: Callable[[], Any]) -> Any:
    """Run one in-process core call as a stage."""
    t0 = time.monotonic()
    stage_start(ctx, stage)
    result = fn()
    stage_done(ctx, stage, t0)
    return result
