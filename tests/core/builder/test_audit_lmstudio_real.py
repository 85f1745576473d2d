"""The ISA audit on LM Studio's real Windows 1.48.0 folders (../shared/lmstudio-real, never in the repository).

Facts this checks (docs/audit.md): LM Studio's own `llama.dll` and `mtmd.dll` carry AVX2/LZCNT only behind the
MSVC runtime's CPUID flags, so the community AVX folder passes for Ivy Bridge; its `ggml-cpu.dll` is an AVX build
with no CPU check, so Westmere fails; the "noavx" folder's `ggml-cpu.dll` still has thousands of AVX instructions.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import py7zr
import pytest

from app.core.builder.audit import FolderAudit, audit_folder, audit_violations, usable_extensions
from app.core.hardware.probe import report_from_sources
from tests.conftest import HWDATA

pytestmark = pytest.mark.lmstudio_real


def _isa(name: str) -> frozenset[str]:
    rep = report_from_sources(None, str(HWDATA / "cpuinfo" / f"{name}.txt"))
    assert rep.cpu is not None
    return usable_extensions(rep.cpu.isa)


@pytest.fixture(scope="module")
def audited(tmp_path_factory: pytest.TempPathFactory) -> Callable[[Path, str], FolderAudit]:
    cache: dict[str, FolderAudit] = {}

    def get(shared: Path, variant: str) -> FolderAudit:
        if variant not in cache:
            out = tmp_path_factory.mktemp(variant)
            with py7zr.SevenZipFile(shared / f"llama.cpp-win-x86_64-{variant}-1.48.0.7z") as z:
                z.extractall(out)
            cache[variant] = audit_folder(out / f"llama.cpp-win-x86_64-{variant}-1.48.0")
        return cache[variant]

    return get


def test_avx_folder_passes_for_ivy_bridge(lmstudio_real: Path, audited: Callable[[Path, str], FolderAudit]) -> None:
    fa = audited(lmstudio_real, "avx")
    for name in ("llama.dll", "mtmd.dll"):
        b = fa.get(name)
        assert b.counted and b.uses("AVX2") > 0, b.counts
        # Every AVX2 and LZCNT instruction sits behind the MSVC runtime's CPU check.
        assert b.unguarded("AVX2") == 0 and b.unguarded("LZCNT") == 0, (b.counts, b.guarded)
        assert b.guard_stats["flags"] >= 3
    assert fa.get("ggml-cpu.dll").uses("AVX") > 10000 and fa.get("ggml-cpu.dll").guarded == {}
    assert audit_violations(fa, _isa("ivybridge-i5-3570k")) == []


def test_avx_folder_fails_for_westmere(lmstudio_real: Path, audited: Callable[[Path, str], FolderAudit]) -> None:
    v = audit_violations(audited(lmstudio_real, "avx"), _isa("westmere-arrandale-i5-m560"))
    assert [(x.file, x.extension) for x in v] == [("ggml-cpu.dll", "AVX")]
    assert v[0].count > 10000


def test_noavx_folder_fails_for_westmere_naming_ggml_cpu(
    lmstudio_real: Path, audited: Callable[[Path, str], FolderAudit]
) -> None:
    v = audit_violations(audited(lmstudio_real, "noavx"), _isa("westmere-arrandale-i5-m560"))
    assert {x.file for x in v} == {"ggml-cpu.dll"}
    assert any(x.extension == "AVX" and x.count > 1000 for x in v)
    assert "ggml-cpu.dll uses" in v[0].describe()
