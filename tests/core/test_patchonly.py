"""Patch-only against real ELF binaries: an AVX-only library is cloned, an AVX2/FMA one is refused.

The two shared libraries are compiled here with gcc (`-mavx` vs `-mavx2 -mfma`, code in real
functions) and put into the official Vulkan backend of a temp LM Studio home (tests/lmstudio_homes.py)
in place of its stand-in `libggml-vulkan.so.0.0.8861`. The CPUs come from recorded /proc/cpuinfo files.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from app.core.fetch.errors import PatchRefused
from app.core.lmstudio.backends import list_backends, read_backend
from app.core.lmstudio.provenance import read_provenance
from app.core.patchonly import execute_patch, find_patch_candidates, plan_patch
from tests.core.fetch.reports import core2_cpu_only, cpu_report, ivybridge_with_vulkan_gpu
from tests.lmstudio_homes import make_home

VULKAN = "llama.cpp-linux-x86_64-vulkan-avx2@2.14.0"
LIB = "libggml-vulkan.so.0.0.8861"
NEW = "llama.cpp-linux-x86_64-vulkan-avx1-unlocked@2.14.0"

AVX_SRC = r"""
#include <immintrin.h>
void ggml_vec_add_f32(int n, float *z, const float *x, const float *y) {
    for (int i = 0; i + 8 <= n; i += 8)
        _mm256_storeu_ps(z + i, _mm256_add_ps(_mm256_loadu_ps(x + i), _mm256_loadu_ps(y + i)));
}
"""
AVX2_SRC = r"""
#include <immintrin.h>
void ggml_vec_mad_f32(int n, float *y, const float *x, float v) {
    __m256 vv = _mm256_set1_ps(v);
    for (int i = 0; i + 8 <= n; i += 8)
        _mm256_storeu_ps(y + i, _mm256_fmadd_ps(_mm256_loadu_ps(x + i), vv, _mm256_loadu_ps(y + i)));
}
void ggml_vec_add_i32(int n, int *z, const int *x, const int *y) {
    for (int i = 0; i + 8 <= n; i += 8) {
        __m256i a = _mm256_loadu_si256((const __m256i *)(x + i)), b = _mm256_loadu_si256((const __m256i *)(y + i));
        _mm256_storeu_si256((__m256i *)(z + i), _mm256_add_epi32(a, b));
    }
}
"""


def build_lib(tmp_path: Path, src: str, flags: list[str], name: str) -> Path:
    if shutil.which("gcc") is None:
        pytest.fail("gcc is required (scripts/test.sh installs build-essential)")
    c = tmp_path / f"{name}.c"
    c.write_text(src)
    out = tmp_path / f"{name}.so"
    subprocess.run(["gcc", "-O2", "-shared", "-fPIC", *flags, str(c), "-o", str(out)], check=True)
    return out


@pytest.fixture
def home(tmp_path: Path) -> Path:
    return make_home(tmp_path)


def put_lib(home: Path, lib: Path) -> Path:
    folder = home / "extensions" / "backends" / "llama.cpp-linux-x86_64-vulkan-avx2-2.14.0"
    shutil.copyfile(lib, folder / LIB)
    return folder


def backends(home: Path) -> list[str]:
    return sorted(b.ident for b in list_backends(home))


def test_avx_only_binaries_are_cloned_with_evidence(home: Path, tmp_path: Path) -> None:
    template = put_lib(home, build_lib(tmp_path, AVX_SRC, ["-mavx"], "avx"))
    template_manifest = (template / "backend-manifest.json").read_bytes()
    plan = plan_patch(home, VULKAN, ivybridge_with_vulkan_gpu())
    assert plan.safe, plan.refusals
    assert plan.ident == NEW
    ev = [x for x in plan.evidence() if x.startswith(LIB)]
    assert len(ev) == 1 and "AVX " in ev[0] and "AVX2" not in ev[0] and "judged" in ev[0]
    assert any(line.startswith("SAFE:") for line in plan.describe())
    res = execute_patch(plan)
    assert res.ident == NEW
    clone = read_backend(res.dest)
    assert clone.ise == ("AVX",) and clone.version == "2.14.0" and clone.ours
    assert (res.dest / LIB).read_bytes() == (template / LIB).read_bytes()  # binaries unchanged
    assert (template / "backend-manifest.json").read_bytes() == template_manifest  # official never edited
    prov = read_provenance(res.dest)
    assert prov is not None and prov["obtained_by"] == "patch-only" and prov["template"] == VULKAN
    assert prov["audit"]["totals"].get("AVX", 0) > 0
    assert NEW in backends(home)


def test_avx2_fma_binaries_are_refused_with_the_findings(home: Path, tmp_path: Path) -> None:
    put_lib(home, build_lib(tmp_path, AVX2_SRC, ["-mavx2", "-mfma"], "avx2"))
    before = backends(home)
    plan = plan_patch(home, VULKAN, ivybridge_with_vulkan_gpu())
    assert not plan.safe
    found = {v.extension for v in plan.violations if v.file == LIB}
    assert {"AVX2", "FMA"} <= found, plan.violations
    assert any("build the backend from source" in r for r in plan.refusals)
    with pytest.raises(PatchRefused) as ei:
        execute_patch(plan)
    assert "AVX2" in ei.value.details and LIB in ei.value.details
    assert backends(home) == before


def test_no_avx_cpu_is_refused(home: Path, tmp_path: Path) -> None:
    put_lib(home, build_lib(tmp_path, AVX_SRC, ["-mavx"], "avx"))
    plan = plan_patch(home, VULKAN, core2_cpu_only())
    assert not plan.safe and any("no AVX" in r for r in plan.refusals)
    assert {v.extension for v in plan.violations} >= {"AVX"}


def test_avx2_cpu_does_not_need_it(home: Path, tmp_path: Path) -> None:
    put_lib(home, build_lib(tmp_path, AVX_SRC, ["-mavx"], "avx"))
    plan = plan_patch(home, VULKAN, cpu_report("haswell-i7-4770.txt"))
    assert not plan.safe and any("not needed" in r for r in plan.refusals)


def test_nothing_auditable_is_not_proof(home: Path) -> None:
    """The home's stand-in libraries are not ELF files: with no ggml binary to audit, nothing is proven."""
    plan = plan_patch(home, VULKAN, ivybridge_with_vulkan_gpu())
    assert not plan.safe and any("not proven" in r for r in plan.refusals)


