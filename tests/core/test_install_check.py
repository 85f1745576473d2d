"""The install check's pieces: how the target is read from a home, and each verdict, on real folders.

Homes and backend folders are built from the real manifests (tests/lmstudio_homes.py); the CPUs are recorded
/proc/cpuinfo files and hardware reports (tests/fixtures). The wizard's download path (a catalog entry run
through `execute_obtain`) is exercised with a real signed catalog on disk.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from app.core.fetch.obtain import execute_obtain, plan_from_catalog
from app.core.fetch.publish import publish
from app.core.hardware.report import HardwareReport
from app.core.install_check import InstallRefused, check_folder, check_install, enforce, install_target
from app.core.lmstudio.home import as_home
from app.core.lmstudio.jsondoc import load_json, save
from app.core.lmstudio.provenance import record_smoke, write_provenance
from tests.conftest import FIXTURES
from tests.core.fetch.reports import cpu_report, ivybridge_cpu_only, ivybridge_with_vulkan_gpu
from tests.lmstudio_homes import make_home, prepare_our_backend, tree_hashes

TEST_KEY = FIXTURES / "TEST-ONLY-catalog-signing.key"
TEST_PUB = FIXTURES / "TEST-ONLY-catalog-signing.pub"


def windows_report() -> HardwareReport:
    r = HardwareReport.from_json((FIXTURES / "reports" / "ivybridge.json").read_text())
    assert r.os is not None
    return dataclasses.replace(r, os=dataclasses.replace(r.os, platform="win", system="Windows"))


def test_home_platform_from_official_engines_wins_over_the_computer(tmp_path: Path) -> None:
    home = make_home(tmp_path, backends=("win-cpu-1.48.0",), vendor=())
    t = install_target(home, ivybridge_cpu_only())  # a Linux cpuinfo: e.g. WSL reaching a Windows home
    assert t.platform == "win" and "LM Studio's own engines" in t.platform_source
    assert t.engine_versions == ("1.48.0",) and t.arch == "x86_64" and t.home_arch == "x86_64"
    assert any("the home decides" in n for n in t.notes)


def test_home_platform_from_vendor_packages_engine_index_and_cli(tmp_path: Path) -> None:
    vendor_home = make_home(tmp_path, backends=(), vendor=("win-llama-vulkan-vendor-v2",), dirname="v")
    assert install_target(vendor_home, None).platform == "win"
    index = {"json": [{"manifest": {"name": "llama.cpp-win-x86_64-avx2", "version": "1.48.0"},
                       "dirPath": "C:\\Users\\u\\.lmstudio\\extensions\\backends\\llama.cpp-win-x86_64-avx2-1.48.0"}]}
    index_home = make_home(tmp_path, backends=(), vendor=(), engine_index=index, dirname="i")
    t = install_target(index_home, None)
    assert t.platform == "win" and "engine index" in t.platform_source
    cli_home = make_home(tmp_path, backends=(), vendor=(), dirname="c")
    (cli_home / "bin").mkdir()
    (cli_home / "bin" / "lms.exe").write_bytes(b"MZ stand-in")
    assert install_target(cli_home, None).platform == "win"
    bare = make_home(tmp_path, backends=(), vendor=(), dirname="b")
    t = install_target(bare, ivybridge_cpu_only())
    assert t.platform == "linux" and "saved /proc/cpuinfo runs Linux" in t.platform_source
    assert install_target(bare, None).platform == ""


def test_unknown_target_gives_notes_not_refusals(tmp_path: Path) -> None:
    bare = make_home(tmp_path, backends=(), vendor=())
    pack = prepare_our_backend(tmp_path / "p")
    chk = check_folder(pack, bare, None)
    assert not chk.refused
    sev = {f.check: f.severity for f in chk.findings}
    assert sev == {"platform": "info", "architecture": "info", "ise": "warning", "isa-audit": "warning",
                   "engine-version": "info", "smoke": "info"}


def test_arm64_pack_refused_on_x86(tmp_path: Path) -> None:
    home = make_home(tmp_path)
    pack = prepare_our_backend(tmp_path / "p")
    doc = load_json(pack / "backend-manifest.json")
    doc.data["cpu"]["architecture"] = "arm64"
    save(doc)
    chk = check_folder(pack, home, ivybridge_cpu_only())
    f = chk.finding("architecture")
    assert f is not None and f.refuses and "built for arm64 CPUs, but the target CPU is x86_64" in f.message
    assert "invalidCpuArchitecture" in f.message


def test_gpu_is_a_warning_only_and_not_checked_from_a_cpuinfo(tmp_path: Path) -> None:
    home = make_home(tmp_path)
    pack = prepare_our_backend(tmp_path / "p", "linux-vulkan-2.14.0", "vulkan-avx1")
    no_gpu = dataclasses.replace(ivybridge_cpu_only(), source="report-file")
    f = check_folder(pack, home, no_gpu).finding("gpu")
    assert f is not None and f.severity == "warning" and "gpuRequiredButNoneFound" in f.message
    ok = check_folder(pack, home, ivybridge_with_vulkan_gpu())
    assert not ok.refused
    g = check_folder(pack, home, ivybridge_cpu_only()).finding("gpu")
    assert g is not None and g.severity == "info" and "not checked" in g.message


def test_smoke_record_changed_files_and_pass(tmp_path: Path) -> None:
    home = make_home(tmp_path)
    pack = prepare_our_backend(tmp_path / "p")
    write_provenance(pack, {"template": "llama.cpp-linux-x86_64-avx2@2.14.0"})
    assert record_smoke(pack, {"ok": True, "reason": "", "cpu": "qemu -cpu IvyBridge"})
    f = check_folder(pack, home, ivybridge_cpu_only()).finding("smoke")
    assert f is not None and f.severity == "ok" and "passed on qemu -cpu IvyBridge" in f.message
    (pack / "libggml-cpu.so.0.0.8861").write_bytes(b"edited after the smoke test")
    f = check_folder(pack, home, ivybridge_cpu_only()).finding("smoke")
    assert f is not None and f.severity == "warning" and "1 file(s) changed since" in f.message
    assert record_smoke(pack, {"ok": False, "reason": "exited with code 1", "cpu": "this computer"})
    f = check_folder(pack, home, ivybridge_cpu_only()).finding("smoke")
    assert f is not None and f.refuses and "exited with code 1" in f.message
    assert not record_smoke(prepare_our_backend(tmp_path / "q"), {"ok": True})  # not ours: nothing recorded


def test_enforce_raises_typed_error_and_force_passes(tmp_path: Path) -> None:
    home = make_home(tmp_path)
    pack = prepare_our_backend(tmp_path / "p")
    chk = check_install(pack, install_target(home, cpu_report("core2-penryn-yorkfield-q9550.txt")))
    with pytest.raises(InstallRefused) as ei:
        enforce(chk, force=False, source="somewhere")
    err = ei.value
    assert err.exit_code == 2 and err.context == "somewhere" and "--force" in err.hint
    assert err.to_dict()["check"]["refused"] is True and "REFUSED [ise]" in err.details
    enforce(chk, force=True)
    rec = chk.provenance_record(forced=True)
    assert rec["forced"] and rec["refusals_overridden"] and json.dumps(rec)


def test_wizard_download_path_judges_before_writing(tmp_path: Path) -> None:
    """The wizard calls plan_from_catalog(report=...) + execute_obtain: a Core 2 gets no AVX pack."""
    home = make_home(tmp_path)
    pack = prepare_our_backend(tmp_path / "p")
    cat = tmp_path / "cat"
    publish(pack, cat, key_path=TEST_KEY, audit=False)
    ident = "llama.cpp-linux-x86_64-avx1-unlocked@2.14.0"
    core2 = cpu_report("core2-penryn-yorkfield-q9550.txt")
    plan = plan_from_catalog(cat, home=home, report=core2, entry_ident=ident, select=True, public_key_path=TEST_PUB)
    before = tree_hashes(home)
    with pytest.raises(InstallRefused):
        execute_obtain(plan)
    assert tree_hashes(home) == before
    ivy = plan_from_catalog(cat, home=as_home(home), report=ivybridge_cpu_only(), entry_ident=ident,
                            public_key_path=TEST_PUB)
    res = execute_obtain(ivy)
    assert res.check is not None and not res.check.refused and res.install.ident == ident


def test_platform_name_and_manifest_disagreeing_is_a_warning(tmp_path: Path) -> None:
    home = make_home(tmp_path)
    pack = prepare_our_backend(tmp_path / "p", "win-cpu-1.48.0", "cpu-avx1")
    doc = load_json(pack / "backend-manifest.json")
    doc.data["platform"] = "linux"
    save(doc)
    f = check_folder(pack, home, ivybridge_cpu_only()).finding("platform")
    assert f is not None and f.severity == "warning" and "the name says Windows" in f.message
