"""The whole `build` job: template -> tag -> prerequisites -> source -> plan -> build -> package -> smoke.

`prepare_job()` is pure-ish (reads the template and the cache, runs nothing) and returns a `BuildJob` whose
plan can be shown with `--plan-only`; `run_job()` executes it. The wizard's build page and the CLI share both.
"""

from __future__ import annotations

import shutil
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from app.core.builder.execute import BuildResult, run_build
from app.core.builder.package import PackageResult, package_backend
from app.core.builder.plan import BuildPlan, parse_variant, plan_build
from app.core.builder.prereq import PrereqReport, Tools, check_prerequisites, find_tools, require
from app.core.builder.smoke import (
    SmokePlan,
    SmokeResult,
    have_qemu,
    plan_smoke,
    require_smoke,
    run_smoke,
    smoke_record,
)
from app.core.builder.source import SourceTree, find_prepared_source, prepare_source
from app.core.builder.tinymodel import shipped_model
from app.core.errors import UsageError
from app.core.hardware.report import HardwareReport
from app.core.lmstudio.backends import BackendInfo
from app.core.lmstudio.provenance import read_provenance, record_smoke
from app.core.paths import user_cache_dir, user_data_dir
from app.core.runner import CancelToken, Progress


class TagMismatch(UsageError):
    code = "tag-mismatch"


@dataclass(frozen=True)
class BuildJob:
    template: BackendInfo
    tag: str | None
    commit: str | None
    source: SourceTree
    plan: BuildPlan
    prereq: PrereqReport
    out_dir: Path
    report: HardwareReport | None
    warnings: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        p = self.plan
        return {
            "template": self.template.ident,
            "template_folder": str(self.template.folder),
            "llama_cpp": {
                "tag": self.tag,
                "commit": self.commit,
                "source": str(self.source.root),
                "patches": [a.file for a in self.source.patches],
            },
            "variant": p.variant,
            "isa": list(p.isa),
            "manifest_ise": list(p.manifest_ise),
            "gpu_targets": list(p.gpu_targets),
            "cuda_architectures": p.cuda_architectures,
            "targets": list(p.targets),
            "swap": list(p.swap_targets),
            "configure": list(p.configure.argv),
            "build": list(p.build.argv),
            "build_dir": p.build_dir,
            "log": p.log_path,
            "out_dir": str(self.out_dir),
            "missing_prerequisites": [{"what": m.what, "why": m.why, "how": m.how} for m in self.prereq.missing],
            "notes": [*p.notes, *self.prereq.notes],
            "warnings": list(self.warnings),
        }


@dataclass(frozen=True)
class JobResult:
    job: BuildJob
    build: BuildResult
    package: PackageResult
    smoke: SmokeResult | None
    extra: dict[str, Any] = field(default_factory=dict)


def resolve_tag(template: BackendInfo, tag: str | None, *, force: bool) -> tuple[str | None, str | None, list[str]]:
    """(tag, commit) to build: the template's, or `tag` (refused when it differs, unless `force`)."""
    warnings: list[str] = []
    t_tag, t_commit = template.llama_tag, template.llama_commit
    if tag and t_tag and tag != t_tag:
        if not force:
            raise TagMismatch(
                f"--tag {tag} differs from the llama.cpp build of {template.ident} ({t_tag}).",
                context=str(template.folder),
                hint="LM Studio's kept binaries import symbols of that exact version; a different tag fails with "
                "'undefined symbol' at load. Drop --tag, or add --force if you know the ABI is the same.",
            )
        warnings.append(f"building {tag} although the template was built from {t_tag} (--force)")
        return tag, None, warnings
    if tag and not t_tag and t_commit and not force:
        warnings.append(f"the template names commit {t_commit} but no tag; building {tag} as asked")
    if not template.llama_build_exact and (t_tag or t_commit):
        warnings.append("the template's own release notes name no llama.cpp build; an older entry was used")
    return tag or t_tag, (t_commit if not tag or tag == t_tag else None), warnings


