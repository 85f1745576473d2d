"""The whole `build` job: template -> tag -> toolchain -> source -> plan -> build -> package -> smoke.

`prepare_job()` is pure-ish (reads the template and the cache, runs nothing) and returns a `BuildJob` whose
plan can be shown with `--plan-only`; `run_job()` executes it. The wizard's build page and the CLI share both.

What a finished job proves: the packaged folder itself generated tokens (our host program loading the folder's
own llama library with the new ggml libraries next to it; under ``qemu-x86_64 -cpu MODEL`` when asked, under
Wine for a Windows folder built on Linux), and the ISA audit passed. A folder whose smoke test fails is removed.
"""

from __future__ import annotations

import re
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from app.core.builder.estimate import estimate_build
from app.core.builder.execute import BuildResult, run_build
from app.core.builder.hostprog import ensure_host_program, llama_library, plan_host_program
from app.core.builder.package import PackageResult, package_backend
from app.core.builder.patches import read_series, select_patches
from app.core.builder.plan import PROJECT_INCLUDE, ZIG_WINDOWS_HEADER, BuildPlan, parse_variant, plan_build
from app.core.builder.prereq import PrereqReport, Tools, check_prerequisites, find_tools, require
from app.core.builder.smoke import (
    SmokePlan,
    SmokeResult,
    SmokeSetupError,
    find_wine,
    plan_smoke,
    require_qemu,
    require_smoke,
    run_smoke,
    smoke_record,
)
from app.core.builder.source import SourceTree, archive_url, find_prepared_source, prepare_source
from app.core.builder.tinymodel import shipped_model
from app.core.builder.toolchain import ToolchainChoice, choose_toolchain, fetch_portable, host_os
from app.core.errors import UnlockedError, UsageError
from app.core.hardware.report import HardwareReport
from app.core.lmstudio.backends import BackendInfo
from app.core.lmstudio.provenance import read_provenance, record_smoke
from app.core.paths import resource_path, user_cache_dir, user_data_dir
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
    toolchain: ToolchainChoice | None = None
    cache_root: Path | None = None

    def downloads(self) -> list[dict[str, Any]]:
        """What the run will download before building, with sizes where known."""
        out: list[dict[str, Any]] = []
        if not self.source.root.is_dir():
            url = archive_url(self.tag) if self.tag else None
            out.append(
                {
                    "what": f"llama.cpp source {self.tag or self.commit}",
                    "from": url,
                    "bytes": None,
                    "note": "size not known before the download starts; offline, give --source ARCHIVE|DIR",
                }
            )
        for w in self.toolchain.need_fetch if self.toolchain else ():
            out.append(
                {
                    "what": f"{w.package} {w.version} (portable toolchain)",
                    "from": w.url,
                    "bytes": w.size,
                    "unpacked_bytes": w.unpacked_bytes,
                }
            )
        return out

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
            "target_os": p.target_os,
            "target_cpu": target_cpu(self.report, p),
            "toolchain": self.toolchain.to_dict() if self.toolchain else None,
            "estimate": estimate_build(p).to_dict(),
            "downloads": self.downloads(),
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
    smoke_program: bool = False,
    replace_server: bool = False,
    cache_root: Path | None = None,
    tools: Tools | None = None,
    fetch: bool = True,
    progress: Callable[[Any], None] | None = None,
    cancel: CancelToken | None = None,
    portable: str = "auto",
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
    target_os = template.platform if template.platform in ("linux", "win", "mac") else host_os()
    chain = choose_toolchain(tools, target_os=target_os, cache_root=cache, portable=portable)
    # What the toolchain will provide (portable tools count once they are fetched by run_job).
    effective = Tools(
        **{
            **tools.__dict__,
            "cmake": chain.cmake,
            "ninja": chain.ninja,
            "cc": chain.cc[0] if chain.cc else None,
            "cxx": chain.cxx[0] if chain.cxx else None,
        }
    )
    pre = check_prerequisites(v.framework, effective, compute_capabilities=ccs)
    if not any(
        select_patches(read_series(), tag=the_tag, commit=commit, features=frozenset(_features(v.framework, ccs)))
    ):
        # No patch for this tag and framework (e.g. every CPU build so far): patch/git is not needed at all.
        pre = replace(pre, missing=tuple(m for m in pre.missing if m.what != "patch"))
    features = _features(v.framework, ccs)
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
    plan = plan_build(
        report,
        variant,
        tree,
        generic=generic,
        jobs=jobs,
        build_root=cache / "builds",
        replace_server=replace_server,
        smoke_program=smoke_program,
        cmake=chain.cmake or "cmake",
        ninja=chain.ninja,
        ccache=tools.ccache if not chain.zig else None,
        nvcc=tools.nvcc,
        cuda_version=tools.cuda_version,
        target_os=target_os,
        toolchain=chain,
        layout_targets=layout_targets(template.folder, target_os, v.framework),
        project_include=str(resource_path(*PROJECT_INCLUDE)),
        zig_windows_header=str(resource_path(*ZIG_WINDOWS_HEADER)),
    )
    from app.core.lmstudio.naming import our_backend_name

    name = our_backend_name(template.name, variant)
    out = (out_dir or (user_data_dir() / "built")) / f"{name}-{template.version}-{cpu_slug(plan)}"
    return BuildJob(template, the_tag, commit, tree, plan, pre, out, report, tuple(warnings), chain, cache)


