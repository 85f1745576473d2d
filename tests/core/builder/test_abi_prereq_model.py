"""ABI guard on real PE DLLs (mingw-w64) and ELF .so (gcc); prerequisites; the shipped tiny model."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from app.core.builder.abi import AbiError, check_abi, exported_symbols, require_abi
from app.core.builder.prereq import Tools, check_prerequisites, find_tools, install_hint, nvcc_version, require
from app.core.builder.tinymodel import SHIPPED_NAME, shipped_model, vocabulary, write_tiny_gguf

LIB_V1 = """
#ifdef _WIN32
#define E __declspec(dllexport)
#else
#define E __attribute__((visibility("default")))
#endif
E int ggml_init(void) { return 1; }
E int ggml_free(void) { return 2; }
"""
LIB_V2 = LIB_V1.replace("E int ggml_free(void) { return 2; }", "E int ggml_free_v2(void) { return 3; }")
APP = """
#ifdef _WIN32
__declspec(dllimport)
#endif
int ggml_init(void);
#ifdef _WIN32
__declspec(dllimport)
#endif
int ggml_free(void);
int main(void) { return ggml_init() + ggml_free(); }
"""


def _cc(kind: str) -> str:
    cc = "x86_64-w64-mingw32-gcc" if kind == "pe" else "gcc"
    if shutil.which(cc) is None:
        pytest.skip(f"{cc} missing: scripts/test.sh installs gcc-mingw-w64-x86-64")
    return cc


def _folder(tmp: Path, kind: str, lib_src: str, *, with_app: bool = True) -> tuple[Path, str]:
    cc = _cc(kind)
    d = tmp / kind
    d.mkdir(parents=True, exist_ok=True)
    lib = "ggml-base.dll" if kind == "pe" else "libggml-base.so"
    (tmp / "lib.c").write_text(lib_src)
    (tmp / "app.c").write_text(APP)
    extra = [] if kind == "pe" else ["-fPIC"]
    subprocess.run([cc, "-shared", *extra, "-o", str(d / lib), str(tmp / "lib.c")], check=True)
    if not with_app:
        return d, lib
    exe = "llm_engine.exe" if kind == "pe" else "llm_engine"
    link = [str(d / lib)] if kind == "pe" else [f"-L{d}", "-lggml-base", "-Wl,-rpath,$ORIGIN"]
    subprocess.run([cc, "-o", str(d / exe), str(tmp / "app.c"), *link], check=True)
    return d, lib


@pytest.mark.parametrize("kind", ["pe", "elf"])
def test_abi_guard_finds_symbols_the_new_library_lacks(tmp_path: Path, kind: str) -> None:
    tmpl, lib = _folder(tmp_path / "t", kind, LIB_V1)
    new = tmp_path / "new"
    shutil.copytree(tmpl, new)
    assert {"ggml_init", "ggml_free"} <= exported_symbols(new / lib)
    assert check_abi(new, [lib], template_folder=tmpl) == []
    # Replace the library with one from "another version": ggml_free renamed.
    other, _ = _folder(tmp_path / "o", kind, LIB_V2, with_app=False)
    shutil.copy(other / lib, new / lib)
    missing = check_abi(new, [lib], template_folder=tmpl)
    assert [(m.importer, m.symbol) for m in missing] == [
        ("llm_engine.exe" if kind == "pe" else "llm_engine", "ggml_free")
    ]
    with pytest.raises(AbiError) as ei:
        require_abi(missing, folder=new)
    assert "ggml_free" in ei.value.details and "tag" in ei.value.hint


def test_prerequisites_say_what_and_how() -> None:
    empty = Tools()
    r = check_prerequisites("vulkan", empty, os_family="debian")
    whats = {m.what for m in r.missing}
    assert {"cmake", "C/C++ compiler", "glslc", "Vulkan headers", "SPIRV-Headers"} <= whats
    assert any(m.how == "sudo apt-get install spirv-headers" for m in r.missing)
    r = check_prerequisites("cuda", empty, os_family="windows")
    assert any(m.what.startswith("nvcc") and "winget" in m.how for m in r.missing)
    with pytest.raises(Exception, match="Missing build prerequisites"):
        require(r)
    assert install_hint("ninja", "fedora") == "sudo dnf install ninja-build"


def test_cuda_toolchain_vs_compute_capability() -> None:
    t = Tools(cmake="c", cc="cc", cxx="c++", patch="p", nvcc="/x/nvcc", cuda_version=(12, 4), cublas="/x/libcublas.so")
    r = check_prerequisites("cuda", t, compute_capabilities=("3.7",), os_family="debian")
    assert any(m.what == "CUDA ≤ 11.8" and "470" in m.how for m in r.missing)
    assert check_prerequisites("cuda", t, compute_capabilities=("6.1",), os_family="debian").ok
    t13 = dataclasses_replace(t, cuda_version=(13, 0))
    assert not check_prerequisites("cuda", t13, compute_capabilities=("6.1",), os_family="debian").ok
    assert check_prerequisites("cuda", t13, compute_capabilities=("9.0",), os_family="debian").ok
    t118 = dataclasses_replace(t, cuda_version=(11, 8))
    assert check_prerequisites("cuda", t118, compute_capabilities=("3.5", "3.7"), os_family="debian").ok


def test_cublas_is_found_through_a_wrapper_script_or_reported_missing(tmp_path: Path) -> None:
    from app.core.builder.prereq import find_cublas

    kit = tmp_path / "cuda-12.4"
    (kit / "bin").mkdir(parents=True)
    (kit / "bin" / "nvcc").write_text("#!/bin/sh\n")
    wrapper = tmp_path / "nvcc"
    wrapper.write_text(f'#!/bin/sh\nexec {kit}/bin/nvcc "$@"\n')
    assert find_cublas(str(wrapper), {}) is None
    t = Tools(cmake="c", cc="cc", cxx="c++", patch="p", nvcc=str(wrapper), cuda_version=(12, 4))
    miss = check_prerequisites("cuda", t, compute_capabilities=("8.6",), os_family="debian").missing
    assert [m.what for m in miss] == ["cuBLAS (CUDA toolkit)"]
    (kit / "targets/x86_64-linux/lib").mkdir(parents=True)
    (kit / "targets/x86_64-linux/lib/libcublas.so.12").write_bytes(b"")
    assert find_cublas(str(wrapper), {}) == str(kit / "targets/x86_64-linux/lib/libcublas.so.12")


def dataclasses_replace(t: Tools, **kw: object) -> Tools:
    import dataclasses

    return dataclasses.replace(t, **kw)  # type: ignore[arg-type]


def test_this_machine_has_the_cpu_and_vulkan_toolchain() -> None:
    t = find_tools()
    assert check_prerequisites("cpu", t).ok, check_prerequisites("cpu", t).missing
    if t.vulkan_header_version is not None:
        assert t.vulkan_header_version > 100
    if t.nvcc:
        v = nvcc_version(t.nvcc)
        assert v is None or v[0] >= 10


def test_nvcc_version_parsing() -> None:
    out = "nvcc: NVIDIA (R) Cuda compiler driver\nCuda compilation tools, release 11.8, V11.8.89\n"
    assert nvcc_version("nvcc", run=lambda _a: out) == (11, 8)
    assert nvcc_version("nvcc", run=lambda _a: "garbage") is None


def test_shipped_tiny_model_is_what_tinymodel_writes(tmp_path: Path) -> None:
    assert shipped_model().name == SHIPPED_NAME and shipped_model().is_file()
    p = write_tiny_gguf(tmp_path / "m.gguf")
    assert p.read_bytes() == shipped_model().read_bytes()


def test_tiny_model_reads_back_with_gguf(tmp_path: Path) -> None:
    import gguf

    r = gguf.GGUFReader(str(write_tiny_gguf(tmp_path / "f16.gguf", quant="f16")))
    names = {t.name for t in r.tensors}
    assert {"token_embd.weight", "output.weight", "blk.1.ffn_down.weight"} <= names
    tokens, _scores, types = vocabulary()
    assert len(tokens) % 32 == 0 and types[:3] == [2, 3, 3] and tokens[3] == b"<0x00>"
