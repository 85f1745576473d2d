"""our_backend_name: docs/lmstudio-contract.md §4.4 examples, grammar tokens kept, never an official name."""

from __future__ import annotations

import pytest

from app.core.lmstudio.naming import OFFICIAL_NAMES, VALID_NAME, NamingError, our_backend_name, validate_name


@pytest.mark.parametrize(
    ("template", "variant", "expected"),
    [
        ("llama.cpp-linux-x86_64-avx2", "cpu-avx1", "llama.cpp-linux-x86_64-avx1-unlocked"),
        ("llama.cpp-win-x86_64-avx2", "cpu-avx1", "llama.cpp-win-x86_64-avx1-unlocked"),
        ("llama.cpp-win-x86_64-vulkan-avx2", "vulkan-avx1", "llama.cpp-win-x86_64-vulkan-avx1-unlocked"),
        ("llama.cpp-win-x86_64-avx2", "noavx", "llama.cpp-win-x86_64-noavx-unlocked"),
        (
            "llama.cpp-linux-x86_64-nvidia-cuda-avx2",
            "cuda-avx1-kepler",
            "llama.cpp-linux-x86_64-nvidia-cuda-avx1-kepler-unlocked",
        ),
        ("llama.cpp-linux-x86_64-nvidia-cuda12-avx2", "cuda", "llama.cpp-linux-x86_64-nvidia-cuda12-avx2-unlocked"),
        # community name as template: its own tag dropped, ours added
        (
            "llama.cpp-linux-x86_64-nvidia-cuda-avx2-k40k80",
            "cuda-avx1-kepler",
            "llama.cpp-linux-x86_64-nvidia-cuda-avx1-kepler-unlocked",
        ),
        # re-cloning one of ours does not double the token
        ("llama.cpp-win-x86_64-avx1-unlocked", "cpu-noavx", "llama.cpp-win-x86_64-noavx-unlocked"),
        ("llama.cpp-linux-arm64", "cpu", "llama.cpp-linux-arm64-unlocked"),
    ],
)
def test_names(template: str, variant: str, expected: str) -> None:
    got = our_backend_name(template, variant)
    assert got == expected
    assert VALID_NAME.match(got) and got not in OFFICIAL_NAMES


@pytest.mark.parametrize(
    ("template", "variant"),
    [
        ("llama.cpp-win-x86_64-vulkan-avx2", "cpu-avx1"),
        ("llama.cpp-win-x86_64-avx2", "vulkan-avx1"),
        ("llama.cpp-win-x86_64-vulkan-avx2", "cuda-avx1"),
        ("nonsense", "cpu-avx1"),
    ],
)
def test_mismatches_refused(template: str, variant: str) -> None:
    with pytest.raises(NamingError):
        our_backend_name(template, variant)


def test_every_official_name_gets_a_distinct_name() -> None:
    for official in OFFICIAL_NAMES:
        variant = "cpu-avx1"
        for fw, token in (("vulkan", "vulkan"), ("cuda", "nvidia-cuda"), ("rocm", "amd-rocm"), ("metal", "apple")):
            if token in official:
                variant = f"{fw}-avx1"
        name = our_backend_name(official, variant)
        assert name != official and name.endswith("-unlocked")


@pytest.mark.parametrize("bad", ["Llama.CPP-x", "llama cpp", "llama.cpp-win-x86_64-avx2", "ü-unlocked", ""])
def test_validate_name_refuses(bad: str) -> None:
    with pytest.raises(NamingError):
        validate_name(bad)
