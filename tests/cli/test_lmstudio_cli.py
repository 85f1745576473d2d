"""The real console script `.venv/bin/lms-unlocked` in a subprocess: list, uninstall, select, doctor, repair."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from app.core.lmstudio.install import execute_install, plan_install
from app.core.lmstudio.journal import STATE_DIR_NAME
from app.core.lmstudio.kinds import classify_folder
from tests.conftest import HWDATA, REPO
from tests.lmstudio_homes import make_home, prepare_our_backend, tree_hashes

EXE = REPO / ".venv" / "bin" / "lms-unlocked"
IVY = str(HWDATA / "cpuinfo" / "ivybridge-i5-3570k.txt")
OURS = "llama.cpp-linux-x86_64-avx1-unlocked"
NOAVX = "llama.cpp-linux-x86_64-noavx-unlocked"
NONE: dict[str, Any] = {"processes": lambda _h: []}


def cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    exe = [str(EXE)] if EXE.exists() else [sys.executable, "-m", "app"]
    return subprocess.run(
        [*exe, *args], capture_output=True, text=True, timeout=120, env=env, stdin=subprocess.DEVNULL, cwd=REPO
    )


def visible(home: Path) -> dict[str, str]:
    return tree_hashes(home, exclude=(STATE_DIR_NAME,))


@pytest.fixture
def home(tmp_path: Path) -> Path:
    h = make_home(
        tmp_path,
        backends=["linux-vulkan-2.14.0", "win-avx-1.48.0"],
        dirname="LM Stüdio home",
        prefs=[{"model_format": "gguf", "name": "llama.cpp-linux-x86_64-vulkan-avx2", "version": "2.14.0"}],
    )
    execute_install(plan_install(h, prepare_our_backend(tmp_path), **NONE), provenance={"variant": "cpu-avx1"}, **NONE)
    return h


def test_list_json(home: Path) -> None:
    r = cli("list", "--json", "--home", str(home), "--cpuinfo", IVY)
    assert r.returncode == 0, r.stderr
    data = json.loads(r.stdout)
    rows = {row["ident"]: row for row in data["backends"]}
    assert data["home"]["how_found"] == "override" and data["home"]["path"] == str(home)
    ours = rows[f"{OURS}@2.14.0"]
    assert (ours["kind"], ours["status"], ours["ise"], ours["generation"]) == ("ours", "compatible", ["AVX"], "2.x")
    off = rows["llama.cpp-linux-x86_64-vulkan-avx2@2.14.0"]
    assert (off["kind"], off["status"], off["selected_for"]) == (
        "official",
        "invalidCpuInstructionSetExtensions",
        "gguf",
    )
    assert rows["llama.cpp-win-x86_64-avx@1.48.0"]["status"] == "incompatiblePlatform"
    assert rows["llama.cpp-win-x86_64-avx@1.48.0"]["kind"] == "third-party"
    assert not rows["llama.cpp-win-x86_64-avx@1.48.0"]["name_clash"]
    assert rows["llama.cpp-win-x86_64-avx@1.48.0"]["llama_cpp"] == "b6275"


def test_list_human(home: Path) -> None:
    r = cli("list", "--home", str(home), "--no-probe")
    assert r.returncode == 0, r.stderr
    assert f"{OURS}@2.14.0  installed by lms-unlocked  2.x  needs AVX" in r.stdout and "[selected: gguf]" in r.stdout
    assert "llama.cpp-win-x86_64-avx@1.48.0  third-party (community or hand-made)  1.x" in r.stdout
    assert "llama.cpp-linux-x86_64-vulkan-avx2@2.14.0  LM Studio's own  2.x" in r.stdout


def test_missing_home_and_pointer_to_nowhere(tmp_path: Path) -> None:
    r = cli("list", "--home", str(tmp_path / "nope"))
    assert r.returncode == 2 and "no LM Studio home" in r.stderr and "Traceback" not in r.stderr
    r = cli("list", "--json", "--home", str(tmp_path / "nope"))
    assert r.returncode == 2 and json.loads(r.stdout)["ok"] is False
    user = tmp_path / "user"
    user.mkdir()
    (user / ".lmstudio-home-pointer").write_text("/mnt/unplugged/lmstudio\n")
    r = cli("list", env=dict(os.environ, HOME=str(user), USERPROFILE=str(user)))
    assert r.returncode == 2 and "/mnt/unplugged/lmstudio" in r.stderr and "hint:" in r.stderr
    assert (user / ".lmstudio-home-pointer").read_text() == "/mnt/unplugged/lmstudio\n"
    r = cli("doctor", "--json", "--no-probe", env=dict(os.environ, HOME=str(user)))
    assert r.returncode == 1 and json.loads(r.stdout)["findings"][0]["code"] == "home-problem"


def test_uninstall_dry_run_then_real_then_official_refused(home: Path) -> None:
    before = visible(home)
    r = cli("uninstall", f"{OURS}@2.14.0", "--dry-run", "--home", str(home))
    assert r.returncode == 0 and f"delete {home}/extensions/backends/{OURS}-2.14.0" in r.stdout
    assert visible(home) == before
    r = cli("uninstall", f"{OURS}@2.14.0", "--home", str(home))
    assert r.returncode == 0, r.stderr
    assert not (home / "extensions/backends" / f"{OURS}-2.14.0").exists()
    r = cli("uninstall", "llama.cpp-linux-x86_64-vulkan-avx2@2.14.0", "--home", str(home))
    assert r.returncode == 2 and "never deleted" in r.stderr and "Traceback" not in r.stderr
    assert (home / "extensions/backends/llama.cpp-linux-x86_64-vulkan-avx2-2.14.0").is_dir()
    r = cli("uninstall", "nope@1", "--home", str(home))
    assert r.returncode == 2 and "no backend nope@1" in r.stderr


def test_select_dry_run_real_and_malformed_prefs(home: Path) -> None:
    prefs = home / ".internal" / "backend-preferences-v1.json"
    r = cli("select", f"{OURS}@2.14.0", "--dry-run", "--home", str(home))
    assert r.returncode == 0 and "was llama.cpp-linux-x86_64-vulkan-avx2@2.14.0" in r.stdout
    r = cli("select", OURS, "--json", "--home", str(home))
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["selected"] == f"{OURS}@2.14.0"
    assert json.loads(prefs.read_text()) == [{"model_format": "gguf", "name": OURS, "version": "2.14.0"}]
    prefs.write_text("{broken")
    r = cli("select", OURS, "--home", str(home))
    assert r.returncode == 2 and "not valid JSON" in r.stderr and prefs.read_text() == "{broken"


def test_select_refused_while_a_real_llmster_runs(home: Path, tmp_path: Path) -> None:
    fake = tmp_path / "llmster"  # a copy of sleep: a real process named like LM Studio's daemon
    shutil.copy("/bin/sleep", fake)
    proc = subprocess.Popen([str(fake), "60"])
    try:
        time.sleep(0.2)
        before = visible(home)
        r = cli("select", f"{OURS}@2.14.0", "--home", str(home))
        assert r.returncode == 2 and "close LM Studio first" in r.stderr and f"pid {proc.pid}" in r.stderr
        assert visible(home) == before
    finally:
        proc.kill()
        proc.wait()


def test_doctor_and_repair(home: Path) -> None:
    m = home / "extensions/backends" / f"{OURS}-2.14.0" / "backend-manifest.json"
    good = m.read_bytes()
    m.write_bytes(b"\xef\xbb\xbf" + good)
    r = cli("doctor", "--json", "--home", str(home), "--cpuinfo", IVY)
    assert r.returncode == 1
    found = {f["code"]: f for f in json.loads(r.stdout)["findings"]}
    assert found["json-bom"]["automatic"] and found["json-bom"]["backend"] == f"{OURS}@2.14.0"
    assert found["ours-not-selected"]["needs_lmstudio_closed"]
    r = cli("repair", "--home", str(home), "--cpuinfo", IVY)  # stdin is not a terminal: needs --yes
    assert r.returncode == 2 and "--yes" in r.stderr and m.read_bytes().startswith(b"\xef\xbb\xbf")
    r = cli("repair", "--dry-run", "--home", str(home), "--cpuinfo", IVY)
    assert r.returncode == 0 and "[json-bom]" in r.stdout and m.read_bytes().startswith(b"\xef\xbb\xbf")
    r = cli("repair", "--yes", "--home", str(home), "--cpuinfo", IVY)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "before:" in r.stdout and "after:" in r.stdout and "[json-bom] removed the BOM" in r.stdout
    assert m.read_bytes() == good
    r = cli("doctor", "--home", str(home), "--cpuinfo", IVY)
    assert r.returncode == 0 and "json-bom" not in r.stdout


def test_interrupted_install_is_recovered_at_the_next_command(home: Path, tmp_path: Path) -> None:
    before = visible(home)
    v2 = prepare_our_backend(tmp_path / "v2", version="2.14.1")
    driver = (
        "import sys; from pathlib import Path; from app.core.lmstudio.install import *\n"
        "n = lambda _h: []\n"
        "execute_install(plan_install(sys.argv[1], Path(sys.argv[2]), processes=n), provenance={}, processes=n)\n"
    )
    env = dict(os.environ, LMS_UNLOCKED_FAULT="install:op0:recorded")
    assert subprocess.run([sys.executable, "-c", driver, str(home), str(v2)], env=env, cwd=REPO).returncode == -9
    r = cli("doctor", "--json", "--home", str(home), "--no-probe")
    assert "interrupted-change" in {f["code"] for f in json.loads(r.stdout)["findings"]}
    r = cli("list", "--home", str(home), "--no-probe")
    assert r.returncode == 0 and "note: rolled back the interrupted install" in r.stdout
    assert visible(home) == before


def test_install_cli_round_trip(home: Path, tmp_path: Path) -> None:
    """install --dry-run changes nothing; install --select, then uninstall, leaves the home as it was. A broken
    `install` command fails this test (it is never skipped)."""
    # a second backend of ours for the home's engine 2.14.0 (a different engine version is refused, exit 2)
    v2 = prepare_our_backend(tmp_path / "v2", "linux-cpu-2.14.0", "noavx", ise=())
    before = visible(home)
    r = cli("install", "--from", str(v2), "--dry-run", "--home", str(home))
    assert r.returncode == 0, r.stderr
    assert visible(home) == before
    r = cli("install", "--from", str(v2), "--select", "--home", str(home))
    assert r.returncode == 0, r.stderr
    assert (home / "extensions/backends" / f"{NOAVX}-2.14.0").is_dir()
    r = cli("uninstall", f"{NOAVX}@2.14.0", "--home", str(home))
    assert r.returncode == 0, r.stderr
    assert visible(home) == before


def test_disk_error_during_uninstall_is_a_clear_error(home: Path) -> None:
    before = visible(home)
    env = dict(os.environ, LMS_UNLOCKED_FAULT="raise:uninstall:journal")
    r = cli("uninstall", f"{OURS}@2.14.0", "--home", str(home), env=env)
    assert r.returncode == 1 and "injected I/O error" in r.stderr and "hint:" in r.stderr
    assert "Traceback" not in r.stderr and "internal error" not in r.stderr
    assert visible(home) == before
    assert not (home / STATE_DIR_NAME / "journal.json").exists()


def test_no_command_ever_changes_an_official_folder(home: Path, tmp_path: Path) -> None:
    """Every command of ours, successful or refused, on a home with official folders: they stay byte-identical."""
    bdir = home / "extensions" / "backends"
    folders = [p for p in bdir.iterdir() if p.name != "vendor"]
    official = {p.name: tree_hashes(p) for p in folders if classify_folder(p).kind == "official"}
    assert len(official) == 1  # the other two: ours and theIvanR's third-party AVX pack
    v2 = prepare_our_backend(tmp_path / "v2", "linux-cpu-2.14.0", "noavx", ise=())  # installs (engine 2.14.0)
    (home / "settings.json").write_text(json.dumps({"autoUpdateExtensionPacks": True}))
    off = "llama.cpp-linux-x86_64-vulkan-avx2-2.14.0"
    shutil.copytree(bdir / off, bdir / (off + ".backup"), symlinks=True)  # a duplicate doctor moves out
    runs = [
        ("list", "--home", str(home), "--cpuinfo", IVY),
        ("doctor", "--home", str(home), "--cpuinfo", IVY),
        ("install", "--from", str(v2), "--select", "--home", str(home)),
        ("select", "llama.cpp-linux-x86_64-vulkan-avx2@2.14.0", "--home", str(home)),
        ("uninstall", "llama.cpp-linux-x86_64-vulkan-avx2@2.14.0", "--home", str(home)),
        ("uninstall", "llama.cpp-win-x86_64-avx@1.48.0", "--home", str(home)),
        ("repair", "--yes", "--home", str(home), "--cpuinfo", IVY),
        ("select", f"{OURS}@2.14.0", "--home", str(home)),
        ("uninstall", f"{OURS}@2.14.0", "--home", str(home)),
    ]
    for args in runs:
        r = cli(*args)
        assert "Traceback" not in r.stderr, (args, r.stderr)
        assert {n: tree_hashes(bdir / n) for n in official} == official, args
        if args[0] == "install":
            assert r.returncode == 0 and (bdir / f"{NOAVX}-2.14.0").is_dir(), r.stderr
    assert not (bdir / (off + ".backup")).exists()  # the copy was moved out (kept in our backups)


def test_a_second_process_waits_its_turn(home: Path) -> None:
    """While another process holds the home's lock, read-only commands work and changes are refused."""
    from app.core.lmstudio.journal import home_lock

    with home_lock(home):  # this test process is the "other" lms-unlocked
        r = cli("list", "--home", str(home), "--no-probe")
        assert r.returncode == 0, r.stderr
        before = visible(home)
        r = cli("select", f"{OURS}@2.14.0", "--home", str(home))
        assert r.returncode == 2 and f"pid {os.getpid()}" in r.stderr and "wait for it" in r.stderr
        assert visible(home) == before
    assert cli("select", f"{OURS}@2.14.0", "--home", str(home)).returncode == 0


