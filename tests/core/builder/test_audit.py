"""ISA audit on real binaries: ELF .so built with gcc and PE .dll built with mingw-w64, per ISA flag set."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from app.core.builder.audit import (
    AuditError,
    audit_binary,
    audit_folder,
    audit_violations,
    classify,
    counts_for_target,
    usable_extensions,
)
from tests.core.builder.conftest import AVX1_FLAGS, AVX2_FLAGS

IVYBRIDGE = ("SSE3", "SSSE3", "SSE4.1", "SSE4.2", "AVX", "F16C")


@pytest.mark.parametrize(
    ("mnemonic", "op_str", "ext"),
    [
        ("vaddps", "ymm0, ymm1, ymm2", "AVX"),
        ("vpaddd", "xmm0, xmm1, xmm2", "AVX"),  # VEX-encoded SSE2 op on xmm: AVX1
        ("vpaddd", "ymm0, ymm1, ymm2", "AVX2"),
        ("vperm2f128", "ymm0, ymm1, ymm2, 1", "AVX"),
        ("vptest", "ymm0, ymm1", "AVX"),
        ("vpermq", "ymm0, ymm1, 0x1b", "AVX2"),
        ("vbroadcastss", "ymm0, dword ptr [rax]", "AVX"),
        ("vbroadcastss", "ymm0, xmm1", "AVX2"),
        ("vfmadd231ps", "ymm0, ymm1, ymm2", "FMA"),
        ("vfnmsub132ss", "xmm0, xmm1, xmm2", "FMA"),
        ("vcvtph2ps", "ymm0, xmm1", "F16C"),
        ("sarx", "rax, rbx, rcx", "BMI2"),
        ("andn", "rax, rbx, rcx", "BMI1"),
        ("tzcnt", "eax, ecx", "TZCNT"),
        ("rep bsf", "eax, ecx", None),
        ("crc32", "eax, ecx", "SSE4.2"),
        ("pmulld", "xmm0, xmm1", "SSE4.1"),
        ("pshufb", "xmm0, xmm1", "SSSE3"),
        ("vaddps", "zmm0, zmm1, zmm2", "AVX512"),
        ("vmovdqu8", "ymm0 {k1}, ymmword ptr [rax]", "AVX512"),
        ("kmovw", "k1, eax", "AVX512"),
        ("vpternlogd", "xmm0, xmm1, xmm2, 0xff", "AVX512"),
        ("vaddps", "xmm17, xmm1, xmm2", "AVX512"),
        ("vpmovqd", "xmm0, ymm1", "AVX512"),
        ("vpmovsxwd", "xmm1, xmm1", "AVX"),  # sign-extend is SSE4.1, VEX-encoded: AVX1 (not AVX-512 vpmovs*)
        ("addps", "xmm0, xmm1", None),
        ("mov", "rax, qword ptr [rbx]", None),
    ],
)
def test_classify_follows_build_md_rules(mnemonic: str, op_str: str, ext: str | None) -> None:
    assert classify(mnemonic, op_str) == ext


@pytest.mark.parametrize("kind", ["elf", "pe"])
def test_real_binaries_avx2_vs_avx1_vs_baseline(compile_isa_lib: Callable[..., Path], kind: str) -> None:
    ext = ".dll" if kind == "pe" else ".so"
    avx2 = audit_binary(compile_isa_lib(f"libggml-cpu-avx2{ext}", AVX2_FLAGS, kind))
    avx1 = audit_binary(compile_isa_lib(f"libggml-cpu-avx1{ext}", AVX1_FLAGS, kind))
    base = audit_binary(compile_isa_lib(f"libggml-cpu-x64{ext}", (), kind))
    assert avx2.format == ("PE" if kind == "pe" else "ELF")
    assert avx2.machine == "x86_64"
    for e in ("AVX", "AVX2", "FMA", "F16C", "BMI2", "SSE4.2"):
        assert avx2.uses(e) > 0, (e, avx2.counts)
    assert avx2.top_mnemonics["FMA"][0][0].startswith("vfmadd")
    assert avx1.uses("AVX") > 0 and avx1.uses("SSE4.2") > 0
    for e in ("AVX2", "FMA", "F16C", "BMI2", "AVX512"):
        assert avx1.uses(e) == 0, (e, avx1.counts)
    for e in ("AVX", "AVX2", "FMA", "F16C", "BMI2", "SSE4.2", "SSE4.1"):
        assert base.uses(e) == 0, (e, base.counts)
    assert avx2.instructions > 10 and avx2.code_bytes > 0


def test_avx512_detected(compile_isa_lib: Callable[..., Path]) -> None:
    b = audit_binary(compile_isa_lib("libggml-cpu-skx.so", ("-mavx512f",)))
    assert b.uses("AVX512") > 0


def test_folder_violations_name_file_and_extension(compile_isa_lib: Callable[..., Path], tmp_path: Path) -> None:
    folder = tmp_path / "backend"
    folder.mkdir()
    shutil.copy(compile_isa_lib("a.so", AVX2_FLAGS), folder / "libggml-cpu.so")
    shutil.copy(compile_isa_lib("b.so", AVX1_FLAGS), folder / "libggml-base.so")
    # LM Studio's own binding with AVX2 code: audited, reported, never judged.
    shutil.copy(compile_isa_lib("c.so", AVX2_FLAGS), folder / "llm_engine.node")
    os.symlink("libggml-cpu.so", folder / "libggml-cpu.so.0")  # symlinks are not audited twice
    (folder / "backend-manifest.json").write_text("{}")
    fa = audit_folder(folder, jobs=2)
    assert [b.path for b in fa.binaries] == ["libggml-base.so", "libggml-cpu.so", "llm_engine.node"]
    assert not fa.get("llm_engine.node").counted
    v = audit_violations(fa, IVYBRIDGE)
    assert {(x.file, x.extension) for x in v} == {
        ("libggml-cpu.so", "AVX2"),
        ("libggml-cpu.so", "FMA"),
        ("libggml-cpu.so", "BMI2"),
    }
    assert all(x.count > 0 and x.examples for x in v)
    assert "libggml-cpu.so uses" in v[0].describe()
    # A Haswell target has all of them: nothing to refuse.
    assert audit_violations(fa, (*IVYBRIDGE, "FMA", "BMI1", "BMI2", "AVX2")) == []
    # A Westmere target (no AVX) also refuses the AVX1 libggml-base.
    westmere = audit_violations(fa, ("SSE3", "SSSE3", "SSE4.1", "SSE4.2"))
    assert ("libggml-base.so", "AVX") in {(x.file, x.extension) for x in westmere}


def test_whitelist_tzcnt_and_mtmd_lzcnt(compile_isa_lib: Callable[..., Path], tmp_path: Path) -> None:
    src = "unsigned f(unsigned x){return __builtin_ctz(x);} unsigned g(unsigned x){return __builtin_clz(x);}"
    folder = tmp_path / "b"
    folder.mkdir()
    # gcc emits `rep bsf` (= tzcnt) for ctz without -mbmi; -mlzcnt gives a real lzcnt.
    shutil.copy(compile_isa_lib("t.so", (), source=src), folder / "libllama.so")
    shutil.copy(compile_isa_lib("m.so", ("-mlzcnt",), source=src), folder / "libmtmd.so")
    shutil.copy(compile_isa_lib("g.so", ("-mlzcnt",), source=src), folder / "libggml-cpu.so")
    fa = audit_folder(folder, jobs=1)
    assert fa.get("libllama.so").uses("TZCNT") > 0
    assert fa.get("libmtmd.so").uses("LZCNT") > 0
    v = audit_violations(fa, ("SSE3", "SSSE3"))  # Core 2: no BMI1, no LZCNT
    assert [(x.file, x.extension) for x in v] == [("libggml-cpu.so", "LZCNT")]


def test_counted_names() -> None:
    assert counts_for_target("libggml-cpu.so.0.0.1")
    assert counts_for_target("bin/ggml-base.dll")
    assert counts_for_target("llama-server")
    assert not counts_for_target("liblmstudio_bindings.node")
    assert not counts_for_target("MSVCP140.dll")
    assert not counts_for_target("libllm_engine.so")


def test_usable_extensions_from_flags_and_canonical_names() -> None:
    assert usable_extensions(["sse4_2", "avx", "pni", "ssse3", "sse4_1"]) >= {"AVX", "SSE4.2", "POPCNT", "SSE3"}
    assert "AVX512" in usable_extensions(["AVX512F"])
    assert "AVX2" not in usable_extensions(IVYBRIDGE)


def test_not_a_binary(tmp_path: Path) -> None:
    p = tmp_path / "x.so"
    p.write_text("hello")
    with pytest.raises(AuditError, match="not an ELF or PE"):
        audit_binary(p)
    with pytest.raises(AuditError, match="does not exist"):
        audit_folder(tmp_path / "nope")