def _features(framework: str, ccs: tuple[str, ...]) -> set[str]:
    """Patch-series features of a build: {"vulkan"}, {"cuda"}, {"cuda", "cuda-kepler"} or none."""
    features: set[str] = set()
    if framework == "vulkan":
        features.add("vulkan")
    if framework == "cuda":
        features.add("cuda")
        if any(float(c) < 5.0 for c in ccs):
            features.add("cuda-kepler")
    return features


def layout_targets(template_folder: Path, target_os: str, framework: str) -> tuple[tuple[str, str], ...]:
    """What else the template's layout needs rebuilt: a 1.x Windows pack ships upstream ``ggml.dll`` renamed
    ``ggml_llamacpp.dll`` (docs/lmstudio-contract.md §8.1, §9.1), built from the same tag as ggml-base/-cpu."""
    if target_os == "win" and framework == "cpu" and (Path(template_folder) / "ggml_llamacpp.dll").is_file():
        return (("ggml", "ggml_llamacpp"),)
    return ()


def cpu_slug(plan: BuildPlan) -> str:
    """A short folder-name part saying which ISA the build targets, so builds for different CPUs don't
    collide: "generic", or the ISA beyond SSSE3 (e.g. "sse4.2-avx-f16c"), or "x86-64" for the baseline."""
    if plan.generic:
        return "generic"
    extra = [x.lower() for x in plan.isa if x not in ("SSE3", "SSSE3", "SSE4.1", "POPCNT")]
    slug = "-".join(extra) or "x86-64"
    return re.sub(r"[^a-z0-9.-]+", "", slug)[:80]


def target_cpu(report: HardwareReport | None, plan: BuildPlan) -> dict[str, Any]:
    """Which CPU/ISA a build is for (plan output and provenance)."""
    cpu = report.cpu if report and not plan.generic else None
    return {
        "brand": cpu.brand if cpu else None,
        "microarchitecture": cpu.microarchitecture if cpu else None,
        "generic": plan.generic,
        "isa": list(plan.isa),
    }


def preflight(job: BuildJob, *, smoke: bool, qemu_cpu: str | None) -> None:
    """Refuse, before anything is built, a job whose proof cannot run as asked."""
    require(job.prereq)
    if not smoke:
        if qemu_cpu:
            raise SmokeSetupError("--qemu-cpu needs the smoke test; it cannot be combined with --no-smoke.")
        return
    if job.plan.target_os == "win" and host_os() != "win":
        if qemu_cpu:
            plan_smoke(job.out_dir, job.out_dir, target="win", qemu_cpu=qemu_cpu)  # raises SmokeSetupError
        if find_wine() is None:
            raise SmokeSetupError(
                "Smoke-testing a Windows backend on Linux needs Wine, which is not installed.",
                hint="Install it (Debian/Ubuntu: sudo apt-get install --no-install-recommends wine64), or build "
                "with --no-smoke (the folder is then not proven to run).",
            )
    elif job.plan.target_os != host_os():
        raise SmokeSetupError(
            f"A {job.plan.target_os} backend cannot be smoke-tested on this system.", hint="Use --no-smoke."
        )
    require_qemu(qemu_cpu)


