"""The smoke test's host program and plan: exact argv (pure), and the real program compiled here failing clearly
on a folder without a usable llama library. (Runs against real llama.cpp builds are in test_real_build.py and
test_windows_build.py.)"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from app.core.builder.estimate import estimate_build
from app.core.builder.hostprog import (
    HostProgramError,
    ensure_host_program,
    folder_target,
    host_source,
    is_inside,
    llama_library,
    plan_host_program,
)
from app.core.builder.plan import plan_build
from app.core.builder.prereq import Tools
from app.core.builder.smoke import SmokeSetupError, plan_smoke, require_qemu, run_smoke
from app.core.builder.source import SourceTree
from app.core.builder.toolchain import choose_toolchain
from tests.core.builder.realbuild import report_for

SRC = SourceTree(Path("/src/llama.cpp"), "b6275", "e288693abc", "test")


def test_header_and_opaque_compile_plans(tmp_path: Path) -> None:
    inc = tmp_path / "include"
    inc.mkdir()
    (inc / "llama.h").write_text("/* v1 */\n")
    h = plan_host_program(tmp_path / "c", target="linux", compiler=("gcc",), include_dirs=(inc,))
    assert h.mode == "header" and h.exe.name == "lms_smoke" and h.exe.parent.parent == tmp_path / "c"
    assert h.compile.argv == ("gcc", "-O1", "-std=gnu11", "-o", str(h.exe), str(host_source()), f"-I{inc}", "-ldl")
    w = plan_host_program(tmp_path / "c", target="win", compiler=("zig", "cc", "-target", "x86_64-windows-gnu"))
    assert w.mode == "opaque" and w.exe.name == "lms_smoke.exe"
    assert w.compile.argv[-2:] == ("-DLMS_SMOKE_OPAQUE", "-static")
    # Another header (another tag) is another program.
    (inc / "llama.h").write_text("/* v2 */\n")
    assert plan_host_program(tmp_path / "c", target="linux", compiler=("gcc",), include_dirs=(inc,)).exe != h.exe


def test_smoke_plans_for_host_qemu_and_wine(tmp_path: Path) -> None:
    lib = tmp_path / "llama.dll"
    p = plan_smoke(
        tmp_path,
        Path("/m/tiny.gguf"),
        kind="host",
        program="/c/lms_smoke.exe",
        library=lib,
        target="win",
        wine="/usr/lib/wine/wine64",
        wine_prefix=Path("/c/wp"),
    )
    assert p.process.argv == (
        "/usr/lib/wine/wine64",
        "/c/lms_smoke.exe",
        "--lib",
        "Z:" + str(lib).replace("/", "\\"),
        "-m",
        "Z:\\m\\tiny.gguf",
        "-n",
        "16",
        "Once upon a time",
    )
    assert p.process.env == {"WINEDEBUG": "-all", "WINEPREFIX": "/c/wp"} and p.runner == "wine"
    q = plan_smoke(
        tmp_path,
        Path("/m/t.gguf"),
        kind="host",
        program="/c/lms_smoke",
        library=tmp_path / "libllama.so",
        qemu_cpu="IvyBridge",
    )
    assert q.process.argv[:3] == ("qemu-x86_64", "-cpu", "IvyBridge,-x2apic,-tsc-deadline")
    assert q.runner == "qemu-x86_64 -cpu IvyBridge"
    with pytest.raises(SmokeSetupError, match="qemu cannot check"):
        plan_smoke(tmp_path, Path("/m"), kind="host", program="x", library=lib, target="win", qemu_cpu="IvyBridge")
    with pytest.raises(SmokeSetupError, match="needs qemu-nope, which is not installed"):
        require_qemu("SandyBridge", qemu="qemu-nope")
    require_qemu(None, qemu="qemu-nope")  # not asked: fine


def test_library_lookup_and_paths(tmp_path: Path) -> None:
    assert folder_target(tmp_path) == "linux"
    with pytest.raises(HostProgramError, match=r"no libllama\.so"):
        llama_library(tmp_path, "linux")
    for n in ("libllama.so.0.5.0", "libllama.so.0", "libllama.so"):
        (tmp_path / n).write_bytes(b"")
    assert llama_library(tmp_path, "linux").name == "libllama.so"
    (tmp_path / "llama.dll").write_bytes(b"")
    assert folder_target(tmp_path) == "win" and llama_library(tmp_path, "win").name == "llama.dll"
    assert is_inside(str(tmp_path / "x.so"), tmp_path) and not is_inside("/usr/lib/libggml.so", tmp_path)
    assert is_inside("Z:" + str(tmp_path / "ggml-base.dll").replace("/", "\\"), tmp_path)


@pytest.mark.skipif(shutil.which("gcc") is None, reason="gcc missing")
def test_real_host_program_fails_clearly_without_a_usable_library(tmp_path: Path) -> None:
    exe = ensure_host_program(plan_host_program(tmp_path / "c", target="linux", compiler=("gcc",)))
    r = subprocess.run([str(exe), "--lib", str(tmp_path / "nope.so"), "-m", "x"], capture_output=True, text=True)
    assert r.returncode == 3 and "cannot load" in r.stderr
    stub = tmp_path / "libllama.so"
    subprocess.run(["gcc", "-shared", "-fPIC", "-o", str(stub), "-x", "c", "-"], input="int x;", text=True, check=True)
    r = subprocess.run([str(exe), "--lib", str(stub), "-m", "x"], capture_output=True, text=True)
    assert r.returncode == 3 and "does not export llama_backend_init" in r.stderr
    res = run_smoke(plan_smoke(tmp_path, Path("x"), kind="host", program=str(exe), library=stub), timeout=30)
    assert not res.ok and res.reason == "exited with code 3"


def test_estimate_is_a_range_from_steps_and_cores(tmp_path: Path) -> None:
    p = plan_build(report_for("ivybridge"), "cpu-avx1", SRC, build_root=tmp_path, jobs=2)
    e = estimate_build(p, cores=2)
    assert e.steps == 32 and 20 < e.low_seconds < e.high_seconds < 300, e
    assert "ggml-base, ggml-cpu" in e.basis and e.words().endswith(("s", "min"))
    e16 = estimate_build(plan_build(report_for("ivybridge"), "cpu-avx1", SRC, build_root=tmp_path, jobs=16), cores=16)
    assert e16.high_seconds < e.high_seconds
    # A first zig build adds its C runtime; a full template-style build with libllama costs more.
    chain = choose_toolchain(
        Tools(cmake="/usr/bin/cmake", ninja="/usr/bin/ninja"), target_os="win", cache_root=tmp_path, system="linux"
    )
    pw = plan_build(
        report_for("ivybridge"),
        "cpu-avx1",
        SRC,
        build_root=tmp_path,
        jobs=2,
        target_os="win",
        platform="linux",
        toolchain=chain,
        zig_windows_header="/r/h.h",
    )
    ew = estimate_build(pw, cores=2)
    assert ew.low_seconds > e.low_seconds and "zig compiling its Windows C runtime once" in ew.basis
    assert "-DCMAKE_SYSTEM_PROCESSOR=x86_64" in pw.cmake_defines and "-DGGML_OPENMP=OFF" in pw.cmake_defines
    assert "-DCMAKE_C_FLAGS=-include /r/h.h" in pw.cmake_defines
    assert pw.build.env["ZIG_GLOBAL_CACHE_DIR"] == str(tmp_path / "zig-cache")


def test_offline_source_download_says_so_in_plain_words(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A closed loopback port stands in for a machine without network: connection refused on every attempt."""
    import socket

    from app.core.builder.source import ARCHIVE_URL_ENV, SourceError, obtain_archive

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv(ARCHIVE_URL_ENV, f"http://127.0.0.1:{port}/{{tag}}.tar.gz")
    with pytest.raises(SourceError) as ei:
        obtain_archive("b6275", cache_root=tmp_path)
    e = ei.value
    assert e.message.startswith("Could not download the llama.cpp source for b6275: this computer cannot reach")
    assert "offline" in e.message and "--source" in e.hint
    assert "Connection" not in e.message and "Pool" not in e.message  # the library's words stay in the details
    assert "refused" in e.details.lower() or "connect" in e.details.lower()
