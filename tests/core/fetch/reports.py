"""Hardware reports for catalog/patch tests, from recorded real data (tests/fixtures/hwdata).

The CPU comes from a saved /proc/cpuinfo and the Vulkan GPU from a recorded vulkan.gpuinfo.org report;
only their combination in one machine is made up.
"""

from __future__ import annotations

import dataclasses

from app.core.hardware.probe import probe_hardware
from app.core.hardware.report import HardwareReport
from app.core.hardware.vulkan import load_gpuinfo_report
from tests.conftest import HWDATA

GTX770_LINUX = HWDATA / "gpu" / "vulkan-gpuinfo-29402-nvidia-gtx770-kepler-linux.json"


def cpu_report(cpuinfo: str) -> HardwareReport:
    return probe_hardware(cpuinfo_path=HWDATA / "cpuinfo" / cpuinfo)


def ivybridge_with_vulkan_gpu() -> HardwareReport:
    r = cpu_report("ivybridge-i5-3570k.txt")
    return dataclasses.replace(r, vulkan_devices=(load_gpuinfo_report(GTX770_LINUX),))


def ivybridge_cpu_only() -> HardwareReport:
    return dataclasses.replace(cpu_report("ivybridge-i5-3570k.txt"), vulkan_devices=(), nvidia_gpus=())


def core2_cpu_only() -> HardwareReport:
    return dataclasses.replace(cpu_report("core2-penryn-yorkfield-q9550.txt"), vulkan_devices=(), nvidia_gpus=())
