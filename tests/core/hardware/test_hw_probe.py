"""probe_hardware / report_from_sources on this machine and on bad input files."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from app.core.errors import InputFileError
from app.core.hardware.probe import probe_hardware, report_from_sources
from app.core.hardware.report import HardwareReport
from tests import hostfacts
from tests.conftest import FIXTURES

CPUINFO = FIXTURES / "hwdata" / "cpuinfo"
REPORTS = FIXTURES / "reports"


@pytest.fixture
def runtime_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    d = tmp_path / "xdg"
    d.mkdir(mode=0o700)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(d))
    return d


def test_live_probe(runtime_dir: Path, tmp_path: Path) -> None:
    report = probe_hardware(disk_path=tmp_path / "not-yet" / "home")
    assert report.source == "live" and report.created_at.endswith("Z")
    assert report.cpu is not None and report.cpu.source == "proc-cpuinfo" and report.cpu.isa
    assert report.os is not None and report.os.platform == "linux"
    assert report.ram_total_bytes and report.ram_total_bytes > 2**30
    assert report.disk_free_bytes and report.disk_free_bytes > 0
    assert report.disk_path == str(tmp_path / "not-yet" / "home")
    assert report.disk_measured_at == str(tmp_path)  # the folder does not exist yet: its nearest parent is measured
    # the GPUs this host really has, as vulkaninfo / nvidia-smi (tools independent of the probe) see them
    vk = hostfacts.vulkan_devices({**os.environ, "XDG_RUNTIME_DIR": str(runtime_dir)})
    if vk is not None:
        assert sorted((d.name, d.software) for d in report.vulkan_devices) == sorted((f.name, f.cpu_type) for f in vk)
    assert bool(report.vulkan_devices) != bool(report.errors_for("vulkan"))  # devices, or why there are none
    nv = hostfacts.nvidia_gpu_names()
    assert sorted(g.name for g in report.nvidia_gpus) == sorted(nv)
    assert all(g.compute_capability and g.driver_version for g in report.nvidia_gpus)
    assert bool(report.errors_for("nvidia")) == (not nv)
    assert {e.probe for e in report.errors} <= {"vulkan", "nvidia"} and {e.kind for e in report.errors} <= {"absent"}
    again = HardwareReport.from_json(report.to_json())
    assert again == report


def test_skip_gpu(runtime_dir: Path) -> None:
    report = probe_hardware(skip_gpu=True)
    assert report.vulkan_devices == () and report.nvidia_gpus == () and report.errors == ()


def test_cpuinfo_file_report() -> None:
    report = report_from_sources(None, str(CPUINFO / "ivybridge-i5-3570k.txt"))
    assert report.source == "cpuinfo-file"
    assert report.cpu is not None and report.cpu.microarchitecture == "ivybridge"
    assert report.os is not None and report.os.platform == "linux"
    assert report.ram_total_bytes is None and report.vulkan_devices == ()  # another machine's: unknown


def test_report_file_round_trip(tmp_path: Path) -> None:
    src = report_from_sources(None, str(CPUINFO / "westmere-arrandale-i5-m560.txt"))
    p = tmp_path / "r.json"
    p.write_text(src.to_json(), encoding="utf-8")
    assert report_from_sources(str(p), None) == src
    # `recommend --json` output embeds the report: that is accepted too
    p.write_text(json.dumps({"ok": True, "recommended": "noavx", "report": src.to_dict()}), encoding="utf-8")
    assert report_from_sources(str(p), None) == src


def _truncated(tmp: Path) -> Path:
    text = (CPUINFO / "ivybridge-i5-3570k.txt").read_text(encoding="utf-8")
    p = tmp / "truncated.txt"
    p.write_text(text[: text.index("flags")], encoding="utf-8")
    return p


def _binary(tmp: Path) -> Path:
    p = tmp / "binary.txt"
    p.write_bytes(Path(os.__file__).with_suffix(".py").read_bytes()[:50] + b"\x00\x01\x02\xff" * 20)
    return p


def _latin1(tmp: Path) -> Path:
    p = tmp / "latin1.txt"
    p.write_bytes("vendor_id\t: GenuineIntel\nmodel name\t: Caf\xe9\n".encode("latin-1"))
    return p


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda t: t / "missing.txt", "not found"),
        (lambda t: t, "is a folder"),
        (lambda t: Path("/proc/self/mem"), "cannot read"),
        (_truncated, "truncated"),
        (_binary, "binary"),
        (_latin1, "not UTF-8"),
        (lambda t: Path("/dev/zero"), "larger than"),  # was read until the kernel killed the process (#14)
    ],
    ids=["missing", "directory", "unreadable", "truncated", "binary", "not-utf8", "dev-zero"],
)
def test_bad_cpuinfo_files(tmp_path: Path, make, message: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(InputFileError, match=message) as info:
        report_from_sources(None, str(make(tmp_path)))
    assert info.value.hint and info.value.exit_code == 2


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"{not json", "not a JSON hardware report"),
        (b'{"hello": 1}', "not a hardware report"),
        (b'[1, 2]', "not a hardware report"),
        (b'{"schema_version": 1, "cpu": {"family": {"x": 1}}, "vulkan_devices": 5}', "not a valid hardware report"),
    ],
    ids=["syntax", "other-json", "array", "wrong-types"],
)
def test_bad_report_files(tmp_path: Path, content: bytes, message: str) -> None:
    p = tmp_path / "r.json"
    p.write_bytes(content)
    with pytest.raises(InputFileError, match=message):
        report_from_sources(str(p), None)


def test_disk_path_comes_from_the_caller(runtime_dir: Path, tmp_path: Path) -> None:
    """The probe measures where the caller says (LM Studio's home, resolved by the CLI or wizard); a resolver that
    fails becomes a "disk" probe error, and without a path nothing is measured."""
    def fails() -> Path:
        raise OSError("home not resolvable")

    report = probe_hardware(disk_path=fails, skip_gpu=True)
    assert report.disk_free_bytes is None and [e.probe for e in report.errors] == ["disk"]
    report = probe_hardware(disk_path=lambda: tmp_path, skip_gpu=True)
    assert report.disk_path == str(tmp_path) and report.disk_free_bytes and report.errors == ()
    report = probe_hardware(skip_gpu=True)
    assert report.disk_free_bytes is None and report.disk_path == "" and report.errors == ()


def test_huge_and_deep_report_files_are_refused(tmp_path: Path) -> None:
    """#14: `--report` is bounded by size and JSON depth (a clear error, never a RecursionError)."""
    for name, content, message in (
        ("huge.json", b" " * (17 * 1024 * 1024), "larger than"),
        ("deep.json", b"[" * 100_000 + b"]" * 100_000, "levels deep"),
    ):
        p = tmp_path / name
        p.write_bytes(content)
        with pytest.raises(InputFileError, match=message) as ei:
            report_from_sources(str(p), None)
        assert ei.value.exit_code == 2
    with pytest.raises(InputFileError, match="larger than"):
        report_from_sources("/dev/zero", None)
