"""Packaging a Windows (PE) backend from a 1.x-Windows-shaped template: real DLLs built with mingw-w64.

Stand-ins: LM Studio's `llm_engine.dll` is a small DLL importing from `ggml-cpu.dll`, the official `ggml-cpu.dll`
is compiled with AVX2 flags, our build's with AVX1 flags (tests/core/builder/conftest.py ISA_SOURCE). The manifest
and display-data are the real 1.48.0 Windows files (manifest turned back into the official avx2 one).
"""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from app.core.builder.abi import AbiError
from app.core.builder.package import IsaViolationError, package_backend
from app.core.builder.plan import plan_build
from app.core.builder.source import SourceTree
from app.core.lmstudio.backends import read_backend
from tests.conftest import BACKEND_EXAMPLES
from tests.core.builder.conftest import AVX1_FLAGS, AVX2_FLAGS
from tests.core.builder.realbuild import report_for

ENGINE = """
__declspec(dllimport) int base_add(int, int);
__declspec(dllimport) void {fn}(float *, const float *, const float *);
__declspec(dllexport) int engine(void) {{ float a[8] = {{0}}; {fn}(a, a, a); return base_add(1, 2); }}
"""


def mingw() -> str:
    cc = shutil.which("x86_64-w64-mingw32-gcc")
    if cc is None:
        pytest.skip("x86_64-w64-mingw32-gcc missing: scripts/test.sh installs gcc-mingw-w64-x86-64")
    return cc


def make_template(root: Path, compile_isa_lib: Callable[..., Path], engine_fn: str) -> Path:
    cc = mingw()
    t = root / "llama.cpp-win-x86_64-avx2-1.48.0"
    t.mkdir(parents=True)
    shutil.copy(compile_isa_lib("ggml-cpu.dll", AVX2_FLAGS, "pe"), t / "ggml-cpu.dll")
    shutil.copy(compile_isa_lib("ggml-base.dll", (), "pe"), t / "ggml-base.dll")
    (root / "engine.c").write_text(ENGINE.format(fn=engine_fn))
    subprocess.run(
        [cc, "-shared", "-o", str(t / "llm_engine.dll"), str(root / "engine.c"), str(t / "ggml-cpu.dll")], check=True
    )
    m = json.loads((BACKEND_EXAMPLES / "win-x86_64-avx-1.48.0.backend-manifest.json").read_text())
    m["name"], m["cpu"]["instruction_set_extensions"] = "llama.cpp-win-x86_64-avx2", ["AVX2"]
    (t / "backend-manifest.json").write_text(json.dumps(m, indent=2))
    shutil.copy(BACKEND_EXAMPLES / "win-x86_64-avx-1.48.0.display-data.json", t / "display-data.json")
    for n in ("llm_engine.node", "liblmstudio_bindings.node", "lmstudiocore.dll"):
        (t / n).write_bytes(b"stand-in for LM Studio's " + n.encode())
    return t


def our_build(root: Path, compile_isa_lib: Callable[..., Path]) -> Path:
    b = root / "bin"
    b.mkdir(parents=True)
    shutil.copy(compile_isa_lib("ggml-cpu.dll", AVX1_FLAGS, "pe"), b / "ggml-cpu.dll")
    shutil.copy(compile_isa_lib("ggml-base.dll", (), "pe"), b / "ggml-base.dll")
    return b


def win_plan():  # type: ignore[no-untyped-def]
    src = SourceTree(Path("C:/src/llama.cpp"), "b6275", "e288693", "test")
    return plan_build(
        report_for("ivybridge"), "cpu-avx1", src, build_root=Path("C:/b"), platform="win32", smoke_program=False
    )


def test_windows_package(tmp_path: Path, compile_isa_lib: Callable[..., Path]) -> None:
    tmpl = make_template(tmp_path / "t", compile_isa_lib, "avx_add")
    bin_dir = our_build(tmp_path / "b", compile_isa_lib)
    plan = win_plan()
    assert "-DCMAKE_INSTALL_RPATH=$ORIGIN" not in plan.cmake_defines  # no run paths on Windows
    res = package_backend(
        plan,
        bin_dir,
        tmpl,
        tmp_path / "out",
        template_name="llama.cpp-win-x86_64-avx2",
        template_version="1.48.0",
        platform="win",
    )
    assert res.replaced == ("ggml-base.dll", "ggml-cpu.dll")
    info = read_backend(res.folder)
    assert info.name == "llama.cpp-win-x86_64-avx1-unlocked" and list(info.ise) == ["AVX"]
    assert (res.folder / "ggml-cpu.dll").read_bytes() == (bin_dir / "ggml-cpu.dll").read_bytes()
    assert (res.folder / "llm_engine.dll").read_bytes() == (tmpl / "llm_engine.dll").read_bytes()
    cpu = res.audit.get("ggml-cpu.dll")
    assert cpu.format == "PE" and cpu.uses("AVX") > 0 and cpu.uses("AVX2") == 0
    assert not res.audit.get("llm_engine.dll").counted
    from app.core.builder.abi import _pe_imports

    assert "avx_add" in _pe_imports(res.folder / "llm_engine.dll")["ggml-cpu.dll"]  # the guard had work to do
    raw = (res.folder / "backend-manifest.json").read_bytes()
    assert raw[:3] != b"\xef\xbb\xbf"  # no BOM
    keys = list(json.loads(raw))
    assert keys == list(json.loads((tmpl / "backend-manifest.json").read_text()))  # key order kept


def test_windows_package_abi_failure_names_the_symbol(tmp_path: Path, compile_isa_lib: Callable[..., Path]) -> None:
    tmpl = make_template(tmp_path / "t", compile_isa_lib, "avx2_add")  # engine imports an AVX2-only export
    bin_dir = our_build(tmp_path / "b", compile_isa_lib)
    with pytest.raises(AbiError) as ei:
        package_backend(
            win_plan(), bin_dir, tmpl, tmp_path / "out", template_name="llama.cpp-win-x86_64-avx2", platform="win"
        )
    assert "llm_engine.dll: avx2_add (from ggml-cpu.dll)" in ei.value.details
    assert not (tmp_path / "out").exists()


def test_windows_package_isa_refusal(tmp_path: Path, compile_isa_lib: Callable[..., Path]) -> None:
    tmpl = make_template(tmp_path / "t", compile_isa_lib, "avx_add")
    bin_dir = our_build(tmp_path / "b", compile_isa_lib)
    with pytest.raises(IsaViolationError) as ei:
        package_backend(
            win_plan(),
            bin_dir,
            tmpl,
            tmp_path / "out",
            template_name="llama.cpp-win-x86_64-avx2",
            platform="win",
            usable_isa=report_for("nehalem").cpu.isa,
        )  # type: ignore[union-attr]
    assert "AVX" in ei.value.message and "ggml-cpu.dll uses" in ei.value.details
