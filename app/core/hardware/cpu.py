"""CPU probe: vendor, model, microarchitecture name (from data) and the usable instruction sets.

Sources, fastest exact one first:
* Linux: /proc/cpuinfo (0.25 ms). Its `flags` line already reflects what the kernel enabled (no `avx` when the OS
  did not enable the YMM state), so "usable" needs no further check.
* Elsewhere: py-cpuinfo, whose CPUID subprocess costs about a second. CPUID says what the CPU *has*; on Windows the
  OS may still have AVX disabled (BIOS, hypervisor, `bcdedit /set xsavedisable 1`), so the result is cross-checked
  with IsProcessorFeaturePresent and mismatches go to `disabled_isa`.
"""

from __future__ import annotations

import json
import os
import platform
import re
import sys
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from functools import lru_cache
from pathlib import Path
from typing import Any

from app.core.hardware.report import ISA_ORDER, CpuInfo
from app.core.paths import data_path

# Linux /proc/cpuinfo (and py-cpuinfo) flag names -> canonical ISA names (report.ISA_ORDER).
FLAG_TO_ISA: Mapping[str, str] = {
    "pni": "SSE3",
    "sse3": "SSE3",
    "ssse3": "SSSE3",
    "sse4_1": "SSE4.1",
    "sse4_2": "SSE4.2",
    "avx": "AVX",
    "f16c": "F16C",
    "fma": "FMA",  # FMA3; AMD's fma4 is a different, unused extension
    "bmi1": "BMI1",
    "bmi2": "BMI2",
    "avx2": "AVX2",
    "avx512f": "AVX512F",
    "avx512cd": "AVX512CD",
    "avx512dq": "AVX512DQ",
    "avx512bw": "AVX512BW",
    "avx512vl": "AVX512VL",
    "avx512vbmi": "AVX512_VBMI",
    "avx512_vbmi": "AVX512_VBMI",
    "avx512_vnni": "AVX512_VNNI",
    "avx512vnni": "AVX512_VNNI",
    "avx512_bf16": "AVX512_BF16",
    "avx512bf16": "AVX512_BF16",
    "avx_vnni": "AVX_VNNI",
    "avxvnni": "AVX_VNNI",
    "amx_tile": "AMX_TILE",
    "amx_int8": "AMX_INT8",
    "amx_bf16": "AMX_BF16",
}

VENDORS: Mapping[str, str] = {
    "GenuineIntel": "Intel",
    "AuthenticAMD": "AMD",
    "HygonGenuine": "Hygon",
    "CentaurHauls": "VIA",
    "Shanghai": "Zhaoxin",
}

# Windows IsProcessorFeaturePresent ids (winnt.h).
PF_SSE3_INSTRUCTIONS_AVAILABLE = 13
PF_SSSE3_INSTRUCTIONS_AVAILABLE = 36
PF_SSE4_1_INSTRUCTIONS_AVAILABLE = 37
PF_SSE4_2_INSTRUCTIONS_AVAILABLE = 38
PF_AVX_INSTRUCTIONS_AVAILABLE = 39
PF_AVX2_INSTRUCTIONS_AVAILABLE = 40
PF_AVX512F_INSTRUCTIONS_AVAILABLE = 41

# For each OS-checkable feature: the ISA that become unusable when the OS says it is not available (AVX off means
# no YMM state, so everything VEX/EVEX-encoded on 256/512-bit registers goes with it).
_AVX_FAMILY = ("AVX", "F16C", "FMA", "AVX2", "AVX_VNNI")
_AVX512_FAMILY = ("AVX512F", "AVX512CD", "AVX512DQ", "AVX512BW", "AVX512VL", "AVX512_VBMI", "AVX512_VNNI",
                  "AVX512_BF16", "AMX_TILE", "AMX_INT8", "AMX_BF16")
WINDOWS_FEATURE_CHECKS: tuple[tuple[str, int, tuple[str, ...]], ...] = (
    ("SSE3", PF_SSE3_INSTRUCTIONS_AVAILABLE, ("SSE3",)),
    ("SSSE3", PF_SSSE3_INSTRUCTIONS_AVAILABLE, ("SSSE3",)),
    ("SSE4.1", PF_SSE4_1_INSTRUCTIONS_AVAILABLE, ("SSE4.1",)),
    ("SSE4.2", PF_SSE4_2_INSTRUCTIONS_AVAILABLE, ("SSE4.2",)),
    ("AVX", PF_AVX_INSTRUCTIONS_AVAILABLE, _AVX_FAMILY + _AVX512_FAMILY),
    ("AVX2", PF_AVX2_INSTRUCTIONS_AVAILABLE, ("AVX2", "AVX_VNNI", *_AVX512_FAMILY)),
    ("AVX512F", PF_AVX512F_INSTRUCTIONS_AVAILABLE, _AVX512_FAMILY),
)


class CpuinfoFormatError(ValueError):
    """Text that is not a usable /proc/cpuinfo dump; the message says why in plain words."""


@dataclass(frozen=True)
class Microarchitecture:
    id: str
    label: str
    year: int | None


