"""Vulkan: driver decoding on real gpuinfo.org reports, and the real lavapipe device of this machine."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from app.core.hardware.vulkan import (
    VENDOR_INTEL,
    VENDOR_NVIDIA,
    GpuinfoReportError,
    decode_driver_version,
    load_gpuinfo_report,
    nvidia_driver_text,
    probe_vulkan,
)
from tests.conftest import FIXTURES, REPO

GPU = FIXTURES / "hwdata" / "gpu"
REPORTS = sorted(GPU.glob("vulkan-gpuinfo-*.json"))


def test_fixture_reports_present() -> None:
    assert len(REPORTS) >= 10


@pytest.mark.parametrize("path", REPORTS, ids=[p.name for p in REPORTS])
def test_driver_version_decoding_matches_gpuinfo(path: Path) -> None:
    """gpuinfo.org decodes driverVersion per vendor too; our decoding must give the same text."""
    raw = json.loads(path.read_text(encoding="utf-8"))
    dev = load_gpuinfo_report(path)
    assert dev.driver_version == raw["properties"]["driverVersionText"]
    assert dev.api_version == raw["properties"]["apiVersionText"]
    assert dev.vendor_id == raw["properties"]["vendorID"] and dev.device_id == raw["properties"]["deviceID"]
    assert dev.device_type == raw["properties"]["deviceTypeText"].replace("_GPU", "").lower()
    assert dev.device_local_memory_bytes > 0


def test_index_driver_columns() -> None:
    """INDEX.tsv's driver column ("driverVersion X (raw N)") against our decoding of N."""
    with (GPU / "INDEX.tsv").open(encoding="utf-8") as fh:
        rows = [r for r in csv.DictReader(fh, delimiter="\t") if r["kind"] == "vulkan-gpuinfo-report-json"]
    assert rows
    for r in rows:
        dev = load_gpuinfo_report(GPU / r["file"])
        assert f"driverVersion {dev.driver_version} (raw {dev.driver_version_raw})" in r["driver"], r["file"]


def test_kepler_nvidia_on_linux() -> None:
    dev = load_gpuinfo_report(GPU / "vulkan-gpuinfo-29402-nvidia-gtx770-kepler-linux.json")
    assert (dev.vendor, dev.name, dev.device_type) == ("NVIDIA", "NVIDIA GeForce GTX 770", "discrete")
    assert dev.driver_version == "470.239.6.0" and nvidia_driver_text(dev.driver_version) == "470.239.06"
    assert dev.driver_info == "470.239.06"  # the driver's own string agrees with our decoding
    assert dev.useful and not dev.software


def test_amd_windows_and_intel_mesa() -> None:
    amd = load_gpuinfo_report(GPU / "vulkan-gpuinfo-18453-amd-hd7900-tahiti-gcn1-windows.json")
    assert (amd.vendor, amd.driver_version, amd.driver_info) == ("AMD", "2.0.188", "22.10.1")
    intel = load_gpuinfo_report(GPU / "vulkan-gpuinfo-19874-intel-hd4600-haswell-linux-anv.json")
    assert (intel.vendor, intel.device_type, intel.driver_version) == ("Intel", "integrated", "22.2.5")
    assert intel.driver_info == "Mesa 22.2.5" and intel.useful


def test_lavapipe_report_is_software() -> None:
    dev = load_gpuinfo_report(GPU / "vulkan-gpuinfo-33826-llvmpipe-lavapipe-debian12.json")
    assert dev.software and not dev.useful and dev.device_type == "cpu"
    assert "software" in dev.note


def test_intel_windows_packing() -> None:
    """No Intel-on-Windows report is recorded; the raw value is built from Intel's documented 18/14 packing."""
    raw = (101 << 14) | 4502  # driver 101.4502
    assert decode_driver_version(raw, VENDOR_INTEL, windows=True) == "101.4502"
    assert decode_driver_version(raw, VENDOR_INTEL, driver_id=5) == "101.4502"
    # the same number read as VK_VERSION on Linux (Mesa) is something else entirely
    assert decode_driver_version(raw, VENDOR_INTEL, windows=False) != "101.4502"
    assert decode_driver_version(1975239040, VENDOR_NVIDIA) == "470.239.6.0"


def test_not_a_gpuinfo_report(tmp_path: Path) -> None:
    p = tmp_path / "x.json"
    p.write_text('{"hello": 1}', encoding="utf-8")
    with pytest.raises(GpuinfoReportError):
        load_gpuinfo_report(p)
    p.write_bytes(b"\x00\x01")
    with pytest.raises(GpuinfoReportError):
        load_gpuinfo_report(p)


def test_real_lavapipe_is_enumerated_and_marked_software(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Needs Debian's mesa-vulkan-drivers + libvulkan1 (installed by scripts/test.sh)."""
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path))
    devices = probe_vulkan()
    lava = [d for d in devices if "llvmpipe" in d.name]
    assert lava, devices
    d = lava[0]
    assert d.software and not d.useful
    assert d.vendor_id == 0x10005 and d.device_type == "cpu"
    assert d.driver_name == "llvmpipe" and d.driver_info.startswith("Mesa")
    assert d.device_local_memory_bytes > 0


def _run_probe_subprocess(env_extra: dict[str, str], prelude: str, tmp_path: Path) -> dict[str, object]:
    code = prelude + (
        "import json\n"
        "from app.core.hardware.probe import probe_vulkan_into\n"
        "errors = []\n"
        "devs = probe_vulkan_into(errors)\n"
        "print(json.dumps({'devices': len(devs), 'errors': [e.__dict__ for e in errors]}))\n"
    )
    env = {**os.environ, "XDG_RUNTIME_DIR": str(tmp_path), **env_extra}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, env=env,
                          timeout=60, check=True)
    result: dict[str, object] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


def test_no_vulkan_driver_is_an_absent_result(tmp_path: Path) -> None:
    """The real loader with no ICD to load (VK_ICD_FILENAMES pointing nowhere): a normal 'absent' result."""
    res = _run_probe_subprocess(
        {"VK_ICD_FILENAMES": str(tmp_path / "none.json"), "VK_DRIVER_FILES": str(tmp_path / "none.json")}, "",
        tmp_path)
    assert res["devices"] == 0
    (err,) = res["errors"]  # type: ignore[misc]
    assert err["kind"] == "absent" and err["probe"] == "vulkan"
    assert "driver" in err["message"] or "no device" in err["message"]


def test_missing_loader_is_an_absent_result(tmp_path: Path) -> None:
    """Stands in for a machine without libvulkan: importing `vulkan` raises the OSError that the package itself
    raises when dlopen finds no loader (message copied from vulkan/_vulkan.py)."""
    prelude = (
        "import sys, importlib.abc\n"
        "class _NoLoader(importlib.abc.MetaPathFinder):\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name == 'vulkan':\n"
        "            raise OSError('Cannot find Vulkan SDK version. Please ensure that it is installed and that the '\n"
        "                          '<sdk_root>/<version>/lib/ folder is in the library path')\n"
        "        return None\n"
        "sys.meta_path.insert(0, _NoLoader())\n"
    )
    res = _run_probe_subprocess({}, prelude, tmp_path)
    (err,) = res["errors"]  # type: ignore[misc]
    assert res["devices"] == 0 and err["kind"] == "absent"
    assert "no Vulkan loader" in err["message"] and "libvulkan1" in err["hint"]
