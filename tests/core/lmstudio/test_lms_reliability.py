"""Issue #14: restore exactly through reinstalls, a real OS lock under real concurrent processes, one bad file
disables nothing. Real temp homes, real subprocesses, real FIFOs; no LM Studio process here."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from app.core.lmstudio.backends import list_backends
from app.core.lmstudio.home import resolve_home
from app.core.lmstudio.install import (
    execute_install,
    execute_select,
    execute_uninstall,
    installed_records,
    plan_install,
    plan_select,
    plan_uninstall,
    recover,
)
from app.core.lmstudio.journal import STATE_DIR_NAME
from app.core.lmstudio.prefs import selected_for
from app.core.userfile import UserFileError, json_depth, read_bounded, read_json
from tests.conftest import REPO
from tests.lmstudio_homes import make_home, prepare_our_backend, tree_hashes
from tests.mounts import mount_namespace_problem, read_only, run_with_mounts, tmpfs_copy

NONE = {"processes": lambda _h: []}
OURS = "llama.cpp-linux-x86_64-avx1-unlocked"
PREFS = ".internal/backend-preferences-v1.json"


def _visible(home: Path) -> dict[str, str]:
    return tree_hashes(home, exclude=(STATE_DIR_NAME,))


def _install(home: Path, src: Path, *, select: bool = False) -> str:
    return execute_install(plan_install(home, src, select=select, **NONE), provenance={}, **NONE).txid


def _uninstall(home: Path, ident: str) -> None:
    execute_uninstall(plan_uninstall(home, ident, **NONE), **NONE)


# ------------------------------------------------------------------------------------------- 1. restore exactly


def test_every_install_needs_its_own_uninstall_and_each_restores_exactly(tmp_path: Path) -> None:
    """v1, v2 (replaces v1), v2 again (replaces that v2): three uninstalls walk back through every state."""
    home = make_home(tmp_path, prefs=[{"model_format": "gguf", "name": "llama.cpp-linux-x86_64-avx2",
                                       "version": "2.14.0"}])
    s0 = _visible(home)
    _install(home, prepare_our_backend(tmp_path / "a", payload=b"v1"), select=True)
    s1 = _visible(home)
    _install(home, prepare_our_backend(tmp_path / "b", version="2.14.1", payload=b"v2"), select=True)
    s2 = _visible(home)
    _install(home, prepare_our_backend(tmp_path / "c", version="2.14.1", payload=b"v2 again"), select=True)
    assert [r["ident"] for r in installed_records(home)] == [f"{OURS}@2.14.0", f"{OURS}@2.14.1", f"{OURS}@2.14.1"]
    _uninstall(home, f"{OURS}@2.14.1")
    assert _visible(home) == s2  # the first v2, byte for byte, marker included
    _uninstall(home, f"{OURS}@2.14.1")
    assert _visible(home) == s1  # v1 is back, and selected again
    assert selected_for(resolve_home(home)).ident == f"{OURS}@2.14.0"
    assert [r["ident"] for r in installed_records(home)] == [f"{OURS}@2.14.0"]
    _uninstall(home, f"{OURS}@2.14.0")
    assert _visible(home) == s0
    assert installed_records(home) == []


def test_select_then_uninstall_leaves_no_preferences_file_it_created(tmp_path: Path) -> None:
    home = make_home(tmp_path)  # no preferences file
    assert not (home / PREFS).exists()
    before = _visible(home)
    _install(home, prepare_our_backend(tmp_path), select=True)
    assert json.loads((home / PREFS).read_text())[0]["name"] == OURS
    plan = plan_uninstall(home, f"{OURS}@2.14.0", **NONE)
    assert any(line.startswith("delete ") and PREFS.split("/")[1] in line for line in plan.describe())
    execute_uninstall(plan, **NONE)
    assert not (home / PREFS).exists()
    assert _visible(home) == before | {".internal": "dir"} or _visible(home) == before


def test_a_preferences_file_that_existed_stays_even_when_empty(tmp_path: Path) -> None:
    home = make_home(tmp_path, prefs=[])
    _install(home, prepare_our_backend(tmp_path), select=True)
    _uninstall(home, f"{OURS}@2.14.0")
    assert (home / PREFS).read_text().strip() == "[]"


# ------------------------------------------------------------------------------------------- 2. a real lock

_RACER = r"""
import os, sys, time
from pathlib import Path
from app.core.errors import UnlockedError
from app.core.lmstudio.install import execute_install, plan_install
home, src, go = sys.argv[1:4]
while not os.path.exists(go):
    time.sleep(0.001)
