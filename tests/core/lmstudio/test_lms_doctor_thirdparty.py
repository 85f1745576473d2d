"""doctor/repair on third-party folders: every layout of issue #12 built from the real community manifests
(tests/lmstudio_homes.py), repaired with backups, official folders byte-identical, advice true for the kind.
Real-data variants on LM Studio's 1.48.0 Windows folders run under the ``lmstudio_real`` marker.

Hardware: REAL /proc/cpuinfo dumps; the OS is set to Windows in the report for the Windows packs (this host
runs Linux). STOOD IN: LM Studio's closed binaries (see tests/lmstudio_homes.py).
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
from pathlib import Path
from typing import Any

import py7zr
import pytest

from app.core.hardware.probe import probe_hardware
from app.core.hardware.report import HardwareReport, OsInfo
from app.core.lmstudio.doctor import REGISTRY, Finding, diagnose, duplicate_groups, repair
from app.core.lmstudio.doctor.registry import TITLES
from app.core.lmstudio.home import POINTER_FILE_NAME, resolve_home
from app.core.lmstudio.journal import STATE_DIR_NAME
from app.core.lmstudio.kinds import classify_folder
from tests.conftest import HWDATA, REPO
from tests.lmstudio_homes import make_home, template, tree_hashes, write_backend
from tests.mounts import mount_namespace_problem, run_with_mounts, tmpfs_copy

NONE: dict[str, Any] = {"processes": lambda _h: []}
AVX = "llama.cpp-win-x86_64-avx-1.48.0"  # theIvanR's pack (third-party)
OFFICIAL_WIN = "llama.cpp-win-x86_64-avx2-1.48.0"


def _report(cpu: str = "ivybridge-i5-3570k.txt", platform: str = "win") -> HardwareReport:
    r = probe_hardware(cpuinfo_path=HWDATA / "cpuinfo" / cpu, skip_gpu=True)
    return dataclasses.replace(r, os=OsInfo(platform=platform, system=platform.title()))


IVY_WIN = _report()


def visible(home: Path) -> dict[str, str]:
    return tree_hashes(home, exclude=(STATE_DIR_NAME,))


def found(fs: list[Finding], code: str) -> list[Finding]:
    return [f for f in fs if f.code == code]


def backups(home: Path) -> list[Path]:
    return sorted((home / STATE_DIR_NAME / "backups").glob("*"))


@pytest.fixture
def win_home(tmp_path: Path) -> Path:
    """A Windows home: LM Studio's official CPU pack 1.48.0 and theIvanR's AVX pack."""
    return make_home(tmp_path, backends=["win-cpu-1.48.0", "win-avx-1.48.0"], vendor=())


def official_hashes(home: Path) -> dict[str, dict[str, str]]:
    bdir = home / "extensions" / "backends"
    return {p.name: tree_hashes(p) for p in bdir.iterdir() if p.is_dir() and classify_folder(p).kind == "official"}


def test_healthy_windows_home_says_which_kind_each_finding_is(win_home: Path) -> None:
    fs = diagnose(win_home, report=IVY_WIN, **NONE)
    # the AVX2 official pack cannot run on Ivy Bridge (info: LM Studio's own); theIvanR's manifest is CRLF (info)
    assert {(f.code, f.kind, f.severity) for f in fs} == {
        ("ise-unsupported", "official", "info"),
        ("json-crlf", "third-party", "info"),
    }
    assert all(f.heading == TITLES[f.code] for f in fs)


def _nest(folder: Path, *levels: str) -> Path:
    """Move ``folder`` under ``levels`` (inside its own parent), as extracting an archive into a folder does."""
    tmp = folder.with_name(folder.name + ".tmp-move")
    os.rename(folder, tmp)
    dest = folder.parent.joinpath(*levels, folder.name)
    dest.parent.mkdir(parents=True)
    os.rename(tmp, dest)
    return dest


def test_third_party_nested_one_level_under_its_own_name(win_home: Path) -> None:
    bdir = win_home / "extensions" / "backends"
    healthy, official = visible(win_home), official_hashes(win_home)
    _nest(bdir / AVX, AVX)  # "X.zip" extracted into a folder "X"
    fs = diagnose(win_home, report=IVY_WIN, **NONE)
    (f,) = found(fs, "nested-folder")
    assert f.auto and "one level too deep" in f.explanation
    out = repair(win_home, report=IVY_WIN, only={"nested-folder"}, **NONE)
    assert not found(list(out.after), "nested-folder") and out.applied
    assert visible(win_home) == healthy and official_hashes(win_home) == official


def test_repository_zip_two_levels_deep(win_home: Path) -> None:
    """theIvanR's repository zip extracted into backends/: README beside the pack, two levels down."""
    bdir = win_home / "extensions" / "backends"
    healthy = visible(win_home)
    inner = _nest(bdir / AVX, "lmstudio-unlocked-backend", "lmstudio-unlocked-backend-main")
    (inner.parent / "README.md").write_text("# lmstudio-unlocked-backend\n")
    (f,) = found(diagnose(win_home, report=IVY_WIN, **NONE), "nested-folder")
    assert f.auto and "two levels too deep" in f.explanation and "remove it" not in f.fix
    out = repair(win_home, report=IVY_WIN, only={"nested-folder"}, **NONE)
    assert visible(win_home) == healthy, out.skipped
    kept = list((win_home / STATE_DIR_NAME / "backups").glob("*/moved-out/lmstudio-unlocked-backend"))
    assert len(kept) == 1 and (kept[0] / "lmstudio-unlocked-backend-main" / "README.md").is_file()


