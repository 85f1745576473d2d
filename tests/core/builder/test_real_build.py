"""End to end on real llama.cpp source (llama-cpp-python 0.3.36 sdist, commit 0c1e57098), real builds, real qemu.

Stand-ins (we cannot have these CPUs): `qemu-x86_64 -cpu <model>` enforces each model's instruction sets
(docs/llama-build-notes.md §3.1), so IvyBridge/SandyBridge/Westmere/Nehalem/core2duo/Opteron_G1 stand in for real
old machines;
the target CPUs' ISA comes from real /proc/cpuinfo dumps (tests/fixtures/hwdata). The "official" template is our own
AVX2 build in LM Studio's folder shape (see realbuild.make_template_folder).

Cost: cold ≈ 3.5 min on 2 cores (template 100 s, four ggml-only variant builds ≈ 18 s each), warm ≈ 30 s; the
source tree and build directories live in persistent_test_cache().
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from app.core.builder.abi import AbiError, check_abi
from app.core.builder.audit import audit_folder
from app.core.builder.execute import BuildResult
from app.core.builder.hostprog import llama_library
from app.core.builder.package import IsaViolationError, PackageResult, elf_runpath, package_backend
from app.core.builder.plan import BuildPlan
from app.core.builder.smoke import SmokeResult, have_qemu, plan_smoke, run_smoke
from app.core.builder.tinymodel import shipped_model
from app.core.lmstudio.backends import read_backend
from tests.core.builder import realbuild as rb

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not have_qemu(), reason="qemu-user missing: scripts/test.sh installs it"),
]


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> tuple[BuildResult, Path]:
    res = rb.build(rb.template_plan())
    folder = rb.make_template_folder(
        tmp_path_factory.mktemp("tmpl") / "llama.cpp-linux-x86_64-avx2-1.48.0", res.bin_dir
    )
    return res, folder


@pytest.fixture(scope="module")
def variants() -> dict[str, tuple[BuildPlan, BuildResult]]:
    out: dict[str, tuple[BuildPlan, BuildResult]] = {}
    for name, (cpu, variant) in rb.VARIANT_BUILDS.items():
        plan = rb.plan_for(cpu, variant)
        out[name] = (plan, rb.build(plan))
    return out


@pytest.fixture(scope="module")
def packaged(
    template: tuple[BuildResult, Path],
    variants: dict[str, tuple[BuildPlan, BuildResult]],
    tmp_path_factory: pytest.TempPathFactory,
) -> dict[str, PackageResult]:
    _res, tmpl = template
    base = tmp_path_factory.mktemp("pkg")
    out = {}
    for name, (plan, res) in variants.items():
        out[name] = package_backend(
            plan, res.bin_dir, tmpl, base / name, template_name=rb.TEMPLATE_NAME, template_version=rb.TEMPLATE_VERSION
        )
    return out


def smoke(folder: Path, cpu: str) -> SmokeResult:
    """Our host program (compiled against the tag's llama.h) loads the folder's own libllama under qemu."""
    plan = plan_smoke(
        folder,
        shipped_model(),
        kind="host",
        program=str(rb.host_program()),
        library=llama_library(folder, "linux"),
        qemu_cpu=cpu,
    )
    return run_smoke(plan, timeout=120)


def test_template_avx2_sigills_under_ivybridge_and_runs_under_haswell(template: tuple[BuildResult, Path]) -> None:
    _res, tmpl = template
    ivy = smoke(tmpl, "IvyBridge")
    assert ivy.sigill and ivy.returncode in (132, -4), ivy  # -4: killed by SIGILL (132 in a shell)
    has = smoke(tmpl, "Haswell")
    assert has.ok and has.tokens == 16, has


def test_avx1_variant_package_shape(template: tuple[BuildResult, Path], packaged: dict[str, PackageResult]) -> None:
    _res, tmpl = template
    pkg = packaged["ivybridge"]
    info = read_backend(pkg.folder)
    assert info.name == pkg.name and info.name != rb.TEMPLATE_NAME and "avx" in info.name
    assert info.version == rb.TEMPLATE_VERSION
    assert list(info.ise) == ["AVX"]
    assert "cpu-avx1" in info.display_name
    assert pkg.replaced == ("libggml-base.so.0.25.3", "libggml-cpu.so.0.25.3")
    # Only the swapped libraries differ; LM Studio's (here: the stand-in) files are byte-identical; links kept.
    for p in sorted(tmpl.iterdir()):
        q = pkg.folder / p.name
        if p.is_symlink():
            assert q.is_symlink() and os.readlink(q) == os.readlink(p)
        elif p.name in pkg.replaced:
            # ggml-base gets no -m flags: it may come out byte-identical; ggml-cpu must not.
            if "ggml-cpu" in p.name:
                assert q.read_bytes() != p.read_bytes()
            assert elf_runpath(q) == "$ORIGIN"
            assert os.access(q, os.X_OK)
        elif p.name not in ("backend-manifest.json", "display-data.json"):
            assert q.read_bytes() == p.read_bytes(), p.name
    prov = json.loads((pkg.folder / "unlocked-install.json").read_text())
    assert prov["variant"] == "cpu-avx1" and prov["llama_cpp_commit"] == rb.LLAMA_COMMIT
    assert "-DGGML_BMI2=OFF" in prov["build_flags"] and "-DGGML_F16C=ON" in prov["build_flags"]


def test_avx1_runs_on_ivybridge_but_not_sandybridge(packaged: dict[str, PackageResult]) -> None:
    folder = packaged["ivybridge"].folder
    ivy = smoke(folder, "IvyBridge")
    assert ivy.ok and ivy.tokens == 16 and "Once upon a time" in ivy.text, ivy
    # The libraries that ran are the folder's own: its libllama and the new ggml libraries next to it.
    loaded = {Path(p).name.split(".so")[0] for p in ivy.loaded}
    assert {"libllama", "libggml-base", "libggml-cpu"} <= loaded, ivy.loaded
    assert all(str(folder) in p for p in ivy.loaded), ivy.loaded
    # Ivy Bridge has F16C, Sandy Bridge does not: the Ivy Bridge build must crash there.
    snb = smoke(folder, "SandyBridge")
    assert snb.sigill, snb
    fa = packaged["ivybridge"].audit
    cpu = fa.get("libggml-cpu.so.0.25.3")
    assert cpu.uses("AVX") > 1000 and cpu.uses("F16C") > 0
    for ext in ("AVX2", "FMA", "BMI2", "AVX512"):
        assert cpu.uses(ext) == 0, (ext, cpu.counts)


def test_sandybridge_build_has_no_f16c_and_runs(packaged: dict[str, PackageResult]) -> None:
    pkg = packaged["sandybridge"]
    cpu = pkg.audit.get("libggml-cpu.so.0.25.3")
    assert cpu.uses("AVX") > 1000
    assert cpu.uses("F16C") == 0 and cpu.uses("BMI2") == 0 and cpu.uses("FMA") == 0
    r = smoke(pkg.folder, "SandyBridge")
    assert r.ok, r


def test_noavx_sse42_build_runs_on_westmere_nehalem_crashes_on_core2(packaged: dict[str, PackageResult]) -> None:
    pkg = packaged["nehalem"]
    assert list(read_backend(pkg.folder).ise) == []
    cpu = pkg.audit.get("libggml-cpu.so.0.25.3")
    assert cpu.uses("SSE4.2") + cpu.uses("SSE4.1") > 0 and cpu.uses("AVX") == 0
    for model in ("Westmere", "Nehalem"):
        r = smoke(pkg.folder, model)
        assert r.ok, (model, r)
    assert smoke(pkg.folder, "core2duo").sigill


def test_core2_k10_baseline_build(packaged: dict[str, PackageResult]) -> None:
    pkg = packaged["core2"]
    cpu = pkg.audit.get("libggml-cpu.so.0.25.3")
    for ext in ("SSE4.2", "SSE4.1", "POPCNT", "AVX"):
        assert cpu.uses(ext) == 0, (ext, cpu.counts)
    for model in ("core2duo", "Opteron_G1"):
        r = smoke(pkg.folder, model)
        assert r.ok, (model, r)
    # A K10 report gives the same flags, hence the same (cached) build directory.
    assert rb.plan_for("k10", "noavx").build_dir == rb.plan_for("core2", "noavx").build_dir


def test_isa_audit_refuses_avx2_libs_for_ivybridge(template: tuple[BuildResult, Path], tmp_path: Path) -> None:
    res, tmpl = template
    plan = rb.template_plan()
    dest = tmp_path / "bad"
    with pytest.raises(IsaViolationError) as ei:
        package_backend(
            plan, res.bin_dir, tmpl, dest, template_name=rb.TEMPLATE_NAME, usable_isa=rb.report_for("ivybridge").cpu.isa
        )  # type: ignore[union-attr]
    assert "AVX2" in ei.value.message and "libggml-cpu.so.0.25.3" in ei.value.details
    assert not dest.exists()


def test_abi_guard_on_real_libraries(
    template: tuple[BuildResult, Path], tmp_path: Path, compile_isa_lib: object
) -> None:
    _res, tmpl = template
    folder = tmp_path / "f"
    shutil.copytree(tmpl, folder, symlinks=True)
    assert check_abi(folder, ["libggml-base.so.0.25.3"], template_folder=tmpl) == []
    # A libggml-base from "another version" that lacks most symbols: libllama/libggml/libggml-cpu import them.
    fake = compile_isa_lib("fake.so", ())  # type: ignore[operator]
    shutil.copy(fake, folder / "libggml-base.so.0.25.3")
    missing = check_abi(folder, ["libggml-base.so.0.25.3"], template_folder=tmpl)
    importers = {m.importer for m in missing}
    assert {"libllama.so.0.5.0", "libggml.so.0.25.3", "libggml-cpu.so.0.25.3", "llm_engine.node"} <= importers
    assert any(m.symbol == "ggml_init" for m in missing)
    from app.core.builder.abi import require_abi

    with pytest.raises(AbiError, match="symbol"):
        require_abi(missing, folder=folder)


def test_rebuild_reuses_build_dir(variants: dict[str, tuple[BuildPlan, BuildResult]]) -> None:
    plan, _ = variants["ivybridge"]
    again = rb.build(plan)
    assert again.reused_build_dir
    assert "ninja: no work to do." in Path(plan.log_path).read_text().splitlines()[-2:][0] or any(
        "no work to do" in ln for ln in Path(plan.log_path).read_text().splitlines()[-5:]
    )


def test_whole_folder_audit_lists_every_binary(packaged: dict[str, PackageResult]) -> None:
    fa = audit_folder(packaged["ivybridge"].folder)
    assert {b.path for b in fa.binaries} == {
        "libggml-base.so.0.25.3",
        "libggml-cpu.so.0.25.3",
        "libggml.so.0.25.3",
        "libllama.so.0.5.0",
        "llm_engine.node",
        "liblmstudio_bindings.node",
    }
    assert not fa.get("llm_engine.node").counted
