"""judge_backend with CPU reports read from REAL /proc/cpuinfo dumps (shared hwdata) and hand-made GPU parts.

GPU parts (NvidiaGpu / VulkanDevice) are constructed directly: we have no such hardware here.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from app.core.hardware.probe import probe_hardware
from app.core.hardware.report import HardwareReport, NvidiaGpu, OsInfo, VulkanDevice
from app.core.lmstudio.backends import find_backend
from app.core.lmstudio.judge import STATUSES, judge_backend, normalize_status, status_label
from tests.conftest import HWDATA
from tests.lmstudio_homes import make_home

CPU = HWDATA / "cpuinfo"


def _report(cpu_file: str, platform: str = "linux", **kw: object) -> HardwareReport:
    r = probe_hardware(cpuinfo_path=CPU / cpu_file)
    return dataclasses.replace(r, os=OsInfo(platform=platform, system=platform.title()), **kw)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_home(
        tmp_path_factory.mktemp("j"),
        backends=[
            "linux-cpu-2.14.0",
            "linux-vulkan-2.14.0",
            "linux-cuda-2.14.0",
            "linux-vulkan-k40k80-2.14.0",
            "win-avx-1.48.0",
            "win-noavx-1.48.0",
        ],
    )


@pytest.mark.parametrize(
    ("cpu", "ident", "status"),
    [
        ("haswell-i7-4770.txt", "llama.cpp-linux-x86_64-avx2@2.14.0", "compatible"),
        ("sandybridge-i5-2400.txt", "llama.cpp-linux-x86_64-avx2@2.14.0", "invalidCpuInstructionSetExtensions"),
        ("sandybridge-i5-2400.txt", "llama.cpp-linux-x86_64-vulkan-avx2-k40k80@2.14.0", "gpuRequiredButNoneFound"),
        (
            "core2-merom-conroe-e6400.txt",
            "llama.cpp-linux-x86_64-vulkan-avx2-k40k80@2.14.0",
            "invalidCpuInstructionSetExtensions",
        ),
        ("haswell-i7-4770.txt", "llama.cpp-win-x86_64-avx@1.48.0", "incompatiblePlatform"),
    ],
)
def test_cpu_rules_on_real_cpus(home: Path, cpu: str, ident: str, status: str) -> None:
    j = judge_backend(find_backend(home, ident), _report(cpu))
    assert j.status == status, j.message


def test_cpu_without_avx_message_says_what_the_survey_lacks(home: Path) -> None:
    j = judge_backend(find_backend(home, "llama.cpp-linux-x86_64-avx2@2.14.0"), _report("core2-merom-conroe-e6400.txt"))
    assert "reports neither AVX nor AVX2" in j.message and "nothing" not in j.message, j.message


def test_sandybridge_on_windows_theivanr_packs(home: Path) -> None:
    r = _report("sandybridge-i5-2400.txt", platform="win")
    assert judge_backend(find_backend(home, "llama.cpp-win-x86_64-avx@1.48.0"), r).compatible
    j = judge_backend(find_backend(home, "llama.cpp-win-x86_64-avx0@1.48.0"), r)
    assert j.status == "invalidCpuInstructionSetExtensions" and '""' in j.message  # theIvanR issue #1


def test_gpu_rules(home: Path) -> None:
    base = _report("haswell-i7-4770.txt")
    cuda = find_backend(home, "llama.cpp-linux-x86_64-nvidia-cuda-avx2@2.14.0")
    assert judge_backend(cuda, base).status == "gpuRequiredButNoneFound"
    k80 = NvidiaGpu(0, "Tesla K80", "3.7", "470.82.01", "11.4")
    j = judge_backend(cuda, dataclasses.replace(base, nvidia_gpus=(k80,)))
    assert j.compatible and any("gpu.targets" in c for c in j.caveats)  # unknown rule -> caveat
    targeted = dataclasses.replace(
        cuda, manifest=dict(cuda.manifest), gpu_targets=("6.1", "7.5"), gpu_min_driver="12040"
    )
    assert judge_backend(targeted, dataclasses.replace(base, nvidia_gpus=(k80,))).status == "noSupportedGpus"
    pascal = NvidiaGpu(0, "GTX 1070", "6.1", "470.82.01", "11.4")
    j = judge_backend(targeted, dataclasses.replace(base, nvidia_gpus=(pascal,)))
    assert j.status == "gpuDriverUnsupported" and "12.4" in j.message and "11.4" in j.message
    new_driver = dataclasses.replace(pascal, cuda_driver_version="12.4")
    assert judge_backend(targeted, dataclasses.replace(base, nvidia_gpus=(new_driver,))).compatible
    vk = find_backend(home, "llama.cpp-linux-x86_64-vulkan-avx2@2.14.0")
    lavapipe = VulkanDevice(
        0, "llvmpipe", 0x10005, "Mesa (software)", 0, "cpu", "1.3", "0.0.1", 1, software=True, useful=False
    )
    j = judge_backend(vk, dataclasses.replace(base, vulkan_devices=(lavapipe,)))
    assert j.status == "gpuRequiredButNoneFound" and "llvmpipe" in j.message
    gtx = VulkanDevice(0, "GTX 770", 0x10DE, "NVIDIA", 0x1184, "discrete", "1.2", "470.1", 1)
    assert judge_backend(vk, dataclasses.replace(base, vulkan_devices=(gtx,))).compatible


def test_app_version_libraries_and_unreadable(home: Path, tmp_path: Path) -> None:
    r = _report("haswell-i7-4770.txt")
    cpu = find_backend(home, "llama.cpp-linux-x86_64-avx2@2.14.0")
    assert judge_backend(cpu, r, app_version="0.3.24+4").status == "incompatibleAppVersion"
    assert judge_backend(cpu, r, app_version="0.4.1+2").compatible
    broken = dataclasses.replace(cpu, folder=tmp_path)  # none of the declared libraries there
    assert judge_backend(broken, r).status == "missingLibraries"
    assert judge_backend(cpu, None).status == "unknown"


def test_status_vocabulary_both_forms() -> None:
    assert normalize_status("invalidCpuInstructionSetExtensions") == "invalidCpuInstructionSetExtensions"
    assert normalize_status("Invalid CPU instruction set extensions") == "invalidCpuInstructionSetExtensions"
    assert normalize_status("CPU survey unsuccesful") == "cpuSurveyUnsuccessful"
    assert normalize_status("OK-ish nonsense") == "unknown"
    assert normalize_status("COMPATIBLE") == "compatible"
    for camel, label in STATUSES.items():
        assert normalize_status(label) == camel and status_label(camel) == label
