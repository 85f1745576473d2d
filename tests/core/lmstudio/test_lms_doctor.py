"""doctor/repair: one test per finding. Each builds a healthy home (official packs + ours installed
through the real install API), breaks one thing, asserts the finding, repairs, and asserts the
finding is gone and that nothing else in the home changed (sha256 + mode of every file).

Hardware: CPU parts come from REAL /proc/cpuinfo dumps (shared hwdata); the Vulkan GPU is a
constructed VulkanDevice (we have none here). LM Studio processes are passed in as a list (a real
process named llmster is covered in test_lms_install.py).
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from app.core.hardware.probe import probe_hardware
from app.core.hardware.report import CpuInfo, HardwareReport, OsInfo, VulkanDevice
from app.core.lmstudio.doctor import Finding, diagnose, repair, repair_plan
from app.core.lmstudio.home import POINTER_FILE_NAME, resolve_home
from app.core.lmstudio.install import execute_install, plan_install
from app.core.lmstudio.journal import STATE_DIR_NAME
from app.core.lmstudio.processes import LmsProcess
from tests.conftest import HWDATA, REPO
from tests.lmstudio_homes import make_home, prepare_our_backend, tree_hashes

NONE: dict[str, Any] = {"processes": lambda _h: []}
OURS = "llama.cpp-linux-x86_64-avx1-unlocked"
OURS_DIR = f"extensions/backends/{OURS}-2.14.0"
GTX = VulkanDevice(0, "GTX 770", 0x10DE, "NVIDIA", 0x1184, "discrete", "1.2", "470.1", 1)


def _report(cpu: str = "ivybridge-i5-3570k.txt", platform: str = "linux") -> HardwareReport:
    r = probe_hardware(cpuinfo_path=HWDATA / "cpuinfo" / cpu)
    return dataclasses.replace(r, os=OsInfo(platform=platform, system=platform.title()), vulkan_devices=(GTX,))


IVY = _report()


def visible(home: Path) -> dict[str, str]:
    return tree_hashes(home, exclude=(STATE_DIR_NAME,))


def codes(fs: list[Finding]) -> set[str]:
    return {f.code for f in fs}


@pytest.fixture
def home(tmp_path: Path) -> Path:
    """Healthy: official CPU (AVX2) + Vulkan 2.14.0, ours (AVX1) installed and selected, toggles off."""
    h = make_home(
        tmp_path,
        backends=["linux-vulkan-2.14.0"],
        settings={"autoUpdateExtensionPacks": False, "autoDeleteExtensionPacks": False, "other": "kept"},
        prefs=[{"model_format": "safetensors", "name": "x", "version": "1"}],
    )
    src = prepare_our_backend(tmp_path / "build")
    execute_install(plan_install(h, src, select=True, **NONE), provenance={"variant": "cpu-avx1"}, **NONE)
    return h


def test_healthy_home_has_no_findings(home: Path) -> None:
    fs = diagnose(home, report=IVY, **NONE)
    # only: the official AVX2 pack is (expectedly) incompatible with an Ivy Bridge CPU - an info, not an error
    assert [(f.code, f.severity, f.backend) for f in fs] == [
        ("ise-unsupported", "info", "llama.cpp-linux-x86_64-vulkan-avx2@2.14.0")
    ]


def roundtrip(
    home: Path, code: str, *, changed: set[str] | None = None, healthy: dict[str, str] | None = None, **kw: Any
) -> Finding:
    """Assert ``code`` is found, repair, assert it is gone and only ``changed`` paths differ."""
    kw = {"report": IVY, **NONE, **kw}
    broken = visible(home)
    found = [f for f in diagnose(home, **kw) if f.code == code and f.auto]
    assert found, f"{code} not found in {codes(diagnose(home, **kw))}"
    f = found[0]
    assert f.explanation and f.fix and f.severity in ("error", "warning", "info")
    assert any(code in line for line in repair_plan(found))
    out = repair(home, **kw)
    assert code not in codes(list(out.after)), out.skipped
    assert any(g.code == code for g in out.fixed)
    after = visible(home)
    if healthy is not None:
        assert after == healthy
    if changed is not None:
        diff = {k for k in broken.keys() | after.keys() if broken.get(k) != after.get(k)}
        assert diff == changed
    return f


def not_auto(home: Path, code: str, **kw: Any) -> Finding:
    """Assert ``code`` is found and repair leaves the home exactly as it is (nothing safe to do)."""
    kw = {"report": IVY, **NONE, **kw}
    found = [f for f in diagnose(home, **kw) if f.code == code]
    assert found, f"{code} not found in {codes(diagnose(home, **kw))}"
    assert not found[0].auto and found[0].fix
    before = visible(home)
    out = repair(home, only={code}, **kw)
    assert code in codes(list(out.after)) and not out.applied
    assert visible(home) == before
    return found[0]


# ---------------------------------------------------------------------------------------- auto fixes


def test_json_bom(home: Path) -> None:
    healthy = visible(home)
    m = home / OURS_DIR / "backend-manifest.json"
    m.write_bytes(b"\xef\xbb\xbf" + m.read_bytes())
    roundtrip(home, "json-bom", healthy=healthy)


@pytest.mark.parametrize(
    ("code", "rel", "breaker"),
    [
        ("json-invalid", "backend-manifest.json", lambda b: b[: len(b) // 2]),
        ("json-encoding", "backend-manifest.json", lambda b: b.decode().encode("utf-16")),
        ("json-invalid", "display-data.json", lambda b: b'[["en", {'),
        (
            "manifest-fields",
            "backend-manifest.json",
            lambda b: json.dumps({k: v for k, v in json.loads(b).items() if k != "platform"}).encode(),
        ),
    ],
)
def test_broken_json_restored_from_stored_copy(
    home: Path, code: str, rel: str, breaker: Callable[[bytes], bytes]
) -> None:
    healthy = visible(home)
    p = home / OURS_DIR / rel
    p.write_bytes(breaker(p.read_bytes()))
    roundtrip(home, code, healthy=healthy)


def test_exec_bits_lost(home: Path) -> None:
    healthy = visible(home)
    for p in (home / OURS_DIR).iterdir():
        if not p.is_symlink() and p.suffix in (".node", ".so"):
            os.chmod(p, 0o644)
    roundtrip(home, "exec-bits-lost", healthy=healthy)


def test_artifacts_mismatch(home: Path) -> None:
    healthy = visible(home)
    a = home / OURS_DIR / "engine-protocol-server-artifacts.json"
    data = json.loads(a.read_text())
    data["executable_relative_path"] = "old/llama-server"
    data["files"].append({"relative_path": "gone.so", "executable": False})
    a.write_text(json.dumps(data, indent=2) + "\n")
    roundtrip(home, "artifacts-mismatch", healthy=healthy)


def test_nested_folder(home: Path) -> None:
    healthy = visible(home)
    ours = home / OURS_DIR
    tmp = ours.with_name("tmp-move")
    os.rename(ours, tmp)
    ours.mkdir()
    os.rename(tmp, ours / ours.name)  # what extracting "X.zip" into a folder "X" does
    roundtrip(home, "nested-folder", healthy=healthy)


def test_misplaced_backend(home: Path) -> None:
    healthy = visible(home)
    os.rename(home / OURS_DIR, home / "extensions" / f"{OURS}-2.14.0")
    roundtrip(home, "misplaced-backend", healthy=healthy)


def test_duplicate_backup_copy_inside_backends(home: Path) -> None:
    healthy = visible(home)
    off = home / "extensions/backends/llama.cpp-linux-x86_64-vulkan-avx2-2.14.0"
    shutil.copytree(off, off.with_name(off.name + ".backup"), symlinks=True)
    f = roundtrip(home, "duplicate-backend", healthy=healthy)
    assert f.target.endswith(".backup")
    moved = list((home / STATE_DIR_NAME / "backups").glob("*/moved-out/*.backup"))
    assert len(moved) == 1  # moved out, not deleted


def test_ise_empty_on_our_avx1_build(home: Path) -> None:
    healthy = visible(home)
    m = home / OURS_DIR / "backend-manifest.json"
    m.write_bytes(m.read_bytes().replace(b'"AVX"', b'""'))
    roundtrip(home, "ise-empty", healthy=healthy)


def test_stale_engine_index(home: Path) -> None:
    idx = home / ".internal" / "internal-engine-index.json"
    idx.write_text(json.dumps({"json": [{"dirPath": "/old/home/.lmstudio/extensions/backends/x-1.0.0"}], "meta": {}}))
    before = visible(home)
    roundtrip(home, "stale-engine-index", changed={".internal/internal-engine-index.json"})
    assert not idx.exists() and ".internal/internal-engine-index.json" in before
    assert list((home / STATE_DIR_NAME / "backups").glob("*/moved-out/internal-engine-index.json"))


@pytest.mark.parametrize("key", ["autoUpdateExtensionPacks", "autoDeleteExtensionPacks"])
def test_auto_toggles(home: Path, key: str) -> None:
    healthy = visible(home)
    s = home / "settings.json"
    data = json.loads(s.read_text())
    data[key] = True
    s.write_text(json.dumps(data, indent=2) + "\n")
    code = "auto-update-on" if key.startswith("autoUpdate") else "auto-delete-on"
    roundtrip(home, code, healthy=healthy)
    assert json.loads(s.read_text())["other"] == "kept"


def test_ours_not_selected(home: Path) -> None:
    healthy = visible(home)
    p = home / ".internal" / "backend-preferences-v1.json"
    p.write_text(
        json.dumps(
            [
                *json.loads(p.read_text())[:1],
                {"model_format": "gguf", "name": "llama.cpp-linux-x86_64-vulkan-avx2", "version": "2.14.0"},
            ]
        )
    )
    roundtrip(home, "ours-not-selected", healthy=healthy)


def test_selection_missing(home: Path) -> None:
    healthy = visible(home)
    p = home / ".internal" / "backend-preferences-v1.json"
    p.write_text(
        json.dumps(
            [
                *json.loads(p.read_text())[:1],
                {"model_format": "gguf", "name": "llama.cpp-linux-x86_64-avx2", "version": "2.99.0"},
            ]
        )
    )
    roundtrip(home, "selection-missing", healthy=healthy)


def test_stale_staging(home: Path) -> None:
    (home / STATE_DIR_NAME / "tx" / "20260101T000000-install-abc" / "staged").mkdir(parents=True)
    healthy = visible(home)
    roundtrip(home, "stale-staging", healthy=healthy)
    assert not list((home / STATE_DIR_NAME / "tx").iterdir())


def test_interrupted_install_from_a_killed_process(home: Path, tmp_path: Path) -> None:
    healthy = visible(home)
    v2 = prepare_our_backend(tmp_path / "v2", version="2.14.1", payload=b"v2")
    driver = (
        "import sys; from pathlib import Path; from app.core.lmstudio.install import *\n"
        "n = lambda _h: []\n"
        "execute_install(plan_install(sys.argv[1], Path(sys.argv[2]), processes=n), provenance={}, processes=n)\n"
    )
    env = dict(os.environ, LMS_UNLOCKED_FAULT="install:op0:recorded")
    r = subprocess.run([sys.executable, "-c", driver, str(home), str(v2)], env=env, timeout=60, cwd=REPO)
    assert r.returncode == -9
    assert visible(home) != healthy  # half-changed: our v1 folder moved out, v2 not in yet
    roundtrip(home, "interrupted-change", healthy=healthy)


def test_lmstudio_running_blocks_fixes_that_need_it_closed(home: Path) -> None:
    fake = [LmsProcess(4242, "lm-studio", "app")]
    s = home / "settings.json"
    s.write_text(json.dumps({"autoUpdateExtensionPacks": True}))
    f = not_auto(home, "lmstudio-running", processes=lambda _h: fake)
    assert "tray" in f.explanation or "tray" in f.fix
    out = repair(home, report=IVY, processes=lambda _h: fake)
    assert "auto-update-on" in codes(list(out.after)) and any("close LM Studio first" in x for x in out.skipped)


# ---------------------------------------------------------------------------------------- manual fixes


def test_home_pointer_to_nowhere(tmp_path: Path) -> None:
    (tmp_path / POINTER_FILE_NAME).write_text("/nowhere/lmstudio")
    h = resolve_home(user_home=tmp_path)
    fs = diagnose(h, report=IVY, user_home=tmp_path, **NONE)
    assert codes(fs) == {"home-problem"} and "/nowhere/lmstudio" in fs[0].explanation
    assert (tmp_path / POINTER_FILE_NAME).read_text() == "/nowhere/lmstudio"


def test_wrong_home(home: Path, tmp_path: Path) -> None:
    user = tmp_path / "user"
    legacy = user / ".cache" / "lm-studio"
    legacy.parent.mkdir(parents=True)
    os.rename(home, legacy)  # ours lives in the legacy home ...
    other = make_home(tmp_path, backends=["linux-cpu-2.14.0"], dirname="real-home")
    (user / POINTER_FILE_NAME).write_text(str(other))  # ... but the pointer sends LM Studio elsewhere
    h = resolve_home(user_home=user)
    f = not_auto(h.path, "wrong-home", user_home=user)
    assert str(legacy) in f.explanation and str(other) in f.explanation


def test_not_a_backend(home: Path) -> None:
    (home / "extensions/backends/leftover").mkdir()
    not_auto(home, "not-a-backend")


def test_missing_library_and_files_changed(home: Path) -> None:
    (home / OURS_DIR / "liblmstudio_bindings.node").unlink()
    (home / OURS_DIR / "libmtmd.so").write_bytes(b"tampered")
    not_auto(home, "missing-library")
    not_auto(home, "files-changed")


def test_vendor_missing(tmp_path: Path) -> None:
    h = make_home(tmp_path, backends=["linux-vulkan-2.14.0"], vendor=())
    not_auto(h, "vendor-missing")


def test_server_missing(home: Path) -> None:
    (home / OURS_DIR / "llama-server").unlink()
    not_auto(home, "server-missing")


def test_official_name_used_by_ours(home: Path) -> None:
    m = home / OURS_DIR / "backend-manifest.json"
    m.write_bytes(m.read_bytes().replace(OURS.encode(), b"llama.cpp-linux-x86_64-avx2"))
    not_auto(home, "official-name")


@pytest.mark.parametrize(
    ("code", "kw"),
    [
        ("ise-unsupported", {"report": _report("core2-merom-conroe-e6400.txt")}),
        ("platform-mismatch", {"report": _report(platform="win")}),
        ("arch-mismatch", {"report": dataclasses.replace(IVY, cpu=CpuInfo(architecture="arm64"))}),
        ("app-too-old", {"app_version": "0.3.30+1"}),
        ("gpu-incompatible", {"report": dataclasses.replace(_report("haswell-i7-4770.txt"), vulkan_devices=())}),
    ],
)
def test_judge_findings(home: Path, code: str, kw: dict[str, Any]) -> None:
    not_auto(home, code, **kw)


def test_preferences_invalid(home: Path) -> None:
    (home / ".internal" / "backend-preferences-v1.json").write_text('{"preferredBackend": "x"}')
    not_auto(home, "preferences-invalid")


def test_journal_unreadable(home: Path) -> None:
    (home / STATE_DIR_NAME / "journal.json").write_text("{garbage")
    fs = diagnose(home, report=IVY, **NONE)
    assert "journal-unreadable" in codes(fs)


def test_repair_fixes_only_the_chosen_findings(home: Path) -> None:
    """diagnose() / Finding.fixable / repair(home, chosen), as the wizard's repair page calls them: only the chosen
    findings are fixed."""
    from app.core.lmstudio import doctor as doctor_mod

    m = home / OURS_DIR / "backend-manifest.json"
    m.write_bytes(b"\xef\xbb\xbf" + m.read_bytes())
    s = home / "settings.json"
    s.write_text(json.dumps({"autoUpdateExtensionPacks": True}))
    fs = doctor_mod.diagnose(home, report=IVY, **NONE)
    chosen = [f for f in fs if f.code == "json-bom"]
    assert chosen and chosen[0].fixable
    out = doctor_mod.repair(home, chosen, report=IVY, **NONE)
    assert "json-bom" not in codes(list(out.after)) and "auto-update-on" in codes(list(out.after))


def test_nested_repair_killed_midway_recovers(home: Path) -> None:
    """The nested-folder move is journaled: a kill after its first step is finished at the next start."""
    healthy = visible(home)
    ours = home / OURS_DIR
    tmp = ours.with_name("tmp-move")
    os.rename(ours, tmp)
    ours.mkdir()
    os.rename(tmp, ours / ours.name)
    driver = (
        "import sys, dataclasses\n"
        "from app.core.lmstudio.doctor import repair\n"
        "repair(sys.argv[1], only={'nested-folder'}, processes=lambda _h: [])\n"
    )
    env = dict(os.environ, LMS_UNLOCKED_FAULT="repair:op1:recorded")
    assert subprocess.run([sys.executable, "-c", driver, str(home)], env=env, timeout=60, cwd=REPO).returncode == -9
    from app.core.lmstudio.install import recover

    assert recover(home) and visible(home) == healthy


def test_server_not_executable_in_a_folder_not_ours(tmp_path: Path) -> None:
    h = make_home(tmp_path, backends=["linux-cpu-2.14.0"])
    os.chmod(h / "extensions/backends/llama.cpp-linux-x86_64-avx2-2.14.0/llama-server", 0o644)
    f = not_auto(h, "server-not-executable", report=_report("haswell-i7-4770.txt"))
    assert "chmod +x" in f.fix


def test_ise_empty_without_a_hardware_report(tmp_path: Path) -> None:
    h = make_home(tmp_path, backends=["win-noavx-1.48.0"], vendor=())
    f = not_auto(h, "ise-empty", report=None)
    assert f.backend == "llama.cpp-win-x86_64-avx0@1.48.0" and f.severity == "warning"


def test_engine_index_from_a_moved_home(home: Path, tmp_path: Path) -> None:
    """dirPath entries that still exist but belong to the home's old location are stale too."""
    old_place = tmp_path / "old-home" / "extensions" / "backends" / f"{OURS}-2.14.0"
    old_place.mkdir(parents=True)
    idx = home / ".internal" / "internal-engine-index.json"
    idx.write_text(json.dumps({"json": [{"dirPath": str(old_place)}, {"dirPath": str(home / OURS_DIR)}]}))
    roundtrip(home, "stale-engine-index", changed={".internal/internal-engine-index.json"})