def test_nested_folder_blocked_by_a_folder_of_that_name_is_manual(win_home: Path) -> None:
    bdir = win_home / "extensions" / "backends"
    write_backend(bdir / "holder" / AVX, "win-avx-1.48.0")  # bdir/AVX exists already
    (f,) = found(diagnose(win_home, report=IVY_WIN, **NONE), "nested-folder")
    assert not f.auto and "by hand" in f.fix


def test_notepad_bom_and_crlf_in_a_third_party_folder_are_fixed_with_backups(win_home: Path) -> None:
    m = win_home / "extensions" / "backends" / AVX / "backend-manifest.json"
    dd = m.with_name("display-data.json")
    original_m = m.read_bytes()
    m.write_bytes(b"\xef\xbb\xbf" + original_m)
    dd.write_bytes(b"\xef\xbb\xbf" + dd.read_bytes().replace(b"\n", b"\r\n"))
    broken_dd = dd.read_bytes()
    official = official_hashes(win_home)
    fs = diagnose(win_home, report=IVY_WIN, **NONE)
    assert {(f.code, Path(f.target).name) for f in fs if f.auto} == {
        ("json-bom", "backend-manifest.json"),
        ("json-bom", "display-data.json"),
        ("json-crlf", "backend-manifest.json"),
        ("json-crlf", "display-data.json"),
    }
    out = repair(win_home, report=IVY_WIN, **NONE)
    assert not [f for f in out.after if f.code in ("json-bom", "json-crlf")]
    assert m.read_bytes() == original_m.replace(b"\r\n", b"\n") and json.loads(m.read_bytes())
    assert not dd.read_bytes().startswith(b"\xef\xbb\xbf") and b"\r\n" not in dd.read_bytes()
    (bk,) = backups(win_home)  # the originals, first copy kept although two fixes touched each file
    assert (bk / "extensions/backends" / AVX / "display-data.json").read_bytes() == broken_dd
    assert official_hashes(win_home) == official


def test_official_folder_with_a_bom_is_never_changed(win_home: Path) -> None:
    m = win_home / "extensions" / "backends" / OFFICIAL_WIN / "backend-manifest.json"
    m.write_bytes(b"\xef\xbb\xbf" + m.read_bytes())
    before = official_hashes(win_home)
    (f,) = found(diagnose(win_home, report=IVY_WIN, **NONE), "json-bom")
    assert f.kind == "official" and not f.auto and "re-download this runtime in LM Studio" in f.fix
    repair(win_home, report=IVY_WIN, **NONE)
    assert official_hashes(win_home) == before


def test_advice_is_true_for_the_kind(win_home: Path) -> None:
    """A missing library: LM Studio re-downloads only its own packs; theIvanR's must come from its author."""
    bdir = win_home / "extensions" / "backends"
    (bdir / AVX / "llm_engine.node").unlink()
    (bdir / OFFICIAL_WIN / "llm_engine.node").unlink()
    by_kind = {f.kind: f.fix for f in found(diagnose(win_home, report=IVY_WIN, **NONE), "missing-library")}
    assert "re-download this runtime in LM Studio" in by_kind["official"]
    assert (
        "LM Studio never shipped it" in by_kind["third-party"] and "from where it came from" in by_kind["third-party"]
    )


