"""Fixtures for the build tests: real tiny ELF/PE binaries compiled here with chosen ISA flags."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

ISA_SOURCE = r"""
#include <immintrin.h>
#include <stdint.h>
#ifdef _WIN32
#define EXPORT __declspec(dllexport)
#else
#define EXPORT __attribute__((visibility("default")))
#endif
EXPORT int base_add(int a, int b) { return a + b; }
#ifdef __AVX__
EXPORT void avx_add(float *d, const float *a, const float *b) {
    _mm256_storeu_ps(d, _mm256_add_ps(_mm256_loadu_ps(a), _mm256_loadu_ps(b)));
}
#endif
#ifdef __AVX2__
EXPORT void avx2_add(int *d, const int *a, const int *b) {
    __m256i x = _mm256_add_epi32(_mm256_loadu_si256((const __m256i *)a), _mm256_loadu_si256((const __m256i *)b));
    _mm256_storeu_si256((__m256i *)d, _mm256_permute4x64_epi64(x, 0x1b));
}
#endif
#ifdef __FMA__
EXPORT void fma_madd(float *d, const float *a, const float *b) {
    __m256 x = _mm256_loadu_ps(a);
    _mm256_storeu_ps(d, _mm256_fmadd_ps(x, _mm256_loadu_ps(b), x));
}
#endif
#ifdef __F16C__
EXPORT void f16c_cvt(float *d, const uint16_t *s) {
    _mm256_storeu_ps(d, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)s)));
}
#endif
#ifdef __BMI2__
EXPORT uint64_t bmi2_pdep(uint64_t a, uint64_t m) { return _pdep_u64(a, m); }
#endif
#ifdef __SSE4_2__
EXPORT uint32_t sse42_crc(uint32_t c, uint32_t v) { return _mm_crc32_u32(c, v); }
#endif
#ifdef __AVX512F__
EXPORT void avx512_add(float *d, const float *a, const float *b) {
    _mm512_storeu_ps(d, _mm512_add_ps(_mm512_loadu_ps(a), _mm512_loadu_ps(b)));
}
#endif
"""

AVX2_FLAGS = ("-mavx2", "-mfma", "-mf16c", "-mbmi2", "-msse4.2")
AVX1_FLAGS = ("-mavx", "-msse4.2")


def _compile(out: Path, source: str, flags: tuple[str, ...], kind: str) -> Path:
    src = out.with_suffix(".c")
    src.write_text(source)
    if kind == "pe":
        cc = shutil.which("x86_64-w64-mingw32-gcc")
        if cc is None:
            pytest.skip("x86_64-w64-mingw32-gcc missing: scripts/test.sh installs gcc-mingw-w64-x86-64")
        argv = [cc, "-O2", "-shared", *flags, "-o", str(out), str(src)]
    else:
        argv = ["gcc", "-O2", "-shared", "-fPIC", *flags, "-o", str(out), str(src)]
    subprocess.run(argv, check=True, capture_output=True)
    return out


@pytest.fixture
def compile_isa_lib(tmp_path: Path) -> Callable[..., Path]:
    """compile_isa_lib(name, flags, kind="elf"|"pe", source=ISA_SOURCE) -> path of a real .so/.dll."""

    def make(name: str, flags: tuple[str, ...], kind: str = "elf", source: str = ISA_SOURCE) -> Path:
        return _compile(tmp_path / name, source, flags, kind)

    return make