def test_plan_json_is_serialisable(home: Path, tmp_path: Path) -> None:
    put_lib(home, build_lib(tmp_path, AVX2_SRC, ["-mavx2", "-mfma"], "avx2"))
    d = plan_patch(home, VULKAN, ivybridge_with_vulkan_gpu()).to_json()
    assert json.loads(json.dumps(d))["safe"] is False


def test_find_candidates_puts_the_safe_vulkan_template_first(home: Path, tmp_path: Path) -> None:
    put_lib(home, build_lib(tmp_path, AVX_SRC, ["-mavx"], "avx"))
    cpu = home / "extensions" / "backends" / "llama.cpp-linux-x86_64-avx2-2.14.0"
    shutil.copyfile(build_lib(tmp_path, AVX2_SRC, ["-mavx2", "-mfma"], "avx2"), cpu / "libggml-cpu.so.0.0.8861")
    plans = find_patch_candidates(home, ivybridge_with_vulkan_gpu())
    cpu_ident = "llama.cpp-linux-x86_64-avx2@2.14.0"
    assert [(p.template.ident, p.safe) for p in plans] == [(VULKAN, True), (cpu_ident, False)]
    assert find_patch_candidates(home, ivybridge_with_vulkan_gpu(), frameworks=("",))[0].safe is False
