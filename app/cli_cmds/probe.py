"""`probe` (what this machine has) and `recommend` (which backend variant it needs)."""

from __future__ import annotations

import argparse
from pathlib import Path

from app.cli_cmds.common import add_home_flag, add_json_flag, add_report_source_flags, emit_json, out
from app.core.hardware.probe import probe_hardware, report_from_sources
from app.core.hardware.report import HardwareReport
from app.core.recommend import (
    Candidate,
    Recommendation,
    cpu_sentence,
    nvidia_support,
    official_cpu_supported,
    recommend,
)

GIB = 1024**3


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("probe", help="show this machine's CPU, GPUs, RAM and disk",
                       description="Probe the CPU (usable instruction sets), Vulkan and NVIDIA GPUs, RAM and "
                       "free disk.")
    add_json_flag(p)
    p.add_argument("--cpuinfo", metavar="FILE", help="describe the CPU of a saved Linux /proc/cpuinfo instead")
    p.add_argument("--no-gpu", action="store_true", help="skip the Vulkan and NVIDIA probes")
    add_home_flag(p)
    p.set_defaults(handler=run_probe)

    r = sub.add_parser("recommend", help="which backend variant this machine needs",
                       description="Recommend a backend variant (cpu-avx1, vulkan-avx1, noavx, cuda) and say why "
                       "each other one does not fit.")
    add_json_flag(r)
    add_report_source_flags(r)
    r.set_defaults(handler=run_recommend)


# ----------------------------------------------------------------------------------------------------- probe


def run_probe(args: argparse.Namespace) -> int:
    if args.cpuinfo:
        report = report_from_sources(None, args.cpuinfo)
    else:
        # free space is measured where backends go: LM Studio's home (resolved here, not by the probe)
        report = probe_hardware(disk_path=lambda: _home_path(args.home), skip_gpu=args.no_gpu)
    if args.json:
        emit_json(report.to_dict())
    else:
        for line in describe_report(report):
            out(line)
    return 0


def _home_path(home: str | None) -> Path:
    from app.core.lmstudio.home import resolve_home

    return resolve_home(home).path


def _gib(n: int) -> str:
    return f"{n / GIB:.1f} GiB"


def describe_report(report: HardwareReport) -> list[str]:
    """The report in plain language, one line per fact."""
    lines: list[str] = []
    cpu = report.cpu
    if cpu is None:
        lines.append("The CPU could not be probed.")
    else:
        lines.append(cpu_sentence(cpu))
        ident = f"{cpu.vendor_id} family {cpu.family} model {cpu.model} stepping {cpu.stepping}"
        count = f", {cpu.logical_cpus} logical CPUs" if cpu.logical_cpus else ""
        lines.append(f"  CPU: {cpu.brand or 'unknown'} ({ident}{count}; source: {cpu.source})")
        if cpu.microarchitecture == "unknown":
            lines.append("  Microarchitecture: unknown (not in our table; the instruction sets below are exact)")
        lines.append(f"  Usable instruction sets: {' '.join(cpu.isa) or 'none beyond SSE2'}")
        missing = [x for x in ("AVX", "F16C", "FMA", "AVX2", "AVX512F") if x not in cpu.isa]
        if missing and cpu.architecture in ("x86_64", "x86"):
            lines.append(f"  Not available: {' '.join(missing)}")
        if cpu.disabled_isa:
            lines.append(f"  Supported by the CPU but disabled (BIOS / hypervisor / OS): {' '.join(cpu.disabled_isa)}")
        if cpu.hypervisor:
            lines.append("  Running in a virtual machine (hypervisor flag set).")
        official = official_cpu_supported(report)
        lines.append("  LM Studio's official backends: " + (
            "supported (they need AVX2, FMA and F16C on x86-64)." if official else
            "NOT supported (they need AVX2, FMA and F16C on x86-64); run `lms-unlocked recommend`."))
    if report.os is not None:
        o = report.os
        lines.append(f"System: {o.description or o.system} ({o.platform}, {o.machine or 'unknown architecture'})")
    if report.ram_total_bytes is not None:
        lines.append(f"  RAM: {_gib(report.ram_total_bytes)}")
    if report.disk_free_bytes is not None:
        lines.append(f"  Free disk: {_gib(report.disk_free_bytes)} at {report.disk_path}")
    if report.source == "cpuinfo-file":
        lines.append("  (from a saved /proc/cpuinfo: RAM, disk and GPUs of that machine are not known)")
    lines += _describe_gpus(report)
    hard = [e for e in report.errors if e.kind != "absent"]
    for e in hard:
        lines.append(f"Probe error ({e.probe}): {e.message}" + (f" — {e.hint}" if e.hint else ""))
    return lines


