"""install / uninstall / select through the core API on real temp homes (no LM Studio process here)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from app.core.lmstudio.backends import PROVENANCE_FILE, find_backend, list_backends, read_backend
from app.core.lmstudio.errors import InvalidBackendFolder, LmStudioRunning, RefusedChange
from app.core.lmstudio.home import resolve_home
from app.core.lmstudio.install import (
    execute_install,
    execute_select,
    execute_uninstall,
    installed_records,
    plan_install,
    plan_select,
    plan_uninstall,
    validate_backend_folder,
)
from app.core.lmstudio.journal import STATE_DIR_NAME
from app.core.lmstudio.prefs import selected_for
from app.core.lmstudio.processes import LmsProcess, lmstudio_processes
from app.core.lmstudio.provenance import read_provenance, verify_files
from tests.conftest import REPO
from tests.lmstudio_homes import make_home, prepare_our_backend, template, tree_hashes

NONE_RUNNING = {"processes": lambda _h: []}
OTHER_PREFS = [
    {"model_format": "safetensors", "name": "mlx-llm-mac-arm64-apple-metal-advsimd", "version": "1.6.0", "x": 1},
    {"model_format": "gguf", "name": "llama.cpp-linux-x86_64-vulkan-avx2", "version": "2.14.0"},
]
OURS = "llama.cpp-linux-x86_64-avx1-unlocked"


def _visible(home: Path) -> dict[str, str]:
    """Everything LM Studio sees (our state dir excluded)."""
    return tree_hashes(home, exclude=(STATE_DIR_NAME,))


def test_install_creates_only_the_new_folder(tmp_path: Path) -> None:
    home = make_home(tmp_path, prefs=OTHER_PREFS)
    src = prepare_our_backend(tmp_path)
    before = _visible(home)
    plan = plan_install(home, src, **NONE_RUNNING)
    lines = plan.describe()
    dest = home / "extensions" / "backends" / f"{OURS}-2.14.0"
    assert any(line.startswith(f"create {dest}") for line in lines)
    assert _visible(home) == before  # planning changes nothing
    res = execute_install(
        plan,
        provenance={
            "variant": "cpu-avx1",
            "template": "llama.cpp-linux-x86_64-avx2@2.14.0",
            "llama_cpp_tag": "b8861",
            "flags": ["-DGGML_AVX2=OFF"],
        },
        **NONE_RUNNING,
    )
    assert res.dest == dest and res.ident == f"{OURS}@2.14.0"
    after = _visible(home)
    assert {k: v for k, v in after.items() if not k.startswith(f"extensions/backends/{OURS}-2.14.0")} == before
    info = read_backend(dest)
    assert info.ours and info.valid and info.ident == res.ident
    prov = read_provenance(dest)
    assert prov is not None
    assert prov["variant"] == "cpu-avx1" and prov["llama_cpp_tag"] == "b8861" and prov["tool_version"]
    assert set(prov["files"]) == {
        p for p in tree_hashes(dest) if p != PROVENANCE_FILE and not tree_hashes(dest)[p].startswith("dir")
    }
    assert verify_files(dest, prov).clean
    assert prov["files"]["libggml-cpu.so"] == "symlink:libggml-cpu.so.0"
    # staging and transaction dirs are gone; nothing but our folder was added to backends/
    assert not list((home / STATE_DIR_NAME / "tx").iterdir())
    assert not (home / STATE_DIR_NAME / "journal.json").exists()
    assert selected_for(resolve_home(home)).ident == "llama.cpp-linux-x86_64-vulkan-avx2@2.14.0"


def test_install_select_keeps_other_entries_and_backs_up(tmp_path: Path) -> None:
    home = make_home(tmp_path, prefs=OTHER_PREFS)
    src = prepare_our_backend(tmp_path)
    orig_prefs = (home / ".internal" / "backend-preferences-v1.json").read_bytes()
    plan = plan_install(home, src, select=True, **NONE_RUNNING)
    assert any(
        line.startswith("select ") and "was llama.cpp-linux-x86_64-vulkan-avx2@2.14.0" in line
        for line in plan.describe()
    )
    res = execute_install(plan, provenance={"variant": "cpu-avx1"}, **NONE_RUNNING)
    prefs = json.loads((home / ".internal" / "backend-preferences-v1.json").read_text())
    assert prefs == [OTHER_PREFS[0], {"model_format": "gguf", "name": OURS, "version": "2.14.0"}]
    backups = list((home / STATE_DIR_NAME / "backups").rglob("backend-preferences-v1.json"))
    assert [b.read_bytes() for b in backups] == [orig_prefs]
    # uninstall restores the previous selection exactly
    un = plan_uninstall(home, res.ident, **NONE_RUNNING)
    assert un.prefs_change == ("gguf", "llama.cpp-linux-x86_64-vulkan-avx2", "2.14.0")
    execute_uninstall(un, **NONE_RUNNING)
    assert json.loads((home / ".internal" / "backend-preferences-v1.json").read_text()) == OTHER_PREFS


def test_reinstall_newer_version_then_uninstall_rolls_back(tmp_path: Path) -> None:
    home = make_home(tmp_path, prefs=[])
    v1 = prepare_our_backend(tmp_path / "a", payload=b"v1")
    execute_install(
        plan_install(home, v1, select=True, **NONE_RUNNING), provenance={"variant": "cpu-avx1"}, **NONE_RUNNING
    )
    state_v1 = _visible(home)
    v2 = prepare_our_backend(tmp_path / "b", version="2.14.1", payload=b"v2")
    plan2 = plan_install(home, v2, select=True, **NONE_RUNNING)
    assert [r.ident for r in plan2.replaces] == [f"{OURS}@2.14.0"]
    assert any(line.startswith("back up ") and f"{OURS}-2.14.0" in line for line in plan2.describe())
    execute_install(plan2, provenance={"variant": "cpu-avx1"}, **NONE_RUNNING)
    idents = {b.ident for b in list_backends(home)}
    assert f"{OURS}@2.14.1" in idents and f"{OURS}@2.14.0" not in idents  # one version of ours at a time
    assert selected_for(resolve_home(home)).ident == f"{OURS}@2.14.1"
    # the backup lives outside backends/
    assert not any(".backup" in n or "2.14.0" in n for n in os.listdir(home / "extensions" / "backends") if OURS in n)
    execute_uninstall(plan_uninstall(home, f"{OURS}@2.14.1", **NONE_RUNNING), **NONE_RUNNING)
    assert _visible(home) == state_v1  # exactly what was there before, selection included
    assert [r["ident"] for r in installed_records(home)] == [f"{OURS}@2.14.0"]


def test_same_version_reinstall_replaces_in_place(tmp_path: Path) -> None:
    home = make_home(tmp_path)
    execute_install(
        plan_install(home, prepare_our_backend(tmp_path / "a", payload=b"one"), **NONE_RUNNING),
        provenance={},
        **NONE_RUNNING,
    )
    state1 = _visible(home)
    plan = plan_install(home, prepare_our_backend(tmp_path / "b", payload=b"two"), **NONE_RUNNING)
    assert any(line.startswith("replace ") for line in plan.describe())
    execute_install(plan, provenance={}, **NONE_RUNNING)
    assert (home / "extensions/backends" / f"{OURS}-2.14.0" / "libggml-cpu.so.0.0.8861").read_bytes() == b"two"
    execute_uninstall(plan_uninstall(home, f"{OURS}@2.14.0", **NONE_RUNNING), **NONE_RUNNING)
    assert _visible(home) == state1


def test_official_folders_are_never_touched(tmp_path: Path) -> None:
    home = make_home(tmp_path)
    before = _visible(home)
    with pytest.raises(RefusedChange) as ei:
        plan_uninstall(home, "llama.cpp-linux-x86_64-avx2@2.14.0", **NONE_RUNNING)
    assert "never deleted" in ei.value.message and "lms runtime remove" in ei.value.hint
    # a folder claiming an official name is refused at validation
    src = prepare_our_backend(tmp_path)
    (src / "backend-manifest.json").write_text(
        (src / "backend-manifest.json").read_text().replace(OURS, "llama.cpp-linux-x86_64-avx2")
    )
    with pytest.raises(InvalidBackendFolder) as e2:
        plan_install(home, src, **NONE_RUNNING)
    assert any("official" in p for p in e2.value.problems)
    # a folder not installed by us that uses our name is never replaced
    src2 = prepare_our_backend(tmp_path / "x")
    squat = home / "extensions/backends" / f"{OURS}-2.14.0"
    shutil.copytree(src2, squat, symlinks=True)
    with pytest.raises(InvalidBackendFolder) as e3:
        plan_install(home, src2, **NONE_RUNNING)
    assert "did not install" in e3.value.details
    shutil.rmtree(squat)
    # an official copy sitting in the folder name ours would take is not replaced either
    shutil.copytree(home / "extensions/backends/llama.cpp-linux-x86_64-avx2-2.14.0", squat, symlinks=True)
    with pytest.raises(RefusedChange) as e4:
        plan_install(home, src2, **NONE_RUNNING)
    assert "never modified" in e4.value.message
    shutil.rmtree(squat)
    assert _visible(home) == before


@pytest.mark.parametrize(
    ("breakage", "expect"),
    [
        ("rm-lib", "declared library liblmstudio_bindings.node"),
        ("ise-empty", 'contains ""'),
        ("bad-json", "not valid JSON"),
        ("no-field", "lacks platform"),
        ("nested", "one level too deep"),
        ("abs-link", "links outside"),
        ("upper", "lower-case"),
        ("no-server", "engine_protocol_server executable llama-server is missing"),
    ],
)
def test_validation_problems(tmp_path: Path, breakage: str, expect: str) -> None:
    home = make_home(tmp_path)
    src = prepare_our_backend(tmp_path)
    m = src / "backend-manifest.json"
    data = json.loads(m.read_text())
    if breakage == "rm-lib":
        (src / "liblmstudio_bindings.node").unlink()
    elif breakage == "ise-empty":
        data["cpu"]["instruction_set_extensions"] = [""]
    elif breakage == "no-field":
        del data["platform"]
    elif breakage == "upper":
        data["name"] = "Llama.CPP-Unlocked"
    elif breakage == "no-server":
        (src / "llama-server").unlink()
    elif breakage == "abs-link":
        os.symlink("/etc/hostname", src / "evil")
    if breakage == "bad-json":
        m.write_text('{"name": ')
    elif breakage == "nested":
        inner = tmp_path / "wrap" / "inner"
        shutil.move(src, inner)
        src = inner.parent
    else:
        m.write_text(json.dumps(data))
    before = _visible(home)
    v = validate_backend_folder(src, home)
    assert not v.ok and any(expect in p for p in v.problems), v.problems
    with pytest.raises(InvalidBackendFolder) as ei:
        plan_install(home, src, **NONE_RUNNING)
    assert ei.value.exit_code == 2 and expect in ei.value.details
    assert _visible(home) == before


def test_missing_vendor_package_is_a_warning(tmp_path: Path) -> None:
    home = make_home(tmp_path, vendor=())
    src = prepare_our_backend(tmp_path, key="linux-vulkan-2.14.0", variant="vulkan-avx1")
    plan = plan_install(home, src, **NONE_RUNNING)
    assert any("linux-llama-vulkan-vendor-v1" in w for w in plan.warnings)


def test_select_and_running_lmstudio(tmp_path: Path) -> None:
    home = make_home(tmp_path, prefs=OTHER_PREFS)
    fake = [LmsProcess(4242, "llmster", "daemon")]
    plan = plan_select(home, "llama.cpp-linux-x86_64-avx2@2.14.0", processes=lambda _h: fake)
    assert plan.blocked and "close LM Studio first" in plan.blocked
    before = _visible(home)
    with pytest.raises(LmStudioRunning) as ei:
        execute_select(plan, processes=lambda _h: fake)
    assert "close LM Studio first" in ei.value.hint and ei.value.exit_code == 2
    assert _visible(home) == before
    sel = execute_select(plan_select(home, "llama.cpp-linux-x86_64-avx2", **NONE_RUNNING), **NONE_RUNNING)
    assert sel.ident == "llama.cpp-linux-x86_64-avx2@2.14.0"
    prefs = json.loads((home / ".internal" / "backend-preferences-v1.json").read_text())
    assert prefs == [
        OTHER_PREFS[0],
        {"model_format": "gguf", "name": "llama.cpp-linux-x86_64-avx2", "version": "2.14.0"},
    ]
    with pytest.raises(RefusedChange):
        plan_select(home, "llama.cpp-linux-x86_64-avx2@2.14.0", "safetensors", **NONE_RUNNING)


def test_real_process_named_llmster_is_detected(tmp_path: Path) -> None:
    """A real process whose name is 'llmster' (a copy of sleep) stands in for LM Studio's daemon."""
    fake = tmp_path / "llmster"
    shutil.copy("/bin/sleep", fake)
    proc = subprocess.Popen([str(fake), "30"])
    try:
        for _ in range(50):
            if any(p.pid == proc.pid for p in lmstudio_processes()):
                break
            time.sleep(0.05)
        found = [p for p in lmstudio_processes() if p.pid == proc.pid]
        assert found and found[0].kind == "daemon"
        home = make_home(tmp_path)
        plan = plan_select(home, "llama.cpp-linux-x86_64-avx2@2.14.0")
        assert f"pid {proc.pid}" in plan.blocked
        with pytest.raises(LmStudioRunning):
            execute_select(plan)
    finally:
        proc.kill()
        proc.wait()


