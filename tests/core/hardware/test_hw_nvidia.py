"""NVIDIA: recorded nvidia-smi outputs, the R470 compute_cap fallback, and NVML absent on this machine."""

from __future__ import annotations

import subprocess
from collections.abc import Sequence
from types import SimpleNamespace
from typing import Any

import pytest

from app.core.hardware.nvidia import (
    SMI_QUERY_FIELDS,
    NvidiaUnavailable,
    architecture_of,
    cc_from_name,
    parse_smi_csv,
    parse_smi_q,
    parse_smi_table,
    probe_nvidia_smi,
    probe_nvml,
)
from app.core.hardware.probe import probe_nvidia_into
from app.core.hardware.recorded import parse_nvidia_smi_output
from app.core.hardware.report import ProbeError
from tests.conftest import FIXTURES

GPU = FIXTURES / "hwdata" / "gpu"


def read(name: str) -> str:
    return (GPU / name).read_text(encoding="utf-8")


def test_k80_table() -> None:
    (g,) = parse_smi_table(read("nvidia-smi-tesla-k80-kepler-410.104.txt"))
    assert (g.name, g.driver_version, g.cuda_driver_version) == ("Tesla K80", "410.104", "10.0")
    assert g.compute_capability == "3.7"  # from the name table: nvidia-smi 410 prints no compute capability
    assert g.memory_total_bytes == 11441 * 1024 * 1024
    assert architecture_of(g.compute_capability) == "Kepler"


def test_gtx1070_table_without_cuda_version() -> None:
    (g,) = parse_smi_table(read("nvidia-smi-gtx1070-pascal-396.24.txt"))
    assert (g.name, g.driver_version, g.cuda_driver_version, g.compute_capability) == (
        "GeForce GTX 1070", "396.24", "", "6.1")


def test_q_outputs() -> None:
    (k80,) = parse_smi_q(read("nvidia-smi-q-tesla-k80-kepler-390.77.txt"))
    assert (k80.name, k80.driver_version, k80.compute_capability) == ("Tesla K80", "390.77", "3.7")
    (m1000,) = parse_smi_q(read("nvidia-smi-q-quadro-m1000m-maxwell-375.82.txt"))
    assert (m1000.name, m1000.driver_version, m1000.compute_capability) == ("Quadro M1000M", "375.82", "5.0")


def test_r470_binary_truncated_name_gives_unknown_cc() -> None:
    """The table cuts long names ('NVIDIA RTX PRO ...'): guessing a CC from that would be dishonest."""
    (g,) = parse_nvidia_smi_output(read("nvidia-smi-r470-binary-compute-cap-unsupported.txt"))
    assert g.name == "NVIDIA RTX PRO ..." and g.compute_capability == ""
    assert (g.driver_version, g.cuda_driver_version) == ("580.95.05", "13.0")


@pytest.mark.parametrize(
    ("name", "cc"),
    [("Tesla K80", "3.7"), ("Tesla K40m", "3.5"), ("NVIDIA GeForce GTX 770", "3.0"), ("GeForce GTX 780 Ti", "3.5"),
     ("NVIDIA GeForce GTX 750 Ti", "5.0"), ("NVIDIA GeForce GTX 970", "5.2"), ("Tesla P40", "6.1"),
     ("Tesla V100-SXM2-16GB", "7.0"), ("NVIDIA H100 80GB HBM3", "9.0"), ("Some Future GPU", "")],
)
def test_cc_from_name(name: str, cc: str) -> None:
    assert cc_from_name(name) == cc


def test_csv_query_output() -> None:
    text = "0, Tesla K80, 3.7, 470.256.02, 11441\n1, Tesla K80, 3.7, 470.256.02, 11441\n"
    gpus = parse_smi_csv(text, SMI_QUERY_FIELDS, cuda_driver_version="11.4")
    assert [g.index for g in gpus] == [0, 1]
    assert gpus[1].compute_capability == "3.7" and gpus[1].memory_total_bytes == 11441 * 1024 * 1024
    with pytest.raises(ValueError, match="comma-separated"):
        parse_smi_csv("0, Tesla K80\n", SMI_QUERY_FIELDS)


class FakeSmi:
    """Stands in for an R470 nvidia-smi (no NVIDIA GPU here): rejects compute_cap with the recorded message."""

    def __init__(self) -> None:
        self.calls: list[list[str]] = []
        self.r470_error = read("nvidia-smi-r470-binary-compute-cap-unsupported.txt").splitlines()[1]
        self.table = read("nvidia-smi-tesla-k80-kepler-410.104.txt").replace("410.104 ", "470.256.02")

    def __call__(self, argv: Sequence[str]) -> subprocess.CompletedProcess[str]:
        self.calls.append(list(argv))
        if len(argv) == 1:
            return subprocess.CompletedProcess(argv, 0, self.table, "")
        if "compute_cap" in argv[1]:
            return subprocess.CompletedProcess(argv, 2, self.r470_error + "\n", "")
        return subprocess.CompletedProcess(argv, 0, "0, Tesla K80, 470.256.02, 11441\n", "")


