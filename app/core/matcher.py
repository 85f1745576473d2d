"""Does a host fit a set of requirements? `why_not` answers with plain sentences (archspec's idea).

The requirement keys are documented in app/data/requirements.schema.json; the recommendation and the backend
catalog both use this one matcher.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from app.core.hardware.report import ISA_ORDER, HardwareReport, NvidiaGpu

REQUIREMENT_KEYS: frozenset[str] = frozenset(
    {"platforms", "architectures", "cpu_isa", "gpu", "nvidia_cc_min", "nvidia_cc_max", "min_ram_gib"}
)
PLATFORM_NAMES: Mapping[str, str] = {"win": "Windows", "linux": "Linux", "mac": "macOS"}
GIB = 1024**3


class RequirementsError(ValueError):
    """The requirements mapping itself is malformed (a data bug, not a host problem)."""


def _cc(text: str) -> tuple[int, int]:
    try:
        major, minor = str(text).split(".")
        return int(major), int(minor)
    except ValueError:
        raise RequirementsError(f"compute capability must look like '3.5', got {text!r}") from None


def _join(items: Sequence[str]) -> str:
    items = list(items)
    if len(items) <= 1:
        return "".join(items)
    return ", ".join(items[:-1]) + " and " + items[-1]


def _or(items: Sequence[str]) -> str:
    items = list(items)
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " or " + items[-1]


def _cpu_name(report: HardwareReport) -> str:
    cpu = report.cpu
    if cpu is None:
        return "this CPU"
    return f"your {cpu.brand}" if cpu.brand else "your CPU"


def _check_isa(report: HardwareReport, needed: Sequence[str]) -> list[str]:
    unknown = [x for x in needed if x not in ISA_ORDER]
    if unknown:
        raise RequirementsError(f"unknown instruction-set names: {', '.join(unknown)}")
    cpu = report.cpu
    if cpu is None:
        return [f"needs {_join(list(needed))}, but the CPU could not be probed"]
    missing = [x for x in needed if x not in cpu.isa]
    if not missing:
        return []
    disabled = [x for x in missing if x in cpu.disabled_isa]
    absent = [x for x in missing if x not in cpu.disabled_isa]
    out = []
    if absent:
        out.append(f"needs {_join(absent)}, which {_cpu_name(report)} does not have")
    if disabled:
        out.append(
            f"needs {_join(disabled)}, which {_cpu_name(report)} supports but which is disabled "
            "(BIOS / hypervisor / OS)"
        )
    return out


GPUS_NOT_PROBED = "GPUs were not probed (the report comes from a saved /proc/cpuinfo, which lists no GPUs)"


def _check_vulkan(report: HardwareReport) -> list[str]:
    if report.useful_vulkan_devices():
        return []
    if report.vulkan_devices:
        names = _join([f"{d.name} ({d.note or 'not useful'})" for d in report.vulkan_devices])
        return [f"needs a GPU with a Vulkan driver; only {names} was found"]
    if report.source == "cpuinfo-file":
        return [f"needs a GPU with a Vulkan driver; {GPUS_NOT_PROBED}"]
    errs = report.errors_for("vulkan")
    reason = f" ({errs[0].message})" if errs else ""
    return [f"needs a GPU with a Vulkan driver; none was found{reason}"]


def _nvidia_in_range(gpus: Sequence[NvidiaGpu], lo: tuple[int, int] | None,
                     hi: tuple[int, int] | None) -> bool:
    for g in gpus:
        cc = g.cc_tuple()
        if cc is None:
            continue
        if (lo is None or cc >= lo) and (hi is None or cc <= hi):
            return True
    return False


def _check_nvidia(report: HardwareReport, requires: Mapping[str, Any]) -> list[str]:
    gpus = report.nvidia_gpus
    if not gpus:
        if report.source == "cpuinfo-file":
            return [f"needs an NVIDIA GPU; {GPUS_NOT_PROBED}"]
        errs = report.errors_for("nvidia")
        reason = f" ({errs[0].message})" if errs else ""
        return [f"needs an NVIDIA GPU; none was found{reason}"]
    lo_s, hi_s = requires.get("nvidia_cc_min"), requires.get("nvidia_cc_max")
    if lo_s is None and hi_s is None:
        return []
    lo = _cc(lo_s) if lo_s is not None else None
    hi = _cc(hi_s) if hi_s is not None else None
    if _nvidia_in_range(gpus, lo, hi):
        return []
    if lo_s and hi_s:
        want = f"compute capability {lo_s} to {hi_s}"
    elif lo_s:
        want = f"compute capability {lo_s} or higher"
    else:
        want = f"compute capability {hi_s} or lower"
    have = _join([f"{g.name} ({g.compute_capability or 'compute capability unknown'})" for g in gpus])
    return [f"needs an NVIDIA GPU of {want}; this machine has {have}"]


def why_not(report: HardwareReport, requires: Mapping[str, Any]) -> list[str]:
    """Every unmet requirement as a sentence; an empty list means the host fits.

    Raises:
        RequirementsError: an unknown key or a malformed value in `requires` (a data bug).
    """
    unknown = set(requires) - REQUIREMENT_KEYS
    if unknown:
        raise RequirementsError(f"unknown requirement keys: {', '.join(sorted(unknown))}")
    reasons: list[str] = []
    platforms = requires.get("platforms")
    if platforms:
        here = report.os.platform if report.os else ""
        if here not in platforms:
            names = _or([PLATFORM_NAMES.get(p, p) for p in platforms])
            current = PLATFORM_NAMES.get(here, here) if report.os else "an unknown operating system"
            reasons.append(f"runs on {names} only; this machine runs {current}")
    arches = requires.get("architectures")
    if arches:
        arch = report.cpu.architecture if report.cpu else ""
        if arch not in arches:
            reasons.append(f"needs an {_or(list(arches))} CPU; this one is {arch or 'unknown'}")
    if requires.get("cpu_isa"):
        reasons += _check_isa(report, list(requires["cpu_isa"]))
    gpu = requires.get("gpu")
    if gpu == "vulkan":
        reasons += _check_vulkan(report)
    elif gpu == "nvidia" or "nvidia_cc_min" in requires or "nvidia_cc_max" in requires:
        if gpu not in (None, "nvidia"):
            raise RequirementsError(f"unknown gpu requirement {gpu!r}")
        reasons += _check_nvidia(report, requires)
    elif gpu is not None:
        raise RequirementsError(f"unknown gpu requirement {gpu!r}")
    min_ram = requires.get("min_ram_gib")
    if min_ram is not None:
        if report.ram_total_bytes is None:
            reasons.append(f"needs {min_ram:g} GiB of RAM; the amount of RAM is unknown")
        elif report.ram_total_bytes < float(min_ram) * GIB:
            reasons.append(f"needs {min_ram:g} GiB of RAM; this machine has {report.ram_total_bytes / GIB:.1f} GiB")
    return reasons


def fits(report: HardwareReport, requires: Mapping[str, Any]) -> bool:
    return not why_not(report, requires)
