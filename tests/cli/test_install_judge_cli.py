"""`install` judges before it writes: every refusal reason through the real console script.

Each test builds a real LM Studio home (tests/lmstudio_homes.py, from real manifests) and a real backend
folder (cloned with the real clone_template), installs it from a folder, an archive, a URL served by a real
HTTP server on 127.0.0.1 or a signed catalog, and checks the exit code, the message, and that the home is
byte-identical afterwards (every file's sha256 and mode). The CPU is a recorded /proc/cpuinfo or hardware
report (tests/fixtures); where the ISA audit must judge, the library is a real ELF (gcc) or PE DLL (mingw-w64)
compiled here. STOOD IN: LM Studio's own closed binaries (text files, see tests/lmstudio_homes.py) and, for
the smoke test, the folder's test program (a shell script that dies like an illegal instruction, exit 132).
"""

from __future__ import annotations

import dataclasses
import json
import subprocess
import tarfile
from pathlib import Path

import pytest

from app.core.lmstudio.provenance import read_provenance, write_provenance
from tests.cli.test_install_cli import TEST_KEY, TEST_PUB, installed, no_traceback, run
from tests.conftest import FIXTURES, HWDATA
from tests.core.builder.conftest import _compile as compile_lib
from tests.core.test_patchonly import AVX2_SRC, AVX_SRC, build_lib
from tests.httpserver import LocalHTTPServer
from tests.lmstudio_homes import make_home, prepare_our_backend, template, tree_hashes

IVY = HWDATA / "cpuinfo" / "ivybridge-i5-3570k.txt"
CORE2 = HWDATA / "cpuinfo" / "core2-penryn-yorkfield-q9550.txt"
HASWELL = HWDATA / "cpuinfo" / "haswell-i7-4770.txt"
WESTMERE_REPORT = FIXTURES / "reports" / "westmere.json"
IVY_REPORT = FIXTURES / "reports" / "ivybridge.json"
LINUX_OURS = "llama.cpp-linux-x86_64-avx1-unlocked@2.14.0"
WIN_OURS = "llama.cpp-win-x86_64-avx1-unlocked@1.48.0"
PREFS = Path(".internal") / "backend-preferences-v1.json"


def refused(p: subprocess.CompletedProcess[str], check: str, text: str) -> None:
    """Exit 2, the typed error on stderr with its hint, and no traceback."""
    assert p.returncode == 2, (p.returncode, p.stdout, p.stderr)
    assert "error: " in p.stderr and "was not installed" in p.stderr and text in p.stderr, p.stderr
    assert "hint: " in p.stderr and "--force" in p.stderr
    assert f"REFUSED [{check}]" in p.stdout + p.stderr or check in p.stderr
    no_traceback(p)


def refused_json(p: subprocess.CompletedProcess[str], checks: set[str]) -> dict[str, object]:
    assert p.returncode == 2, p.stderr
    out = json.loads(p.stdout)
    assert out["ok"] is False and out["error"] == "install-refused" and out["hint"]
    got = {f["check"] for f in out["check"]["findings"] if f["severity"] == "refuse"}
    assert got == checks, out["check"]["findings"]
    return dict(out)


@pytest.fixture
def linux_home(tmp_path: Path) -> Path:
    return make_home(tmp_path, prefs=[{"model_format": "gguf", "name": "llama.cpp-linux-x86_64-avx2",
                                       "version": "2.14.0"}])


@pytest.fixture
def win_home(tmp_path: Path) -> Path:
    return make_home(tmp_path, backends=("win-cpu-1.48.0",), vendor=(), dirname="win-home")


def linux_pack(tmp_path: Path, payload: bytes = b"our rebuilt ggml-cpu", **kw: object) -> Path:
    return prepare_our_backend(tmp_path / "packs", "linux-cpu-2.14.0", "cpu-avx1", payload=payload, **kw)  # type: ignore[arg-type]


def win_pack(tmp_path: Path, payload: bytes = b"our rebuilt ggml-cpu.dll") -> Path:
    return prepare_our_backend(tmp_path / "wpacks", "win-cpu-1.48.0", "cpu-avx1", payload=payload)


def tar_of(folder: Path, dest: Path) -> Path:
    with tarfile.open(dest, "w:gz") as tf:
        tf.add(folder, folder.name)
    return dest


# --- platform ------------------------------------------------------------------------------------------------------


