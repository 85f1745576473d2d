"""Jobs for the Work page: plain callables composed from core calls (no Qt here).

Each job reports its current stage as `Progress.label` (the stage names of app.core.flow.STAGES)
so the stage list, the progress bar and the ETA come from one stream.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from app.core import install_check, patchonly
from app.core.builder import audit, pipeline, smoke, tinymodel
from app.core.builder.estimate import estimate_build
from app.core.builder.prereq import PrereqReport
from app.core.errors import UnlockedError
from app.core.fetch import obtain
from app.core.flow import Method
from app.core.hardware.report import HardwareReport
from app.core.lmstudio import backends, provenance
from app.core.lmstudio import install as inst
from app.core.lmstudio.home import LmsHome
from app.core.recommend import Candidate, pick_build_template
from app.core.runner import ProcessPlan, Progress, run_process
from app.qt.state import WizardConfig, WizardState
from app.qt.text import build_needs, format_size, variant_name
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
    detail: patchonly.PatchPlan | obtain.ObtainPlan | pipeline.BuildJob | None = None  # the core plan behind it
    needs: str = ""  # what this way needs from the computer (internet, disk space, tools), in one sentence
    time_range: str = ""  # an estimate's range in words, where the core gives one (a build)


METHOD_TITLES = {
    Method.PATCH: "&Patch an official backend (no download, seconds)",
    Method.DOWNLOAD: "&Download a prebuilt backend",
    Method.BUILD: "B&uild from source on this computer",
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


def method_options(state: WizardState, config: WizardConfig) -> list[MethodOption]:
    """Ask the core what each method would cost for the chosen candidate (never guessed here)."""
    return [
        _option(Method.PATCH, lambda: _patch_option(state, config)),
        _option(Method.DOWNLOAD, lambda: _download_option(state, config)),
        _option(Method.BUILD, lambda: _build_option(state, config)),
    ]


def _framework(candidate: Candidate | None) -> str:
    fw = candidate.gpu_framework if candidate is not None else ""
    return "" if fw in ("", "none", "cpu") else fw


def _patch_option(state: WizardState, config: WizardConfig) -> MethodOption:
    plans = patchonly.find_patch_candidates(state.require_home(), state.require_report(),
                                            frameworks=(_framework(state.candidate),))
    if not plans:
        raise UnlockedError("No official LM Studio backend of this kind is installed to patch.")
    plan = plans[0]  # safe plans come first
    safe = not plan.refusals
    note = f"Clones {plan.template.ident}; its binaries were audited against this processor."
    if not safe:
        note = "Refused: " + "; ".join(plan.refusals)
    return MethodOption(Method.PATCH, METHOD_TITLES[Method.PATCH], available=safe, safe=safe, time_seconds=10,
                        download_bytes=0, note=note, detail=plan)


ASSUMED_DOWNLOAD_RATE = 5 * 2**20  # bytes/s, for the time estimate only (said so on the page)


def _download_option(state: WizardState, config: WizardConfig) -> MethodOption:
    variant = state.require_candidate().variant
    key, home, report = config.catalog_public_key, state.require_home(), state.require_report()
    # One catalog read: the entries that fit this computer and an official pack of this home, the others with a
    # one-line reason each (the overlays helper's catalog_offers).
    offers = obtain.catalog_offers(config.catalog_url, home=home, report=report, variant=variant, public_key_path=key)
    if not offers.offered:
        why = "; ".join(offers.explanations())
        raise UnlockedError(f"The catalog has no prebuilt “{variant_name(variant)}” for this computer"
                            + (f": {why}" if why else "."))
    plan = obtain.plan_from_catalog(config.catalog_url, home=home, report=report,
                                    entry_ident=offers.offered[0].entry.ident, public_key_path=key)
    size = plan.size
    t = (size / ASSUMED_DOWNLOAD_RATE + 15) if size else None
    signed = plan.catalog.signed_by if plan.catalog is not None else ""
    note = f"{offers.offered[0].entry.ident} from {plan.catalog.source if plan.catalog else plan.source}"
    note += f", signature checked (key {signed})" if signed else ", UNSIGNED catalog"
    note += "; time assumes 5 MB/s"
    if offers.others:
        note += ". Not offered here: " + "; ".join(offers.explanations())
    return MethodOption(Method.DOWNLOAD, METHOD_TITLES[Method.DOWNLOAD], available=True, safe=True,
                        time_seconds=t, download_bytes=size, note=note, detail=plan)


def build_template(state: WizardState) -> backends.BackendInfo:
    """The official backend the build is packaged into: the core's choice (the CLI's `build` makes the same)."""
    report = state.report
    platform = report.os.platform if report is not None and report.os is not None else ""
    template: backends.BackendInfo = pick_build_template(backends.list_backends(state.require_home()),
                                                         _framework(state.candidate), platform)
    return template


def _build_option(state: WizardState, config: WizardConfig) -> MethodOption:
    template = build_template(state)
    job = pipeline.prepare_job(template=template, variant=state.require_candidate().variant, report=state.report,
                               fetch=False, source=config.build_source())
    prereqs = tuple(Prereq(m.what, False, m.how) for m in job.prereq.missing)
    found = tuple(Prereq(name, True) for name in _found_tools(job.prereq))
    fetched = "(not yet fetched)" not in str(job.source.root)
    est = estimate_build(job.plan)  # the build helper's measured range for exactly these targets on this machine
    t = (est.low_seconds + est.high_seconds) / 2
    note = f"Packaged into a copy of {template.ident} (llama.cpp {job.tag or job.commit or '?'})"
    if prereqs:
        note += ". Install what is missing, then run the wizard again."
    src = config.build_source() if config is not None else None
    needs = build_needs(_free_disk(), offline_source=src is not None or fetched,
                        missing_tools=[p.name for p in prereqs])
    for d in job.downloads():
        size = f", {format_size(d['bytes'])}" if d.get("bytes") else ""
        needs += f" Downloads first: {d['what']}{size}."
    if job.toolchain is not None and job.toolchain.need_fetch:
        needs += " The missing tools come as a portable toolchain (fetched automatically): " + "; ".join(
            job.toolchain.reasons) + "."
    return MethodOption(Method.BUILD, METHOD_TITLES[Method.BUILD], available=not prereqs, safe=True,
                        time_seconds=t, download_bytes=None if not fetched else 0,
                        prereqs=found + prereqs, note=note, detail=job, needs=needs,
                        time_range=f"{est.words()} ({est.basis})")


def _free_disk() -> int | None:
    """Free space where the build happens (this tool's cache folder, or the nearest folder above it that exists)."""
    from app.core.paths import user_cache_dir

    d = Path(user_cache_dir())
    while not d.exists() and d != d.parent:
        d = d.parent
    try:
        return shutil.disk_usage(d).free
    except OSError:
        return None


def _found_tools(prereq: PrereqReport) -> list[str]:
    t = prereq.tools
    found = {"cmake": t.cmake, "ninja": t.ninja, "cc": t.cc, "cxx": t.cxx, "glslc": t.glslc,
             "vulkan_headers": t.vulkan_headers, "nvcc": t.nvcc, "ccache": t.ccache}
    return [name for name, path in found.items() if path]


# --- the install job per method -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Check:
    """One check's result; `ok` None means it did not run (never shown as passed)."""

    name: str
    ok: bool | None
    summary: str


@dataclass(frozen=True)
class InstallOutcome:
    ident: str
    folder: Path
    checks: tuple[Check, ...] = ()
    warnings: tuple[str, ...] = ()


def install_job(state: WizardState, config: WizardConfig) -> Job:
    """The real job for the chosen method; the plans were made on the Method page."""
    opt = next((o for o in state.method_options if o.method is state.method and o.available), None)
    if opt is None:
        raise UnlockedError(f"The method {state.method} is not available here.")
    report, detail = state.report, opt.detail
    if isinstance(detail, patchonly.PatchPlan):
        return lambda ctx: _patch_job(ctx, detail)
    if isinstance(detail, obtain.ObtainPlan):
        return lambda ctx: _download_job(ctx, detail, report)
    if isinstance(detail, pipeline.BuildJob):
        source, home = config.build_source(), state.require_home()
        return lambda ctx: _build_job(ctx, detail, home, source)
    raise UnlockedError(f"The method {state.method} has no plan to run.")


def _patch_job(ctx: JobContext, plan: patchonly.PatchPlan) -> InstallOutcome:
    step(ctx, "audit", lambda: None)  # the audit ran when the plan was made; its evidence is in the plan
    audited = Check("ISA audit", not plan.violations,
                  "nothing in the official binaries needs an instruction this processor lacks"
                  if not plan.violations else "; ".join(v.describe() for v in plan.violations))
    for line in plan.describe():
        ctx.on_line(line)
    result = step(ctx, "clone and install", lambda: patchonly.execute_patch(plan))
    return InstallOutcome(result.ident, result.dest, (audited,))


def _download_job(ctx: JobContext, plan: obtain.ObtainPlan, report: HardwareReport | None) -> InstallOutcome:
    for line in plan.describe():
        ctx.on_line(line)
    stage_start(ctx, "download")
    t0 = time.monotonic()
    state = {"announced": False}

    def progress(p: Any) -> None:
        total = p.total or 0
        ctx.on_progress(Progress("download", p.done, total, time.monotonic() - t0, p.eta))
        if total and p.done >= total and not state["announced"]:
            state["announced"] = True
            stage_start(ctx, "verify, extract and install")

    res = obtain.execute_obtain(plan, progress=progress, cancel=ctx.cancel)
    if not state["announced"]:
        stage_start(ctx, "verify, extract and install")
    ctx.on_line(f"installed {res.install.ident} into {res.install.dest}")
    checks = [install_check_summary(res.check)] if res.check is not None else []
    checks.append(step(ctx, "audit", lambda: audit_check(res.install.dest, report)))
    checks.append(step(ctx, "smoke test", lambda: smoke_check(ctx, res.install.dest)))
    return InstallOutcome(res.install.ident, res.install.dest, tuple(checks), tuple(plan.warnings))


def install_check_summary(judged: install_check.InstallCheck) -> Check:
    """The check `execute_obtain` made before writing (refused ones never get here unless forced)."""
    notes = [f.message for f in judged.findings if f.severity in ("refuse", "warning")]
    return Check("Install check", not judged.refused, "; ".join(notes) or "platform, processor, engine version and "
                 "smoke record fit this computer and this LM Studio")


def audit_check(folder: Path, report: HardwareReport | None) -> Check:
    fa = audit.audit_folder(folder)
    isa = list(report.cpu.isa) if report is not None and report.cpu is not None else []
    bad = audit.audit_violations(fa, isa)
    if bad:
        return Check("ISA audit", False, "; ".join(v.describe() for v in bad))
    if not fa.binaries:  # nothing was looked at: not a pass
        return Check("ISA audit", None, "not run: the pack has no program or library to audit")
    if not isa:
        return Check("ISA audit", None, "not run: this computer's instruction sets are not known")
    return Check("ISA audit", True, f"{len(fa.binaries)} binaries checked: nothing needs an instruction this "
                 "processor lacks")


def smoke_check(ctx: JobContext, folder: Path) -> Check:
    """Run the installed pack's own server with the tiny model, when it has one."""
    info = backends.read_backend(folder)
    server = folder / (info.server_relpath or "llama-server")
    if not server.is_file():
        return Check("Smoke test", None, "not run: this pack has no program of its own to start "
                     "(LM Studio loads its libraries directly)")
    fw = info.gpu_framework.lower() or "cpu"
    program = server.relative_to(folder).as_posix()  # a 2.x replacement server lives in its own sub-folder
    plan = smoke.plan_smoke(folder, tinymodel.shipped_model(), framework=fw, kind="server", program=program)
    r = smoke.run_smoke(plan, cancel=ctx.cancel)
    for line in r.log_tail:
        ctx.on_line(line)
    return Check("Smoke test", r.ok, f"{r.tokens} tokens in {r.seconds:.1f} s" + (f" — {r.reason}" if r.reason else ""))


BUILD_STEP_STAGE = {
    "build": "configure",
    "mapping libraries": "package",
    "cloning template": "package",
    "run paths and exec bits": "package",
    "ABI guard": "audit",
    "ISA audit": "audit",
    "provenance": "audit",
    "smoke test": "smoke test",
}


def _build_job(ctx: JobContext, job: pipeline.BuildJob, home: LmsHome, source: Path | None = None
               ) -> InstallOutcome:
    stage_start(ctx, "source")
    t0 = time.monotonic()

    def src_progress(p: Any) -> None:
        ctx.on_progress(Progress("source", p.done, p.total or 0, time.monotonic() - t0, p.eta))

    job = pipeline.prepare_job(template=job.template, variant=job.plan.variant, report=job.report, source=source,
                               progress=src_progress, cancel=ctx.cancel)
    current = {"stage": "source"}

    def on_step(name: str) -> None:
        ctx.on_line(f"== {name}")
        stage = BUILD_STEP_STAGE.get(name, current["stage"])
        if stage != current["stage"]:
            current["stage"] = stage
            stage_start(ctx, stage)

    def on_progress(p: Progress) -> None:
        if current["stage"] != "build":
            current["stage"] = "build"
        ctx.on_progress(Progress("build", p.done, p.total, p.elapsed, p.eta_seconds))

    res = pipeline.run_job(job, on_line=ctx.on_line, on_progress=on_progress, on_step=on_step, cancel=ctx.cancel)
    pkg = res.package
    checks = [
        Check("ISA audit", not pkg.violations, "; ".join(v.describe() for v in pkg.violations)
              or "nothing needs an instruction this processor lacks"),
        Check("ABI guard", not pkg.abi_missing, f"{len(pkg.abi_missing)} symbols LM Studio's files need are missing"
              if pkg.abi_missing else "every symbol LM Studio's own files need is exported"),
    ]
    if res.smoke is not None:
        checks.append(Check("Smoke test", res.smoke.ok, f"{res.smoke.tokens} tokens in {res.smoke.seconds:.1f} s"))
    else:
        checks.append(Check("Smoke test", None, "not run for this build"))

    def install() -> Any:
        # judged against the home and this computer before anything is written (same check as `install`)
        judged = install_check.check_install(pkg.folder, install_check.install_target(home, job.report),
                                             audit=pkg.audit)
        install_check.enforce(judged, force=False)
        checks.append(install_check_summary(judged))  # shown on the Verify page with the other checks
        for line in judged.describe():
            ctx.on_line(line)
        ip = inst.plan_install(home, pkg.folder)
        if ip.blocked:
            raise UnlockedError(ip.blocked, hint="Quit LM Studio (also from the tray) and press Try again.")
        prov = dict(provenance.read_provenance(pkg.folder) or {})
        prov["install_check"] = judged.provenance_record(forced=False)
        return inst.execute_install(ip, provenance=prov)

    ir = step(ctx, "install", install)
    return InstallOutcome(ir.ident, ir.dest, tuple(checks), tuple(job.warnings))