def test_non_ascii_home_with_spaces(tmp_path: Path) -> None:
    home = make_home(tmp_path, dirname="LM Stüdio hömé", prefs=[])
    src = prepare_our_backend(tmp_path / "Ördner mit Leerzeichen")
    res = execute_install(plan_install(home, src, select=True, **NONE_RUNNING), provenance={}, **NONE_RUNNING)
    assert find_backend(home, res.ident).ours
    execute_uninstall(plan_uninstall(home, res.ident, **NONE_RUNNING), **NONE_RUNNING)
    assert json.loads((home / ".internal" / "backend-preferences-v1.json").read_text()) == []


def test_backends_path_is_a_file(tmp_path: Path) -> None:
    """Stands in for a read-only backends folder: tests run as root, which ignores permission bits,
    so a plain file where the directory must be makes every write impossible instead."""
    home = tmp_path / "h"
    (home / "extensions").mkdir(parents=True)
    (home / "extensions" / "backends").write_text("not a dir")
    from app.core.lmstudio.errors import HomeNotFound

    with pytest.raises(HomeNotFound) as ei:
        plan_install(home, prepare_our_backend(tmp_path), **NONE_RUNNING)
    assert "not a directory" in ei.value.message
    assert (home / "extensions" / "backends").read_text() == "not a dir"