UNKNOWN_UARCH = Microarchitecture("unknown", "unknown", None)


def isa_from_flags(flags: Iterable[str]) -> tuple[str, ...]:
    """Canonical ISA names (ISA_ORDER order) present in Linux/py-cpuinfo style flags."""
    found = {FLAG_TO_ISA[f.lower()] for f in flags if f.lower() in FLAG_TO_ISA}
    return tuple(x for x in ISA_ORDER if x in found)


@lru_cache(maxsize=1)
def _uarch_entries() -> tuple[dict[str, Any], ...]:
    data = json.loads(data_path("microarchitectures.json").read_text(encoding="utf-8"))
    return tuple(data["entries"])


def identify_microarchitecture(vendor: str, family: int | None, model: int | None,
                               stepping: int | None) -> Microarchitecture:
    """Name the microarchitecture from app/data/microarchitectures.json; "unknown" when no entry matches."""
    if family is None:
        return UNKNOWN_UARCH
    for e in _uarch_entries():
        if e["vendor"] != vendor or e["family"] != family:
            continue
        if "models" in e and model not in e["models"]:
            continue
        if "model_range" in e and (model is None or not e["model_range"][0] <= model <= e["model_range"][1]):
            continue
        if "steppings" in e and stepping not in e["steppings"]:
            continue
        return Microarchitecture(e["id"], e["label"], e.get("year"))
    return UNKNOWN_UARCH


_BRAND_NOISE = re.compile(r"\((?:R|TM)\)(?=-)|\bCPU\b|\bProcessor\b|@\s*[\d.]+\s*[GM]Hz|\b\w+-Core\b", re.I)
_TRADEMARKS = re.compile(r"\((?:R|TM)\)|®|™", re.I)


def clean_brand(brand: str) -> str:
    """"Intel(R) Core(TM) i5-3570K CPU @ 3.40GHz" -> "Intel Core i5-3570K"."""
    s = _TRADEMARKS.sub(" ", _BRAND_NOISE.sub("", brand))
    return " ".join(s.split())


def _int_or_none(value: str | None) -> int | None:
    if value is None:
        return None
    try:
        return int(value.strip(), 0) if value.strip().lower().startswith("0x") else int(value.strip())
    except ValueError:
        return None


def parse_proc_cpuinfo(text: str, *, source: str = "proc-cpuinfo", logical_cpus: int | None = None) -> CpuInfo:
    """Parse a Linux /proc/cpuinfo dump (x86 or ARM); the first processor block describes the CPU.

    Raises:
        CpuinfoFormatError: the text is empty, binary, not cpuinfo, or cut off before the `flags` line.
    """
    if not text.strip():
        raise CpuinfoFormatError("the file is empty")
    if "\x00" in text:
        raise CpuinfoFormatError("the file is binary (it contains NUL bytes), not the text of /proc/cpuinfo")
    blocks = [b for b in re.split(r"\n\s*\n", text.strip("\n")) if b.strip()]
    fields: dict[str, str] = {}
    for line in blocks[0].splitlines():
        key, sep, value = line.partition(":")
        if sep:
            fields.setdefault(key.strip().lower(), value.strip())
    processors = sum(1 for b in blocks if re.match(r"\s*processor\s*:", b, re.I))
    if "vendor_id" in fields or "flags" in fields or "cpu family" in fields:
        return _parse_x86(fields, text, source, logical_cpus or processors or None)
    if "features" in fields and ("cpu implementer" in fields or "cpu architecture" in fields):
        return _parse_arm(fields, source, logical_cpus or processors or None)
    raise CpuinfoFormatError(
        "this does not look like /proc/cpuinfo: no 'vendor_id', 'cpu family' or 'flags' lines were found"
    )


def _parse_x86(fields: Mapping[str, str], text: str, source: str, logical_cpus: int | None) -> CpuInfo:
    if "flags" not in fields:
        raise CpuinfoFormatError("the first processor block has no 'flags' line; the file looks truncated")
    if text.rstrip(" \t").endswith(fields["flags"]) and not text.endswith("\n"):
        # cut in the middle of the flags line: any flag list we read could be short
        raise CpuinfoFormatError("the file ends in the middle of the 'flags' line; it looks truncated")
    flags = tuple(fields["flags"].split())
    return _x86_cpu(
        vendor_id=fields.get("vendor_id", ""),
        brand=fields.get("model name", ""),
        family=_int_or_none(fields.get("cpu family")),
        model=_int_or_none(fields.get("model")),
        stepping=_int_or_none(fields.get("stepping")),
        architecture="x86_64" if "lm" in flags else "x86",
        flags=flags,
        logical_cpus=logical_cpus,
        source=source,
    )


