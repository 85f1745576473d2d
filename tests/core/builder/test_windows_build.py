"""A Windows CPU backend built on Linux and proven here: zig cross-compiles llama.cpp 0c1e57098, the product's
pipeline packages an Ivy Bridge cpu-avx1 variant from a 1.x Windows template and smoke-tests the packaged
folder under Wine (our host program, cross-built the same way, loads the template's kept llama.dll with the new
ggml DLLs next to it).

Stand-ins: the template is built from the same tag (see winbuild.py; LM Studio's own binaries may not be
redistributed); Wine stands in for Windows. qemu cannot check a CPU's ISA under Wine (docs/build-anywhere.md), so
the ISA proof for Windows is the PE audit against the Ivy Bridge report.

Cost: cold ≈ 6 min zig's Windows C runtime and libc++ (once per cache) + template ≈ 4 min + variant ≈ 1 min.
"""

from __future__ import annotations

import json
from pathlib import Path

import pefile
import pytest

from app.core.builder.pipeline import prepare_job, run_job
from app.core.builder.smoke import find_wine
from app.core.lmstudio.backends import read_backend
from tests.core.builder import realbuild as rb
from tests.core.builder import winbuild as wb

pytestmark = [
    pytest.mark.slow,
    pytest.mark.timeout(3600),  # cold: zig's C runtime + the template's llama.dll on 2 shared cores
    pytest.mark.skipif(find_wine() is None, reason="wine64 missing: scripts/test.sh installs it"),
]

MINGW_RUNTIME = {"libstdc++-6.dll", "libgcc_s_seh-1.dll", "libwinpthread-1.dll", "libgomp-1.dll", "libc++.dll"}


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return wb.build_win_template(tmp_path_factory.mktemp("wt") / "llama.cpp-win-x86_64-avx2-1.48.0")


@pytest.fixture(scope="module")
def built(template: Path, tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    wb.zig_toolchain()  # the portable zig, fetched through the mirror into the persistent cache
    job = prepare_job(
        template=read_backend(template),
        variant="cpu-avx1",
        report=rb.report_for("ivybridge"),
        source=rb.sdist_path(),
        jobs=2,
        out_dir=tmp_path_factory.mktemp("out"),
        cache_root=rb.cache_root(),
    )
    return job, run_job(job, smoke=True)


def imports(path: Path) -> dict[str, list[str]]:
    pe = pefile.PE(str(path))
    return {
        e.dll.decode().lower(): [i.name.decode() for i in e.imports if i.name]
        for e in getattr(pe, "DIRECTORY_ENTRY_IMPORT", [])
    }


def test_plan_cross_compiles_with_zig_for_x86_64(built) -> None:  # type: ignore[no-untyped-def]
    job, _res = built
    p = job.plan
    assert p.target_os == "win" and job.toolchain.cross and job.toolchain.zig
    assert "-DCMAKE_SYSTEM_NAME=Windows" in p.cmake_defines
    assert "-DCMAKE_SYSTEM_PROCESSOR=x86_64" in p.cmake_defines  # else ggml's SIMD-free generic backend
    assert "-DGGML_OPENMP=OFF" in p.cmake_defines
    assert p.targets == ("ggml-base", "ggml-cpu", "ggml")  # only what ships: no llama, no programs
    assert dict(p.output_names) == {"ggml": "ggml_llamacpp"}


def test_windows_folder_layout_runtime_and_audit(built, template: Path) -> None:  # type: ignore[no-untyped-def]
    _job, res = built
    folder = res.package.folder
    assert set(res.package.replaced) == {"ggml-base.dll", "ggml-cpu.dll", "ggml_llamacpp.dll"}
    # The kept binaries are byte-identical to the template's.
    for name in ("llama.dll", "llm_engine.dll"):
        assert (folder / name).read_bytes() == (template / name).read_bytes()
    info = read_backend(folder)
    assert info.platform == "win" and list(info.ise) == ["AVX"] and info.name != wb.TEMPLATE_NAME
    # C/C++ runtime linked statically: nothing of the compiler's runtime to ship.
    for name in res.package.replaced:
        deps = set(imports(folder / name))
        assert not deps & MINGW_RUNTIME, (name, deps)
    assert "ggml-cpu.dll" in imports(folder / "ggml_llamacpp.dll")
    # ISA: the PE audit of ggml-cpu.dll has AVX (and F16C) but nothing Ivy Bridge lacks.
    cpu = res.package.audit.get("ggml-cpu.dll")
    assert cpu.uses("AVX") > 1000 and cpu.uses("F16C") > 0
    for ext in ("AVX2", "FMA", "BMI2", "AVX512"):
        assert cpu.uses(ext) == 0, (ext, cpu.counts)


def test_smoke_under_wine_loads_the_folders_own_dlls(built) -> None:  # type: ignore[no-untyped-def]
    job, res = built
    sm = res.smoke
    assert sm is not None and sm.ok and sm.tokens == 16 and sm.runner == "wine", sm
    names = {p.rsplit("\\", 1)[-1].lower() for p in sm.loaded}
    assert {"llama.dll", "ggml_llamacpp.dll", "ggml-base.dll", "ggml-cpu.dll"} <= names, sm.loaded
    prov = json.loads((res.package.folder / "unlocked-install.json").read_text())
    assert prov["smoke"]["ok"] and prov["smoke"]["runner"] == "wine" and prov["target_os"] == "win"
    assert prov["target_cpu"]["isa"] == list(job.plan.isa)