none = lambda _h: []
try:
    res = execute_install(plan_install(home, Path(src), processes=none), provenance={}, processes=none)
except UnlockedError as exc:
    print("REFUSED", exc.code, exc.message)
    sys.exit(exc.exit_code)
print("TXID", res.txid)
"""


def _race(tmp_path: Path, n: int, trials: int, wait: str) -> tuple[int, int]:
    """``trials`` times, ``n`` real processes install at the same instant; returns (installed, refused)."""
    srcs = [prepare_our_backend(tmp_path / f"src{i}", version=f"2.14.{i}", payload=b"%d" % i) for i in range(n)]
    installed = refused = 0
    env = dict(os.environ, LMS_UNLOCKED_LOCK_WAIT=wait)
    for t in range(trials):
        home = make_home(tmp_path / f"t{t}")
        go = tmp_path / f"go{t}"
        procs = [
            subprocess.Popen([sys.executable, "-c", _RACER, str(home), str(s), str(go)], cwd=REPO, env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            for s in srcs
        ]
        time.sleep(0.5)
        go.touch()
        txids = []
        for p in procs:
            out, err = p.communicate(timeout=300)
            assert p.returncode in (0, 2), err
            if p.returncode == 0:
                txids.append(out.split("TXID ")[1].strip())
            else:
                assert "REFUSED home-busy" in out
        records = installed_records(home)
        assert sorted(r["txid"] for r in records) == sorted(txids), f"trial {t}: a record was lost or invented"
        ours = [b for b in list_backends(home) if b.ours]
        assert len(ours) == 1 and ours[0].ident == records[-1]["ident"]  # same name: the last one replaced the rest
        assert not (home / STATE_DIR_NAME / "journal.json").exists()
        installed += len(txids)
        refused += n - len(txids)
    return installed, refused


def test_concurrent_installs_that_wait_lose_no_record(tmp_path: Path) -> None:
    installed, refused = _race(tmp_path, n=6, trials=4, wait="120")
    assert (installed, refused) == (24, 0)


def test_concurrent_installs_refused_at_once_lose_no_record(tmp_path: Path) -> None:
    installed, refused = _race(tmp_path, n=6, trials=4, wait="0")
    assert installed >= 4 and installed + refused == 24


def test_a_killed_holder_leaves_no_stale_lock(tmp_path: Path) -> None:
    """The kernel drops a flock with its process: a SIGKILLed holder never blocks the next command."""
    home = make_home(tmp_path)
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys,time\nfrom pathlib import Path\nfrom app.core.lmstudio.journal import "
         "home_lock\nwith home_lock(Path(sys.argv[1])):\n print('held', flush=True)\n time.sleep(600)\n", str(home)],
        cwd=REPO, stdout=subprocess.PIPE, text=True,
    )
    assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
    plan = plan_select(home, "llama.cpp-linux-x86_64-avx2@2.14.0", **NONE)
    from app.core.lmstudio.journal import HomeBusy

    with pytest.raises(HomeBusy, match=f"pid {holder.pid}"):
        execute_select(plan, **NONE)
    holder.kill()
    holder.wait()
    assert (home / STATE_DIR_NAME / "lock").read_text().strip() == str(holder.pid)  # the file stays; the lock is gone
    execute_select(plan, **NONE)


# ------------------------------------------------------------------------------------------- 3. one bad file

DEEP = b"[" * 200_000 + b"]" * 200_000


def test_shared_reader_refuses_fifo_device_huge_and_deep(tmp_path: Path) -> None:
    fifo = tmp_path / "backend-manifest.json"
    os.mkfifo(fifo)
    t0 = time.monotonic()
    with pytest.raises(UserFileError) as ei:
        read_bounded(fifo, limit=1024)  # no writer: a plain open() would block forever
    assert ei.value.kind == "not-regular" and "named pipe" in ei.value.message
    assert time.monotonic() - t0 < 30
    with pytest.raises(UserFileError) as ei:
        read_bounded("/dev/zero", limit=1024, regular_only=False)
    assert ei.value.kind == "too-large"
    big = tmp_path / "big.json"
    big.write_bytes(b" " * 2048)
    with pytest.raises(UserFileError, match="larger than") as ei:
        read_bounded(big, limit=1024)
    deep = tmp_path / "deep.json"
    deep.write_bytes(DEEP)
    with pytest.raises(UserFileError) as ei:
        read_json(deep)
    assert ei.value.kind == "too-deep" and "200000 levels" in ei.value.message
    assert json_depth(b'{"a": "[[[[[[", "b": [[1]], "c": "\\"]]]"}') == 3  # brackets in strings do not count
    ok = tmp_path / "ok.json"
    ok.write_bytes(b'\xef\xbb\xbf{"k": [1, {"x": "]"}]}')
    assert read_json(ok) == {"k": [1, {"x": "]"}]}


@pytest.mark.parametrize(
    "where",
    ["manifest", "display-data", "provenance", "preferences", "settings", "engine-index", "installed"],
)
@pytest.mark.parametrize("bad", ["deep", "fifo"])
def test_one_bad_file_is_one_finding_and_everything_else_works(tmp_path: Path, where: str, bad: str) -> None:
    """list/doctor in a real subprocess, with a time limit: never a hang, never exit 70, a finding names the file."""
    home = make_home(tmp_path, prefs=[{"model_format": "gguf", "name": "llama.cpp-linux-x86_64-avx2",
                                       "version": "2.14.0"}], engine_index=[])
    _install(home, prepare_our_backend(tmp_path / "src"))
    bdir = home / "extensions" / "backends"
    target = {
        "manifest": bdir / "llama.cpp-linux-x86_64-vulkan-avx2-2.14.0" / "backend-manifest.json",
        "display-data": bdir / "llama.cpp-linux-x86_64-vulkan-avx2-2.14.0" / "display-data.json",
        "provenance": bdir / f"{OURS}-2.14.0" / "unlocked-install.json",
        "preferences": home / PREFS,
        "settings": home / "settings.json",
        "engine-index": home / ".internal" / "internal-engine-index.json",
        "installed": home / STATE_DIR_NAME / "installed.json",
    }[where]
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.exists():
        target.unlink()
    if bad == "fifo":
        os.mkfifo(target)
    else:
        target.write_bytes(DEEP)
    exe = [sys.executable, "-m", "app"]
    for cmd in (["list", "--no-probe"], ["doctor", "--no-probe"], ["list", "--json", "--no-probe"]):
        r = subprocess.run([*exe, *cmd, "--home", str(home)], cwd=REPO, capture_output=True, text=True, timeout=120,
                           stdin=subprocess.DEVNULL)
        assert r.returncode in (0, 1, 2), (cmd, r.returncode, r.stderr)
        assert "internal error" not in r.stderr and "Traceback" not in r.stderr, r.stderr
        if cmd[0] == "doctor" and where in ("installed", "preferences", "manifest"):
            assert target.name in r.stdout, r.stdout  # a finding names the bad file
        if cmd[0] == "doctor" and where == "installed":
            assert "records-unreadable" in r.stdout, r.stdout
    # every other backend is still listed
    r = subprocess.run([*exe, "list", "--json", "--no-probe", "--home", str(home)], cwd=REPO, capture_output=True,
                       text=True, timeout=120, stdin=subprocess.DEVNULL)
    assert r.returncode == 0, r.stderr
    idents = {row["ident"] for row in json.loads(r.stdout)["backends"]}
    assert "llama.cpp-linux-x86_64-avx2@2.14.0" in idents
    if where != "provenance":
        assert f"{OURS}@2.14.0" in idents


@pytest.mark.parametrize("bad", ["deep", "fifo"])
def test_a_bad_journal_is_a_finding_not_a_crash(tmp_path: Path, bad: str) -> None:
    home = make_home(tmp_path)
    (home / STATE_DIR_NAME).mkdir()
    j = home / STATE_DIR_NAME / "journal.json"
    os.mkfifo(j) if bad == "fifo" else j.write_bytes(DEEP)
    from app.core.lmstudio.journal import JournalError

    with pytest.raises(JournalError, match="unreadable"):
        recover(home)
    for cmd in (["list", "--no-probe"], ["doctor", "--no-probe"], ["select", "llama.cpp-linux-x86_64-avx2@2.14.0"]):
        r = subprocess.run([sys.executable, "-m", "app", *cmd, "--home", str(home)], cwd=REPO, capture_output=True,
                           text=True, timeout=120, stdin=subprocess.DEVNULL)
        assert r.returncode in (0, 1, 2) and "internal error" not in r.stderr, (cmd, r.stderr)
        assert "journal" in (r.stdout + r.stderr)
        if cmd[0] == "list":
            assert r.returncode == 0, r.stderr  # read-only commands keep working
    assert not (home / PREFS).exists()  # select refused: nothing changed while the journal is unreadable


# ------------------------------------------------------------------------------------------- 6. doctor: libraries


@pytest.mark.parametrize("breakage", ["dangling-real-lib", "listed-is-a-folder", "artifact-dangling"])
def test_doctor_finds_every_listed_library_that_is_not_a_regular_file(tmp_path: Path, breakage: str) -> None:
    """What a cut download left (a library link to nothing) is an error finding, in an official folder too."""
    from app.core.lmstudio.doctor import diagnose

    home = make_home(tmp_path)
    folder = home / "extensions" / "backends" / "llama.cpp-linux-x86_64-avx2-2.14.0"
    if breakage == "dangling-real-lib":
        (folder / "libggml-cpu.so.0.0.8861").unlink()
        rel = "libggml-cpu.so"  # libggml-cpu.so -> .so.0 -> (gone): both links dangle
    elif breakage == "listed-is-a-folder":
        (folder / "llm_engine.node").unlink()
        (folder / "llm_engine.node").mkdir()
        rel = "llm_engine.node"
    else:
        (folder / "libllama-server-impl.so").unlink()
        os.symlink("libllama-server-impl.so.0", folder / "libllama-server-impl.so")
        rel = "libllama-server-impl.so"
    found = [f for f in diagnose(home, report=None, processes=lambda _h: []) if f.code == "missing-library"]
    assert str(folder / rel) in [f.target for f in found], found
    assert found[0].severity == "error" and "re-download" in found[0].fix


# ------------------------------------------------------------------------------------------- 5. full / read-only

_CHECKED = r"""
import json, subprocess, sys
from pathlib import Path
from tests.lmstudio_homes import tree_hashes
home = Path(sys.argv[1])
before = tree_hashes(home, exclude=(".lms-unlocked",))
r = subprocess.run(sys.argv[2:], capture_output=True, text=True, stdin=subprocess.DEVNULL)
after = tree_hashes(home, exclude=(".lms-unlocked",))
print(json.dumps({"rc": r.returncode, "out": r.stdout, "err": r.stderr, "same": before == after}))
"""


@pytest.mark.skipif(bool(mount_namespace_problem()), reason=mount_namespace_problem() or "n/a")
@pytest.mark.parametrize("disk", ["read-only", "full"])
@pytest.mark.parametrize("command", ["list", "select", "install", "uninstall"])
def test_full_or_read_only_home_says_what_and_where_and_changes_nothing(
    tmp_path: Path, disk: str, command: str
) -> None:
    """A real read-only bind mount / a real 8 MB tmpfs filled to the last block, in a private mount namespace."""
    base = tmp_path / "disk"
    base.mkdir()
    home = make_home(base, prefs=[{"model_format": "gguf", "name": "llama.cpp-linux-x86_64-avx2",
                                   "version": "2.14.0"}])
    _install(home, prepare_our_backend(tmp_path / "a"))
    src = prepare_our_backend(tmp_path / "b", payload=os.urandom(256 * 1024))
    args = {
        "list": ["list", "--no-probe"],
        "select": ["select", f"{OURS}@2.14.0"],
        "install": ["install", "--from", str(src)],
        "uninstall": ["uninstall", f"{OURS}@2.14.0"],
    }[command]
    if disk == "read-only":
        mounts = [read_only(home)]
    else:
        mounts = [tmpfs_copy(base, "8m"), f"(dd if=/dev/zero of={base}/filler bs=4k 2>/dev/null; true)"]
    env = dict(os.environ, LMS_UNLOCKED_LOG_DIR=str(tmp_path / "log"), LMS_UNLOCKED_DATA_DIR=str(tmp_path / "data"))
    r = run_with_mounts(mounts, [sys.executable, "-c", _CHECKED, str(home), sys.executable, "-m", "app", *args,
                                 "--home", str(home)], env=env, cwd=REPO)
    assert r.returncode == 0, r.stderr
    res = json.loads(r.stdout)
    assert "internal error" not in res["err"] and "Traceback" not in res["err"], res["err"]
    assert res["same"], f"{command} on a {disk} home changed what LM Studio sees"
    if command == "list":
        assert res["rc"] == 0, res["err"]
        return
    assert res["rc"] in (1, 2), res
    words = "read-only" if disk == "read-only" else ("full" if command != "install" else "free space")
    assert words in res["err"].lower(), res["err"]
    assert str(home) in res["err"], res["err"]
    assert not list((tmp_path / "log").glob("crash-*")) if (tmp_path / "log").exists() else True


# ------------------------------------------------------------------------------------------- 7. journal confinement

OFFICIAL_DIR = "extensions/backends/llama.cpp-linux-x86_64-avx2-2.14.0"


@pytest.mark.parametrize(
    "op",
    [
        {"kind": "delete", "dst": f"{OFFICIAL_DIR}/backend-manifest.json", "orig": ""},
        {"kind": "write", "src": ".lms-unlocked/tx/x/new", "dst": f"{OFFICIAL_DIR}/libggml-cpu.so", "orig": ""},
        {"kind": "rename", "src": OFFICIAL_DIR, "dst": ".lms-unlocked/backups/x/gone"},
        {"kind": "rename", "src": f"{OFFICIAL_DIR}/llm_engine.node", "dst": ".lms-unlocked/backups/x/f"},
        {"kind": "delete", "dst": "OUTSIDE", "orig": ""},
        {"kind": "write", "src": "/etc/hostname", "dst": ".internal/backend-preferences-v1.json", "orig": ""},
    ],
    ids=["delete-in-official", "write-in-official", "move-official-out", "move-file-out", "outside-home",
         "content-from-outside"],
)
@pytest.mark.parametrize("direction", ["forward", "back"])
def test_a_crafted_journal_cannot_touch_official_folders_or_leave_the_home(
    tmp_path: Path, op: dict[str, str], direction: str
) -> None:
    from app.core.lmstudio.journal import JournalError

    home = make_home(tmp_path)
    outside = tmp_path / "outside.txt"
    outside.write_text("keep me")
    op = {k: (str(outside) if v == "OUTSIDE" else v) for k, v in op.items()}
    if direction == "back" and op["kind"] == "rename":  # undo moves dst back to src: put the official as dst
        op = {**op, "src": op["dst"], "dst": op["src"]}
    (home / STATE_DIR_NAME).mkdir()
    state = {"txid": "x", "kind": "install", "ops": [op], "commit": 0 if direction == "forward" else 1,
             "done": 0, "cleanup": []}
    (home / STATE_DIR_NAME / "journal.json").write_text(json.dumps(state))
    before = tree_hashes(home, exclude=(f"{STATE_DIR_NAME}/lock",))
    with pytest.raises(JournalError, match="never does that"):
        recover(home)
    assert tree_hashes(home, exclude=(f"{STATE_DIR_NAME}/lock",)) == before and outside.read_text() == "keep me"


# ------------------------------------------------------------------------------------------- 7. processes


def _started(argv: list[str], **kw: object) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(argv, **kw)  # type: ignore[call-overload]
    time.sleep(0.3)  # let exec() replace the name
    return proc


def test_uninstall_refuses_while_an_engine_runs_from_that_backend(tmp_path: Path) -> None:
    """A real process whose executable lies in our installed backend folder (a copy of /bin/sleep standing in
    for the engine's llama-server): uninstall and a replacing install refuse and name it."""
    import shutil

    from app.core.lmstudio.errors import LmStudioRunning
    from app.core.lmstudio.processes import lmstudio_processes

    home = make_home(tmp_path)
    _install(home, prepare_our_backend(tmp_path / "a"))
    folder = home / "extensions" / "backends" / f"{OURS}-2.14.0"
    engine = folder / "llama-server-running"
    shutil.copy2("/bin/sleep", engine)
    before = _visible(home)
    proc = _started([str(engine), "60"])
    procs = lambda h: [p for p in lmstudio_processes(h.path) if p.pid == proc.pid]  # noqa: E731 - only ours
    try:
        plan = plan_uninstall(home, f"{OURS}@2.14.0", processes=procs)
        assert f"pid {proc.pid}" in plan.blocked and str(folder) in plan.blocked
        with pytest.raises(LmStudioRunning, match=f"pid {proc.pid}") as ei:
            execute_uninstall(plan, processes=procs)
        assert "eject the model" in ei.value.hint
        with pytest.raises(LmStudioRunning, match="running from"):
            execute_install(plan_install(home, prepare_our_backend(tmp_path / "b"), processes=procs), provenance={},
                            processes=procs)
        assert _visible(home) == before
    finally:
        proc.kill()
        proc.wait()
    engine.unlink()
    _uninstall(home, f"{OURS}@2.14.0")  # once it stopped, uninstall goes ahead


@pytest.mark.parametrize("how", ["helper-name", "argv0-only"])
def test_lm_studio_helper_and_argv0_names_are_detected(tmp_path: Path, how: str) -> None:
    """Real processes: a copy of /bin/sleep named "LM Studio Helper" (Linux shows its name cut to 15
    characters), and /bin/sleep started with argv[0] "LM Studio" (its executable and name say "sleep")."""
    import shutil

    from app.core.lmstudio.processes import lmstudio_processes

    if how == "helper-name":
        exe = tmp_path / "LM Studio Helper"
        shutil.copy2("/bin/sleep", exe)
        proc = _started([str(exe), "60"])
    else:
        proc = _started(["LM Studio", "60"], executable="/bin/sleep")
    try:
        found = [p for p in lmstudio_processes() if p.pid == proc.pid]
        assert found and found[0].kind == "app", found
        assert found[0].name.startswith("LM Studio")
    finally:
        proc.kill()
        proc.wait()