def _edited_copy(home: Path, folder: str, *, ise: bytes = b'"AVX"', payload: bytes = b"user's AVX ggml-cpu") -> Path:
    """The user's copy of the official pack under another folder name: ISE edited, ggml-cpu.dll swapped."""
    spec = template("win-cpu-1.48.0")
    d = write_backend(home / "extensions" / "backends" / folder, spec)
    m = d / "backend-manifest.json"
    m.write_bytes(m.read_bytes().replace(b'"AVX2"', ise))
    (d / "ggml-cpu.dll").write_bytes(payload)
    return d


def test_edited_copy_with_the_official_name_is_kept_and_renamed_not_moved(win_home: Path) -> None:
    """The case of issue #12: the user's only working copy kept LM Studio's name. It stays in backends/ under a
    name of its own (the selection follows); LM Studio's original stays byte-identical."""
    mine = _edited_copy(win_home, "my-avx-copy")
    prefs = win_home / ".internal" / "backend-preferences-v1.json"
    prefs.write_text(json.dumps([{"model_format": "gguf", "name": "llama.cpp-win-x86_64-avx2", "version": "1.48.0"}]))
    official = official_hashes(win_home)
    (g,) = duplicate_groups(win_home, report=IVY_WIN)
    assert g.keeper == mine and "only copy compatible" in g.reason
    fs = diagnose(win_home, report=IVY_WIN, **NONE)
    assert not found(fs, "duplicate-backend")  # nothing is moved out: the official stays, the copy must too
    (f,) = found(fs, "name-clash")
    assert f.auto and f.kind == "third-party" and f.target == str(mine)
    out = repair(win_home, report=IVY_WIN, **NONE)
    assert not found(list(out.after), "name-clash") and not found(list(out.after), "duplicate-backend")
    renamed = mine.with_name("llama.cpp-win-x86_64-avx2-local-1.48.0")
    assert renamed.is_dir() and (renamed / "ggml-cpu.dll").read_bytes() == b"user's AVX ggml-cpu"
    assert json.loads((renamed / "backend-manifest.json").read_bytes())["name"] == "llama.cpp-win-x86_64-avx2-local"
    assert json.loads(prefs.read_text())[0]["name"] == "llama.cpp-win-x86_64-avx2-local"
    assert official_hashes(win_home) == official
    (bk,) = backups(win_home)
    assert (bk / "extensions/backends/my-avx-copy/backend-manifest.json").is_file()
    assert (bk / ".internal/backend-preferences-v1.json").is_file()


def test_lone_name_clash_is_reported(tmp_path: Path) -> None:
    home = make_home(tmp_path, backends=[], vendor=())
    _edited_copy(home, OFFICIAL_WIN)  # edited in place, official folder name kept
    (f,) = found(diagnose(home, report=IVY_WIN, **NONE), "name-clash")
    assert not f.auto and "llama.cpp-win-x86_64-avx2-local" in f.fix and "ISE AVX" in f.explanation


def test_duplicates_keep_the_compatible_copy_never_the_only_compatible_one_out(tmp_path: Path) -> None:
    home = make_home(tmp_path, backends=[], vendor=())
    good = _edited_copy(home, "copy-avx")
    bad = _edited_copy(home, "copy-avx2", ise=b'"AVX2"')  # same name@version, needs AVX2: not official (folder)
    fs = diagnose(home, report=IVY_WIN, **NONE)
    (f,) = found(fs, "duplicate-backend")
    assert f.auto and f.target == str(bad) and "only copy compatible" in f.explanation
    repair(home, report=IVY_WIN, **NONE)
    assert good.is_dir() and not bad.exists()
    assert list((home / STATE_DIR_NAME / "backups").glob("*/moved-out/copy-avx2"))


def test_duplicates_prefer_ours_then_the_newest(tmp_path: Path) -> None:
    home = make_home(tmp_path, backends=[], vendor=())
    old = _edited_copy(home, "copy-old", payload=b"old")
    new = _edited_copy(home, "copy-new", payload=b"new")
    os.utime(old / "backend-manifest.json", (1_600_000_000, 1_600_000_000))
    os.utime(old, (1_600_000_000, 1_600_000_000))
    (g,) = duplicate_groups(home, report=IVY_WIN)
    assert (g.keeper, g.reason) == (new, "the newest compatible copy")
    (old / "unlocked-install.json").write_text("{}")  # now the old one is ours
    (g,) = duplicate_groups(home, report=IVY_WIN)
    assert g.keeper == old and g.reason.startswith("ours")