def ensure_toolchain(
    job: BuildJob,
    *,
    on_step: Callable[[str], None] | None = None,
    progress: Callable[[Any], None] | None = None,
    cancel: CancelToken | None = None,
) -> dict[str, Any]:
    """Fetch the portable tools the plan needs (verified, cached) and write the zig wrapper scripts."""
    chain = job.toolchain
    info: dict[str, Any] = {}
    if chain is None:
        return info
    if chain.need_fetch:
        names = tuple(dict.fromkeys(w.package for w in chain.need_fetch))
        res = fetch_portable(
            names, job.cache_root or user_cache_dir(), progress=progress, on_step=on_step, cancel=cancel
        )
        info["fetched"] = [
            {
                "package": r.wheel.package,
                "version": r.wheel.version,
                "reused": r.reused,
                "download_seconds": round(r.download_seconds, 1),
                "unpack_seconds": round(r.unpack_seconds, 1),
            }
            for r in res
        ]
    return info


def zig_env(job: BuildJob) -> dict[str, str]:
    """The plan's zig cache settings (zig keeps its compiled C runtimes there)."""
    return {k: v for k, v in job.plan.build.env.items() if k.startswith("ZIG_")}


def run_job(
    job: BuildJob,
    *,
    on_line: Callable[[str], None] | None = None,
    on_progress: Callable[[Progress], None] | None = None,
    on_step: Callable[[str], None] | None = None,
    download_progress: Callable[[Any], None] | None = None,
    cancel: CancelToken | None = None,
    smoke: bool = True,
    qemu_cpu: str | None = None,
) -> JobResult:
    step = on_step or (lambda _s: None)
    preflight(job, smoke=smoke, qemu_cpu=qemu_cpu)
    t0 = time.monotonic()
    extra: dict[str, Any] = {}
    if job.toolchain and job.toolchain.need_fetch:
        step("toolchain")
        extra["toolchain_fetch"] = ensure_toolchain(job, on_step=step, progress=download_progress, cancel=cancel)
    step("build")
    shown = on_line
    if on_line is not None and not (Path(job.source.root) / ".git").exists():
        # llama.cpp's build-info.cmake asks git even when the build commit is given; from a source archive that
        # only prints "fatal: not a git repository" (twice). Kept in the log, not shown.
        def shown(line: str) -> None:
            if "not a git repository" not in line:
                on_line(line)

    res = run_build(job.plan, on_line=shown, on_progress=on_progress, cancel=cancel)
    if job.out_dir.exists():
        if read_provenance(job.out_dir) is None:
            raise UsageError(f"{job.out_dir} exists and is not a folder we built.", hint="Choose another --out.")
        shutil.rmtree(job.out_dir)
    job.out_dir.parent.mkdir(parents=True, exist_ok=True)
    usable = job.report.cpu.isa if job.report and job.report.cpu and not job.plan.generic else None
    provenance: dict[str, Any] = {
        "source": job.source.origin,
        "patches": [a.file for a in job.source.patches],
        "target_os": job.plan.target_os,
        "target_cpu": target_cpu(job.report, job.plan),
        "toolchain": {"kind": job.toolchain.kind, "reasons": list(job.toolchain.reasons)} if job.toolchain else None,
    }
    pkg = package_backend(
        job.plan,
        res.bin_dir,
        job.template.folder,
        job.out_dir,
        template_name=job.template.name,
        template_version=job.template.version,
        platform=job.plan.target_os,
        usable_isa=usable,
        on_step=step,
        extra_provenance={**provenance, "audit": "passed"},
    )
    sm: SmokeResult | None = None
    if smoke:
        step("smoke test")
        try:
            sm = smoke_folder(job, res, qemu_cpu=qemu_cpu, cancel=cancel, server_rel=pkg.server)
        except UnlockedError as exc:
            # The test could not run (e.g. the host program did not compile): the folder is marked as not
            # proven, so `install` refuses it like a failed one.
            record_smoke(job.out_dir, {"ok": False, "reason": f"the smoke test could not run: {exc.message}"})
            raise
        # A failed smoke test leaves the folder marked in its provenance: `install` refuses it.
        require_smoke(sm, folder=job.out_dir)
    extra["seconds"] = round(time.monotonic() - t0, 1)
    return JobResult(job, res, pkg, sm, extra)


