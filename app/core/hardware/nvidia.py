"""NVIDIA GPUs: NVML (nvidia-ml-py) first, then `nvidia-smi --query-gpu=... --format=csv` as a fallback.

Kepler users are stuck on the R470 driver, whose nvidia-smi rejects `--query-gpu=compute_cap`; then the compute
capability comes from app/data/nvidia_gpus.json by product name. Parsers for nvidia-smi's table and `-q` outputs
read recorded dumps (tests, reports made for another machine).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Callable, Sequence
from functools import lru_cache
from typing import Any

from app.core.hardware.report import NvidiaGpu
from app.core.paths import data_path
from app.core.runner import popen_platform_kwargs

SMI_QUERY_FIELDS: tuple[str, ...] = ("index", "name", "compute_cap", "driver_version", "memory.total")
SMI_QUERY_FIELDS_NO_CC: tuple[str, ...] = ("index", "name", "driver_version", "memory.total")
MIB = 1024 * 1024


class NvidiaUnavailable(Exception):  # a normal result, not a bug
    """No NVIDIA driver / GPU reachable by this path; `reason` says why in plain words."""

    def __init__(self, reason: str, hint: str = "") -> None:
        super().__init__(reason)
        self.reason = reason
        self.hint = hint


@lru_cache(maxsize=1)
def _gpu_table() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(data_path("nvidia_gpus.json").read_text(encoding="utf-8"))
    return data


def cc_from_name(name: str) -> str:
    """Compute capability from the product name ("Tesla K80" -> "3.7"); "" when the name is not in the table."""
    for entry in _gpu_table()["models"]:
        if re.search(entry["pattern"], name, re.I):
            return str(entry["cc"])
    return ""


def cc_key(cc: str) -> tuple[int, int] | None:
    try:
        major, minor = cc.strip().split(".")
        return int(major), int(minor)
    except ValueError:
        return None


def architecture_of(cc: str) -> str:
    """"3.7" -> "Kepler"; "" when unknown."""
    key = cc_key(cc)
    if key is None:
        return ""
    for arch in _gpu_table()["architectures"]:
        lo, hi = cc_key(arch["cc_min"]), cc_key(arch["cc_max"])
        if lo is not None and hi is not None and lo <= key <= hi:
            return str(arch["name"])
    return ""


def cuda_version_text(value: int) -> str:
    """NVML's CUDA driver version integer (11040) -> "11.4"."""
    return f"{value // 1000}.{(value % 1000) // 10}"


# --------------------------------------------------------------------------------------------------- NVML


def probe_nvml(nvml: Any | None = None) -> tuple[NvidiaGpu, ...]:
    """All GPUs through NVML. `nvml` is the pynvml module (injectable for tests).

    Raises:
        NvidiaUnavailable: library missing, driver not loaded, or no GPU.
    """
    if nvml is None:
        try:
            import pynvml as nvml_mod
        except ImportError as exc:
            raise NvidiaUnavailable(f"the nvidia-ml-py package is missing ({exc})") from None
        nvml = nvml_mod
    try:
        nvml.nvmlInit()
    except Exception as exc:  # NVMLError_LibraryNotFound / DriverNotLoaded / ...
        raise NvidiaUnavailable(
            f"NVML is not available: {exc}",
            "no NVIDIA driver is installed or loaded; if this machine has an NVIDIA GPU, install its driver",
        ) from None
    try:
        driver = _text(nvml.nvmlSystemGetDriverVersion())
        try:
            cuda = cuda_version_text(int(nvml.nvmlSystemGetCudaDriverVersion_v2()))
        except Exception:
            cuda = ""
        gpus = []
        for i in range(int(nvml.nvmlDeviceGetCount())):
            h = nvml.nvmlDeviceGetHandleByIndex(i)
            name = _text(nvml.nvmlDeviceGetName(h))
            try:
                major, minor = nvml.nvmlDeviceGetCudaComputeCapability(h)
                cc = f"{int(major)}.{int(minor)}"
            except Exception:
                cc = cc_from_name(name)
            try:
                mem = int(nvml.nvmlDeviceGetMemoryInfo(h).total)
            except Exception:
                mem = 0
            gpus.append(NvidiaGpu(index=i, name=name, compute_capability=cc, driver_version=driver,
                                  cuda_driver_version=cuda, memory_total_bytes=mem, source="nvml"))
    finally:
        try:
            nvml.nvmlShutdown()
        except Exception:
            pass
    if not gpus:
        raise NvidiaUnavailable("the NVIDIA driver is loaded but reports no GPU")
    return tuple(gpus)


def _text(v: Any) -> str:
    return v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v)


# ---------------------------------------------------------------------------------------------- nvidia-smi

Runner = Callable[[Sequence[str]], "subprocess.CompletedProcess[str]"]


