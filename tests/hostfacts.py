"""What this test machine has, read by tools independent of the probe (vulkaninfo, nvidia-smi, the kernel driver),
so live-probe tests assert the host's real devices instead of assuming a lavapipe-only machine."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class VulkanFact:
    name: str
    cpu_type: bool  # PHYSICAL_DEVICE_TYPE_CPU: a software rasteriser such as lavapipe


def vulkan_devices(env: dict[str, str] | None = None) -> list[VulkanFact] | None:
    """Devices `vulkaninfo --summary` lists; None where vulkaninfo is not installed (then nothing is known)."""
    exe = shutil.which("vulkaninfo")
    if exe is None:
        return None
    r = subprocess.run([exe, "--summary"], capture_output=True, text=True, timeout=120, check=False,
                       env=env or dict(os.environ), stdin=subprocess.DEVNULL)
    if r.returncode != 0:
        return []  # no loader, no driver or no device: the probe must find none either
    facts: list[VulkanFact] = []
    for block in re.split(r"^GPU\d+:\s*$", r.stdout, flags=re.M)[1:]:
        name = re.search(r"^\s*deviceName\s*=\s*(.+?)\s*$", block, flags=re.M)
        kind = re.search(r"^\s*deviceType\s*=\s*(\S+)", block, flags=re.M)
        if name:
            facts.append(VulkanFact(name.group(1), bool(kind and kind.group(1).endswith("_CPU"))))
    return facts


def nvidia_gpu_names() -> list[str]:
    """NVIDIA GPUs as nvidia-smi names them, else as the kernel driver does; [] where neither knows of one."""
    exe = shutil.which("nvidia-smi")
    if exe is not None:
        r = subprocess.run([exe, "--query-gpu=name", "--format=csv,noheader"], capture_output=True, text=True,
                           timeout=120, check=False, stdin=subprocess.DEVNULL)
        if r.returncode == 0:
            return [line.strip() for line in r.stdout.splitlines() if line.strip()]
    names = []
    for info in sorted(Path("/proc/driver/nvidia/gpus").glob("*/information")):
        m = re.search(r"^Model:\s*(.+?)\s*$", info.read_text(encoding="utf-8", errors="replace"), flags=re.M)
        if m:
            names.append(m.group(1))
    return names