def prepare_job(
    *,
    template: BackendInfo,
    variant: str,
    report: HardwareReport | None,
    tag: str | None = None,
    source: Path | None = None,
    generic: bool = False,
    jobs: int | None = None,
    out_dir: Path | None = None,
    force: bool = False,
    smoke_program: bool = True,
    replace_server: bool = False,
    cache_root: Path | None = None,
    tools: Tools | None = None,
    fetch: bool = True,
    progress: Callable[[Any], None] | None = None,
    cancel: CancelToken | None = None,
) -> BuildJob:
    """Decide the build. With `fetch=False` (plan only) the source is not downloaded: the plan then points at
    where the tree will be."""
    v = parse_variant(variant)
    the_tag, commit, warnings = resolve_tag(template, tag, force=force)
    if not the_tag and not commit and source is None:
        raise UsageError(
            f"The llama.cpp version of {template.ident} is unknown (its display-data.json names none).",
            hint="Give --tag bNNNN (the tag LM Studio's release notes name for this engine version), or --source.",
        )
    tools = tools or find_tools()
    cache = cache_root or user_cache_dir()
    ccs = tuple(g.compute_capability for g in (report.nvidia_gpus if report else ()) if g.compute_capability)
    pre = check_prerequisites(v.framework, tools, compute_capabilities=ccs)
    features: set[str] = set()
    if v.framework == "vulkan":
        features.add("vulkan")
    if v.framework == "cuda":
        features.add("cuda")
        if any(float(c) < 5.0 for c in ccs):
            features.add("cuda-kepler")
    if fetch:
        tree = prepare_source(
            tag=the_tag,
            commit=commit,
            cache_root=cache,
            source=source,
            features=frozenset(features),
            progress=progress,
            cancel=cancel,
        )
    else:
        tree = find_prepared_source(tag=the_tag, commit=commit, cache_root=cache, source=source) or SourceTree(
            cache / "llama-src" / "trees" / f"{the_tag or commit or 'src'}-(not yet fetched)",
            the_tag,
            commit,
            str(source) if source else f"GitHub tag archive {the_tag}",
        )
    platform = {"win32": "win", "darwin": "mac"}.get(sys.platform, "linux")
    plan = plan_build(
        report,
        variant,
        tree,
        generic=generic,
        jobs=jobs,
        build_root=cache / "builds",
        replace_server=replace_server,
        smoke_program=smoke_program and platform == "linux",
        cmake=tools.cmake or "cmake",
        ninja=tools.ninja,
        ccache=tools.ccache,
        nvcc=tools.nvcc,
        cuda_version=tools.cuda_version,
    )
    from app.core.lmstudio.naming import our_backend_name

    name = our_backend_name(template.name, variant)
    out = (out_dir or (user_data_dir() / "built")) / f"{name}-{template.version}"
    return BuildJob(template, the_tag, commit, tree, plan, pre, out, report, tuple(warnings))


def run_job(
    job: BuildJob,
    *,
    on_line: Callable[[str], None] | None = None,
    on_progress: Callable[[Progress], None] | None = None,
    on_step: Callable[[str], None] | None = None,
    cancel: CancelToken | None = None,
    smoke: bool = True,
    qemu_cpu: str | None = None,
) -> JobResult:
    step = on_step or (lambda _s: None)
    require(job.prereq)
    step("build")
    res = run_build(job.plan, on_line=on_line, on_progress=on_progress, cancel=cancel)
    if job.out_dir.exists():
        if read_provenance(job.out_dir) is None:
            raise UsageError(f"{job.out_dir} exists and is not a folder we built.", hint="Choose another --out.")
        shutil.rmtree(job.out_dir)
    job.out_dir.parent.mkdir(parents=True, exist_ok=True)
    platform = {"win32": "win", "darwin": "mac"}.get(sys.platform, "linux")
    usable = job.report.cpu.isa if job.report and job.report.cpu and not job.plan.generic else None
    pkg = package_backend(
        job.plan,
        res.bin_dir,
        job.template.folder,
        job.out_dir,
        template_name=job.template.name,
        template_version=job.template.version,
        platform=platform,
        usable_isa=usable,
        on_step=step,
        extra_provenance={"source": job.source.origin, "patches": [a.file for a in job.source.patches]},
    )
    sm: SmokeResult | None = None
    if smoke:
        step("smoke test")
        sm = smoke_folder(job, res, qemu_cpu=qemu_cpu, cancel=cancel, server_rel=pkg.server)
        require_smoke(sm, folder=job.out_dir)
    return JobResult(job, res, pkg, sm)


def smoke_folder(
    job: BuildJob,
    res: BuildResult,
    *,
    qemu_cpu: str | None = None,
    cancel: CancelToken | None = None,
    server_rel: str | None = None,
) -> SmokeResult:
    """Smoke-test the packaged folder: its own llama-server for 2.x templates that have one, else llama-simple
    from the build run against the folder's libraries (copied next to them for the run, then removed)."""
    folder = job.out_dir
    fw = job.plan.framework
    server = folder / (server_rel or job.template.server_relpath or "llama-server")
    env = {"GGML_VK_VISIBLE_DEVICES": "0"} if fw == "vulkan" and _only_cpu_vulkan(job.report) else {}
    if job.template.generation == "2.x" and server.is_file():
        plan = plan_smoke(
            folder,
            shipped_model(),
            framework=fw,
            kind="server",
            program=server.relative_to(folder).as_posix(),
            qemu_cpu=qemu_cpu if qemu_cpu and have_qemu() else None,
            env=env,
        )
        return _smoke_and_record(folder, plan, cancel)
    exe = folder / "llama-simple"
    added = False
    if not exe.exists():
        shutil.copy2(res.bin_dir / "llama-simple", exe)
        added = True
    try:
        plan = plan_smoke(
            folder, shipped_model(), framework=fw, qemu_cpu=qemu_cpu if qemu_cpu and have_qemu() else None, env=env
        )
        return _smoke_and_record(folder, plan, cancel)
    finally:
        if added:
            exe.unlink()


def _smoke_and_record(folder: Path, plan: SmokePlan, cancel: CancelToken | None) -> SmokeResult:
    """Run the smoke test and keep its verdict in the folder's provenance (`install` refuses a failed one)."""
    result = run_smoke(plan, cancel=cancel)
    record_smoke(folder, smoke_record(result, plan))
    return result


def _only_cpu_vulkan(report: HardwareReport | None) -> bool:
    devs = report.vulkan_devices if report else ()
    return bool(devs) and all(d.device_type == "cpu" for d in devs)
