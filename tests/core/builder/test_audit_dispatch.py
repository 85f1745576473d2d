"""The ISA audit and runtime dispatch, on real binaries compiled here (gcc ELF, mingw-w64 PE).

Each source puts an AVX2 kernel in a function of its own (`target("avx2")`) and reaches it (a) only after
`__builtin_cpu_supports("avx2")` (GCC's `__cpu_model`, filled from CPUID by libgcc's `__cpu_indicator_init`,
linked into the binary), (b) through an ifunc resolver that picks it the same way, (c) after testing a
global that is NOT computed from CPUID (a setter the caller may call), or (d) not at all (exported). Only
(a) and (b) are guarded; (c) and (d) must stay violations.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from app.core.builder.audit import audit_binary, audit_folder, audit_violations, describe_count
from app.core.builder.dispatch import direct_reference, rip_target
from tests.conftest import HWDATA, REPO

IVYBRIDGE = ("SSE3", "SSSE3", "SSE4.1", "SSE4.2", "AVX", "F16C")

DISPATCH_SOURCE = r"""
#include <immintrin.h>
#ifdef _WIN32
#define EXPORT __declspec(dllexport)
#else
#define EXPORT __attribute__((visibility("default")))
#endif
__attribute__((target("avx2"))) static void add_avx2(int *d, const int *a, const int *b) {
    __m256i x = _mm256_add_epi32(_mm256_loadu_si256((const __m256i *)a), _mm256_loadu_si256((const __m256i *)b));
    _mm256_storeu_si256((__m256i *)d, _mm256_permute4x64_epi64(x, 0x1b));
}
static void add_base(int *d, const int *a, const int *b) { for (int i = 0; i < 8; i++) d[i] = a[i] + b[i]; }
#if defined(USE_IFUNC)
static void *resolve_add(void) {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") ? (void *)add_avx2 : (void *)add_base;
}
EXPORT void add(int *d, const int *a, const int *b) __attribute__((ifunc("resolve_add")));
#elif defined(GETTER)
__attribute__((noinline)) static int have_avx2(void) { return __builtin_cpu_supports("avx2"); }
EXPORT void add(int *d, const int *a, const int *b) { if (have_avx2()) add_avx2(d, a, b); else add_base(d, a, b); }
#elif defined(DEAD_FLAG)
static volatile int never_set;  /* zero-initialised, never written, address never taken: the branch is dead */
EXPORT void add(int *d, const int *a, const int *b) { if (never_set) add_avx2(d, a, b); else add_base(d, a, b); }
EXPORT int has_avx(void) { return __builtin_cpu_supports("avx"); }  /* the binary dispatches on CPUID elsewhere */
#elif defined(MERGE)
static int wide_calls;
__attribute__((target("avx2"))) EXPORT void add(int *d, const int *a, const int *b) {
    if (__builtin_cpu_supports("avx512f")) wide_calls++;  /* a CPU check ... */
    __m256i x = _mm256_add_epi32(_mm256_loadu_si256((const __m256i *)a), _mm256_loadu_si256((const __m256i *)b));
    _mm256_storeu_si256((__m256i *)d, _mm256_permute4x64_epi64(x, 0x1b));  /* ... but AVX2 runs either way */
}
#elif defined(USER_FLAG)
static int use_fast;  /* set by the caller, not from CPUID: no CPU check */
EXPORT void set_fast(int v) { use_fast = v; }
EXPORT void add(int *d, const int *a, const int *b) { if (use_fast) add_avx2(d, a, b); else add_base(d, a, b); }
#else
EXPORT void add(int *d, const int *a, const int *b) {
    if (__builtin_cpu_supports("avx2")) add_avx2(d, a, b); else add_base(d, a, b);
}
#endif
#ifdef UNGUARDED
__attribute__((target("avx2"))) EXPORT void add_unguarded(int *d, const int *a, const int *b) {
    __m256i x = _mm256_add_epi32(_mm256_loadu_si256((const __m256i *)a), _mm256_loadu_si256((const __m256i *)b));
    _mm256_storeu_si256((__m256i *)d, _mm256_permute4x64_epi64(x, 0x4e));
}
#endif
"""


def _lib(compile_isa_lib: Callable[..., Path], name: str, kind: str, *defines: str) -> Path:
    return compile_isa_lib(name, tuple(f"-D{d}" for d in defines), kind, source=DISPATCH_SOURCE)


@pytest.mark.parametrize("kind", ["elf", "pe"])
def test_builtin_cpu_supports_dispatch_is_guarded(compile_isa_lib: Callable[..., Path], kind: str) -> None:
    b = audit_binary(_lib(compile_isa_lib, "libggml-disp.so", kind), counted=True)
    assert b.uses("AVX2") >= 2
    assert b.guarded.get("AVX2") == b.uses("AVX2") and b.unguarded("AVX2") == 0
    assert b.guard_stats["flags"] >= 1 and b.guard_stats["guarded"] >= b.uses("AVX2")
    fa = audit_folder(b_path := _lib(compile_isa_lib, "libggml-disp2.so", kind))
    assert fa.binaries[0].counted and fa.binaries[0].path == b_path.name
    assert audit_violations(fa, IVYBRIDGE) == []
    assert describe_count(b, "AVX2") == f"AVX2 {b.uses('AVX2')} (all behind a CPU check)"


def test_ifunc_resolver_dispatch_is_guarded(compile_isa_lib: Callable[..., Path]) -> None:
    p = _lib(compile_isa_lib, "libggml-ifunc.so", "elf", "USE_IFUNC")
    types = subprocess.run(["readelf", "-sW", str(p)], capture_output=True, text=True, check=True).stdout
    assert " IFUNC " in types  # the loader calls the resolver, which returns the AVX2 kernel or not
    b = audit_binary(p, counted=True)
    assert b.uses("AVX2") >= 2 and b.unguarded("AVX2") == 0


@pytest.mark.parametrize("kind", ["elf", "pe"])
def test_flag_getter_function_is_followed(compile_isa_lib: Callable[..., Path], kind: str) -> None:
    # `if (have_avx2())`: the flag comes back in eax from a tiny function that only reads it.
    b = audit_binary(_lib(compile_isa_lib, f"libggml-get.{kind}", kind, "GETTER"), counted=True)
    assert b.uses("AVX2") >= 2 and b.unguarded("AVX2") == 0, (b.counts, b.guarded, b.guard_stats)
    assert b.guard_stats["getters"] >= 1


def test_stripped_elf_still_finds_the_flag(compile_isa_lib: Callable[..., Path], tmp_path: Path) -> None:
    p = _lib(compile_isa_lib, "libggml-strip.so", "elf")
    stripped = tmp_path / "libggml-stripped.so"
    subprocess.run(["strip", "-s", "-o", str(stripped), str(p)], check=True)
    assert "__cpu_model" not in subprocess.run(["nm", "-D", str(stripped)], capture_output=True, text=True).stdout
    b = audit_binary(stripped, counted=True)
    assert b.uses("AVX2") >= 2 and b.unguarded("AVX2") == 0


@pytest.mark.parametrize("kind", ["elf", "pe"])
def test_unguarded_code_still_fails(compile_isa_lib: Callable[..., Path], kind: str, tmp_path: Path) -> None:
    folder = tmp_path / "backend"
    folder.mkdir()
    shutil.copy(_lib(compile_isa_lib, f"m.{kind}", kind, "UNGUARDED"), folder / "ggml-cpu.dll")
    fa = audit_folder(folder)
    b = fa.binaries[0]
    # The dispatched kernel is guarded, the exported one is not.
    assert b.guarded.get("AVX2", 0) >= 2 and b.unguarded("AVX2") >= 2
    v = audit_violations(fa, IVYBRIDGE)
    assert [(x.file, x.extension) for x in v] == [("ggml-cpu.dll", "AVX2")]
    assert v[0].count == b.unguarded("AVX2") and v[0].guarded == b.guarded["AVX2"]
    assert "outside any CPU check" in v[0].describe() and "more behind a CPU check" in v[0].describe()


@pytest.mark.parametrize("kind", ["elf", "pe"])
def test_branch_on_a_global_nothing_sets_is_dead(compile_isa_lib: Callable[..., Path], kind: str) -> None:
    b = audit_binary(_lib(compile_isa_lib, f"libggml-dead.{kind}", kind, "DEAD_FLAG"), counted=True)
    assert b.uses("AVX2") >= 2 and b.unguarded("AVX2") == 0, (b.counts, b.guarded, b.guard_stats)
    assert b.guard_stats["dead_branches"] >= 1


@pytest.mark.parametrize("kind", ["elf", "pe"])
def test_code_after_a_check_that_both_sides_reach_is_unguarded(compile_isa_lib: Callable[..., Path], kind: str) -> None:
    # Only the side of a flag test where the CPU has the feature is guarded, not where both sides meet again.
    b = audit_binary(_lib(compile_isa_lib, f"libggml-merge.{kind}", kind, "MERGE"), counted=True)
    assert b.unguarded("AVX2") >= 2, (b.counts, b.guarded, b.guard_stats)
    assert b.guard_stats["flag_tests"] >= 1


@pytest.mark.parametrize("kind", ["elf", "pe"])
def test_flag_not_from_cpuid_is_no_guard(compile_isa_lib: Callable[..., Path], kind: str) -> None:
    b = audit_binary(_lib(compile_isa_lib, "libggml-user.so", kind, "USER_FLAG"), counted=True)
    assert b.uses("AVX2") >= 2 and b.guarded.get("AVX2", 0) == 0


def test_without_dispatch_analysis_nothing_is_guarded(compile_isa_lib: Callable[..., Path]) -> None:
    b = audit_binary(_lib(compile_isa_lib, "libggml-nd.so", "elf"), counted=True, dispatch=False)
    assert b.uses("AVX2") >= 2 and b.guarded == {} and b.unguarded("AVX2") == b.uses("AVX2")


def test_a_named_file_is_always_judged(compile_isa_lib: Callable[..., Path], tmp_path: Path) -> None:
    p = tmp_path / "llm_engine.node"  # in a folder: LM Studio's file, reported only
    shutil.copy(_lib(compile_isa_lib, "u.so", "elf", "UNGUARDED"), p)
    fa = audit_folder(p)
    assert fa.binaries[0].counted
    assert [x.extension for x in audit_violations(fa, IVYBRIDGE)] == ["AVX2"]


def test_operand_parsing() -> None:
    assert rip_target("dword ptr [rip + 0x10]", 0x1000) == 0x1010
    assert rip_target("rax, qword ptr [rip - 0x8]", 0x1000) == 0xFF8
    assert rip_target("eax, ecx", 0x1000) is None
    assert direct_reference("call", "0x2000", 0x1000) == 0x2000
    assert direct_reference("jne", "0x2000", 0x1000) == 0x2000
    assert direct_reference("lea", "rdx, [rip + 0x20]", 0x1000) == 0x1020
    assert direct_reference("call", "qword ptr [rip + 0x20]", 0x1000) is None
    assert direct_reference("mov", "eax, 1", 0x1000) is None


def test_audit_cli_says_what_is_guarded(compile_isa_lib: Callable[..., Path], tmp_path: Path) -> None:
    folder = tmp_path / "b"
    folder.mkdir()
    shutil.copy(_lib(compile_isa_lib, "g.so", "elf"), folder / "libggml-cpu.so")
    ivy = str(HWDATA / "cpuinfo" / "ivybridge-i5-3570k.txt")

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(Path(sys.executable).with_name("lms-unlocked")), "audit", str(folder), "--cpuinfo", ivy, *args],
            capture_output=True,
            text=True,
            cwd=REPO,
            stdin=subprocess.DEVNULL,
        )

    p = cli()
    assert p.returncode == 0, p.stdout + p.stderr
    assert "(all behind a CPU check)" in p.stdout and "OK:" in p.stdout
    d = json.loads(cli("--json").stdout)
    b = d["binaries"][0]
    assert d["ok"] and b["guarded"]["AVX2"] == b["counts"]["AVX2"]
    shutil.copy(_lib(compile_isa_lib, "u2.so", "elf", "UNGUARDED"), folder / "libggml-cpu.so")
    p = cli("--json")
    d = json.loads(p.stdout)
    assert p.returncode == 1 and not d["ok"]
    (v,) = d["violations"]
    assert v["extension"] == "AVX2" and v["count"] >= 2 and v["guarded"] >= 2
