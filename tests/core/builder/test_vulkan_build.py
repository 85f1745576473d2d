"""A real Vulkan build (with the Vulkan-Headers < 1.3.272 guard patch) smoke-tested on lavapipe.

lavapipe (Mesa's software Vulkan device, type CPU) is a real Vulkan implementation, so this is the real GPU
code path; ggml skips CPU-type devices unless GGML_VK_VISIBLE_DEVICES names them (docs/llama-build-notes.md §7.2)
— which also
gives a real silent-CPU-fallback case that the smoke test must fail. Cold cost ≈ 5 min (about 190 shaders),
warm a few seconds plus ≈ 20 s of lavapipe pipeline compilation.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from app.core.builder.audit import audit_folder, audit_violations
from app.core.builder.prereq import check_prerequisites, find_tools
from app.core.builder.smoke import plan_smoke, run_smoke
from app.core.builder.tinymodel import shipped_model
from tests.core.builder import realbuild as rb

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1200)]


@pytest.fixture(scope="module")
def vulkan_bin() -> Path:
    if not check_prerequisites("vulkan", find_tools()).ok or shutil.which("vulkaninfo") is None:
        pytest.skip("Vulkan build prerequisites missing: scripts/test.sh installs glslc, libvulkan-dev, spirv-headers")
    plan = rb.vulkan_plan()
    assert "vulkan-layer-settings-header-guard.patch" in {a.file for a in rb.source_tree(frozenset({"vulkan"})).patches}
    return rb.build(plan).bin_dir


def test_patched_source_builds_ggml_vulkan(vulkan_bin: Path) -> None:
    assert (vulkan_bin / "libggml-vulkan.so").exists()
    src = Path(rb.vulkan_plan().source_dir) / "ggml/src/ggml-vulkan/ggml-vulkan.cpp"
    assert "#if VK_HEADER_VERSION >= 272" in src.read_text()


def test_smoke_on_lavapipe_requires_the_device_lines(vulkan_bin: Path, tmp_path: Path) -> None:
    folder = tmp_path / "vk"
    rb.copy_bin(vulkan_bin, folder)
    env = {"GGML_VK_VISIBLE_DEVICES": "0", "XDG_RUNTIME_DIR": str(tmp_path)}
    ok = run_smoke(plan_smoke(folder, shipped_model(), framework="vulkan", env=env), timeout=300)
    assert ok.ok, ok
    assert any("ggml_vulkan: 0 = llvmpipe" in ln for ln in ok.device_lines)
    assert any("offloaded 3/3 layers to GPU" in ln for ln in ok.device_lines)
    # Without the device list ggml finds "no devices" and silently runs on the CPU: that must fail.
    fallback = run_smoke(
        plan_smoke(folder, shipped_model(), framework="vulkan", env={"XDG_RUNTIME_DIR": str(tmp_path)}), timeout=300
    )
    assert fallback.returncode == 0 and not fallback.ok
    assert "did not load" in fallback.reason


def test_vulkan_variant_has_no_avx2_for_ivybridge(vulkan_bin: Path) -> None:
    fa = audit_folder(vulkan_bin)
    assert audit_violations(fa, rb.report_for("ivybridge").cpu.isa) == []  # type: ignore[union-attr]
    assert fa.get("libggml-cpu.so.0.25.3").uses("F16C") > 0
