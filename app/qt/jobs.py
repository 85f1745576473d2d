"""Jobs for the Work page: plain callables composed from core calls (no Qt here).

Each job reports its current stage as `Progress.label` (the stage names of app.core.flow.STAGES)
so the stage list, the progress bar and the ETA come from one stream.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from app.core.errors import UnlockedError
from app.core.flow import Method
from app.core.runner import ProcessPlan, Progress, run_process
from app.qt.state import CoreMissing, core
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


@dataclass(frozen=True)
class Prereq:
    name: str
    found: bool
    how_to_get: str = ""


@dataclass(frozen=True)
class MethodOption:
    """One way to obtain the chosen backend, with what it costs. Built from core answers only."""

    method: Method
    title: str
    available: bool
    safe: bool = True
    time_seconds: float | None = None
    download_bytes: int | None = None
    prereqs: tuple[Prereq, ...] = ()
    note: str = ""
    detail: Any = None  # the core object behind it (catalog entry, build plan, patch plan)


METHOD_TITLES = {
    Method.PATCH: "Patch an official backend (no download, seconds)",
    Method.DOWNLOAD: "Download a prebuilt backend",
    Method.BUILD: "Build from source on this computer",
}


def cheapest_safe(options: Sequence[MethodOption]) -> MethodOption | None:
    """The option to preselect: the first available and safe one in cost order (patch, download, build)."""
    order = list(Method)
    for opt in sorted(options, key=lambda o: order.index(o.method)):
        if opt.available and opt.safe:
            return opt
    return None


def unavailable(method: Method, exc: BaseException) -> MethodOption:
    msg = exc.message if isinstance(exc, UnlockedError) else str(exc)
    return MethodOption(method, METHOD_TITLES[method], available=False, note=msg)


def _option(method: Method, build: Callable[[], MethodOption]) -> MethodOption:
    try:
        return build()
    except UnlockedError as exc:
        return unavailable(method, exc)


def method_options(state: Any, config: Any) -> list[MethodOption]:
    """Ask the core what each method would cost for the chosen candidate (never guessed here)."""
    return [
        _option(Method.PATCH, lambda: _patch_option(state, config)),
        _option(Method.DOWNLOAD, lambda: _download_option(state, config)),
        _option(Method.BUILD, lambda: _build_option(state, config)),
    ]


def _patch_option(state: Any, config: Any) -> MethodOption:
    core("app.core.patchonly")
    raise CoreMissing("The patch-only core is not wired into the wizard yet.")


def _download_option(state: Any, config: Any) -> MethodOption:
    core("app.core.fetch.catalog")
    raise CoreMissing("The catalog core is not wired into the wizard yet.")


def _build_option(state: Any, config: Any) -> MethodOption:
    core("app.core.build.plan")
    raise CoreMissing("The build core is not wired into the wizard yet.")


def install_job(state: Any, config: Any) -> Job:
    """The real job for the chosen method."""
    raise CoreMissing(f"Installing with method {state.method} is not wired into the wizard yet.")
