"""Reports from recorded data: a saved /proc/cpuinfo plus saved Vulkan gpuinfo reports and nvidia-smi outputs.

Used to describe another machine, and to make the test fixtures from real dumps (tests/fixtures/reports/).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from app.core.hardware import nvidia, vulkan
from app.core.hardware.probe import probe_hardware
from app.core.hardware.report import HardwareReport, NvidiaGpu


def parse_nvidia_smi_output(text: str) -> tuple[NvidiaGpu, ...]:
    """GPUs from any recorded nvidia-smi output: `-q`, the plain table, or the csv of our --query-gpu."""
    if "NVSMI LOG" in text or "Product Name" in text:
        return nvidia.parse_smi_q(text)
    if "NVIDIA-SMI" in text:
        return nvidia.parse_smi_table(text)
    return nvidia.parse_smi_csv(text, nvidia.SMI_QUERY_FIELDS)


def report_from_recordings(cpuinfo: Path, *, vulkan_reports: Sequence[Path] = (),
                           nvidia_smi: Sequence[Path] = (), created_at: str = "", note: str = "") -> HardwareReport:
    """A HardwareReport from recorded files (no live probing at all)."""
    report = probe_hardware(cpuinfo_path=cpuinfo)
    devices = tuple(vulkan.load_gpuinfo_report(p, index=i) for i, p in enumerate(vulkan_reports))
    gpus: list[NvidiaGpu] = []
    for p in nvidia_smi:
        for g in parse_nvidia_smi_output(p.read_text(encoding="utf-8")):
            gpus.append(replace(g, index=len(gpus)))
    return replace(
        report,
        source="recorded",
        created_at=created_at or report.created_at,
        vulkan_devices=devices,
        nvidia_gpus=tuple(gpus),
        note=note,
    )
