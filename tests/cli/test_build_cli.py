"""`lms-unlocked build / audit / smoke` through the real console script, in a subprocess.

The full build uses the real llama.cpp sdist (offline `--source`), the real toolchain and qemu; its build directory
lives in the persistent test cache, so a second run only re-checks it.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from app.core.builder.smoke import have_qemu
from tests.conftest import HWDATA, REPO
from tests.core.builder import realbuild as rb

SCRIPT = Path(sys.executable).parent / "lms-unlocked"
IVY = str(HWDATA / "cpuinfo" / "ivybridge-i5-3570k.txt")
NEHALEM = str(HWDATA / "cpuinfo" / "nehalem-bloomfield-i7-920.txt")


def run(
    *args: str, tmp_path: Path, cache: Path | None = None, timeout: int = 600, path: str | None = None
) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "LMS_UNLOCKED_LOG_DIR": str(tmp_path / "log"),
        "LMS_UNLOCKED_DATA_DIR": str(tmp_path / "data"),
        "LMS_UNLOCKED_CACHE_DIR": str(cache or tmp_path / "cache"),
    }
    if path is not None:
        env["PATH"] = path
    return subprocess.run(
        [str(SCRIPT), *args], capture_output=True, text=True, cwd=REPO, env=env, timeout=timeout, check=False
    )


@pytest.fixture(scope="module")
def template_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    res = rb.build(rb.template_plan())
    return rb.make_template_folder(tmp_path_factory.mktemp("t") / "tmpl", res.bin_dir)


def test_plan_only_json_is_exact_and_fetches_nothing(template_dir: Path, tmp_path: Path) -> None:
    p = run(
        "build",
        "--variant",
        "cpu-avx1",
        "--template-dir",
        str(template_dir),
        "--cpuinfo",
        IVY,
        "--plan-only",
        "--json",
        "--jobs",
        "2",
        tmp_path=tmp_path,
    )
    assert p.returncode == 0, p.stderr
    d = json.loads(p.stdout)
    assert d["ok"] is True
    plan = d["plan"]
    assert plan["template"] == "llama.cpp-linux-x86_64-avx2@1.48.0"
    assert plan["llama_cpp"]["commit"] == rb.LLAMA_COMMIT
    assert plan["isa"] == ["SSE3", "SSSE3", "SSE4.1", "SSE4.2", "AVX", "F16C"] and plan["manifest_ise"] == ["AVX"]
    cfg = plan["configure"]
    for flag in (
        "-DGGML_NATIVE=OFF",
        "-DGGML_AVX=ON",
        "-DGGML_F16C=ON",
        "-DGGML_AVX2=OFF",
        "-DGGML_BMI2=OFF",
        "-DGGML_FMA=OFF",
        "-DBUILD_SHARED_LIBS=ON",
        "-DLLAMA_BUILD_COMMIT=0c1e57098",
    ):
        assert flag in cfg
    assert plan["build"][-3:] == ["--target", "ggml-base", "ggml-cpu"]  # only what ships
    assert "-j" in plan["build"] and plan["build"][plan["build"].index("-j") + 1] == "2"
    # One folder per target ISA: builds for different CPUs don't collide.
    assert plan["out_dir"].endswith("llama.cpp-linux-x86_64-avx1-unlocked-1.48.0-sse4.2-avx-f16c")
    assert not (tmp_path / "cache" / "llama-src").exists()  # plan only: nothing downloaded or extracted


def test_plan_only_human(template_dir: Path, tmp_path: Path) -> None:
    p = run(
        "build",
        "--variant",
        "noavx",
        "--template-dir",
        str(template_dir),
        "--cpuinfo",
        NEHALEM,
        "--plan-only",
        tmp_path=tmp_path,
    )
    assert p.returncode == 0, p.stderr
    assert "configure:  " in p.stdout and "-DGGML_SSE42=ON" in p.stdout and "-DGGML_AVX=OFF" in p.stdout


def test_tag_mismatch_is_refused_unless_forced(template_dir: Path, tmp_path: Path) -> None:
    tmpl = tmp_path / "tagged"
    shutil.copytree(template_dir, tmpl, symlinks=True)
    dd = json.loads((tmpl / "display-data.json").read_text())
    for n in dd[0][1]["releaseNotes"]:
        if n["version"] == "1.48.0":
            n["releaseNotes"] = "- llama.cpp release b6275 (commit e288693)\n"
    (tmpl / "display-data.json").write_text(json.dumps(dd))
    p = run(
        "build",
        "--variant",
        "cpu-avx1",
        "--template-dir",
        str(tmpl),
        "--cpuinfo",
        IVY,
        "--tag",
        "b6300",
        "--plan-only",
        tmp_path=tmp_path,
    )
    assert p.returncode == 2
    assert "differs from the llama.cpp build" in p.stderr and "undefined symbol" in p.stderr
    p = run(
        "build",
        "--variant",
        "cpu-avx1",
        "--template-dir",
        str(tmpl),
        "--cpuinfo",
        IVY,
        "--tag",
        "b6300",
        "--plan-only",
        "--force",
        "--json",
        tmp_path=tmp_path,
    )
    assert p.returncode == 0, p.stderr
    d = json.loads(p.stdout)["plan"]
    assert d["llama_cpp"]["tag"] == "b6300" and any("--force" in w for w in d["warnings"])
    assert "-DLLAMA_BUILD_NUMBER=6300" in d["configure"]
    # Without --tag the template's own tag is used.
    p = run(
        "build",
        "--variant",
        "cpu-avx1",
        "--template-dir",
        str(tmpl),
        "--cpuinfo",
        IVY,
        "--plan-only",
        "--json",
        tmp_path=tmp_path,
    )
    d = json.loads(p.stdout)["plan"]
    assert d["llama_cpp"] == {"tag": "b6275", "commit": "e288693", "source": d["llama_cpp"]["source"], "patches": []}


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--variant", "cpu-avx1", "--jobs", "0"], "--jobs must be at least 1"),
        (["--variant", "cpu-avx1", "--cpuinfo", NEHALEM], "needs AVX"),
        (["--variant", "bogus"], "Unknown build variant"),
    ],
)
def test_bad_input_exit_2(template_dir: Path, tmp_path: Path, args: list[str], needle: str) -> None:
    p = run("build", "--template-dir", str(template_dir), "--plan-only", *args, tmp_path=tmp_path)
    assert p.returncode == 2, (p.stdout, p.stderr)
    assert needle in p.stderr and "Traceback" not in p.stderr


def test_missing_template_dir(tmp_path: Path) -> None:
    p = run(
        "build", "--variant", "cpu-avx1", "--template-dir", str(tmp_path / "nope"), "--plan-only", tmp_path=tmp_path
    )
    assert p.returncode == 2 and "not a backend folder" in p.stderr


def test_audit_cli(template_dir: Path, tmp_path: Path) -> None:
    p = run("audit", str(template_dir), "--cpuinfo", IVY, tmp_path=tmp_path)
    assert p.returncode == 1
    assert "VIOLATION: libggml-cpu.so.0.25.3 uses" in p.stdout and "AVX2" in p.stdout
    p = run("audit", str(template_dir), "--json", tmp_path=tmp_path)
    assert p.returncode == 0
    d = json.loads(p.stdout)
    cpu = next(b for b in d["binaries"] if b["path"] == "libggml-cpu.so.0.25.3")
    assert cpu["counts"]["AVX2"] > 1000 and d["violations"] == []
    p = run("audit", str(tmp_path / "missing"), tmp_path=tmp_path)
    assert p.returncode == 2


@pytest.mark.slow
@pytest.mark.skipif(not have_qemu(), reason="qemu-user missing")
def test_full_build_offline_source_then_smoke(template_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    p = run(
        "build",
        "--variant",
        "cpu-avx1",
        "--template-dir",
        str(template_dir),
        "--cpuinfo",
        IVY,
        "--source",
        str(rb.sdist_path()),
        "--qemu-cpu",
        "IvyBridge",
        "--out",
        str(out),
        "--jobs",
        "2",
        "--json",
        tmp_path=tmp_path,
        cache=rb.cache_root(),
        timeout=900,
    )
    assert p.returncode == 0, p.stderr[-3000:]
    d = json.loads(p.stdout)
    folder = Path(d["folder"])
    assert folder.parent == out and d["smoke"]["ok"] and d["smoke"]["tokens"] == 16
    assert d["replaced"] == ["libggml-base.so.0.25.3", "libggml-cpu.so.0.25.3"]
    # --json streams progress events (NDJSON) on stderr; the result and provenance record how it was proven.
    events = [json.loads(ln) for ln in p.stderr.splitlines() if ln.startswith("{")]
    assert {"event": "step", "step": "smoke test"} in events and events[-1] == {"event": "done", "ok": True}
    plan_ev = next(e for e in events if e["event"] == "plan")  # before anything runs: estimate and downloads
    assert 0 < plan_ev["estimate"]["low_seconds"] < plan_ev["estimate"]["high_seconds"] and plan_ev["downloads"] == []
    # (Ninja's [n/total] progress events appear on a cold build only; a warm cache has nothing to build.)
    assert all(e["total"] >= e["done"] > 0 for e in events if e["event"] == "progress")
    assert d["smoke"]["runner"] == "qemu-x86_64 -cpu IvyBridge" and d["qemu_cpu"] == "IvyBridge"
    assert any("/libllama.so" in x and x.startswith(str(folder)) for x in d["smoke"]["loaded"])
    prov = json.loads((folder / "unlocked-install.json").read_text())
    assert prov["smoke"]["ok"] and prov["smoke"]["qemu_cpu"] == "IvyBridge" and prov["audit"] == "passed"
    assert prov["target_cpu"]["isa"] == d["plan"]["isa"] and "Core i5-3570K" in prov["target_cpu"]["brand"]
    m = json.loads((folder / "backend-manifest.json").read_text())
    assert m["cpu"]["instruction_set_extensions"] == ["AVX"] and m["name"].endswith("-unlocked")
    assert not (folder / "llama-simple.tmp").exists()
    # The smoke command proves the same on its own, and the template's AVX2 libraries crash where it runs.
    s = run("smoke", str(folder), "--qemu-cpu", "IvyBridge", "--json", tmp_path=tmp_path)
    assert s.returncode == 0 and json.loads(s.stdout)["tokens"] == 16
    s = run("smoke", str(template_dir), "--qemu-cpu", "IvyBridge", "--json", tmp_path=tmp_path)
    assert s.returncode == 1 and json.loads(s.stdout)["sigill"] is True
    # Re-running the same build replaces our own previous output folder; the human output ends with what was
    # (not) proven, and a build from a source archive shows no git noise.
    p2 = run(
        "build",
        "--variant",
        "cpu-avx1",
        "--template-dir",
        str(template_dir),
        "--cpuinfo",
        IVY,
        "--source",
        str(rb.sdist_path()),
        "--no-smoke",
        "--out",
        str(out),
        "--jobs",
        "2",
        tmp_path=tmp_path,
        cache=rb.cache_root(),
        timeout=900,
    )
    assert p2.returncode == 0, p2.stderr[-2000:]
    assert p2.stdout.startswith("== estimate: ") and " cores\n" in p2.stdout.split("\n", 1)[0] + "\n"
    tail = p2.stdout.splitlines()[-5:]
    assert tail[0].startswith("built llama.cpp-linux-x86_64-avx1-unlocked for linux (tailored: ")
    assert tail[1] == "smoke test: skipped (--no-smoke): the folder is NOT proven to run"
    assert tail[2].startswith("ISA audit: passed") and tail[3].startswith("time: ")
    assert tail[4] == f"folder: {folder}"
    assert "not a git repository" not in p2.stdout + p2.stderr


def test_qemu_cpu_without_qemu_is_an_error_not_a_native_run(template_dir: Path, tmp_path: Path) -> None:
    bare = tmp_path / "bin"
    bare.mkdir()
    for tool in ("cmake", "ninja", "cc", "c++", "gcc", "g++", "patch"):
        src = shutil.which(tool)
        if src:
            (bare / tool).symlink_to(src)
    p = run(
        "build",
        "--variant",
        "cpu-avx1",
        "--template-dir",
        str(template_dir),
        "--cpuinfo",
        IVY,
        "--source",
        str(rb.sdist_path()),
        "--qemu-cpu",
        "SandyBridge",
        "--out",
        str(tmp_path / "o"),
        tmp_path=tmp_path,
        cache=rb.cache_root(),
        path=str(bare),
    )
    assert p.returncode == 2, p.stderr
    assert "--qemu-cpu SandyBridge needs qemu-x86_64, which is not installed" in p.stderr
    assert not (tmp_path / "o").exists()  # refused before anything was built
    s = run("smoke", str(template_dir), "--qemu-cpu", "SandyBridge", tmp_path=tmp_path, path=str(bare))
    assert s.returncode == 2 and "not installed" in s.stderr


def test_without_template_the_cli_picks_it_as_the_wizard_does(template_dir: Path, tmp_path: Path) -> None:
    """No --template: the newest installed official backend of the variant's framework (the core's choice)."""
    from tests.lmstudio_homes import make_home

    home = make_home(tmp_path, backends=())
    shutil.copytree(template_dir, home / "extensions/backends/llama.cpp-linux-x86_64-avx2-1.48.0", symlinks=True)
    p = run(
        "build",
        "--variant",
        "cpu-avx1",
        "--home",
        str(home),
        "--cpuinfo",
        IVY,
        "--plan-only",
        "--json",
        tmp_path=tmp_path,
    )
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout)["plan"]["template"] == "llama.cpp-linux-x86_64-avx2@1.48.0"
    p = run(
        "build", "--variant", "vulkan-avx1", "--home", str(home), "--cpuinfo", IVY, "--plan-only", tmp_path=tmp_path
    )
    assert p.returncode == 1 and "No official vulkan backend of LM Studio is installed to build into" in p.stderr
    assert "Traceback" not in p.stderr


@pytest.mark.slow
def test_build_from_installed_template_and_install(template_dir: Path, tmp_path: Path) -> None:
    from tests.lmstudio_homes import make_home

    home = make_home(tmp_path, backends=())
    shutil.copytree(template_dir, home / "extensions/backends/llama.cpp-linux-x86_64-avx2-1.48.0", symlinks=True)
    p = run(
        "build",
        "--variant",
        "cpu-avx1",
        "--template",
        "llama.cpp-linux-x86_64-avx2@1.48.0",
        "--home",
        str(home),
        "--cpuinfo",
        IVY,
        "--source",
        str(rb.sdist_path()),
        "--no-smoke",
        "--install",
        "--jobs",
        "2",
        "--json",
        tmp_path=tmp_path,
        cache=rb.cache_root(),
        timeout=900,
    )
    assert p.returncode == 0, p.stderr[-3000:]
    d = json.loads(p.stdout)
    installed = Path(d["installed"])
    assert installed == home / "extensions/backends/llama.cpp-linux-x86_64-avx1-unlocked-1.48.0"
    assert json.loads((installed / "backend-manifest.json").read_text())["cpu"]["instruction_set_extensions"] == ["AVX"]
    assert (installed / "unlocked-install.json").is_file()
    # The official template is untouched.
    tmpl = home / "extensions/backends/llama.cpp-linux-x86_64-avx2-1.48.0"
    assert json.loads((tmpl / "backend-manifest.json").read_text())["name"] == "llama.cpp-linux-x86_64-avx2"


def test_plan_only_uses_the_cached_source_tree(template_dir: Path, tmp_path: Path) -> None:
    tree = rb.source_tree()  # prepared (cached) by the product code
    p = run(
        "build",
        "--variant",
        "cpu-avx1",
        "--template-dir",
        str(template_dir),
        "--cpuinfo",
        IVY,
        "--plan-only",
        "--json",
        "--source",
        str(rb.sdist_path()),
        tmp_path=tmp_path,
        cache=rb.cache_root(),
    )
    assert p.returncode == 0, p.stderr
    plan = json.loads(p.stdout)["plan"]
    assert plan["llama_cpp"]["source"] == str(tree.root)
    assert plan["configure"][2] == str(tree.root)


def test_tag_download_with_progress_then_a_configure_that_cannot_be_verified(
    template_dir: Path, tmp_path: Path
) -> None:
    """The tag archive comes from a local mirror (real HTTP); it is not really llama.cpp, so CMake configures it but
    ignores every ggml option: the build must stop after configure with a clear error, not build blind."""
    from tests.core.builder.test_source_patches import tiny_tree
    from tests.httpserver import LocalHTTPServer

    with LocalHTTPServer() as srv:
        srv.add("/m/b4242.tar.gz", tiny_tree("llama.cpp-b4242"))
        os.environ["LMS_UNLOCKED_LLAMA_ARCHIVE_URL"] = srv.url("/m/{tag}.tar.gz")
        try:
            p = run(
                "build",
                "--variant",
                "cpu-avx1",
                "--template-dir",
                str(template_dir),
                "--cpuinfo",
                IVY,
                "--tag",
                "b4242",
                "--force",
                "--no-smoke",
                "--out",
                str(tmp_path / "out"),
                tmp_path=tmp_path,
            )
        finally:
            del os.environ["LMS_UNLOCKED_LLAMA_ARCHIVE_URL"]
    assert p.returncode == 1, (p.stdout[-2000:], p.stderr[-2000:])
    assert "downloading b4242.tar.gz: " in p.stderr
    assert "CMake ignored some of our -D options" in p.stderr and "GGML_AVX" in p.stderr
    assert "Traceback" not in p.stderr
    assert not (tmp_path / "out").exists()
    index = json.loads((tmp_path / "cache" / "llama-src" / "index.json").read_text())
    assert index["archives"]["b4242"]["url"].endswith("/m/b4242.tar.gz")


def test_plan_only_shows_toolchain_downloads_dirs_and_estimate(template_dir: Path, tmp_path: Path) -> None:
    p = run(
        "build",
        "--variant",
        "cpu-avx1",
        "--template-dir",
        str(template_dir),
        "--cpuinfo",
        IVY,
        "--plan-only",
        "--portable-toolchain",
        "always",
        tmp_path=tmp_path,
    )
    assert p.returncode == 0, p.stderr
    out = p.stdout
    assert "download:   cmake 4.4.5 (portable toolchain) (30.2 MB) from https://files.pythonhosted.org/" in out
    assert "download:   ziglang 0.17.1 (portable toolchain) (101.1 MB)" in out
    assert "download:   llama.cpp source 0c1e57098 (size not known before the download starts" in out
    assert "toolchain:  C/C++ compiler: zig cc / zig c++ (asked for the portable toolchain)" in out
    assert f"build dir:  {tmp_path / 'cache' / 'builds'}" in out and "source:     " in out
    est = next(ln for ln in out.splitlines() if ln.startswith("estimate:"))
    assert " to " in est and "on " in est and "compile steps" in est
    j = run(
        "build",
        "--variant",
        "cpu-avx1",
        "--template-dir",
        str(template_dir),
        "--cpuinfo",
        IVY,
        "--plan-only",
        "--json",
        tmp_path=tmp_path,
    )
    plan = json.loads(j.stdout)["plan"]
    assert plan["toolchain"]["kind"] == "system" and plan["toolchain"]["download"] == []
    assert plan["estimate"]["low_seconds"] < plan["estimate"]["high_seconds"]
    assert plan["target_os"] == "linux" and plan["target_cpu"]["isa"] == plan["isa"]