def _run(argv: Sequence[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        list(argv), capture_output=True, text=True, timeout=20, check=False, stdin=subprocess.DEVNULL,
        **popen_platform_kwargs(),
    )


def smi_query_argv(fields: Sequence[str], exe: str = "nvidia-smi") -> list[str]:
    return [exe, f"--query-gpu={','.join(fields)}", "--format=csv,noheader,nounits"]


def parse_smi_csv(text: str, fields: Sequence[str], *, cuda_driver_version: str = "") -> tuple[NvidiaGpu, ...]:
    """Rows of `nvidia-smi --query-gpu=<fields> --format=csv,noheader,nounits`."""
    gpus: list[NvidiaGpu] = []
    for line in text.splitlines():
        if not line.strip():
            continue
        cells = [c.strip() for c in line.split(",")]
        if len(cells) != len(fields):
            raise ValueError(f"expected {len(fields)} comma-separated values, got {len(cells)}: {line!r}")
        row = dict(zip(fields, cells))
        name = row.get("name", "")
        cc = row.get("compute_cap", "")
        if not cc_key(cc):
            cc = cc_from_name(name)
        mem = row.get("memory.total", "")
        gpus.append(NvidiaGpu(
            index=int(row["index"]) if row.get("index", "").isdigit() else len(gpus),
            name=name,
            compute_capability=cc,
            driver_version=row.get("driver_version", ""),
            cuda_driver_version=cuda_driver_version,
            memory_total_bytes=int(float(mem)) * MIB if re.fullmatch(r"[\d.]+", mem) else 0,
            source="nvidia-smi",
        ))
    return tuple(gpus)


_HEADER_CUDA = re.compile(r"CUDA Version:\s*([\d.]+)")
_HEADER_DRIVER = re.compile(r"Driver Version:\s*([\d.]+)")
_TABLE_ROW = re.compile(r"^\|\s+(\d+)\s+(.+?)\s+(On|Off)\s+\|")
_TABLE_MEM = re.compile(r"(\d+)MiB\s*/\s*(\d+)MiB")


def parse_smi_table(text: str) -> tuple[NvidiaGpu, ...]:
    """GPUs from plain `nvidia-smi` output (the boxed table). Names may be cut ("NVIDIA RTX PRO ...")."""
    driver_m = _HEADER_DRIVER.search(text)
    cuda_m = _HEADER_CUDA.search(text)
    driver = driver_m.group(1) if driver_m else ""
    cuda = cuda_m.group(1) if cuda_m else ""
    lines = text.splitlines()
    gpus: list[NvidiaGpu] = []
    for i, line in enumerate(lines):
        m = _TABLE_ROW.match(line)
        if not m:
            continue
        name = m.group(2).strip()
        mem = 0
        if i + 1 < len(lines):
            mm = _TABLE_MEM.search(lines[i + 1])
            if mm:
                mem = int(mm.group(2)) * MIB
        cc = "" if name.endswith("...") else cc_from_name(name)
        gpus.append(NvidiaGpu(index=int(m.group(1)), name=name, compute_capability=cc, driver_version=driver,
                              cuda_driver_version=cuda, memory_total_bytes=mem, source="nvidia-smi"))
    return tuple(gpus)


def parse_smi_q(text: str) -> tuple[NvidiaGpu, ...]:
    """GPUs from `nvidia-smi -q` output (Product Name, Driver Version, CUDA Version, FB Memory Usage/Total)."""
    driver = _q_value(text, "Driver Version")
    cuda = _q_value(text, "CUDA Version")
    gpus: list[NvidiaGpu] = []
    for block in re.split(r"^GPU [0-9A-Fa-f:.]+\s*$", text, flags=re.M)[1:]:
        name = _q_value(block, "Product Name")
        mem = 0
        fb = re.search(r"FB Memory Usage\s*\n\s*Total\s*:\s*(\d+)\s*MiB", block)
        if fb:
            mem = int(fb.group(1)) * MIB
        cc = _q_value(block, "Compute Capability") or cc_from_name(name)
        gpus.append(NvidiaGpu(index=len(gpus), name=name, compute_capability=cc, driver_version=driver,
                              cuda_driver_version=cuda, memory_total_bytes=mem, source="nvidia-smi"))
    return tuple(gpus)


def _q_value(text: str, key: str) -> str:
    m = re.search(rf"^\s*{re.escape(key)}\s*:\s*(.+?)\s*$", text, re.M)
    return m.group(1) if m else ""


def probe_nvidia_smi(run: Runner = _run, exe: str | None = None) -> tuple[NvidiaGpu, ...]:
    """All GPUs through nvidia-smi; retries without compute_cap for R470 and older, which reject that field.

    Raises:
        NvidiaUnavailable: nvidia-smi missing, failing, or listing no GPU.
    """
    exe = exe or shutil.which("nvidia-smi")
    if not exe:
        raise NvidiaUnavailable("nvidia-smi is not installed (no NVIDIA driver)")
    fields: tuple[str, ...] = SMI_QUERY_FIELDS
    proc = run(smi_query_argv(fields, exe))
    if proc.returncode != 0 and "not a valid field" in (proc.stdout + proc.stderr):
        fields = SMI_QUERY_FIELDS_NO_CC
        proc = run(smi_query_argv(fields, exe))
    if proc.returncode != 0:
        raise NvidiaUnavailable(f"nvidia-smi failed (exit {proc.returncode}): {(proc.stderr or proc.stdout).strip()}")
    cuda = ""
    header = run([exe])
    if header.returncode == 0:
        m = _HEADER_CUDA.search(header.stdout)
        cuda = m.group(1) if m else ""
    try:
        gpus = parse_smi_csv(proc.stdout, fields, cuda_driver_version=cuda)
    except ValueError as exc:
        raise NvidiaUnavailable(f"unexpected nvidia-smi output: {exc}") from None
    if not gpus:
        raise NvidiaUnavailable("nvidia-smi lists no GPU")
    return gpus