def test_duplicates_in_doubt_wait_for_an_explicit_choice(tmp_path: Path) -> None:
    """No hardware report and the copies differ: nothing moves until `--keep` names the one to keep."""
    home = make_home(tmp_path, backends=[], vendor=())
    a = _edited_copy(home, "copy-a", payload=b"a")
    b = _edited_copy(home, "copy-b", payload=b"bb")
    before = visible(home)
    (g,) = duplicate_groups(home)
    assert g.doubt and [c.compatible for c in g.candidates] == [None, None]
    (f,) = found(diagnose(home, **NONE), "duplicate-backend")
    assert not f.auto and "--keep" in f.fix
    repair(home, only={"duplicate-backend"}, **NONE)
    assert visible(home) == before
    out = repair(home, keep=[b], only={"duplicate-backend"}, **NONE)
    assert b.is_dir() and not a.exists() and not found(list(out.after), "duplicate-backend")


def test_loose_files_with_a_manifest_are_gathered_into_their_folder(tmp_path: Path) -> None:
    home = make_home(tmp_path, backends=[], vendor=())
    bdir = home / "extensions" / "backends"
    write_backend(tmp_path / "extracted", "win-avx-1.48.0")
    for p in (tmp_path / "extracted").iterdir():
        os.rename(p, bdir / p.name)  # the archive's content extracted without its folder
    (f,) = found(diagnose(home, report=IVY_WIN, **NONE), "loose-files")
    assert f.auto and f.severity == "error" and f.backend == "llama.cpp-win-x86_64-avx@1.48.0"
    repair(home, report=IVY_WIN, **NONE)
    assert sorted(p.name for p in bdir.iterdir()) == [AVX]
    assert classify_folder(bdir / AVX).kind == "third-party"


def test_loose_files_without_a_manifest_are_moved_out(win_home: Path) -> None:
    bdir = win_home / "extensions" / "backends"
    (bdir / "readme.txt").write_text("how to install")
    (f,) = found(diagnose(win_home, report=IVY_WIN, **NONE), "loose-files")
    assert f.auto and f.severity == "info"
    repair(win_home, report=IVY_WIN, only={"loose-files"}, **NONE)
    assert not (bdir / "readme.txt").exists()
    assert list((win_home / STATE_DIR_NAME / "backups").glob("*/moved-out/loose-files/readme.txt"))


def test_third_party_folder_in_the_wrong_home_is_moved_to_the_home_lmstudio_uses(tmp_path: Path) -> None:
    user = tmp_path / "user"
    user.mkdir()
    wrong = make_home(user, backends=["win-avx-1.48.0"], vendor=(), dirname=".lmstudio")  # the default home
    right = make_home(tmp_path, backends=["win-cpu-1.48.0"], vendor=(), dirname="D-drive-lmstudio")
    (user / POINTER_FILE_NAME).write_text(str(right))  # ... but the pointer names another
    h = resolve_home(user_home=user)
    assert h.path == right
    pack = tree_hashes(wrong / "extensions/backends" / AVX)
    (f,) = found(diagnose(h, report=IVY_WIN, user_home=user, **NONE), "wrong-home")
    assert f.auto and f.kind == "third-party" and str(wrong) in f.explanation
    manifest = (wrong / "extensions/backends" / AVX / "backend-manifest.json").read_bytes()
    out = repair(h, report=IVY_WIN, user_home=user, **NONE)
    moved = right / "extensions/backends" / AVX
    # moved byte-identical, then (same run) its CRLF manifest rewritten with LF, the original backed up
    assert tree_hashes(moved, exclude=("backend-manifest.json",)) == {
        k: v for k, v in pack.items() if k != "backend-manifest.json"
    }
    assert (moved / "backend-manifest.json").read_bytes() == manifest.replace(b"\r\n", b"\n")
    assert not (wrong / "extensions/backends" / AVX).exists()
    assert not out.skipped and not [f for f in out.after if f.auto]


