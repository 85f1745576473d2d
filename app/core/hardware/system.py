"""OS, architecture, RAM and free disk space."""

from __future__ import annotations

import platform
import shutil
import sys
from pathlib import Path

from app.core.hardware.report import OsInfo

PLATFORMS = {"win32": "win", "linux": "linux", "darwin": "mac"}


def lmstudio_platform(sys_platform: str = sys.platform) -> str:
    """LM Studio's vocabulary: "win", "linux", "mac" (other systems keep their Python name)."""
    for prefix, name in PLATFORMS.items():
        if sys_platform.startswith(prefix):
            return name
    return sys_platform


def probe_os() -> OsInfo:
    system = platform.system()
    description = ""
    if system == "Linux":
        try:
            description = platform.freedesktop_os_release().get("PRETTY_NAME", "")
        except OSError:
            description = ""
    elif system == "Windows":
        description = f"Windows {platform.release()} ({platform.version()})"
    elif system == "Darwin":
        description = f"macOS {platform.mac_ver()[0]}"
    return OsInfo(
        platform=lmstudio_platform(),
        system=system,
        release=platform.release(),
        version=platform.version(),
        machine=platform.machine(),
        description=description,
    )


def total_ram_bytes() -> int:
    import psutil

    return int(psutil.virtual_memory().total)


def free_disk_bytes(path: Path) -> tuple[int, Path]:
    """Free bytes on the file system that holds `path` (or its nearest existing parent, if it does not exist yet)."""
    p = path.expanduser().absolute()
    while not p.exists() and p.parent != p:
        p = p.parent
    return int(shutil.disk_usage(p).free), p