def test_windows_pack_into_linux_home_refused_from_folder_with_select(linux_home: Path, tmp_path: Path) -> None:
    pack = win_pack(tmp_path)
    before, src_before = tree_hashes(linux_home), tree_hashes(pack)
    p = run("install", "--from", pack, "--select", "--cpuinfo", IVY, "--home", linux_home)
    refused(p, "platform", "a Windows backend")
    assert "Linux" in p.stderr and "incompatiblePlatform" in p.stderr
    assert tree_hashes(linux_home) == before  # nothing written, the selection untouched
    assert tree_hashes(pack) == src_before  # the source is not touched either


def test_windows_pack_refused_from_archive_url_and_catalog(linux_home: Path, tmp_path: Path) -> None:
    pack = win_pack(tmp_path)
    archive = tar_of(pack, tmp_path / "win-pack.tar.gz")
    before = tree_hashes(linux_home)
    a = run("install", "--from", archive, "--cpuinfo", IVY, "--home", linux_home, "--json")
    out = refused_json(a, {"platform", "engine-version"})
    assert "a Windows backend" in str(out["message"])
    # the other reason in words, never the check's code
    assert "1 more reason: the LM Studio engine version it was made from" in str(out["message"])
    with LocalHTTPServer() as srv:
        srv.add("/win-pack.tar.gz", archive)
        u = run("install", "--from", srv.url("/win-pack.tar.gz"), "--report", IVY_REPORT, "--home", linux_home)
        assert len(srv.requests) == 1  # downloaded into the cache, judged in staging, never installed
    refused(u, "platform", "a Windows backend")
    cat = tmp_path / "catalog"
    pub = run("publish", pack, "--full", "--out", cat, "--key", TEST_KEY, "--no-audit", "--json")
    assert pub.returncode == 0, pub.stderr
    c = run("install", "--catalog", cat, "--entry", WIN_OURS, "--public-key", TEST_PUB, "--cpuinfo", IVY,
            "--select", "--home", linux_home)
    refused(c, "platform", "a Windows backend")
    assert tree_hashes(linux_home) == before


def test_platform_comes_from_the_home_not_from_the_computer(win_home: Path, tmp_path: Path) -> None:
    """A Windows home reached from Linux (WSL): a Linux pack is refused, the Windows pack is judged on."""
    before = tree_hashes(win_home)
    p = run("install", "--from", linux_pack(tmp_path), "--home", win_home)
    refused(p, "platform", "a Linux backend")
    assert "LM Studio's own engines in the home are Windows ones" in p.stderr
    assert tree_hashes(win_home) == before
    ok = run("install", "--from", win_pack(tmp_path), "--cpuinfo", IVY, "--home", win_home, "--dry-run")
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "ok [platform]" in ok.stdout and "the home decides" in ok.stdout


# --- CPU: manifest ISE and ISA audit --------------------------------------------------------------------------------


def test_avx_manifest_for_cpu_without_avx_refused_with_cpuinfo_and_report(linux_home: Path, tmp_path: Path) -> None:
    pack = linux_pack(tmp_path)
    before = tree_hashes(linux_home)
    p = run("install", "--from", pack, "--select", "--cpuinfo", CORE2, "--home", linux_home)
    refused(p, "ise", "needs AVX")
    assert "invalidCpuInstructionSetExtensions" in p.stderr
    r = run("install", "--from", pack, "--report", WESTMERE_REPORT, "--home", linux_home, "--json")
    refused_json(r, {"ise"})
    assert tree_hashes(linux_home) == before
    ok = run("install", "--from", pack, "--cpuinfo", IVY, "--home", linux_home)  # the same pack fits Ivy Bridge
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert f"Installed {LINUX_OURS}" in ok.stdout and "ok [ise]" in ok.stdout


def test_arm64_pack_for_an_x86_cpu_refused(linux_home: Path, tmp_path: Path) -> None:
    pack = linux_pack(tmp_path)
    manifest = pack / "backend-manifest.json"
    m = json.loads(manifest.read_text())
    m["cpu"]["architecture"] = "arm64"
    manifest.write_text(json.dumps(m, indent=2))
    before = tree_hashes(linux_home)
    p = run("install", "--from", pack, "--select", "--cpuinfo", IVY, "--home", linux_home)
    refused(p, "architecture", "built for arm64 CPUs, but the target CPU is x86_64")
    assert "invalidCpuArchitecture" in p.stderr and "note [isa-audit] not run" in p.stdout
    assert tree_hashes(linux_home) == before