def test_template_keys_cover_windows_install(tmp_path: Path) -> None:
    home = make_home(tmp_path, backends=["win-cpu-1.48.0"], vendor=())
    src = prepare_our_backend(tmp_path, key="win-cpu-1.48.0")
    res = execute_install(plan_install(home, src, **NONE_RUNNING), provenance={}, **NONE_RUNNING)
    assert res.ident == f"llama.cpp-win-x86_64-avx1-unlocked@{template('win-cpu-1.48.0').version}"
    assert (res.dest / "backend-manifest.json").read_bytes().count(b"\r\n") > 10  # CRLF kept through install


# ------------------------------------------------------------------------------------------- fault injection

_DRIVER = r"""
import sys
from pathlib import Path
from app.core.lmstudio.install import *
op, home, arg = sys.argv[1:4]
none = lambda _h: []
if op == "install":
    plan = plan_install(home, Path(arg), select=True, processes=none)
    execute_install(plan, provenance={"variant": "cpu-avx1"}, processes=none)
elif op == "uninstall":
    execute_uninstall(plan_uninstall(home, arg, processes=none), processes=none)
"""


def _run_driver(op: str, home: Path, arg: str, fault: str) -> int:
    env = dict(os.environ, LMS_UNLOCKED_FAULT=fault)
    r = subprocess.run(
        [sys.executable, "-c", _DRIVER, op, str(home), arg], env=env, capture_output=True, timeout=60, cwd=REPO
    )
    return r.returncode


