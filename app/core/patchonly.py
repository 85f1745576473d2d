"""Patch-only: clone an installed official backend under a new name with an honest `["AVX"]` manifest.

This is the cheapest correct backend when, and only when, the ISA audit proves that the official
binaries need nothing this CPU lacks (docs/lmstudio-contract.md §9.3: stock Vulkan packs built without AVX2). The
proof is stricter than the build audit: in a stock pack every binary is LM Studio's, so all of them
are judged (including the in-process `libggml_llamacpp`, `llm_engine*` and `.node` files), except
vendor runtimes that dispatch on CPUID (MSVC, CUDA runtime). Any unreadable binary, or no ggml
library at all, means "not proven" and the patch is refused.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from app.core.builder.audit import FolderAudit, Violation, audit_folder, audit_violations
from app.core.fetch.errors import PatchRefused
from app.core.fetch.obtain import staging_area
from app.core.hardware.report import HardwareReport
from app.core.lmstudio.backends import BackendInfo, find_backend, list_backends
from app.core.lmstudio.clone import clone_template
from app.core.lmstudio.home import LmsHome, as_home
from app.core.lmstudio.install import InstallResult, execute_install, plan_install
from app.core.lmstudio.naming import our_backend_name
from app.core.version import version_key

PATCH_ISE: tuple[str, ...] = ("AVX",)
DISPLAY_SUFFIX = "(AVX, Unlocked patch)"
# Runtime libraries that pick their code path with CPUID at run time: reported, never judged.
RUNTIME_GLOBS: tuple[str, ...] = ("msvcp*", "vcruntime*", "vcomp*", "*cudart*", "*cublas*", "libgomp*")
GGML_GLOBS: tuple[str, ...] = ("libggml*", "ggml*")


@dataclass(frozen=True)
class PatchPlan:
    home: LmsHome
    template: BackendInfo
    new_name: str
    variant: str
    host_isa: tuple[str, ...]
    audit: FolderAudit | None
    violations: tuple[Violation, ...]
    refusals: tuple[str, ...]  # empty: safe
    select: bool = False

    @property
    def safe(self) -> bool:
        return not self.refusals

    @property
    def ident(self) -> str:
        return f"{self.new_name}@{self.template.version}"

    def evidence(self) -> list[str]:
        """One line per audited binary: what it uses, and whether it was judged."""
        lines: list[str] = []
        if self.audit is None:
            return lines
        for b in self.audit.binaries:
            used = ", ".join(f"{k} {v}" for k, v in sorted(b.counts.items())) or "no SIMD beyond the baseline"
            state = "judged" if b.counted else "runtime library, not judged"
            if b.skipped:
                state = f"NOT auditable: {b.skipped}"
            lines.append(f"{b.path}: {used} ({state}, {b.instructions} instructions)")
        return lines

    def describe(self) -> list[str]:
        lines = [
            f"patch-only from {self.template.ident} ({self.template.folder})",
            f"this CPU can use: {' '.join(self.host_isa) or 'unknown'}",
            "ISA audit of every binary in the template:",
        ]
        lines += ["  " + x for x in self.evidence()]
        if self.safe:
            lines.append(
                f"SAFE: no binary uses an instruction this CPU lacks; install {self.ident} "
                f"(clone with manifest ISE {list(PATCH_ISE)}, binaries unchanged)"
            )
        else:
            lines.append("REFUSED:")
            lines += ["  " + r for r in self.refusals]
            lines += ["  " + v.describe() for v in self.violations]
        return lines

    def to_json(self) -> dict[str, Any]:
        return {
            "template": self.template.ident,
            "new_backend": self.ident,
            "variant": self.variant,
            "safe": self.safe,
            "refusals": list(self.refusals),
            "violations": [dataclasses.asdict(v) for v in self.violations],
            "evidence": self.evidence(),
            "host_isa": list(self.host_isa),
        }


def _variant_for(info: BackendInfo) -> str:
    fw = info.gpu_framework.lower()
    if fw == "vulkan":
        return "vulkan-avx1"
    if fw == "cuda":
        return "cuda-avx1"
    if fw == "rocm":
        return "rocm-avx1"
    return "cpu-avx1"


def _judge_all(fa: FolderAudit) -> FolderAudit:
    """Every binary judged except CPUID-dispatching runtimes."""
    out = []
    for b in fa.binaries:
        name = os.path.basename(b.path).lower()
        runtime = any(fnmatch.fnmatch(name, g) for g in RUNTIME_GLOBS)
        out.append(dataclasses.replace(b, counted=not runtime))
    return dataclasses.replace(fa, binaries=tuple(out))


def plan_patch(
    home: LmsHome | Path | str,
    ident: str,
    report: HardwareReport,
    *,
    select: bool = False,
    audit: FolderAudit | None = None,
) -> PatchPlan:
    """Audit the installed backend `ident` (NAME@VERSION) against this CPU and plan the clone.

    Never raises for an unsafe backend: the plan says why (`refusals`, `violations`); `execute_patch`
    refuses such a plan.
    """
    h = as_home(home)
    info = find_backend(h, ident)
    host = tuple(report.cpu.isa) if report.cpu is not None else ()
    refusals: list[str] = []
    variant = _variant_for(info)
    try:
        new_name = our_backend_name(info.name, variant)
    except Exception as exc:  # NamingError: template not suited
        new_name = ""
        refusals.append(f"cannot name a clone of {info.name}: {exc}")
    if info.ours:
        refusals.append(f"{info.ident} is one of our own backends; patch-only clones official ones")
    if report.cpu is None:
        refusals.append("the CPU could not be probed, so nothing can be proven")
    elif "AVX" not in host:
        refusals.append(
            "this CPU has no AVX: LM Studio would not list an [\"AVX\"] backend, and a manifest cannot say less "
            "(build the experimental noavx variant instead)"
        )
    elif "AVX2" in host and "FMA" in host and "F16C" in host:
        refusals.append("not needed: this CPU has AVX2, FMA and F16C, so the official backend already runs")
    fa = audit if audit is not None else audit_folder(info.folder)
    judged = _judge_all(fa)
    violations = tuple(audit_violations(judged, host)) if host else ()
    unreadable = [b.path for b in judged.binaries if b.skipped]
    if unreadable:
        refusals.append("some binaries could not be audited, so safety is not proven: " + ", ".join(unreadable))
    ggml = [b for b in judged.binaries if any(fnmatch.fnmatch(os.path.basename(b.path).lower(), g) for g in GGML_GLOBS)]
    if not ggml:
        refusals.append("no ggml library (libggml*/ggml*) was found to audit, so safety is not proven")
    if violations:
        refusals.append(
            f"the audit found instructions this CPU lacks in {len({v.file for v in violations})} binar"
            f"{'y' if len({v.file for v in violations}) == 1 else 'ies'}; a manifest edit cannot fix that "
            "(build the backend from source instead)"
        )
    return PatchPlan(h, info, new_name, variant, host, judged, violations, tuple(refusals), select)


def execute_patch(plan: PatchPlan, *, provenance: Mapping[str, Any] | None = None) -> InstallResult:
    """Clone into staging and install transactionally. Refuses an unsafe plan.

    Raises:
        PatchRefused: the plan is not proven safe (the evidence is in `details`).
    """
    if not plan.safe:
        raise PatchRefused(
            f"Patch-only refused for {plan.template.ident}: {plan.refusals[0]}",
            context=str(plan.template.folder),
            hint="Use a prebuilt backend (`lms-unlocked install --catalog`) or build one (`lms-unlocked build`).",
            details="\n".join(plan.describe()),
        )
    with staging_area() as staging:
        dest = staging / f"{plan.new_name}-{plan.template.version}"
        clone_template(
            plan.template.folder, dest, new_name=plan.new_name, ise=list(PATCH_ISE), display_suffix=DISPLAY_SUFFIX
        )
        ip = plan_install(plan.home, dest, select=plan.select)
        if ip.blocked:
            raise PatchRefused(f"Cannot install and select now: {ip.blocked}", hint="Quit LM Studio and retry.")
        totals = plan.audit.totals() if plan.audit is not None else {}
        info: dict[str, Any] = {
            "obtained_by": "patch-only",
            "variant": plan.variant,
            "template": plan.template.ident,
            "llama_cpp_tag": plan.template.llama_tag or "",
            "audit": {"host_isa": list(plan.host_isa), "totals": totals, "evidence": plan.evidence()},
        }
        info.update(provenance or {})
        return execute_install(ip, provenance=info)


def find_patch_candidates(
    home: LmsHome | Path | str,
    report: HardwareReport,
    *,
    frameworks: tuple[str, ...] | None = None,
) -> list[PatchPlan]:
    """Plan patch-only for every installed official llama.cpp backend of this OS/arch; safe plans first.

    Args:
        frameworks: only templates of these GPU frameworks ("vulkan", "cuda", "" for CPU packs); None: all.

    Returns:
        Plans ordered safe first, then Vulkan before CUDA before CPU, newest engine version first.
        Each plan carries its evidence, so the UI can show why a template was not offered.
    """
    h = as_home(home)
    platform = report.os.platform if report.os is not None else ""
    arch = report.cpu.architecture if report.cpu is not None else ""
    plans: list[PatchPlan] = []
    for b in list_backends(h):
        if not b.valid or b.ours or not b.name.startswith("llama.cpp-"):
            continue
        if (platform and b.platform != platform) or (arch and b.arch != arch):
            continue
        if frameworks is not None and b.gpu_framework.lower() not in frameworks:
            continue
        plans.append(plan_patch(h, b.ident, report))
    fw_rank = {"vulkan": 0, "cuda": 1, "": 2}
    plans.sort(key=lambda p: version_key(p.template.version), reverse=True)  # newest first; stable below
    return sorted(plans, key=lambda p: (0 if p.safe else 1, fw_rank.get(p.template.gpu_framework.lower(), 3)))