def test_empty_ise_entry_refused(linux_home: Path, tmp_path: Path) -> None:
    pack = prepare_our_backend(tmp_path / "p", "linux-cpu-2.14.0", "noavx", ise=("",))
    before = tree_hashes(linux_home)
    p = run("install", "--from", pack, "--cpuinfo", HASWELL, "--home", linux_home)
    # validation already refuses "" (LM Studio shows it as incompatible): a usage error, nothing written
    assert p.returncode == 2 and 'contains ""' in p.stderr
    assert tree_hashes(linux_home) == before


def test_isa_audit_refuses_avx2_code_behind_an_avx_manifest_elf(linux_home: Path, tmp_path: Path) -> None:
    """The manifest says ["AVX"], but the real libggml-cpu (gcc -mavx2 -mfma) needs AVX2/FMA: Ivy Bridge lacks them."""
    lib = build_lib(tmp_path, AVX2_SRC, ["-mavx2", "-mfma"], "ggml_avx2")
    pack = linux_pack(tmp_path, payload=lib.read_bytes())
    before = tree_hashes(linux_home)
    p = run("install", "--from", pack, "--cpuinfo", IVY, "--home", linux_home)
    refused(p, "isa-audit", "libggml-cpu.so.0.0.8861 uses AVX2, FMA instructions")
    assert "illegal instruction" in p.stderr
    assert tree_hashes(linux_home) == before
    h = run("install", "--from", pack, "--cpuinfo", HASWELL, "--home", linux_home, "--json")  # Haswell has both
    assert h.returncode == 0, h.stdout + h.stderr
    assert json.loads(h.stdout)["check"]["findings"][3]["severity"] == "ok"


def test_isa_audit_passes_avx_only_code(linux_home: Path, tmp_path: Path) -> None:
    lib = build_lib(tmp_path, AVX_SRC, ["-mavx"], "ggml_avx")
    pack = linux_pack(tmp_path, payload=lib.read_bytes())
    p = run("install", "--from", pack, "--cpuinfo", IVY, "--home", linux_home, "--select")
    assert p.returncode == 0, p.stdout + p.stderr
    assert "ok [isa-audit] 1 llama.cpp binary audited" in p.stdout and "Selected it" in p.stdout


def test_isa_audit_refuses_avx2_pe_dll_for_ivy_bridge(win_home: Path, tmp_path: Path) -> None:
    dll = compile_lib(tmp_path / "ggml_cpu_avx2.dll", AVX2_SRC, ("-mavx2", "-mfma"), "pe")  # real PE (mingw-w64)
    pack = win_pack(tmp_path, payload=dll.read_bytes())
    before = tree_hashes(win_home)
    p = run("install", "--from", pack, "--cpuinfo", IVY, "--home", win_home)
    refused(p, "isa-audit", "ggml-cpu.dll uses AVX2, FMA instructions")
    assert tree_hashes(win_home) == before
    avx_dll = compile_lib(tmp_path / "ggml_cpu_avx.dll", AVX_SRC, ("-mavx",), "pe")
    good = win_pack(tmp_path / "g", payload=avx_dll.read_bytes())
    ok = run("install", "--from", good, "--cpuinfo", IVY, "--home", win_home)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "ok [isa-audit]" in ok.stdout


# --- engine version --------------------------------------------------------------------------------------------


def test_pack_for_another_engine_version_refused(tmp_path: Path) -> None:
    spec = template("linux-cpu-2.14.0")
    newer = dataclasses.replace(spec, manifest=spec.manifest.replace(b'"2.14.0"', b'"2.16.0"'))
    home = make_home(tmp_path, backends=(newer,))
    pack = linux_pack(tmp_path)
    write_provenance(pack, {"template": "llama.cpp-linux-x86_64-avx2@2.14.0", "variant": "cpu-avx1"})
    before = tree_hashes(home)
    p = run("install", "--from", pack, "--cpuinfo", IVY, "--home", home)
    refused(p, "engine-version", "made from LM Studio engine 2.14.0 (its template "
            "llama.cpp-linux-x86_64-avx2@2.14.0), but this home has engine(s) 2.16.0")
    assert tree_hashes(home) == before