def test_folder_name_mismatch_of_ours(home: Path) -> None:
    healthy = visible(home)
    os.rename(home / OURS_DIR, home / "extensions/backends/my-avx1-build")
    roundtrip(home, "folder-name-mismatch", healthy=healthy)


def test_folder_name_mismatch_not_ours(tmp_path: Path) -> None:
    h = make_home(tmp_path, backends=["linux-cpu-2.14.0"])
    os.rename(
        h / "extensions/backends/llama.cpp-linux-x86_64-avx2-2.14.0", h / "extensions/backends/cpu-2.14.0-patched"
    )
    not_auto(h, "folder-name-mismatch", report=_report("haswell-i7-4770.txt"))


@pytest.mark.parametrize("status", ["errorSurveyingHardware", "Invalid CPU architecture"])
def test_lmstudio_said_incompatible(home: Path, status: str) -> None:
    """LM Studio's own verdict from its engine index (both status spellings), for our engine."""
    idx = home / ".internal" / "internal-engine-index.json"
    entry = {
        "manifest": {"name": OURS, "version": "2.14.0"},
        "dirPath": str(home / OURS_DIR),
        "backendCompatibility": {"status": status},
    }
    idx.write_text(json.dumps({"json": [entry], "meta": {"values": {"0.displayData": ["map"]}}}))
    f = not_auto(home, "lmstudio-says-incompatible")
    assert "survey" in f.explanation
    from app.core.lmstudio.engine_index import last_status

    assert last_status(resolve_home(home))[f"{OURS}@2.14.0"].status in (
        "errorSurveyingHardware",
        "invalidCpuArchitecture",
    )


def test_settings_unreadable(home: Path) -> None:
    (home / "settings.json").write_bytes(b'{"autoUpdateExtensionPacks": tru')
    not_auto(home, "settings-unreadable")


def test_other_lmstudio_status_library_version_format(home: Path) -> None:
    m = home / OURS_DIR / "backend-manifest.json"
    data = json.loads(m.read_text())
    data["target_libraries"][0]["version"] = "v0.1.2-beta"
    m.write_text(json.dumps(data, indent=2) + "\n")
    f = not_auto(home, "incompatible")
    assert "invalidLibraryVersionFormat" in f.explanation