def test_repair_keep_chooses_among_duplicates(home: Path) -> None:
    """Two differing copies of theIvanR's pack and no hardware report: doctor says which, repair waits for --keep."""
    bdir = home / "extensions" / "backends"
    copy = bdir / "llama.cpp-win-x86_64-avx-1.48.0-mine"
    shutil.copytree(bdir / "llama.cpp-win-x86_64-avx-1.48.0", copy)
    (copy / "ggml-cpu.dll").write_bytes(b"my own build")
    r = cli("doctor", "--json", "--no-probe", "--home", str(home))
    dup = [f for f in json.loads(r.stdout)["findings"] if f["code"] == "duplicate-backend"]
    assert len(dup) == 1 and not dup[0]["automatic"] and "--keep" in dup[0]["fix"]
    assert dup[0]["kind"] == "third-party" and dup[0]["title"] == "Two folders carry the same name@version"
    r = cli("doctor", "--no-probe", "--home", str(home))
    assert "[error] Two folders carry the same name@version" in r.stdout and "[duplicate-backend]" in r.stdout
    r = cli("repair", "--yes", "--no-probe", "--home", str(home), "--keep", "nope")
    assert r.returncode == 2 and "--keep nope: no such backend folder" in r.stderr and "Traceback" not in r.stderr
    r = cli("repair", "--yes", "--json", "--no-probe", "--home", str(home), "--keep", copy.name)
    assert "Traceback" not in r.stderr, r.stderr
    assert copy.is_dir() and not (bdir / "llama.cpp-win-x86_64-avx-1.48.0").exists()
    assert any(a.startswith("[duplicate-backend] moved the extra copy") for a in json.loads(r.stdout)["applied"])