def test_wrong_home_on_another_file_system_is_copied_then_the_original_kept(tmp_path: Path) -> None:
    """The home LM Studio uses is on a real separate tmpfs: no rename across file systems, so the pack is copied in
    (complete or absent inside backends/) and the original is kept in the other home's backups."""
    problem = mount_namespace_problem()
    if problem:
        pytest.skip(problem)
    user = tmp_path / "user"
    user.mkdir()
    wrong = make_home(user, backends=["win-avx-1.48.0"], vendor=(), dirname=".lmstudio")
    right = make_home(tmp_path, backends=[], vendor=(), dirname="other-disk")
    (user / POINTER_FILE_NAME).write_text(str(right))
    pack = tree_hashes(wrong / "extensions/backends" / AVX)
    driver = (
        "import sys, json; from pathlib import Path\n"
        "from app.core.lmstudio.doctor import repair\nfrom app.core.lmstudio.home import resolve_home\n"
        "from tests.lmstudio_homes import tree_hashes\n"
        "u = Path(sys.argv[1]); h = resolve_home(user_home=u)\n"
        "out = repair(h, user_home=u, only={'wrong-home'}, processes=lambda _h: [])\n"
        "print(json.dumps({'applied': out.applied, 'skipped': out.skipped,\n"
        "                  'dev': [Path(sys.argv[1]).stat().st_dev, h.path.stat().st_dev],\n"
        "                  'moved': tree_hashes(h.backends_dir / sys.argv[2])}))\n"
    )
    r = run_with_mounts([tmpfs_copy(right, "8m")], [sys.executable, "-c", driver, str(user), AVX], cwd=REPO)
    assert r.returncode == 0, r.stderr
    res = json.loads(r.stdout)
    assert res["dev"][0] != res["dev"][1] and not res["skipped"]
    assert "copied" in res["applied"][0] and res["moved"] == pack
    kept = list((wrong / ".lms-unlocked" / "backups").glob(f"*/moved-out/{AVX}"))
    assert len(kept) == 1 and tree_hashes(kept[0]) == pack
    assert not (wrong / "extensions/backends" / AVX).exists()


def _index(home: Path, ident: str, folder: str, status: str) -> None:
    name, version = ident.split("@")
    entry = {
        "manifest": {"name": name, "version": version},
        "dirPath": str(home / "extensions/backends" / folder),
        "backendCompatibility": {"status": status},
    }
    (home / ".internal" / "internal-engine-index.json").write_text(json.dumps({"json": [entry], "meta": {}}))


def test_lmstudio_verdict_explained_for_a_third_party_pack(win_home: Path) -> None:
    """LM Studio said invalidCpuArchitecture, ours says compatible: the meaning, and rerun before rebuilding."""
    _index(win_home, "llama.cpp-win-x86_64-avx@1.48.0", AVX, "invalidCpuArchitecture")
    (f,) = found(diagnose(win_home, report=IVY_WIN, **NONE), "lmstudio-says-incompatible")
    assert f.kind == "third-party" and f.severity == "warning"
    assert "survey child crashed" in f.explanation and "ours says compatible" in f.explanation
    assert "rerun its compatibility check" in f.fix and "bindings" in f.fix


def test_lmstudio_verdict_for_an_official_pack_and_when_they_disagree(win_home: Path) -> None:
    _index(win_home, "llama.cpp-win-x86_64-avx2@1.48.0", OFFICIAL_WIN, "errorSurveyingHardware")
    (f,) = found(diagnose(win_home, report=IVY_WIN, **NONE), "lmstudio-says-incompatible")
    assert f.kind == "official" and f.severity == "info" and "AVX2" in f.fix
    _index(win_home, "llama.cpp-win-x86_64-avx2@1.48.0", OFFICIAL_WIN, "compatible")
    (f,) = found(diagnose(win_home, report=IVY_WIN, **NONE), "lmstudio-says-compatible")
    assert "invalidCpuInstructionSetExtensions" in f.explanation and "cached" in f.explanation


def test_every_registered_check_has_a_title_an_explanation_and_a_test() -> None:
    """The registry is the list of checks: each code has a human title and a paragraph, and a test here names it."""
    tests = "".join(p.read_text() for p in (REPO / "tests/core/lmstudio").glob("test_lms_*.py"))
    for check in REGISTRY:
        assert check.about and check.codes, type(check).__name__
        for code, title in check.codes:
            assert title and f'"{code}"' in tests, code


# ---------------------------------------------------------------------------------- LM Studio's real folders


