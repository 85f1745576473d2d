"""Portable toolchain: the real PyPI wheels of cmake/ninja/ziglang served from a loopback mirror; the choice of
toolchain from what a system has (Tools records stand in for machines without CMake/Ninja/compilers)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from app.core.builder.prereq import Tools
from app.core.builder.toolchain import (
    MIRROR_ENV,
    choose_toolchain,
    compiler_wrappers,
    fetch_portable,
    installed_exe,
    portable_status,
    remove_portable,
    wheel_for,
)
from app.core.fetch.errors import ChecksumMismatch
from tests.core.builder.toolwheels import real_wheel
from tests.httpserver import Fault, LocalHTTPServer

SYSTEM = Tools(cmake="/usr/bin/cmake", ninja="/usr/bin/ninja", cc="/usr/bin/cc", cxx="/usr/bin/c++")
BARE = Tools()


@pytest.fixture
def mirror(monkeypatch: pytest.MonkeyPatch) -> LocalHTTPServer:
    srv = LocalHTTPServer()
    srv.start()
    for name in ("cmake", "ninja"):
        w, p = real_wheel(name)
        srv.add("/wheels/" + w.file, p)
    monkeypatch.setenv(MIRROR_ENV, srv.url("/wheels"))
    yield srv  # type: ignore[misc]
    srv.stop()


def test_pins_are_complete_for_windows_linux_and_mac() -> None:
    for name in ("cmake", "ninja", "ziglang"):
        for key in ("linux-x86_64", "win-x86_64", "mac-x86_64", "mac-arm64"):
            w = wheel_for(name, key)
            assert len(w.sha256) == 64 and w.size > 100_000 and w.file.endswith(".whl")
            assert w.url.startswith("https://files.pythonhosted.org/") and w.url.endswith(w.file)
            assert w.exe_rel.endswith(".exe") == key.startswith("win")


def test_system_toolchain_is_used_when_present(tmp_path: Path) -> None:
    c = choose_toolchain(SYSTEM, target_os="linux", cache_root=tmp_path, system="linux")
    assert c.kind == "system" and c.ready and not c.need_fetch
    assert c.cmake == "/usr/bin/cmake" and c.cc == ("/usr/bin/cc",)
    assert any("found on this system" in r for r in c.reasons)


def test_nothing_installed_plans_the_portable_toolchain_with_sizes(tmp_path: Path) -> None:
    c = choose_toolchain(BARE, target_os="linux", cache_root=tmp_path, system="linux")
    assert c.kind == "portable" and not c.ready
    assert [w.package for w in c.need_fetch] == ["cmake", "ninja", "ziglang"]
    assert c.fetch_bytes() == sum(wheel_for(n, "linux-x86_64").size for n in ("cmake", "ninja", "ziglang"))
    # An explicit target: without it zig compiles for this machine's own CPU (AVX-512 here), which the ISA audit
    # refused in the portable-toolchain benchmark.
    assert c.cc[1:] == ("cc", "-target", "x86_64-linux-gnu") and c.cxx[1:] == ("c++", "-target", "x86_64-linux-gnu")
    assert c.cc[0].endswith("ziglang/zig")
    d = c.to_dict()
    assert {x["package"] for x in d["download"]} == {"cmake", "ninja", "ziglang"}
    assert all("none on this system" in r for r in d["reasons"])


def test_windows_target_on_linux_cross_compiles_with_zig(tmp_path: Path) -> None:
    c = choose_toolchain(SYSTEM, target_os="win", cache_root=tmp_path, system="linux")
    assert c.cross and c.cc[-2:] == ("-target", "x86_64-windows-gnu") and c.cmake == "/usr/bin/cmake"
    assert any("cross-compiling for Windows" in r for r in c.reasons)
    off = choose_toolchain(SYSTEM, target_os="win", cache_root=tmp_path, system="linux", portable="never")
    assert off.cc == () and any("needs zig" in r for r in off.reasons)


def test_fetch_verify_reuse_and_remove_real_wheels(tmp_path: Path, mirror: LocalHTTPServer) -> None:
    cache = tmp_path / "cache"
    res = fetch_portable(("cmake", "ninja"), cache, key="linux-x86_64")
    assert [r.reused for r in res] == [False, False]
    cmake = installed_exe(cache, wheel_for("cmake", "linux-x86_64"))
    ninja = installed_exe(cache, wheel_for("ninja", "linux-x86_64"))
    assert cmake is not None and ninja is not None
    out = subprocess.run([str(cmake), "--version"], capture_output=True, text=True, check=True).stdout
    assert "cmake version 4.4.5" in out
    ver = subprocess.run([str(ninja), "--version"], capture_output=True, text=True, check=True).stdout
    assert ver.startswith("1.13.2")  # "1.13.2.git.kitware.jobserver-pipe-1": Kitware's build
    n = len(mirror.requests)
    again = fetch_portable(("cmake", "ninja"), cache, key="linux-x86_64")
    assert [r.reused for r in again] == [True, True] and len(mirror.requests) == n  # nothing downloaded
    st = {s.wheel.package: s for s in portable_status(cache, "linux-x86_64")}
    assert st["cmake"].installed and st["cmake"].disk_bytes > 50e6 and not st["ziglang"].installed
    # The system toolchain choice now sees the fetched tools as ready.
    c = choose_toolchain(
        Tools(cc="/usr/bin/cc", cxx="/usr/bin/c++"), target_os="linux", cache_root=cache, system="linux"
    )
    assert c.ready and c.kind == "mixed" and c.cmake == str(cmake)
    removed = remove_portable(cache, ("cmake", "ninja"))
    assert any("cmake-4.4.5" in r for r in removed) and any(
        w.sha256 in r for r in removed for w in [wheel_for("cmake", "linux-x86_64")]
    )
    assert installed_exe(cache, wheel_for("cmake", "linux-x86_64")) is None
    assert not any((cache / "toolchain").iterdir())


def test_corrupted_download_installs_nothing(tmp_path: Path, mirror: LocalHTTPServer) -> None:
    w = wheel_for("ninja", "linux-x86_64")
    mirror.set_fault("/wheels/" + w.file, Fault(body=b"x" * w.size, times=None))
    with pytest.raises(ChecksumMismatch):
        fetch_portable(("ninja",), tmp_path, key="linux-x86_64")
    assert installed_exe(tmp_path, w) is None


def test_toolchain_cli_list_fetch_remove(
    tmp_path: Path, mirror: LocalHTTPServer, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from app.cli import main

    monkeypatch.setenv("LMS_UNLOCKED_CACHE_DIR", str(tmp_path / "c"))
    assert main(["toolchain", "list", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)["packages"]
    assert {p["package"]: p["installed"] for p in listed} == {"cmake": False, "ninja": False, "ziglang": False}
    assert main(["toolchain", "fetch", "ninja"]) == 0
    out = capsys.readouterr().out
    assert "downloading ninja-1.13.2" in out and "0.2 MB" in out and "ninja 1.13.2:" in out
    assert main(["toolchain", "list"]) == 0
    assert "ninja 1.13.2: installed" in capsys.readouterr().out
    assert main(["toolchain", "remove", "ninja"]) == 0
    assert "removed" in capsys.readouterr().out
    assert main(["toolchain", "fetch", "gcc"]) == 2


def test_zig_wrappers_are_written_for_cmake(tmp_path: Path) -> None:
    c = choose_toolchain(SYSTEM, target_os="win", cache_root=tmp_path, system="linux")
    w = compiler_wrappers(c, tmp_path / "w")
    assert set(w) == {"cc", "c++", "ar", "ranlib", "rc"}
    text = w["cc"].read_text()
    assert "'cc' '-target' 'x86_64-windows-gnu'" in text and w["cc"].stat().st_mode & 0o111