def test_list_explains_lmstudio_verdict_next_to_ours(home: Path) -> None:
    off = "llama.cpp-linux-x86_64-vulkan-avx2"
    entries = [
        {"manifest": {"name": off, "version": "2.14.0"}, "backendCompatibility": {"status": "compatible"}},
        {
            "manifest": {"name": "llama.cpp-win-x86_64-avx", "version": "1.48.0"},
            "backendCompatibility": {"status": "Invalid CPU architecture"},
        },
    ]
    (home / ".internal" / "internal-engine-index.json").write_text(json.dumps({"json": entries}))
    r = cli("list", "--home", str(home), "--cpuinfo", IVY)
    assert r.returncode == 0, r.stderr
    block = r.stdout.split(f"{off}@2.14.0", 1)[1].split("\n\n")[0]
    assert "LM Studio last said: compatible" in block and "verdict and ours differ" in block
    assert "LM Studio last said: invalidCpuArchitecture (the manifest's CPU architecture does not match" in r.stdout
    data = json.loads(cli("list", "--json", "--home", str(home), "--no-probe").stdout)
    rows = {x["ident"]: x for x in data["backends"]}
    assert "survey child crashed" in rows["llama.cpp-win-x86_64-avx@1.48.0"]["lmstudio_last_status_meaning"]


def test_repair_of_a_nested_crlf_pack_finishes_in_one_run(tmp_path: Path) -> None:
    """theIvanR's pack (CRLF manifest) extracted into a folder of its own name: the dry run says repair will look
    again after the move; `repair --yes` moves it up and fixes its line endings in the same run, nothing failed."""
    home = make_home(tmp_path, backends=["win-cpu-1.48.0", "win-avx-1.48.0"], vendor=())
    bdir = home / "extensions" / "backends"
    pack = "llama.cpp-win-x86_64-avx-1.48.0"
    os.rename(bdir / pack, tmp_path / pack)
    (bdir / pack).mkdir()
    os.rename(tmp_path / pack, bdir / pack / pack)
    r = cli("repair", "--dry-run", "--home", str(home), "--cpuinfo", IVY)
    assert r.returncode == 0 and "[nested-folder]" in r.stdout and "look again" in r.stdout
    r = cli("repair", "--yes", "--json", "--home", str(home), "--cpuinfo", IVY)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert not out["skipped"], out["skipped"]
    assert [a.split("]")[0] for a in out["applied"]] == ["[nested-folder", "[json-crlf"]
    assert b"\r\n" not in (bdir / pack / "backend-manifest.json").read_bytes()