def _extract(lmstudio_real: Path, which: str, dest: Path) -> None:
    with py7zr.SevenZipFile(lmstudio_real / f"llama.cpp-win-x86_64-{which}-1.48.0.7z") as z:
        z.extractall(dest)


@pytest.mark.lmstudio_real
def test_real_community_folders_in_a_home(lmstudio_real: Path, tmp_path: Path) -> None:
    home = make_home(tmp_path, backends=["win-cpu-1.48.0"], vendor=())
    bdir = home / "extensions" / "backends"
    for which in ("avx", "noavx"):
        _extract(lmstudio_real, which, bdir)
    fs = diagnose(home, report=IVY_WIN, **NONE)
    got = {(f.code, f.backend, f.kind) for f in fs}
    assert got == {
        ("ise-unsupported", "llama.cpp-win-x86_64-avx2@1.48.0", "official"),
        ("json-crlf", "llama.cpp-win-x86_64-avx@1.48.0", "third-party"),
        ("json-crlf", "llama.cpp-win-x86_64-avx0@1.48.0", "third-party"),
        ("ise-empty", "llama.cpp-win-x86_64-avx0@1.48.0", "third-party"),
        ("folder-name-mismatch", "llama.cpp-win-x86_64-avx0@1.48.0", "third-party"),
    }
    (e,) = found(fs, "ise-empty")
    assert e.severity == "warning" and not e.auto and "re-download" not in e.fix
    # the AVX pack is what LM Studio lists as compatible on Ivy Bridge (its author runs it there)
    assert not [f for f in fs if f.backend == "llama.cpp-win-x86_64-avx@1.48.0" and f.severity != "info"]


@pytest.mark.lmstudio_real
def test_real_avx_pack_extracted_into_a_folder_of_its_name_is_moved_up_byte_identical(
    lmstudio_real: Path, tmp_path: Path
) -> None:
    home = make_home(tmp_path, backends=[], vendor=())
    _extract(lmstudio_real, "avx", tmp_path / "ref")
    _extract(lmstudio_real, "avx", home / "extensions" / "backends" / AVX)  # one level too deep
    (f,) = found(diagnose(home, report=IVY_WIN, **NONE), "nested-folder")
    assert f.auto
    repair(home, report=IVY_WIN, only={"nested-folder"}, **NONE)
    assert tree_hashes(home / "extensions" / "backends" / AVX) == tree_hashes(tmp_path / "ref" / AVX)


# --- one repair run leaves nothing automatic behind (QA of #12) ---------------------------------------------------


def test_one_repair_fixes_what_moving_a_folder_reveals(win_home: Path) -> None:
    """theIvanR's manifest is CRLF; nested one level it is seen only once moved up. One `repair` must finish the
    job: no "failed: No such file" for the old path, no automatic fix left for a second run."""
    bdir = win_home / "extensions" / "backends"
    official = official_hashes(win_home)
    _nest(bdir / AVX, AVX)
    out = repair(win_home, report=IVY_WIN, **NONE)
    assert not out.skipped, out.skipped
    assert [f.code for f in out.after if f.auto] == []
    assert b"\r\n" not in (bdir / AVX / "backend-manifest.json").read_bytes()
    assert official_hashes(win_home) == official


def test_one_repair_fixes_a_renamed_name_clash_completely(win_home: Path) -> None:
    """A CRLF manifest in a copy that kept the official name: the rename moves the folder, the CRLF fix then
    applies to the renamed folder in the same run."""
    mine = _edited_copy(win_home, "my-avx-copy")
    m = mine / "backend-manifest.json"
    m.write_bytes(m.read_bytes().replace(b"\r\n", b"\n").replace(b"\n", b"\r\n"))
    official = official_hashes(win_home)
    out = repair(win_home, report=IVY_WIN, **NONE)
    assert not out.skipped, out.skipped
    assert [f.code for f in out.after if f.auto] == []
    renamed = mine.with_name("llama.cpp-win-x86_64-avx2-local-1.48.0")
    assert b"\r\n" not in (renamed / "backend-manifest.json").read_bytes()
    assert official_hashes(win_home) == official


def test_repair_of_chosen_findings_does_not_apply_others_seen_before(win_home: Path) -> None:
    """The wizard's choice holds across passes: a finding the user saw and did not choose stays unfixed."""
    bdir = win_home / "extensions" / "backends"
    _nest(bdir / AVX, AVX)
    fs = diagnose(win_home, report=IVY_WIN, **NONE)
    out = repair(win_home, [f for f in fs if f.code == "nested-folder"], report=IVY_WIN, **NONE)
    assert not out.skipped and (bdir / AVX / "backend-manifest.json").is_file()
    out2 = repair(win_home, [], report=IVY_WIN, **NONE)
    assert not out2.applied


