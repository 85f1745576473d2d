"""probe_hardware(): CPU, OS, RAM, disk, Vulkan and NVIDIA into one frozen HardwareReport.

Every part that fails records a ProbeError and the rest still runs. "absent" errors (no Vulkan loader, no NVIDIA
driver) are normal results, not failures.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import TypeVar

from app import __version__
from app.core.errors import InputFileError
from app.core.hardware import cpu as cpu_mod
from app.core.hardware import nvidia, system, vulkan
from app.core.hardware.report import CpuInfo, HardwareReport, NvidiaGpu, OsInfo, ProbeError, VulkanDevice
from app.core.userfile import MiB, UserFileError, loads_bounded, read_bounded

log = logging.getLogger(__name__)
T = TypeVar("T")


def _now() -> str:
    return datetime.now(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def _attempt(probe: str, fn: Callable[[], T], errors: list[ProbeError]) -> T | None:
    """Run one probe; an unexpected exception becomes a ProbeError instead of ending the whole probe."""
    try:
        return fn()
    except Exception as exc:
        log.debug("probe %s failed", probe, exc_info=True)
        errors.append(ProbeError(probe=probe, message=f"{type(exc).__name__}: {exc}",
                                 hint="this part of the report is missing; the rest is still valid"))
        return None


def probe_vulkan_into(errors: list[ProbeError]) -> tuple[VulkanDevice, ...]:
    try:
        return vulkan.probe_vulkan()
    except vulkan.VulkanUnavailable as exc:
        errors.append(ProbeError(probe="vulkan", message=exc.reason, hint=exc.hint, kind="absent"))
        return ()


def probe_nvidia_into(errors: list[ProbeError]) -> tuple[NvidiaGpu, ...]:
    try:
        return nvidia.probe_nvml()
    except nvidia.NvidiaUnavailable as nvml_exc:
        try:
            return nvidia.probe_nvidia_smi()
        except nvidia.NvidiaUnavailable as smi_exc:
            errors.append(ProbeError(
                probe="nvidia",
                message=f"no NVIDIA GPU found: {nvml_exc.reason}; {smi_exc.reason}",
                hint=nvml_exc.hint,
                kind="absent",
            ))
            return ()


def probe_hardware(*, cpuinfo_path: Path | None = None, disk_path: Path | Callable[[], Path] | None = None,
                   skip_gpu: bool = False) -> HardwareReport:
    """Probe this machine (or, with `cpuinfo_path`, describe the CPU of a saved /proc/cpuinfo).

    `disk_path` is where the free disk space is measured (the caller passes LM Studio's home: the probe knows
    nothing of LM Studio's folders), or a function that finds it, whose failure becomes a "disk" probe error.
    None: no disk measurement.

    With `cpuinfo_path` the CPU part comes from the file, the OS is Linux (where the file came from), and the
    RAM/disk/GPU parts are left out (they would describe this machine, not the one the file came from).

    Raises:
        InputFileError: `cpuinfo_path` is missing, unreadable or not a cpuinfo dump.
    """
    errors: list[ProbeError] = []
    if cpuinfo_path is not None:
        cpu = load_cpuinfo_file(cpuinfo_path)
        # /proc/cpuinfo only exists on Linux, so that much is known about the machine it came from.
        file_os = OsInfo(platform="linux", system="Linux", machine=cpu.architecture,
                         description="Linux (the machine the saved /proc/cpuinfo came from)")
        return HardwareReport(tool_version=__version__, created_at=_now(), source="cpuinfo-file", cpu=cpu,
                              os=file_os)

    # The GPU probes spend their time in C (loading Vulkan drivers, NVML): run them beside the rest.
    gpu_errors: list[ProbeError] = []
    pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="gpu-probe") if not skip_gpu else None
    vk_future = pool.submit(probe_vulkan_into, gpu_errors) if pool else None
    nv_future = pool.submit(probe_nvidia_into, gpu_errors) if pool else None
    cpu_info: CpuInfo | None = _attempt("cpu", cpu_mod.probe_cpu_live, errors)
    os_info: OsInfo | None = _attempt("os", system.probe_os, errors)
    ram = _attempt("memory", system.total_ram_bytes, errors)
    disk_free: int | None = None
    disk_where = disk_measured = ""
    target = _attempt("disk", disk_path, errors) if callable(disk_path) else disk_path
    if target is not None:
        got = _attempt("disk", lambda: system.free_disk_bytes(target), errors)
        if got is not None:
            disk_free, where = got
            disk_where, disk_measured = str(target), str(where)
    vk_devices: tuple[VulkanDevice, ...] = ()
    nv_gpus: tuple[NvidiaGpu, ...] = ()
    if pool is not None and vk_future is not None and nv_future is not None:
        vk_devices = _attempt("vulkan", vk_future.result, errors) or ()
        nv_gpus = _attempt("nvidia", nv_future.result, errors) or ()
        pool.shutdown()
        # keep a stable order in the report: vulkan before nvidia, whichever thread finished first
        errors += sorted(gpu_errors, key=lambda e: ("vulkan", "nvidia").index(e.probe)
                         if e.probe in ("vulkan", "nvidia") else 2)
    return HardwareReport(
        tool_version=__version__,
        created_at=_now(),
        source="live",
        cpu=cpu_info,
        os=os_info,
        ram_total_bytes=ram,
        disk_free_bytes=disk_free,
        disk_path=disk_where,
        disk_measured_at=disk_measured,
        vulkan_devices=vk_devices,
        nvidia_gpus=nv_gpus,
        errors=tuple(errors),
    )


INPUT_LIMIT = 16 * MiB  # a /proc/cpuinfo of 1024 logical CPUs is ~1.5 MiB; a report is a few KB


def _read_user_file(path: Path, what: str) -> bytes:
    # bounded: `--cpuinfo /dev/zero` is refused by size; pipes (`--cpuinfo <(ssh host cat /proc/cpuinfo)`) allowed
    return read_bounded(path, limit=INPUT_LIMIT, what=f"the {what} file {path}", regular_only=False)


def load_cpuinfo_file(path: Path) -> CpuInfo:
    """CpuInfo from a saved Linux /proc/cpuinfo.

    Raises:
        InputFileError: missing, unreadable, binary, truncated or not cpuinfo.
    """
    data = _read_user_file(path, "cpuinfo")
    hint = "save it on the other machine with: cat /proc/cpuinfo > cpuinfo.txt, and copy it as a text file"
    if b"\x00" in data:
        raise InputFileError(f"{path} is a binary file, not the text of /proc/cpuinfo", context=str(path), hint=hint)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise InputFileError(f"{path} is not UTF-8 text, so it is not a /proc/cpuinfo dump", context=str(path),
                             hint=hint) from None
    try:
        return cpu_mod.parse_proc_cpuinfo(text, source=f"cpuinfo-file:{path.name}")
    except cpu_mod.CpuinfoFormatError as exc:
        raise InputFileError(f"{path}: {exc}", context=str(path), hint=hint) from None


def load_report_file(path: Path) -> HardwareReport:
    """A HardwareReport saved with `probe --json`.

    Raises:
        InputFileError: missing, unreadable, not JSON, or not a hardware report.
    """
    data = _read_user_file(path, "report")
    hint = "make one with: lms-unlocked probe --json > report.json"
    try:
        obj = loads_bounded(data.decode("utf-8"), where=str(path))
    except (UnicodeDecodeError, UserFileError) as exc:
        raise InputFileError(f"{path} is not a JSON hardware report ({exc})", context=str(path), hint=hint) from None
    if isinstance(obj, dict) and isinstance(obj.get("report"), dict):
        obj = obj["report"]  # `recommend --json` output embeds the report
    if not isinstance(obj, dict) or "cpu" not in obj or "schema_version" not in obj:
        raise InputFileError(f"{path} is JSON but not a hardware report (no 'schema_version'/'cpu')",
                             context=str(path), hint=hint)
    try:
        report = HardwareReport.from_dict(obj)
    except (TypeError, ValueError, KeyError) as exc:
        raise InputFileError(f"{path} is not a valid hardware report: {exc}", context=str(path), hint=hint) from None
    return report


def report_from_sources(report_path: str | None, cpuinfo_path: str | None) -> HardwareReport:
    """A saved report (--report), a saved cpuinfo (--cpuinfo), or else a live probe of this machine.

    Raises:
        InputFileError: the given file is missing, unreadable, truncated, binary or invalid.
    """
    if report_path:
        return load_report_file(Path(report_path))
    if cpuinfo_path:
        return probe_hardware(cpuinfo_path=Path(cpuinfo_path))
    return probe_hardware()
