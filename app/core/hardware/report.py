"""The frozen, JSON-serialisable HardwareReport that every other part of the core consumes.

Each probe that fails records a ProbeError in `errors` and leaves its part empty; the rest of the
report is still filled (the idea of Raspberry Pi Imager's per-device error field).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from app.core.serial import from_dict, to_jsonable

REPORT_SCHEMA_VERSION = 1

# Canonical instruction-set names, oldest first. `CpuInfo.isa` holds a subset of these.
ISA_ORDER: tuple[str, ...] = (
    "SSE3",
    "SSSE3",
    "SSE4.1",
    "SSE4.2",
    "AVX",
    "F16C",
    "FMA",
    "BMI1",
    "BMI2",
    "AVX2",
    "AVX512F",
    "AVX512_VNNI",
    "AVX512_BF16",
    "AVX_VNNI",
    # Appended later (order above kept): the rest of what ggml's x86 CMake options can use.
    "AVX512CD",
    "AVX512DQ",
    "AVX512BW",
    "AVX512VL",
    "AVX512_VBMI",
    "AMX_TILE",
    "AMX_INT8",
    "AMX_BF16",
)

# LM Studio's CPU survey vocabulary only knows these (docs/lmstudio-contract.md §11.2).
LMSTUDIO_SURVEY_ISE: tuple[str, ...] = ("AVX", "AVX2")


@dataclass(frozen=True)
class ProbeError:
    """One probe that failed or found nothing usable; not fatal for the report."""

    probe: str  # "cpu", "vulkan", "nvidia", "os", "memory", "disk", "lmstudio"
    message: str
    hint: str = ""
    kind: str = "error"  # "error" (probe broke) or "absent" (nothing there: no loader, no driver)


@dataclass(frozen=True)
class CpuInfo:
    vendor_id: str = ""  # "GenuineIntel", "AuthenticAMD"
    vendor: str = ""  # "Intel", "AMD"
    brand: str = ""
    family: int | None = None
    model: int | None = None
    stepping: int | None = None
    microarchitecture: str = "unknown"  # archspec-style id: "ivybridge", "piledriver", "zen2", ...
    microarchitecture_label: str = "unknown"  # "Ivy Bridge"
    year: int | None = None
    architecture: str = "x86_64"  # "x86_64", "arm64", ...
    flags: tuple[str, ...] = ()  # raw Linux-style flags as the source gave them
    isa: tuple[str, ...] = ()  # usable canonical ISA names (CPU has it AND the OS enabled it)
    disabled_isa: tuple[str, ...] = ()  # CPU supports it but OS/BIOS/hypervisor disabled it
    hypervisor: bool = False
    logical_cpus: int | None = None
    source: str = ""  # "proc-cpuinfo", "cpuinfo-file:<path>", "py-cpuinfo", "sysctl", ...

    def has(self, name: str) -> bool:
        return name in self.isa

    def lmstudio_ise(self) -> list[str]:
        """What LM Studio's survey would report for this CPU (only AVX/AVX2 on x86)."""
        return [x for x in LMSTUDIO_SURVEY_ISE if x in self.isa]


@dataclass(frozen=True)
class VulkanDevice:
    index: int
    name: str
    vendor_id: int
    vendor: str  # "NVIDIA", "AMD", "Intel", "Mesa (software)", ...
    device_id: int
    device_type: str  # "discrete", "integrated", "virtual", "cpu", "other"
    api_version: str  # "1.3.230"
    driver_version: str  # decoded per vendor: "470.239.6.0", "22.3.6", ...
    driver_version_raw: int
    driver_name: str = ""
    driver_info: str = ""
    device_local_memory_bytes: int = 0
    software: bool = False  # llvmpipe / lavapipe / SwiftShader
    useful: bool = True  # worth offloading inference to
    note: str = ""  # why it is or isn't useful


@dataclass(frozen=True)
class NvidiaGpu:
    index: int
    name: str
    compute_capability: str  # "3.7", "9.0"; "" when unknown
    driver_version: str  # "470.82.01"
    cuda_driver_version: str = ""  # "11.4" (what the driver supports)
    memory_total_bytes: int = 0
    source: str = "nvml"  # "nvml" or "nvidia-smi"

    def cc_tuple(self) -> tuple[int, int] | None:
        try:
            major, minor = self.compute_capability.split(".")
            return int(major), int(minor)
        except ValueError:
            return None


@dataclass(frozen=True)
class OsInfo:
    platform: str  # LM Studio vocabulary: "win", "linux", "mac"
    system: str  # platform.system(): "Linux", "Windows", "Darwin"
    release: str = ""
    version: str = ""
    machine: str = ""  # "x86_64", "AMD64", "arm64"
    description: str = ""  # "Debian GNU/Linux 12 (bookworm)", "Windows 10 22H2"


@dataclass(frozen=True)
class HardwareReport:
    schema_version: int = REPORT_SCHEMA_VERSION
    tool_version: str = ""
    created_at: str = ""  # ISO 8601 UTC
    source: str = "live"  # "live", "cpuinfo-file", "report-file"
    cpu: CpuInfo | None = None
    os: OsInfo | None = None
    ram_total_bytes: int | None = None
    disk_free_bytes: int | None = None
    disk_path: str = ""  # where free disk was asked for (the LM Studio home)
    vulkan_devices: tuple[VulkanDevice, ...] = ()
    nvidia_gpus: tuple[NvidiaGpu, ...] = ()
    errors: tuple[ProbeError, ...] = field(default_factory=tuple)
    disk_measured_at: str = ""  # the existing folder actually measured (disk_path or its nearest existing parent)
    note: str = ""  # free text, e.g. how a recorded (fixture) report was put together

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = to_jsonable(self)
        return d

    def to_json(self, *, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent, ensure_ascii=False)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> HardwareReport:
        return from_dict(cls, data)

    @classmethod
    def from_json(cls, text: str) -> HardwareReport:
        return cls.from_dict(json.loads(text))

    def useful_vulkan_devices(self) -> tuple[VulkanDevice, ...]:
        return tuple(d for d in self.vulkan_devices if d.useful)

    def errors_for(self, probe: str) -> tuple[ProbeError, ...]:
        return tuple(e for e in self.errors if e.probe == probe)