def test_copies_with_equal_sizes_but_other_libraries_are_not_called_identical(win_home: Path) -> None:
    """theIvanR's avx and noavx ggml-cpu.dll have the same size (610304 bytes) and other bytes: a copy with the
    other DLL swapped in is not "identical"; with equal times nothing tells them apart and the user chooses."""
    bdir = win_home / "extensions" / "backends"
    other = write_backend(bdir / "avx-copy-2", "win-avx-1.48.0")
    dll = other / "ggml-cpu.dll"
    dll.write_bytes(bytes(b ^ 0xFF for b in dll.read_bytes()))  # same length, other content
    for d in (bdir / AVX, other):
        for p in (d, d / "backend-manifest.json"):
            os.utime(p, (1_700_000_000, 1_700_000_000))
    before = visible(win_home)
    (g,) = duplicate_groups(win_home, report=IVY_WIN)
    assert g.doubt and "identical" not in g.reason
    repair(win_home, report=IVY_WIN, only={"duplicate-backend"}, **NONE)
    assert visible(win_home) == before
    # byte-identical copies still resolve to the <name>-<version> folder
    dll.write_bytes((bdir / AVX / "ggml-cpu.dll").read_bytes())
    (g,) = duplicate_groups(win_home, report=IVY_WIN)
    assert g.keeper == bdir / AVX and "identical" in g.reason


def test_manifest_saved_as_unicode_in_notepad_is_rewritten_as_utf8(win_home: Path) -> None:
    """Notepad's "Unicode" is UTF-16 LE with a BOM: LM Studio cannot read it. A third-party manifest gets the same
    text back in UTF-8 (backed up; its CRLF fixed in the same run); an official one is only reported."""
    bdir = win_home / "extensions" / "backends"
    m = bdir / AVX / "backend-manifest.json"
    text = m.read_bytes().decode("utf-8")
    m.write_bytes(text.encode("utf-16"))
    om = bdir / OFFICIAL_WIN / "backend-manifest.json"
    om.write_bytes(om.read_bytes().decode("utf-8").encode("utf-16"))
    official = official_hashes(win_home)
    fs = found(diagnose(win_home, report=IVY_WIN, **NONE), "json-encoding")
    assert {(f.kind, f.auto) for f in fs} == {("third-party", True), ("official", False)}
    out = repair(win_home, report=IVY_WIN, **NONE)
    assert not out.skipped, out.skipped
    assert m.read_bytes() == text.replace("\r\n", "\n").encode("utf-8")
    assert official_hashes(win_home) == official
    (bk,) = backups(win_home)
    assert (bk / "extensions/backends" / AVX / "backend-manifest.json").read_bytes() == text.encode("utf-16")


def test_wrong_home_moves_backends_only_and_a_nested_one_ends_up_usable(tmp_path: Path) -> None:
    """In the home LM Studio does not use: theIvanR's pack nested one level (moved, then moved up and its CRLF fixed,
    all in one run) and an empty folder (no backend at all: left where it is, not moved to become a problem)."""
    user = tmp_path / "user"
    user.mkdir()
    wrong = make_home(user, backends=["win-avx-1.48.0"], vendor=(), dirname=".lmstudio")
    _nest(wrong / "extensions/backends" / AVX, AVX)
    (wrong / "extensions/backends" / "empty-folder").mkdir()
    right = make_home(tmp_path, backends=["win-cpu-1.48.0"], vendor=(), dirname="D-drive-lmstudio")
    (user / POINTER_FILE_NAME).write_text(str(right))
    h = resolve_home(user_home=user)
    fs = found(diagnose(h, report=IVY_WIN, user_home=user, **NONE), "wrong-home")
    assert [f.backend for f in fs] == [AVX]
    out = repair(h, report=IVY_WIN, user_home=user, **NONE)
    assert not out.skipped and not [f for f in out.after if f.auto or f.severity == "error"], out.after
    assert (right / "extensions/backends" / AVX / "backend-manifest.json").is_file()
    assert (wrong / "extensions/backends" / "empty-folder").is_dir()
    assert not (right / "extensions/backends" / "empty-folder").exists()