def test_lmstudio_older_than_the_pack_needs_refused(linux_home: Path, tmp_path: Path) -> None:
    before = tree_hashes(linux_home)
    p = run("install", "--from", linux_pack(tmp_path), "--cpuinfo", IVY, "--app-version", "0.3.31",
            "--home", linux_home)
    refused(p, "engine-version", "needs LM Studio 0.4.0+15 or newer")
    assert tree_hashes(linux_home) == before


# --- the folder's own smoke test -----------------------------------------------------------------------------------


def crashing_program(folder: Path) -> None:
    """STOOD IN: the folder's test program dies the way an illegal instruction kills it (exit 132)."""
    exe = folder / "llama-simple"
    exe.write_text("#!/bin/sh\necho 'Illegal instruction (core dumped)' >&2\nexit 132\n")
    exe.chmod(0o755)


def test_folder_whose_smoke_test_just_crashed_refused(linux_home: Path, tmp_path: Path) -> None:
    pack = linux_pack(tmp_path)
    write_provenance(pack, {"template": "llama.cpp-linux-x86_64-avx2@2.14.0", "variant": "cpu-avx1"})
    crashing_program(pack)
    s = run("smoke", pack, "--program", "llama-simple", "--json")  # the stand-in program, not our host program
    assert s.returncode == 1 and json.loads(s.stdout)["sigill"] is True
    assert json.loads(s.stdout)["recorded_in_provenance"] is True
    rec = (read_provenance(pack) or {})["smoke"]
    assert rec["ok"] is False and "illegal instruction" in rec["reason"] and rec["cpu"] == "this computer"
    before = tree_hashes(linux_home)
    p = run("install", "--from", pack, "--cpuinfo", IVY, "--select", "--home", linux_home)
    refused(p, "smoke", "its own smoke test failed on this computer")
    assert "illegal instruction (SIGILL)" in p.stderr and "lms-unlocked smoke" in p.stderr
    assert tree_hashes(linux_home) == before


# --- --force, --dry-run ------------------------------------------------------------------------------------------


def test_force_installs_keeps_the_reasons_and_never_selects(linux_home: Path, tmp_path: Path) -> None:
    pack = linux_pack(tmp_path)
    prefs_before = (linux_home / PREFS).read_bytes()
    p = run("install", "--from", pack, "--cpuinfo", CORE2, "--select", "--force", "--home", linux_home, "--json")
    assert p.returncode == 0, p.stderr
    out = json.loads(p.stdout)
    assert out["installed"] == LINUX_OURS and out["forced"] is True and out["selected"] is False
    assert "!!! installed although the install check refused it (--force): the manifest needs AVX" in p.stderr
    assert "NOT selected" in p.stderr
    assert (linux_home / PREFS).read_bytes() == prefs_before
    prov = read_provenance(linux_home / "extensions" / "backends" / LINUX_OURS.replace("@", "-")) or {}
    rec = prov["install_check"]
    assert rec["forced"] is True and len(rec["refusals_overridden"]) == 1
    assert "needs AVX" in rec["refusals_overridden"][0]
    assert rec["target"]["cpu_isa"] == ["SSE3", "SSSE3", "SSE4.1"] and rec["target"]["platform"] == "linux"
    assert {f["check"] for f in rec["findings"]} >= {"platform", "architecture", "ise", "isa-audit", "smoke"}


def test_a_passing_install_keeps_the_check_in_provenance(linux_home: Path, tmp_path: Path) -> None:
    p = run("install", "--from", linux_pack(tmp_path), "--cpuinfo", IVY, "--home", linux_home)
    assert p.returncode == 0, p.stderr
    prov = read_provenance(linux_home / "extensions" / "backends" / LINUX_OURS.replace("@", "-")) or {}
    assert prov["install_check"]["forced"] is False and prov["install_check"]["refusals_overridden"] == []


def test_dry_run_shows_the_refusal_and_exits_2(linux_home: Path, tmp_path: Path) -> None:
    pack = win_pack(tmp_path)
    before = tree_hashes(linux_home)
    p = run("install", "--from", pack, "--cpuinfo", IVY, "--home", linux_home, "--dry-run")
    assert p.returncode == 2, p.stdout + p.stderr
    assert "REFUSED [platform]" in p.stdout and "the install is REFUSED" in p.stdout
    forced = run("install", "--from", pack, "--cpuinfo", IVY, "--home", linux_home, "--dry-run", "--force")
    assert forced.returncode == 0 and "forced (--force): it will not be selected" in forced.stdout
    assert tree_hashes(linux_home) == before
    assert installed(linux_home) == ["llama.cpp-linux-x86_64-avx2-2.14.0", "llama.cpp-linux-x86_64-vulkan-avx2-2.14.0"]


