"""cmake_isa_flags / manifest_ise / isa_from_cmake_flags on the CPU generations of docs/llama-build-notes.md §2."""

from __future__ import annotations

import pytest

from app.core.isa_flags import (
    GGML_ISA_OPTIONS,
    NativeBuildError,
    UnknownBaselineError,
    cmake_isa_flags,
    isa_from_cmake_flags,
    manifest_ise,
)

SSE = {"SSE3", "SSSE3", "SSE4.1", "SSE4.2"}
CORE2 = {"SSE3", "SSSE3"}
PENRYN = {"SSE3", "SSSE3", "SSE4.1"}
WESTMERE = SSE
SANDYBRIDGE = SSE | {"AVX"}
IVYBRIDGE = SSE | {"AVX", "F16C"}
PILEDRIVER = SSE | {"AVX", "F16C", "FMA", "BMI1"}
HASWELL = SSE | {"AVX", "F16C", "FMA", "BMI1", "BMI2", "AVX2"}
SKYLAKEX = HASWELL | {"AVX512F", "AVX512CD", "AVX512DQ", "AVX512BW", "AVX512VL"}


def on_options(flags: tuple[str, ...]) -> set[str]:
    return {f[2:].split("=")[0] for f in flags if f.endswith("=ON")}


def test_every_option_is_explicit_and_native_off() -> None:
    flags = cmake_isa_flags(IVYBRIDGE)
    assert flags[0] == "-DGGML_NATIVE=OFF"
    named = [f[2:].split("=")[0] for f in flags[1:]]
    assert named == list(GGML_ISA_OPTIONS)
    assert all(f.endswith(("=ON", "=OFF")) for f in flags)


@pytest.mark.parametrize(
    ("isa", "expected_on"),
    [
        (IVYBRIDGE, {"GGML_SSE42", "GGML_AVX", "GGML_F16C"}),
        (SANDYBRIDGE, {"GGML_SSE42", "GGML_AVX"}),
        (PILEDRIVER, {"GGML_SSE42", "GGML_AVX", "GGML_F16C", "GGML_FMA"}),
        (WESTMERE, {"GGML_SSE42"}),
        (CORE2, set()),
        (PENRYN, set()),
        (HASWELL, {"GGML_SSE42", "GGML_AVX", "GGML_F16C", "GGML_FMA", "GGML_AVX2", "GGML_BMI2"}),
        (SKYLAKEX, {"GGML_SSE42", "GGML_AVX", "GGML_F16C", "GGML_FMA", "GGML_AVX2", "GGML_BMI2", "GGML_AVX512"}),
    ],
    ids=["ivybridge", "sandybridge", "piledriver", "westmere", "core2", "penryn", "haswell", "skylakex"],
)
def test_tailored_flags(isa: set[str], expected_on: set[str]) -> None:
    assert on_options(cmake_isa_flags(isa)) == expected_on


def test_bmi2_only_with_avx2() -> None:
    # A CPU with BMI2 but (say, a VM hiding it) no AVX2 must not get -mbmi2 either.
    assert "-DGGML_BMI2=OFF" in cmake_isa_flags(IVYBRIDGE | {"BMI2"})
    assert "-DGGML_BMI2=ON" in cmake_isa_flags(HASWELL)


def test_avx512_needs_all_five_subsets() -> None:
    knights_landing_like = HASWELL | {"AVX512F", "AVX512CD"}
    assert "-DGGML_AVX512=OFF" in cmake_isa_flags(knights_landing_like)


def test_generic_variants() -> None:
    assert on_options(cmake_isa_flags(HASWELL, generic="cpu-avx1")) == {"GGML_SSE42", "GGML_AVX"}
    assert cmake_isa_flags((), generic="vulkan-avx1") == cmake_isa_flags(HASWELL, generic="cpu-avx1")
    assert on_options(cmake_isa_flags(HASWELL, generic="noavx")) == set()
    with pytest.raises(UnknownBaselineError, match="no generic CPU baseline"):
        cmake_isa_flags(HASWELL, generic="cuda-kepler")


def test_manifest_ise() -> None:
    assert manifest_ise(HASWELL) == ["AVX2"]
    assert manifest_ise(IVYBRIDGE) == ["AVX"]
    assert manifest_ise(WESTMERE) == []


@pytest.mark.parametrize("isa", [CORE2, WESTMERE, SANDYBRIDGE, IVYBRIDGE, PILEDRIVER, HASWELL, SKYLAKEX])
def test_flags_round_trip_within_the_cpu(isa: set[str]) -> None:
    needed = isa_from_cmake_flags(cmake_isa_flags(isa))
    assert needed <= isa
    # and the round trip is a fixed point
    assert cmake_isa_flags(needed) == cmake_isa_flags(isa)


def test_hand_recipe_leaks_bmi2() -> None:
    # docs/llama-build-notes.md §2.1: this recipe never names GGML_BMI2, so ggml's default ON adds -mbmi2.
    hand = ["-DGGML_NATIVE=OFF", "-DGGML_AVX=ON", "-DGGML_AVX2=OFF", "-DGGML_FMA=OFF", "-DGGML_F16C=OFF",
            "-DGGML_AVX512=OFF"]
    needed = isa_from_cmake_flags(hand)
    assert "BMI2" in needed
    assert not needed <= IVYBRIDGE


def test_native_build_is_refused() -> None:
    with pytest.raises(NativeBuildError):
        isa_from_cmake_flags(["-DGGML_AVX=ON"])
    with pytest.raises(NativeBuildError):
        isa_from_cmake_flags(["-DGGML_NATIVE:BOOL=ON"])
    assert isa_from_cmake_flags(["-DGGML_NATIVE:BOOL=OFF", *cmake_isa_flags((), generic="noavx")[1:]]) == set()
