"""why_not: one plain sentence per unmet requirement; [] when the host fits."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
from jsonschema import Draft202012Validator

from app.core.hardware.probe import report_from_sources
from app.core.hardware.report import HardwareReport, NvidiaGpu, OsInfo
from app.core.matcher import RequirementsError, fits, why_not
from app.core.paths import data_path
from tests.conftest import FIXTURES

REPORTS = FIXTURES / "reports"


def load(name: str) -> HardwareReport:
    return report_from_sources(str(REPORTS / f"{name}.json"), None)


def test_schema_is_valid_and_documents_every_key() -> None:
    schema = json.loads(data_path("requirements.schema.json").read_text(encoding="utf-8"))
    Draft202012Validator.check_schema(schema)
    from app.core.matcher import REQUIREMENT_KEYS

    assert set(schema["properties"]) == REQUIREMENT_KEYS
    from app.core.hardware.report import ISA_ORDER

    assert schema["properties"]["cpu_isa"]["items"]["enum"] == list(ISA_ORDER)


def test_empty_requirements_fit() -> None:
    assert why_not(load("ivybridge"), {}) == []


def test_isa() -> None:
    ivy = load("ivybridge")
    assert why_not(ivy, {"cpu_isa": ["AVX", "F16C"]}) == []
    (reason,) = why_not(ivy, {"cpu_isa": ["AVX", "AVX2", "FMA"]})
    assert reason == "needs AVX2 and FMA, which your Intel Core i5-3570K does not have"


def test_isa_disabled_by_os() -> None:
    ivy = load("ivybridge")
    assert ivy.cpu is not None
    disabled = replace(ivy, cpu=replace(ivy.cpu, isa=("SSE3", "SSSE3", "SSE4.1", "SSE4.2"),
                                        disabled_isa=("AVX", "F16C")))
    (reason,) = why_not(disabled, {"cpu_isa": ["AVX"]})
    assert "supports but which is disabled (BIOS / hypervisor / OS)" in reason


def test_platform_and_arch() -> None:
    ivy = load("ivybridge")
    mac = replace(ivy, os=OsInfo(platform="mac", system="Darwin"))
    assert why_not(mac, {"platforms": ["win", "linux"]}) == [
        "runs on Windows or Linux only; this machine runs macOS"]
    assert why_not(replace(ivy, os=None), {"platforms": ["win"]}) == [
        "runs on Windows only; this machine runs an unknown operating system"]
    atom = report_from_sources(None, str(FIXTURES / "hwdata" / "cpuinfo" / "atom-bonnell-n270.txt"))
    assert why_not(atom, {"architectures": ["x86_64"]}) == ["needs an x86_64 CPU; this one is x86"]


def test_vulkan() -> None:
    assert why_not(load("ivybridge-gtx770"), {"gpu": "vulkan"}) == []
    (r,) = why_not(load("ivybridge-lavapipe"), {"gpu": "vulkan"})
    assert r.startswith("needs a GPU with a Vulkan driver; only llvmpipe") and "software" in r
    (r,) = why_not(load("ivybridge"), {"gpu": "vulkan"})
    assert r == "needs a GPU with a Vulkan driver; none was found"


def test_nvidia_and_cc_range() -> None:
    k80 = load("ivybridge-k80")
    assert why_not(k80, {"gpu": "nvidia", "nvidia_cc_min": "3.5", "nvidia_cc_max": "3.7"}) == []
    (r,) = why_not(k80, {"gpu": "nvidia", "nvidia_cc_min": "5.0"})
    assert r == "needs an NVIDIA GPU of compute capability 5.0 or higher; this machine has Tesla K80 (3.7)"
    gtx680 = replace(k80, nvidia_gpus=(NvidiaGpu(0, "GeForce GTX 680", "3.0", "470.256.02"),))
    (r,) = why_not(gtx680, {"nvidia_cc_min": "3.5", "nvidia_cc_max": "7.2"})
    assert "compute capability 3.5 to 7.2" in r and "GTX 680 (3.0)" in r
    unknown = replace(k80, nvidia_gpus=(NvidiaGpu(0, "NVIDIA RTX PRO ...", "", "580.95.05"),))
    assert "compute capability unknown" in why_not(unknown, {"nvidia_cc_max": "7.2"})[0]
    assert why_not(load("ivybridge"), {"gpu": "nvidia"}) == ["needs an NVIDIA GPU; none was found"]


def test_ram() -> None:
    ivy = replace(load("ivybridge"), ram_total_bytes=8 * 1024**3)
    assert fits(ivy, {"min_ram_gib": 8})
    assert why_not(ivy, {"min_ram_gib": 16}) == ["needs 16 GiB of RAM; this machine has 8.0 GiB"]
    assert why_not(replace(ivy, ram_total_bytes=None), {"min_ram_gib": 4}) == [
        "needs 4 GiB of RAM; the amount of RAM is unknown"]


def test_several_reasons_at_once() -> None:
    reasons = why_not(load("westmere"), {"cpu_isa": ["AVX"], "gpu": "vulkan", "min_ram_gib": 1})
    assert len(reasons) == 3


@pytest.mark.parametrize(
    "bad",
    [{"cpu_isa_typo": ["AVX"]}, {"cpu_isa": ["AVX3"]}, {"gpu": "metal"}, {"nvidia_cc_min": "three"}],
)
def test_malformed_requirements_are_data_bugs(bad: dict[str, object]) -> None:
    with pytest.raises(RequirementsError):
        why_not(load("ivybridge-k80"), bad)