# --- LM Studio's real 1.48.0 Windows folders (../shared/lmstudio-real, never in the repository) --------------------


@pytest.mark.lmstudio_real
def test_real_avx_folder_fits_ivy_bridge_and_is_refused_for_westmere(lmstudio_real: Path, tmp_path: Path) -> None:
    """theIvanR's real AVX pack: LM Studio's llama.dll/mtmd.dll use AVX2 only behind the MSVC runtime's CPU
    check, so Ivy Bridge passes; Westmere (no AVX) is refused for the manifest and for ggml-cpu.dll's own code."""
    home = make_home(tmp_path, backends=("win-cpu-1.48.0",), vendor=())
    archive = lmstudio_real / "llama.cpp-win-x86_64-avx-1.48.0.7z"
    before = tree_hashes(home)
    w = run("install", "--from", archive, "--cpuinfo", HWDATA / "cpuinfo" / "westmere-arrandale-i5-m560.txt",
            "--home", home, "--json")
    out = refused_json(w, {"ise", "isa-audit"})
    audit = next(f for f in out["check"]["findings"] if f["check"] == "isa-audit")  # type: ignore[index]
    assert "ggml-cpu.dll uses AVX instructions outside any CPU check" in audit["message"]
    assert tree_hashes(home) == before
    ok = run("install", "--from", archive, "--cpuinfo", IVY, "--home", home)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "lacks outside a CPU check (what it lacks appears only behind CPU checks" in ok.stdout
    assert "llama.dll: AVX2" in ok.stdout and "all behind a CPU check" in ok.stdout
    assert "Installed llama.cpp-win-x86_64-avx@1.48.0" in ok.stdout


# --- theIvanR's repository zip (QA of #12) -------------------------------------------------------------------------


def _repo_zip(tmp_path: Path, keys: tuple[str, ...]) -> tuple[Path, Path]:
    """The repository's zip as GitHub serves it: lmstudio-unlocked-backend-main/<pack>/ beside a README."""
    import zipfile

    from tests.lmstudio_homes import write_backend

    top = tmp_path / "repo" / "lmstudio-unlocked-backend-main"
    for k in keys:
        write_backend(top / template(k).folder_name, k)
    (top / "README.md").write_text("# lmstudio-unlocked-backend\n")
    z = tmp_path / "lmstudio-unlocked-backend-main.zip"
    with zipfile.ZipFile(z, "w") as zf:
        for p in sorted(top.rglob("*")):
            zf.write(p, p.relative_to(top.parent).as_posix())
    return z, top


def test_repository_zip_with_two_packs_names_them_and_writes_nothing(win_home: Path, tmp_path: Path) -> None:
    z, top = _repo_zip(tmp_path, ("win-avx-1.48.0", "win-noavx-1.48.0"))
    before = tree_hashes(win_home)
    for src in (z, top):
        p = run("install", "--from", src, "--cpuinfo", IVY, "--home", win_home)
        no_traceback(p)
        assert p.returncode == 2, p.stderr
        assert "holds 2 backends" in p.stderr and "llama.cpp-win-x86_64-avx@1.48.0" in p.stderr
        assert "not an LM Studio backend" not in p.stderr
    assert str(top / "llama.cpp-win-x86_64-avx-1.48.0") in p.stderr  # the folder to give, for a folder
    assert tree_hashes(win_home, exclude=(".lms-unlocked",)) == {
        k: v for k, v in before.items() if not k.startswith(".lms-unlocked")
    }


def test_repository_zip_with_one_pack_two_levels_down_installs(win_home: Path, tmp_path: Path) -> None:
    z, _top = _repo_zip(tmp_path, ("win-avx-1.48.0",))
    p = run("install", "--from", z, "--cpuinfo", IVY, "--home", win_home)
    assert p.returncode == 0, p.stderr
    assert "llama.cpp-win-x86_64-avx-1.48.0" in installed(win_home)
