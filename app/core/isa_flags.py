"""Instruction sets <-> ggml CMake options <-> LM Studio manifest ISE.

Every ggml x86 ISA option is always written explicitly ON or OFF: with GGML_NATIVE=OFF, ggml turns SSE42, AVX,
AVX2, BMI2, FMA and F16C ON by default, so a recipe that only names some of them leaks the rest (the common
"AVX on, AVX2/FMA off" recipe still compiles with -mbmi2 and SIGILLs on Ivy Bridge; docs/llama-build-notes.md §2.1).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

from app.core.hardware.report import ISA_ORDER

# Every x86 ISA option of ggml's CPU backend (ggml 0.25.3), in the order the flags are emitted.
GGML_ISA_OPTIONS: tuple[str, ...] = (
    "GGML_SSE42",
    "GGML_AVX",
    "GGML_AVX_VNNI",
    "GGML_AVX2",
    "GGML_BMI2",
    "GGML_FMA",
    "GGML_F16C",
    "GGML_AVX512",
    "GGML_AVX512_VBMI",
    "GGML_AVX512_VNNI",
    "GGML_AVX512_BF16",
    "GGML_AMX_TILE",
    "GGML_AMX_INT8",
    "GGML_AMX_BF16",
)

# Options that ggml turns ON when GGML_NATIVE=OFF and the option is not given (docs/llama-build-notes.md §2.1).
GGML_DEFAULT_ON: frozenset[str] = frozenset(
    {"GGML_SSE42", "GGML_AVX", "GGML_AVX2", "GGML_BMI2", "GGML_FMA", "GGML_F16C"}
)

_SSE_UP_TO_42: frozenset[str] = frozenset({"SSE3", "SSSE3", "SSE4.1", "SSE4.2"})
_AVX512_BASE: frozenset[str] = frozenset({"AVX512F", "AVX512CD", "AVX512VL", "AVX512DQ", "AVX512BW"})

# What the CPU must have for an option to be turned ON (the -m flags ggml passes, plus what they imply in gcc).
# An option is ON iff all of its ISA are usable AND every option it depends on is ON.
_OPTION_NEEDS: Mapping[str, frozenset[str]] = {
    "GGML_SSE42": _SSE_UP_TO_42,
    "GGML_AVX": _SSE_UP_TO_42 | {"AVX"},
    "GGML_F16C": frozenset({"F16C"}),
    "GGML_FMA": frozenset({"FMA"}),
    "GGML_AVX2": frozenset({"AVX2"}),
    "GGML_BMI2": frozenset({"BMI2"}),
    "GGML_AVX_VNNI": frozenset({"AVX_VNNI"}),
    "GGML_AVX512": _AVX512_BASE,
    "GGML_AVX512_VBMI": frozenset({"AVX512_VBMI"}),
    "GGML_AVX512_VNNI": frozenset({"AVX512_VNNI"}),
    "GGML_AVX512_BF16": frozenset({"AVX512_BF16"}),
    "GGML_AMX_TILE": frozenset({"AMX_TILE"}),
    "GGML_AMX_INT8": frozenset({"AMX_INT8"}),
    "GGML_AMX_BF16": frozenset({"AMX_BF16"}),
}
_OPTION_DEPENDS: Mapping[str, tuple[str, ...]] = {
    "GGML_AVX": ("GGML_SSE42",),
    "GGML_F16C": ("GGML_AVX",),
    "GGML_FMA": ("GGML_AVX",),
    "GGML_AVX2": ("GGML_AVX",),
    # BMI2 only together with AVX2: an ivybridge/piledriver build must contain no BMI2 (upstream's variants agree).
    "GGML_BMI2": ("GGML_AVX2",),
    "GGML_AVX_VNNI": ("GGML_AVX2",),
    "GGML_AVX512": ("GGML_AVX2", "GGML_FMA", "GGML_F16C"),
    "GGML_AVX512_VBMI": ("GGML_AVX512",),
    "GGML_AVX512_VNNI": ("GGML_AVX512",),
    "GGML_AVX512_BF16": ("GGML_AVX512",),
    "GGML_AMX_TILE": ("GGML_AVX512",),
    "GGML_AMX_INT8": ("GGML_AMX_TILE",),
    "GGML_AMX_BF16": ("GGML_AMX_TILE",),
}

# What a build with an option ON needs from the CPU (gcc: -mavx implies SSE4.2 and below, -mavx2/-mfma/-mf16c
# imply AVX, -mavx512f implies AVX2).
_OPTION_REQUIRES: Mapping[str, frozenset[str]] = {
    "GGML_SSE42": _SSE_UP_TO_42,
    "GGML_AVX": _SSE_UP_TO_42 | {"AVX"},
    "GGML_F16C": _SSE_UP_TO_42 | {"AVX", "F16C"},
    "GGML_FMA": _SSE_UP_TO_42 | {"AVX", "FMA"},
    "GGML_AVX2": _SSE_UP_TO_42 | {"AVX", "AVX2"},
    "GGML_BMI2": frozenset({"BMI2"}),
    "GGML_AVX_VNNI": _SSE_UP_TO_42 | {"AVX", "AVX2", "AVX_VNNI"},
    "GGML_AVX512": _SSE_UP_TO_42 | {"AVX", "AVX2"} | _AVX512_BASE,
    "GGML_AVX512_VBMI": _AVX512_BASE | {"AVX512_VBMI"},
    "GGML_AVX512_VNNI": _AVX512_BASE | {"AVX512_VNNI"},
    "GGML_AVX512_BF16": _AVX512_BASE | {"AVX512_BF16"},
    "GGML_AMX_TILE": frozenset({"AMX_TILE"}),
    "GGML_AMX_INT8": frozenset({"AMX_TILE", "AMX_INT8"}),
    "GGML_AMX_BF16": frozenset({"AMX_TILE", "AMX_BF16"}),
}

# Named baselines for prebuilt downloads: the ISA a generic build of that kind may use.
BASELINES: Mapping[str, frozenset[str]] = {
    "x86-64": frozenset(),
    "sse42": _SSE_UP_TO_42,
    "avx1": _SSE_UP_TO_42 | {"AVX"},  # = upstream's "sandybridge" variant
    "ivybridge": _SSE_UP_TO_42 | {"AVX", "F16C"},
    "piledriver": _SSE_UP_TO_42 | {"AVX", "F16C", "FMA"},
    "haswell": _SSE_UP_TO_42 | {"AVX", "F16C", "FMA", "AVX2", "BMI1", "BMI2"},
}
# Variant id -> baseline of its prebuilt (generic) build.
GENERIC_VARIANT_BASELINE: Mapping[str, str] = {
    "cpu-avx1": "avx1",
    "vulkan-avx1": "avx1",
    "noavx": "x86-64",
}


class UnknownBaselineError(ValueError):
    """`generic` named neither a variant id nor a baseline this module knows."""


def _canonical(isa: Iterable[str]) -> frozenset[str]:
    known = set(ISA_ORDER)
    return frozenset(x for x in isa if x in known)


def cmake_option_states(isa: Iterable[str], *, generic: str | None = None) -> dict[str, bool]:
    """ON/OFF for every ggml ISA option, for a build that may use exactly `isa` (or `generic`'s baseline)."""
    usable = _canonical(isa) if generic is None else baseline_isa(generic)
    states: dict[str, bool] = {}
    # _OPTION_DEPENDS only points to options listed earlier in this order.
    order = sorted(GGML_ISA_OPTIONS, key=_dependency_depth)
    for opt in order:
        on = _OPTION_NEEDS[opt] <= usable and all(states[d] for d in _OPTION_DEPENDS.get(opt, ()))
        states[opt] = on
    return {opt: states[opt] for opt in GGML_ISA_OPTIONS}


def _dependency_depth(opt: str) -> int:
    deps = _OPTION_DEPENDS.get(opt, ())
    return 0 if not deps else 1 + max(_dependency_depth(d) for d in deps)


def baseline_isa(generic: str) -> frozenset[str]:
    """The ISA set of a variant id's generic build ("cpu-avx1", "noavx", ...) or of a baseline name ("avx1")."""
    name = GENERIC_VARIANT_BASELINE.get(generic, generic)
    try:
        return BASELINES[name]
    except KeyError:
        known = sorted({*GENERIC_VARIANT_BASELINE, *BASELINES})
        raise UnknownBaselineError(f"no generic CPU baseline for {generic!r}; known: {', '.join(known)}") from None


def cmake_isa_flags(isa: Iterable[str], *, generic: str | None = None) -> tuple[str, ...]:
    """`-DGGML_NATIVE=OFF` plus every ggml ISA option explicitly ON or OFF.

    Args:
        isa: the canonical usable ISA names of the target CPU (report.ISA_ORDER names; others are ignored).
        generic: a variant id ("cpu-avx1", "vulkan-avx1", "noavx") or baseline name; when given, `isa` is
            ignored and the variant's generic baseline is used (for prebuilt downloads).
    """
    states = cmake_option_states(isa, generic=generic)
    return ("-DGGML_NATIVE=OFF", *(f"-D{opt}={'ON' if on else 'OFF'}" for opt, on in states.items()))


def manifest_ise(isa: Iterable[str]) -> list[str]:
    """What an LM Studio manifest may claim for a build needing `isa`: ["AVX2"], ["AVX"] or [].

    docs/lmstudio-contract.md §11.

    LM Studio's survey knows only AVX and AVX2, and every claimed ISE must be in the survey; `[""]` fails.
    """
    s = set(isa)
    if "AVX2" in s:
        return ["AVX2"]
    if "AVX" in s:
        return ["AVX"]
    return []


_FLAG_RE = re.compile(r"^-D(?P<name>[A-Za-z0-9_]+)(?::[A-Za-z]+)?=(?P<value>.*)$")
_TRUE = {"ON", "1", "TRUE", "YES", "Y"}
_FALSE = {"OFF", "0", "FALSE", "NO", "N", ""}


class NativeBuildError(ValueError):
    """The flags leave GGML_NATIVE on: the ISA then depends on the machine that built it."""


def parse_cmake_defines(flags: Iterable[str]) -> dict[str, bool]:
    """`-DNAME=ON` / `-DNAME:BOOL=OFF` -> {NAME: bool}; non-boolean or non-define arguments are skipped."""
    out: dict[str, bool] = {}
    for flag in flags:
        m = _FLAG_RE.match(flag.strip())
        if not m:
            continue
        value = m.group("value").strip().upper()
        if value in _TRUE:
            out[m.group("name")] = True
        elif value in _FALSE:
            out[m.group("name")] = False
    return out


def isa_from_cmake_flags(flags: Iterable[str]) -> set[str]:
    """Which canonical ISA a ggml build configured with `flags` needs from the CPU.

    Options not named take ggml's defaults (SSE42, AVX, AVX2, BMI2, FMA, F16C ON), which is exactly how the
    hand recipes leak BMI2.

    Raises:
        NativeBuildError: GGML_NATIVE is not explicitly OFF (a -march=native build).
    """
    defines = parse_cmake_defines(flags)
    if defines.get("GGML_NATIVE", True):
        raise NativeBuildError(
            "GGML_NATIVE is not OFF: the build uses -march=native, so its ISA is whatever the build machine had"
        )
    needed: set[str] = set()
    for opt in GGML_ISA_OPTIONS:
        if defines.get(opt, opt in GGML_DEFAULT_ON):
            needed |= _OPTION_REQUIRES[opt]
    return needed


def sort_isa(isa: Iterable[str]) -> tuple[str, ...]:
    """Canonical ISA names in ISA_ORDER order (unknown names dropped)."""
    s = set(isa)
    return tuple(x for x in ISA_ORDER if x in s)