def smoke_folder(
    job: BuildJob,
    res: BuildResult,
    *,
    qemu_cpu: str | None = None,
    cancel: CancelToken | None = None,
    server_rel: str | None = None,
) -> SmokeResult:
    """Smoke-test the packaged folder: its own llama-server for 2.x templates that have one, else our host
    program (compiled against the tag's llama.h with the build's C compiler) loading the folder's own llama
    library; under qemu when asked, under Wine for a Windows folder on Linux."""
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
            qemu_cpu=qemu_cpu,
            env=env,
        )
        return _smoke_and_record(folder, plan, cancel)
    target = job.plan.target_os
    cache = job.cache_root or user_cache_dir()
    chain = job.toolchain
    if chain and chain.cc:
        compiler: tuple[str, ...] = chain.cc
    else:
        compiler = (job.prereq.tools.cc or "cc",)
    root = Path(job.source.root)
    hp = plan_host_program(
        cache / "smoke-host",
        target=target,
        compiler=compiler,
        include_dirs=(root / "include", root / "ggml" / "include"),
        env=zig_env(job),
    )
    exe = ensure_host_program(hp, cancel=cancel)
    wine = find_wine() if target == "win" and host_os() != "win" else None
    plan = plan_smoke(
        folder,
        shipped_model(),
        framework=fw,
        kind="host",
        program=str(exe),
        library=llama_library(folder, target),
        target=target,
        qemu_cpu=qemu_cpu,
        wine=wine,
        wine_prefix=cache / "wine-prefix" if wine else None,
        env=env,
    )
    return _smoke_and_record(folder, plan, cancel, log_path=Path(job.plan.log_path))


def smoke_existing_folder(
    folder: Path,
    model: Path,
    *,
    source: Path | None = None,
    framework: str = "cpu",
    qemu_cpu: str | None = None,
    n_tokens: int = 16,
    cache_root: Path | None = None,
    tools: Tools | None = None,
    cancel: CancelToken | None = None,
) -> SmokeResult:
    """`lms-unlocked smoke <folder>`: our host program against any backend folder (ours, LM Studio's, a
    community one). Compiled against `source`'s llama.h when given, else header-less (opaque mode); Windows
    folders are run under Wine on Linux, with the host cross-compiled by mingw-w64 or zig."""
    from app.core.builder.hostprog import folder_target
    from app.core.builder.toolchain import host_compiler

    cache = cache_root or user_cache_dir()
    target = folder_target(folder)
    lib = llama_library(folder, target)
    wine = None
    if target == "win" and host_os() != "win":
        if qemu_cpu:
            plan_smoke(folder, model, target="win", qemu_cpu=qemu_cpu)  # raises SmokeSetupError
        wine = find_wine()
        if wine is None:
            raise SmokeSetupError(
                "Smoke-testing a Windows backend folder on Linux needs Wine, which is not installed.",
                hint="Debian/Ubuntu: sudo apt-get install --no-install-recommends wine64",
            )
    require_qemu(qemu_cpu)
    compiler, env = host_compiler(target, tools or find_tools(), cache)
    includes: tuple[Path, ...] = ()
    if source is not None:
        from app.core.builder.source import find_llama_root

        root = find_llama_root(Path(source))
        includes = (root / "include", root / "ggml" / "include")
    hp = plan_host_program(cache / "smoke-host", target=target, compiler=compiler, include_dirs=includes, env=env)
    exe = ensure_host_program(hp, cancel=cancel)
    plan = plan_smoke(
        folder,
        model,
        framework=framework,
        kind="host",
        program=str(exe),
        library=lib,
        target=target,
        qemu_cpu=qemu_cpu,
        wine=wine,
        wine_prefix=cache / "wine-prefix" if wine else None,
        n_tokens=n_tokens,
        env={"GGML_VK_VISIBLE_DEVICES": "0"} if framework == "vulkan" else {},
    )
    return run_smoke(plan, cancel=cancel)


def _smoke_and_record(
    folder: Path, plan: SmokePlan, cancel: CancelToken | None, *, log_path: Path | None = None
) -> SmokeResult:
    """Run the smoke test and keep its verdict in the folder's provenance (`install` refuses a failed one):
    the verdict, where it ran (runner, qemu model), which libraries the host program loaded."""
    result = run_smoke(plan, cancel=cancel, log_path=log_path)
    record_smoke(folder, {**result.to_dict(), **smoke_record(result, plan), "qemu_cpu": plan.qemu_cpu})
    return result


def _only_cpu_vulkan(report: HardwareReport | None) -> bool:
    devs = report.vulkan_devices if report else ()
    return bool(devs) and all(d.device_type == "cpu" for d in devs)