def _describe_gpus(report: HardwareReport) -> list[str]:
    if report.source == "cpuinfo-file":
        return []
    if not (report.vulkan_devices or report.nvidia_gpus or report.errors_for("vulkan") or report.errors_for("nvidia")):
        return ["GPUs: not probed"]
    lines = ["Vulkan devices:"]
    for d in report.vulkan_devices:
        mem = f", {_gib(d.device_local_memory_bytes)} device memory" if d.device_local_memory_bytes else ""
        state = "useful for inference" if d.useful else f"not useful: {d.note}"
        lines.append(f"  {d.index}: {d.name} — {d.vendor}, {d.device_type} device, Vulkan {d.api_version}, "
                     f"driver {d.driver_version}{mem}; {state}")
    for e in report.errors_for("vulkan"):
        lines.append(f"  none: {e.message}" + (f" ({e.hint})" if e.hint else ""))
    lines.append("NVIDIA GPUs:")
    for g in report.nvidia_gpus:
        cc = g.compute_capability or "unknown"
        cuda = f", CUDA {g.cuda_driver_version}" if g.cuda_driver_version else ""
        mem = f", {_gib(g.memory_total_bytes)}" if g.memory_total_bytes else ""
        lines.append(f"  {g.index}: {g.name} — compute capability {cc}, driver {g.driver_version}{cuda}{mem}; "
                     + nvidia_support(g.compute_capability).sentence())
    for e in report.errors_for("nvidia"):
        lines.append(f"  none: {e.message}")
    return lines


# ------------------------------------------------------------------------------------------------- recommend


def run_recommend(args: argparse.Namespace) -> int:
    report = report_from_sources(args.report, args.cpuinfo)
    rec = recommend(report)
    if args.json:
        emit_json({"ok": True, **rec.to_dict(), "report": report.to_dict()})
    else:
        for line in describe_recommendation(rec):
            out(line)
    return 0


def _candidate_lines(n: int, c: Candidate, recommended: bool) -> list[str]:
    tags = [t for t, on in (("recommended", recommended), ("experimental", c.experimental)) if on]
    lines = [f"  {n}. {c.variant} — {c.label}" + (f"  [{', '.join(tags)}]" if tags else "")]
    lines += [f"     why: {r}" for r in c.reasons]
    lines += [f"     warning: {w}" for w in c.warnings]
    lines += [f"     note: {x}" for x in c.notes]
    if c.cuda is not None:
        cu = c.cuda
        have = f"; you have {cu.current_driver}" if cu.current_driver else ""
        lines.append(f"     CUDA: toolkit {cu.cuda_toolkit_max} or older, driver {cu.driver_branch} "
                     f"(at least {cu.driver_min}{have}), architectures {';'.join(cu.architectures)}")
    lines.append(f"     LM Studio manifest instruction_set_extensions: {list(c.manifest_ise)}")
    lines.append(f"     build flags: {' '.join(c.cmake_flags)}")
    return lines


def describe_recommendation(rec: Recommendation) -> list[str]:
    lines = [rec.summary]
    if rec.candidates:
        lines.append("")
        lines.append("Candidates (best first):")
        for i, c in enumerate(rec.candidates, 1):
            lines += _candidate_lines(i, c, c.variant == rec.recommended)
    if rec.rejected:
        lines.append("")
        lines.append("Not suitable:")
        lines += [f"  - {r.variant}: {r.why_not}" for r in rec.rejected]
    return lines
