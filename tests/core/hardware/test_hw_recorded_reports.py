"""The recorded HardwareReports in tests/fixtures/reports load, and still equal what make_reports.py makes."""

from __future__ import annotations

import pytest

from app.core.hardware.probe import report_from_sources
from app.core.hardware.recorded import report_from_recordings
from tests.conftest import FIXTURES
from tests.fixtures.reports.make_reports import SPECS, Spec, render

REPORTS = FIXTURES / "reports"


def test_every_fixture_has_a_spec() -> None:
    assert {p.stem for p in REPORTS.glob("*.json")} == {s.name for s in SPECS}
    for required in ("ivybridge", "westmere", "haswell", "sandybridge", "ivybridge-kepler"):
        assert (REPORTS / f"{required}.json").is_file()


@pytest.mark.parametrize("spec", SPECS, ids=[s.name for s in SPECS])
def test_fixture_is_current_and_loads(spec: Spec) -> None:
    path = REPORTS / f"{spec.name}.json"
    assert path.read_text(encoding="utf-8") == render(spec), "run tests/fixtures/reports/make_reports.py"
    report = report_from_sources(str(path), None)
    assert report.cpu is not None and report.source == "recorded" and report.note == spec.note
    assert len(report.vulkan_devices) == len(spec.vulkan)


def test_kepler_fixture_contents() -> None:
    report = report_from_sources(str(REPORTS / "ivybridge-kepler.json"), None)
    assert report.cpu is not None and report.cpu.microarchitecture == "ivybridge"
    (vk,) = report.vulkan_devices
    assert (vk.name, vk.driver_version, vk.useful) == ("NVIDIA GeForce GTX 770", "470.239.6.0", True)
    (nv,) = report.nvidia_gpus
    assert (nv.name, nv.compute_capability, nv.driver_version) == ("Tesla K80", "3.7", "410.104")


def test_recordings_accept_q_output() -> None:
    hw = FIXTURES / "hwdata"
    report = report_from_recordings(hw / "cpuinfo" / "haswell-i7-4770.txt",
                                    nvidia_smi=[hw / "gpu" / "nvidia-smi-q-quadro-m1000m-maxwell-375.82.txt"])
    assert [(g.name, g.compute_capability) for g in report.nvidia_gpus] == [("Quadro M1000M", "5.0")]
