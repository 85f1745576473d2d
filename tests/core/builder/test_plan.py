"""plan_build: exact CMake argv for CPU/Vulkan/CUDA plans; CUDA arch lists and toolchain rules per GPU generation.

The CPUs come from real /proc/cpuinfo dumps; NVIDIA GPUs we cannot have here are stood in by NvidiaGpu records
with their real compute capabilities (K40 3.5, K80 3.7, GTX 970 5.2, GTX 1070 6.1, V100 7.0, H100 9.0).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from app.core.builder.plan import (
    ConfigureCheckError,
    PlanError,
    cuda_arch,
    parse_variant,
    plan_build,
    verify_configure_output,
)
from app.core.builder.source import SourceTree
from app.core.hardware.report import HardwareReport, NvidiaGpu
from tests.core.builder.realbuild import report_for

SRC = SourceTree(Path("/src/llama.cpp"), "b6275", "e288693abc", "test")
ROOT = Path("/cache/builds")


def plan(cpu: str, variant: str, **kw: object):  # type: ignore[no-untyped-def]
    return plan_build(report_for(cpu), variant, SRC, build_root=ROOT, **kw)  # type: ignore[arg-type]


def with_gpus(cpu: str, *gpus: tuple[str, str, str]) -> HardwareReport:
    return dataclasses.replace(
        report_for(cpu),
        nvidia_gpus=tuple(NvidiaGpu(i, n, cc, drv) for i, (n, cc, drv) in enumerate(gpus)),
    )


def test_ivybridge_cpu_avx1_exact_argv() -> None:
    p = plan(
        "ivybridge",
        "cpu-avx1",
        jobs=2,
        ccache="/usr/bin/ccache",
        ninja="/usr/bin/ninja",
        cmake="cmake",
        platform="linux",
    )
    assert p.configure.argv == (
        "cmake",
        "-S",
        "/src/llama.cpp",
        "-B",
        p.build_dir,
        "-G",
        "Ninja",
        "-DCMAKE_MAKE_PROGRAM=/usr/bin/ninja",
        "-DCMAKE_BUILD_TYPE=Release",
        "-DGGML_NATIVE=OFF",
        "-DGGML_SSE42=ON",
        "-DGGML_AVX=ON",
        "-DGGML_AVX_VNNI=OFF",
        "-DGGML_AVX2=OFF",
        "-DGGML_BMI2=OFF",
        "-DGGML_FMA=OFF",
        "-DGGML_F16C=ON",
        "-DGGML_AVX512=OFF",
        "-DGGML_AVX512_VBMI=OFF",
        "-DGGML_AVX512_VNNI=OFF",
        "-DGGML_AVX512_BF16=OFF",
        "-DGGML_AMX_TILE=OFF",
        "-DGGML_AMX_INT8=OFF",
        "-DGGML_AMX_BF16=OFF",
        "-DBUILD_SHARED_LIBS=ON",
        "-DLLAMA_CURL=OFF",
        "-DLLAMA_OPENSSL=OFF",
        "-DLLAMA_BUILD_TESTS=OFF",
        "-DLLAMA_BUILD_EXAMPLES=OFF",
        "-DLLAMA_BUILD_SERVER=OFF",
        "-DLLAMA_BUILD_TOOLS=OFF",
        "-DLLAMA_USE_PREBUILT_UI=OFF",
        "-DLLAMA_BUILD_APP=OFF",
        "-DGGML_CCACHE=ON",
        "-DLLAMA_BUILD_COMMIT=e288693ab",
        "-DLLAMA_BUILD_NUMBER=6275",
        "-DCMAKE_BUILD_WITH_INSTALL_RPATH=ON",
        "-DCMAKE_INSTALL_RPATH=$ORIGIN",
    )
    assert p.build.argv == (
        "cmake",
        "--build",
        p.build_dir,
        "--config",
        "Release",
        "-j",
        "2",
        "--target",
        "ggml-base",
        "ggml-cpu",
    )
    assert p.build_dir.startswith("/cache/builds/cpu-avx1-") and p.bin_dir == p.build_dir + "/bin"
    assert p.manifest_ise == ("AVX",) and p.isa == ("SSE3", "SSSE3", "SSE4.1", "SSE4.2", "AVX", "F16C")
    assert set(p.expected_cpu_flags) == {"-msse4.2", "-mavx", "-mf16c"}
    assert p.swap_targets == ("ggml-base", "ggml-cpu") and p.patch_features == frozenset()


def test_only_needed_targets_without_smoke_program_and_server_for_2x() -> None:
    assert plan("sandybridge", "cpu-avx1", smoke_program=False).targets == ("ggml-base", "ggml-cpu")
    p = plan("sandybridge", "cpu-avx1", smoke_program=False, replace_server=True)
    assert p.targets == ("ggml-base", "ggml-cpu", "llama-server")
    assert "-DLLAMA_BUILD_SERVER=ON" in p.cmake_defines and "-DLLAMA_BUILD_TOOLS=ON" in p.cmake_defines


@pytest.mark.parametrize(
    ("cpu", "variant", "on"),
    [
        ("sandybridge", "cpu-avx1", {"GGML_SSE42", "GGML_AVX"}),  # no F16C on Sandy Bridge
        ("haswell", "cpu-avx1", {"GGML_SSE42", "GGML_AVX", "GGML_F16C", "GGML_FMA"}),  # BMI2 goes with AVX2
        ("haswell", "cpu-avx2", {"GGML_SSE42", "GGML_AVX", "GGML_F16C", "GGML_FMA", "GGML_BMI2", "GGML_AVX2"}),
        ("nehalem", "noavx", {"GGML_SSE42"}),
        ("core2", "noavx", set()),
        ("k10", "noavx", set()),
    ],
)
def test_tailored_isa(cpu: str, variant: str, on: set[str]) -> None:
    p = plan(cpu, variant)
    got = {d[2:].split("=")[0] for d in p.cmake_defines if d.startswith("-DGGML_") and d.endswith("=ON")}
    assert got - {"GGML_CCACHE"} == on
    assert "-DGGML_NATIVE=OFF" in p.cmake_defines


def test_generic_flags_ignore_the_cpu() -> None:
    p = plan_build(None, "cpu-avx1", SRC, build_root=ROOT, generic=True)
    assert p.generic and "-DGGML_F16C=OFF" in p.cmake_defines and "-DGGML_AVX=ON" in p.cmake_defines
    assert plan_build(None, "noavx", SRC, build_root=ROOT, generic=True).manifest_ise == ()
    # AVX2 variants (e.g. CUDA packs for AVX2 CPUs in the release matrix) use the haswell baseline.
    for v in ("cpu-avx2", "cuda-avx2"):
        p2 = plan_build(None, v, SRC, build_root=ROOT, generic=True, extra_cuda_targets=("6.1",), cuda_version=(12, 4))
        assert "-DGGML_AVX2=ON" in p2.cmake_defines and "-DGGML_AVX512=OFF" in p2.cmake_defines
        assert p2.manifest_ise == ("AVX2",)


def test_variant_that_the_cpu_cannot_run_is_refused() -> None:
    with pytest.raises(PlanError, match="needs AVX"):
        plan("nehalem", "cpu-avx1")
    with pytest.raises(PlanError, match="AVX2"):
        plan("ivybridge", "cpu-avx2")
    with pytest.raises(PlanError, match="Unknown build variant"):
        parse_variant("")


def test_same_inputs_same_build_dir_other_flags_other_dir() -> None:
    assert plan("ivybridge", "cpu-avx1").build_dir == plan("ivybridge", "cpu-avx1").build_dir
    assert plan("ivybridge", "cpu-avx1").build_dir != plan("sandybridge", "cpu-avx1").build_dir


def test_vulkan_plan() -> None:
    p = plan("ivybridge", "vulkan-avx1")
    assert "-DGGML_VULKAN=ON" in p.cmake_defines and p.patch_features == frozenset({"vulkan"})
    assert p.targets[:3] == ("ggml-base", "ggml-cpu", "ggml-vulkan") and p.framework == "vulkan"


@pytest.mark.parametrize(
    ("gpus", "archs", "targets", "kepler"),
    [
        ((("Tesla K40m", "3.5", "470.82.01"),), "35", ("3.5",), True),
        ((("Tesla K80", "3.7", "470.82.01"),), "37", ("3.7",), True),
        ((("Tesla K80", "3.7", "470.82.01"), ("Tesla K40m", "3.5", "470.82.01")), "35;37", ("3.5", "3.7"), True),
        ((("GeForce GTX 970", "5.2", "535.0"),), "52", ("5.2",), False),
        ((("GeForce GTX 1070", "6.1", "535.0"),), "61", ("6.1",), False),
        ((("Tesla V100", "7.0", "550.0"),), "70", ("7.0",), False),
        ((("H100", "9.0", "570.0"),), "90", ("9.0",), False),
    ],
)
def test_cuda_arch_lists(
    gpus: tuple[tuple[str, str, str], ...], archs: str, targets: tuple[str, ...], kepler: bool
) -> None:
    rep = with_gpus("ivybridge", *gpus)
    cuda = (11, 8) if kepler else (12, 4)
    p = plan_build(rep, "cuda-avx1", SRC, build_root=ROOT, nvcc="/opt/cuda/bin/nvcc", cuda_version=cuda)
    assert f"-DCMAKE_CUDA_ARCHITECTURES={archs}" in p.cmake_defines
    assert "-DGGML_CUDA=ON" in p.cmake_defines and "-DCMAKE_CUDA_COMPILER=/opt/cuda/bin/nvcc" in p.cmake_defines
    assert p.gpu_targets == targets and p.cuda_architectures == archs
    assert ("cuda-kepler" in p.patch_features) == kepler
    assert p.swap_targets == ("ggml-base", "ggml-cpu", "ggml-cuda", "ggml", "llama")
    assert p.manifest_ise == ("AVX",)
    if kepler:
        assert any("CUDA ≤ 11.8" in n and "470" in n for n in p.notes)


def test_kepler_refuses_cuda_12_and_cuda13_refuses_pascal() -> None:
    with pytest.raises(PlanError, match="cannot build for Kepler") as ei:
        plan_build(
            with_gpus("ivybridge", ("Tesla K80", "3.7", "470.82.01")),
            "cuda-avx1",
            SRC,
            build_root=ROOT,
            cuda_version=(12, 4),
        )
    assert "11.8" in ei.value.hint and "470" in ei.value.hint
    with pytest.raises(PlanError, match=r"CC < 7\.5"):
        plan_build(
            with_gpus("ivybridge", ("GeForce GTX 1070", "6.1", "580.0")),
            "cuda-avx1",
            SRC,
            build_root=ROOT,
            cuda_version=(13, 0),
        )
    # Hopper is fine with CUDA 13.
    plan_build(with_gpus("haswell", ("H100", "9.0", "580.0")), "cuda-avx2", SRC, build_root=ROOT, cuda_version=(13, 0))


def test_cuda_without_gpus_is_refused() -> None:
    with pytest.raises(PlanError, match="compute capabilities"):
        plan("ivybridge", "cuda-avx1")


def test_cuda_arch_strings() -> None:
    assert cuda_arch("3.7") == "37" and cuda_arch("12.0") == "120"
    with pytest.raises(PlanError):
        cuda_arch("sm_37")


# Real configure output lines (docs/llama-build-notes.md §2.1) against the plan they should match.
GOOD = "-- Adding CPU backend variant ggml-cpu: -msse4.2;-mf16c;-mavx GGML_SSE42;GGML_F16C;GGML_AVX"
HAND = "-- Adding CPU backend variant ggml-cpu: -msse4.2;-mbmi2;-mavx GGML_SSE42;GGML_BMI2;GGML_AVX"
NATIVE = "-- Adding CPU backend variant ggml-cpu: -march=native "
UNUSED = [
    "CMake Warning:",
    "  Manually-specified variables were not used by the project:",
    "    LLAMA_AVX",
]


def test_configure_verification() -> None:
    p = plan("ivybridge", "cpu-avx1")
    verify_configure_output(p, ["-- foo", GOOD])
    with pytest.raises(ConfigureCheckError, match="differ"):
        verify_configure_output(p, [HAND])  # the BMI2 leak of the hand recipe
    with pytest.raises(ConfigureCheckError, match="march=native"):
        verify_configure_output(p, [NATIVE])
    with pytest.raises(ConfigureCheckError, match="ignored some of our -D options: LLAMA_AVX"):
        verify_configure_output(p, [GOOD, *UNUSED])
    # Options a tag may not know yet (or any more) are harmless.
    verify_configure_output(p, [GOOD, *UNUSED[:2], "    LLAMA_BUILD_APP", "    LLAMA_USE_PREBUILT_UI", "", "--"])
    with pytest.raises(ConfigureCheckError, match="did not print"):
        verify_configure_output(p, ["-- nothing"])
    x64 = plan("core2", "noavx")
    verify_configure_output(x64, ["-- Adding CPU backend variant ggml-cpu:  "])