def _lock_is_free(home: Path) -> None:
    """The OS lock is not held (its file may stay: unlinking a flock'ed file would split waiters)."""
    import filelock

    lock = filelock.FileLock(str(home / STATE_DIR_NAME / "lock"), timeout=0)
    lock.acquire()
    lock.release()


def _clean_state(home: Path) -> None:
    sd = home / STATE_DIR_NAME
    assert not (sd / "journal.json").exists()
    _lock_is_free(home)
    assert not list((sd / "tx").iterdir())


def _strip_marker(t: dict[str, str]) -> dict[str, str]:
    return {k: ("marker" if k.endswith(PROVENANCE_FILE) else v) for k, v in t.items()}


INSTALL_FAULTS = (
    ["install:prepared", "install:journal"]
    + [f"install:op{i}{s}" for i in range(4) for s in ("", ":recorded")]
    + ["install:finished"]
)
UNINSTALL_FAULTS = (
    ["uninstall:prepared", "uninstall:journal"]
    + [f"uninstall:op{i}{s}" for i in range(4) for s in ("", ":recorded")]
    + ["uninstall:finished"]
)


@pytest.fixture(scope="module")
def fault_homes(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A home with v1 of ours installed and selected, a prepared v2, and the reference old/new states."""
    base = tmp_path_factory.mktemp("fault")
    from app.core.lmstudio.install import recover

    home = make_home(base, prefs=OTHER_PREFS)
    v1 = prepare_our_backend(base / "a", payload=b"v1")
    execute_install(plan_install(home, v1, select=True, **NONE_RUNNING), provenance={}, **NONE_RUNNING)
    v2 = prepare_our_backend(base / "b", version="2.14.1", payload=b"v2")
    new = base / "new"
    shutil.copytree(home, new, symlinks=True)
    # the reference "after" state, by the same real subprocess without a fault
    assert _run_driver("install", new, str(v2), "") == 0
    recover(new)
    return {"home": home, "v2": v2, "new": new}


@pytest.mark.parametrize("fault", INSTALL_FAULTS)
def test_install_killed_at_every_step_is_old_or_new(tmp_path: Path, fault_homes: dict[str, Path], fault: str) -> None:
    from app.core.lmstudio.install import recover

    home = tmp_path / "home"
    shutil.copytree(fault_homes["home"], home, symlinks=True)
    old = _strip_marker(_visible(home))
    new = _strip_marker(_visible(fault_homes["new"]))
    rc = _run_driver("install", home, str(fault_homes["v2"]), fault)
    assert rc == -9, f"the driver was not killed at {fault}"
    recover(home)  # what the next command start does
    state = _strip_marker(_visible(home))
    assert state in (old, new), f"between states after a kill at {fault}"
    if fault in ("install:prepared", "install:journal", "install:op0", "install:op0:recorded", "install:op1"):
        assert state == old  # rolled back: the move-in was not recorded yet
    if fault.startswith(("install:op1:", "install:op2", "install:op3", "install:finished")):
        assert state == new  # rolled forward
    _clean_state(home)
    # and the home still works: uninstall of whatever is there succeeds
    ident = f"{OURS}@2.14.1" if state == new else f"{OURS}@2.14.0"
    execute_uninstall(plan_uninstall(home, ident, **NONE_RUNNING), **NONE_RUNNING)


@pytest.mark.parametrize("fault", UNINSTALL_FAULTS)
def test_uninstall_killed_at_every_step_is_old_or_new(tmp_path: Path, fault_homes: dict[str, Path], fault: str) -> None:
    """Uninstalling v2 (which replaced v1 and moved the selection) killed at every journal step."""
    from app.core.lmstudio.install import recover

    home = tmp_path / "home"
    shutil.copytree(fault_homes["new"], home, symlinks=True)
    old = _strip_marker(_visible(home))
    new = _strip_marker(_visible(fault_homes["home"]))  # the state before v2 was installed
    rc = _run_driver("uninstall", home, f"{OURS}@2.14.1", fault)
    assert rc == -9, f"the driver was not killed at {fault}"
    recover(home)
    state = _strip_marker(_visible(home))
    assert state in (old, new), f"between states after a kill at {fault}"
    if fault.startswith(("uninstall:op", "uninstall:finished")) and fault != "uninstall:op0":
        assert state == new
    _clean_state(home)


def test_uninstall_keeps_a_copy_and_restore_brings_it_back(tmp_path: Path) -> None:
    from app.core.lmstudio.install import restore_uninstall

    home = make_home(tmp_path, prefs=OTHER_PREFS)
    execute_install(
        plan_install(home, prepare_our_backend(tmp_path), select=True, **NONE_RUNNING), provenance={}, **NONE_RUNNING
    )
    installed = _visible(home)
    res = execute_uninstall(plan_uninstall(home, f"{OURS}@2.14.0", **NONE_RUNNING), **NONE_RUNNING)
    assert res.kept is not None and res.kept.is_dir() and res.was_selected
    assert STATE_DIR_NAME in res.kept.parts  # outside backends/
    restore_uninstall(res, **NONE_RUNNING)
    after = _visible(home)
    marker = f"extensions/backends/{OURS}-2.14.0/{PROVENANCE_FILE}"
    assert {k: v for k, v in after.items() if k != marker} == {k: v for k, v in installed.items() if k != marker}
    assert selected_for(resolve_home(home)).ident == f"{OURS}@2.14.0"


def test_lmstudio_running_helper_sees_no_lmstudio_here() -> None:
    from app.core.lmstudio.processes import lmstudio_running

    assert lmstudio_running() is bool(lmstudio_processes())


@pytest.mark.parametrize("where", ["install:staging", "install:op0", "install:op1", "install:op2", "install:op3"])
def test_io_error_midway_leaves_the_home_old_or_new(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, where: str
) -> None:
    """A disk error we survive (injected OSError) is resolved at once: typed error, no journal left."""
    from app.core.errors import DiskError
    from app.core.lmstudio.errors import InstallFailed
    from app.core.lmstudio.journal import JournalError

    home = make_home(tmp_path, prefs=OTHER_PREFS)
    execute_install(
        plan_install(home, prepare_our_backend(tmp_path / "a"), **NONE_RUNNING), provenance={}, **NONE_RUNNING
    )
    old = _visible(home)
    plan = plan_install(home, prepare_our_backend(tmp_path / "b", version="2.14.1"), select=True, **NONE_RUNNING)
    monkeypatch.setenv("LMS_UNLOCKED_FAULT", f"raise:{where}")
    with pytest.raises((InstallFailed, JournalError, DiskError)) as ei:
        execute_install(plan, provenance={}, **NONE_RUNNING)
    assert "injected I/O error" in ei.value.message and ei.value.hint
    state = _visible(home)
    if where in ("install:staging", "install:op0", "install:op1"):
        assert state == old
    else:  # after the move-in: finished, not undone
        assert f"extensions/backends/{OURS}-2.14.1" in state
    assert not (home / STATE_DIR_NAME / "journal.json").exists()
    assert not list((home / STATE_DIR_NAME / "tx").iterdir())


def test_state_dir_blocked_by_a_file(tmp_path: Path) -> None:
    """Stands in for an unwritable home (tests run as root, so permission bits would not stop us)."""
    from app.core.lmstudio.journal import HomeBusy

    home = make_home(tmp_path)
    (home / STATE_DIR_NAME).write_text("in the way")
    before = _visible(home)
    plan = plan_install(home, prepare_our_backend(tmp_path), **NONE_RUNNING)
    with pytest.raises(HomeBusy) as ei:
        execute_install(plan, provenance={}, **NONE_RUNNING)
    assert ei.value.exit_code == 2 and "writable folder" in ei.value.hint
    assert _visible(home) == {**before}


def test_dry_run_names_the_exact_backup_paths(tmp_path: Path) -> None:
    home = make_home(tmp_path, prefs=OTHER_PREFS)
    execute_install(
        plan_install(home, prepare_our_backend(tmp_path / "a"), **NONE_RUNNING), provenance={}, **NONE_RUNNING
    )
    plan = plan_install(home, prepare_our_backend(tmp_path / "b", version="2.14.1"), select=True, **NONE_RUNNING)
    backup_lines = [line for line in plan.describe() if line.startswith("back up ")]
    assert len(backup_lines) == 2
    execute_install(plan, provenance={}, **NONE_RUNNING)
    for line in backup_lines:
        assert Path(line.split("  ->  ")[1].split("  (")[0]).exists(), line


def test_selection_follows_a_replaced_selected_version(tmp_path: Path) -> None:
    home = make_home(tmp_path, prefs=OTHER_PREFS)
    execute_install(
        plan_install(home, prepare_our_backend(tmp_path / "a"), select=True, **NONE_RUNNING),
        provenance={},
        **NONE_RUNNING,
    )
    v2 = prepare_our_backend(tmp_path / "b", version="2.14.1")
    # LM Studio running: the selection is not touched, the plan says what to do afterwards
    fake = [LmsProcess(1, "lm-studio", "app")]
    running_plan = plan_install(home, v2, processes=lambda _h: fake)
    assert not running_plan.select and not running_plan.blocked
    assert any(f"lms-unlocked select {OURS}@2.14.1" in w for w in running_plan.warnings)
    with pytest.raises(LmStudioRunning):  # LM Studio closed at plan time but running now: refused, not half-done
        execute_install(plan_install(home, v2, **NONE_RUNNING), provenance={}, processes=lambda _h: fake)
    # LM Studio closed: the selection follows instead of pointing at the folder that is moved out
    plan = plan_install(home, v2, **NONE_RUNNING)
    assert plan.select and any("selection moves" in w for w in plan.warnings)
    execute_install(plan, provenance={}, **NONE_RUNNING)
    assert selected_for(resolve_home(home)).ident == f"{OURS}@2.14.1"


def test_pending_journal_recovers_in_a_moved_home(tmp_path: Path, fault_homes: dict[str, Path]) -> None:
    """A home copied elsewhere with a journal pending recovers in the copy and never touches the original."""
    from app.core.lmstudio.install import recover

    original = tmp_path / "original"
    shutil.copytree(fault_homes["home"], original, symlinks=True)
    old = _strip_marker(_visible(original))
    assert _run_driver("install", original, str(fault_homes["v2"]), "install:op0:recorded") == -9
    assert '"/' not in (original / STATE_DIR_NAME / "journal.json").read_text().split('"ops"')[1].split('"commit"')[0]
    moved = tmp_path / "moved to another disk"
    shutil.copytree(original, moved, symlinks=True)
    frozen = tree_hashes(original)
    assert recover(moved)
    assert tree_hashes(original) == frozen  # the original (still half-changed) is left alone
    assert _strip_marker(_visible(moved)) == old
    _clean_state(moved)


def test_damaged_journal_is_a_clear_error(tmp_path: Path) -> None:
    from app.core.lmstudio.install import recover
    from app.core.lmstudio.journal import JournalError

    home = make_home(tmp_path)
    (home / STATE_DIR_NAME).mkdir()
    (home / STATE_DIR_NAME / "journal.json").write_text(json.dumps({"ops": [{"src": "x"}], "done": 0, "commit": 1}))
    with pytest.raises(JournalError) as ei:
        recover(home)
    assert "inspect" in ei.value.hint