def test_r470_fallback_without_compute_cap() -> None:
    smi = FakeSmi()
    (g,) = probe_nvidia_smi(run=smi, exe="nvidia-smi")
    assert smi.calls[0][1] == "--query-gpu=index,name,compute_cap,driver_version,memory.total"
    assert smi.calls[1][1] == "--query-gpu=index,name,driver_version,memory.total"
    assert smi.calls[0][2] == "--format=csv,noheader,nounits"
    assert (g.name, g.compute_capability, g.driver_version, g.source) == ("Tesla K80", "3.7", "470.256.02",
                                                                          "nvidia-smi")


def test_nvidia_smi_missing_here() -> None:
    with pytest.raises(NvidiaUnavailable, match="not installed"):
        probe_nvidia_smi(exe="")


def test_nvml_absent_on_this_machine() -> None:
    """The real pynvml: this machine has no NVIDIA driver, so NVML cannot load."""
    with pytest.raises(NvidiaUnavailable, match="NVML is not available"):
        probe_nvml()


def test_probe_records_absent_error() -> None:
    errors: list[ProbeError] = []
    assert probe_nvidia_into(errors) == ()
    (e,) = errors
    assert e.kind == "absent" and e.probe == "nvidia" and "NVML" in e.message


def test_nvml_values() -> None:
    """Stands in for an NVML with a K80 on driver 470 (values as NVML returns them: bytes, int CUDA version)."""
    calls: list[str] = []

    def rec(name: str, value: Any) -> Any:
        def f(*_a: Any) -> Any:
            calls.append(name)
            return value
        return f

    nvml: Any = SimpleNamespace(
        nvmlInit=rec("init", None), nvmlShutdown=rec("shutdown", None),
        nvmlSystemGetDriverVersion=rec("driver", b"470.256.02"),
        nvmlSystemGetCudaDriverVersion_v2=rec("cuda", 11040),
        nvmlDeviceGetCount=rec("count", 1), nvmlDeviceGetHandleByIndex=rec("handle", object()),
        nvmlDeviceGetName=rec("name", b"Tesla K80"),
        nvmlDeviceGetCudaComputeCapability=rec("cc", (3, 7)),
        nvmlDeviceGetMemoryInfo=rec("mem", SimpleNamespace(total=12 * 1024**3)),
    )
    (g,) = probe_nvml(nvml)
    assert (g.name, g.compute_capability, g.driver_version, g.cuda_driver_version, g.source) == (
        "Tesla K80", "3.7", "470.256.02", "11.4", "nvml")
    assert calls[-1] == "shutdown"


H100 = FIXTURES / "hwdata" / "device-h100"


def test_real_nvml_and_nvidia_smi_agree_on_h100() -> None:
    """Recorded on the lent H100: the three nvidia-smi outputs parse to what the real NVML returned there."""
    from app.core.hardware.probe import report_from_sources

    report = report_from_sources(str(H100 / "probe-report-h100.json"), None)
    (nvml_gpu,) = report.nvidia_gpus
    assert nvml_gpu.source == "nvml" and nvml_gpu.compute_capability == "9.0"
    assert report.cpu is not None and report.cpu.microarchitecture == "emeraldrapids" and "AMX_TILE" in report.cpu.isa
    csv_text = (H100 / "nvidia-smi-query-gpu-h100.csv").read_text(encoding="utf-8")
    parsed = [
        parse_smi_csv(csv_text, SMI_QUERY_FIELDS, cuda_driver_version="13.0"),
        parse_smi_table((H100 / "nvidia-smi-h100-580.159.04.txt").read_text(encoding="utf-8")),
        parse_smi_q((H100 / "nvidia-smi-q-h100-580.159.04.txt").read_text(encoding="utf-8")),
    ]
    for (g,) in parsed:
        assert (g.name, g.compute_capability, g.driver_version, g.cuda_driver_version, g.memory_total_bytes) == (
            nvml_gpu.name, nvml_gpu.compute_capability, nvml_gpu.driver_version, nvml_gpu.cuda_driver_version,
            nvml_gpu.memory_total_bytes)
    assert cc_from_name(nvml_gpu.name) == "9.0"