def _x86_cpu(*, vendor_id: str, brand: str, family: int | None, model: int | None, stepping: int | None,
             architecture: str, flags: tuple[str, ...], logical_cpus: int | None, source: str) -> CpuInfo:
    """CpuInfo from raw identification and Linux-style flags, whichever source they came from."""
    vendor = VENDORS.get(vendor_id.strip(), vendor_id)
    uarch = identify_microarchitecture(vendor, family, model, stepping)
    return CpuInfo(
        vendor_id=vendor_id,
        vendor=vendor,
        brand=clean_brand(brand),
        family=family,
        model=model,
        stepping=stepping,
        microarchitecture=uarch.id,
        microarchitecture_label=uarch.label,
        year=uarch.year,
        architecture=architecture,
        flags=flags,
        isa=isa_from_flags(flags),
        hypervisor="hypervisor" in flags,
        logical_cpus=logical_cpus,
        source=source,
    )


def _parse_arm(fields: Mapping[str, str], source: str, logical_cpus: int | None) -> CpuInfo:
    flags = tuple(fields.get("features", "").split())
    return CpuInfo(
        vendor_id=fields.get("cpu implementer", ""),
        vendor="ARM",
        brand=fields.get("model name", "") or fields.get("hardware", ""),
        architecture="arm64" if fields.get("cpu architecture", "") in ("8", "9", "AArch64") else "arm",
        flags=flags,
        isa=(),
        logical_cpus=logical_cpus,
        source=source,
    )


def cpu_from_pycpuinfo(info: Mapping[str, Any], *, source: str = "py-cpuinfo") -> CpuInfo:
    """CpuInfo from `cpuinfo.get_cpu_info()` output (CPUID flags: what the CPU has, not what the OS enabled)."""
    arch = str(info.get("arch", "")).upper()
    return _x86_cpu(
        vendor_id=str(info.get("vendor_id_raw", "")),
        brand=str(info.get("brand_raw", "")),
        family=info.get("family"),
        model=info.get("model"),
        stepping=info.get("stepping"),
        architecture={"X86_64": "x86_64", "X86_32": "x86", "ARM_8": "arm64"}.get(arch, arch.lower() or "unknown"),
        flags=tuple(str(f) for f in info.get("flags", ())),
        logical_cpus=info.get("count"),
        source=source,
    )


def apply_os_feature_check(cpu: CpuInfo, is_present: Callable[[int], bool]) -> CpuInfo:
    """Cross-check CPUID-derived ISA with the OS (Windows IsProcessorFeaturePresent, injected for tests).

    A feature the CPU reports but the OS says is not available is moved, with everything that depends on the
    same register state, from `isa` to `disabled_isa`.
    """
    usable = set(cpu.isa)
    disabled: set[str] = set(cpu.disabled_isa)
    for name, feature_id, dependents in WINDOWS_FEATURE_CHECKS:
        if name in usable and not is_present(feature_id):
            gone = usable & set(dependents)
            disabled |= gone
            usable -= gone
    return replace(
        cpu,
        isa=tuple(x for x in ISA_ORDER if x in usable),
        disabled_isa=tuple(x for x in ISA_ORDER if x in disabled),
    )


def windows_is_processor_feature_present() -> Callable[[int], bool] | None:
    """kernel32.IsProcessorFeaturePresent on Windows; None elsewhere."""
    if sys.platform != "win32":
        return None
    import ctypes

    fn = getattr(ctypes, "windll").kernel32.IsProcessorFeaturePresent  # noqa: B009 (exists only on Windows)

    def present(feature: int) -> bool:
        return bool(fn(ctypes.c_uint32(feature)))

    return present


def windows_knows_avx_features(release: str, version: str) -> bool:
    """PF_AVX*_INSTRUCTIONS_AVAILABLE (39-41) exist only on Windows 10 and later; older Windows answers FALSE."""
    for text in (release, version):
        head = text.split(".")[0]
        if head.isdigit():
            return int(head) >= 10
    return False


_AVX_FEATURE_IDS = (PF_AVX_INSTRUCTIONS_AVAILABLE, PF_AVX2_INSTRUCTIONS_AVAILABLE, PF_AVX512F_INSTRUCTIONS_AVAILABLE)


def _sse_checks_only(present: Callable[[int], bool]) -> Callable[[int], bool]:
    """Before Windows 10 the AVX feature ids are unknown to the OS (always FALSE): trust CPUID for those."""
    return lambda feature: True if feature in _AVX_FEATURE_IDS else present(feature)


def probe_cpu_live(proc_cpuinfo: Path = Path("/proc/cpuinfo")) -> CpuInfo:
    """The running machine's CPU: /proc/cpuinfo when it exists, else py-cpuinfo (+ the Windows OS check)."""
    if proc_cpuinfo.exists():
        return parse_proc_cpuinfo(proc_cpuinfo.read_text(encoding="utf-8", errors="replace"),
                                  source="proc-cpuinfo", logical_cpus=os.cpu_count())
    import cpuinfo  # py-cpuinfo: slow (CPUID in a subprocess), only where no exact fast source exists

    cpu = cpu_from_pycpuinfo(cpuinfo.get_cpu_info())
    present = windows_is_processor_feature_present()
    if present is not None:
        if not windows_knows_avx_features(platform.release(), platform.version()):
            present = _sse_checks_only(present)
        cpu = apply_os_feature_check(cpu, present)
    return cpu
