"""Our backend names: official grammar tokens kept, ISE token replaced, ``-unlocked`` added.

The rule is docs/lmstudio-contract.md §4.4.

``<engine>-<os>-<arch>[-<gpu-vendor>-<framework>][-<cpu-ise>]`` is the official grammar (§4.1).
Our name keeps engine, OS, arch and GPU tokens of the template, puts the variant's ISE token
(``avx1``, ``noavx``, ``avx2``) where the template's was, appends the variant's extra tags
(``kepler``) and the project token ``unlocked``. Lower-case ``[a-z0-9._-]`` only; never an
official name (no official name ends in ``-unlocked``).
"""

from __future__ import annotations

import re

from app.core.errors import UsageError

PROJECT_TOKEN = "unlocked"
OS_TOKENS = ("win", "linux", "mac")
GPU_TOKENS: dict[str, tuple[str, ...]] = {
    # variant framework -> accepted template GPU token sequences (first token of the pair)
    "vulkan": ("vulkan",),
    "cuda": ("nvidia-cuda", "nvidia-cuda12", "nvidia-cuda13"),
    "rocm": ("amd-rocm",),
    "metal": ("apple-metal",),
}
_GPU_SEQS = [s for seqs in GPU_TOKENS.values() for s in seqs]
ISE_TOKENS = ("avx2", "avx1", "avx", "avx0", "noavx", "advsimd", "avx512")
VALID_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]*$")

# Official names seen (docs/lmstudio-contract.md §4.2); ours must never equal one of them.
OFFICIAL_NAMES = frozenset(
    {
        "llama.cpp-win-x86_64-avx2",
        "llama.cpp-win-x86_64-vulkan-avx2",
        "llama.cpp-win-x86_64-nvidia-cuda-avx2",
        "llama.cpp-win-x86_64-nvidia-cuda12-avx2",
        "llama.cpp-win-x86_64-amd-rocm-avx2",
        "llama.cpp-win-arm64",
        "llama.cpp-linux-x86_64-avx2",
        "llama.cpp-linux-x86_64-vulkan-avx2",
        "llama.cpp-linux-x86_64-nvidia-cuda-avx2",
        "llama.cpp-linux-x86_64-nvidia-cuda12-avx2",
        "llama.cpp-linux-x86_64-amd-rocm-avx2",
        "llama.cpp-linux-arm64",
        "llama.cpp-linux-arm64-nvidia-cuda13",
        "llama.cpp-mac-arm64-apple-metal-advsimd",
        "mlx-llm-mac-arm64-apple-metal-advsimd",
    }
)


# The official grammar (docs/lmstudio-contract.md §4.1): engine, OS, arch, optional GPU part, then the ISE token
# LM Studio uses for that OS/arch - avx2 on x86_64, advsimd on mac-arm64, none on linux-arm64 and win-arm64.
OFFICIAL_GRAMMAR = re.compile(
    r"^(?P<engine>llama\.cpp|mlx-llm|harmony)-(?P<os>win|linux|mac)-(?P<arch>x86_64|arm64)"
    r"(?:-(?P<gpu>nvidia-cuda(?:12|13)?|amd-rocm|vulkan|apple-metal))?(?:-(?P<ise>avx2|advsimd))?$"
)
# manifest ``instruction_set_extensions`` LM Studio ships for each ISE token (§5.2, §11.2)
OFFICIAL_ISE: dict[str, tuple[tuple[str, ...], ...]] = {
    "avx2": (("AVX2",),),
    "advsimd": (("AdvSIMD",),),
    "": ((), ("AdvSIMD",)),  # arm64 names carry no token; what the manifest lists is not documented
}


def official_grammar(name: str) -> dict[str, str] | None:
    """The parts of ``name`` when it follows LM Studio's own naming (official ISE token included), else None."""
    m = OFFICIAL_GRAMMAR.match(name)
    if m is None:
        return None
    parts = {k: v or "" for k, v in m.groupdict().items()}
    want = {"x86_64": "avx2", "arm64": "advsimd" if parts["os"] == "mac" else ""}[parts["arch"]]
    return parts if parts["ise"] == want else None


def looks_official(name: str) -> bool:
    """True for a known official name or one that follows the official grammar with the official ISE token."""
    return name in OFFICIAL_NAMES or official_grammar(name) is not None


class NamingError(UsageError):
    code = "bad-backend-name"


def validate_name(name: str) -> None:
    if not VALID_NAME.match(name):
        raise NamingError(
            f"backend name {name!r} is not lower-case [a-z0-9._-]",
            hint="use a name like llama.cpp-win-x86_64-avx1-unlocked",
        )
    if name in OFFICIAL_NAMES:
        raise NamingError(
            f"{name} is the name of an official LM Studio backend",
            hint="our backends carry the -unlocked token so LM Studio never confuses them with its own",
        )


def _split_template(template_name: str) -> tuple[str, list[str], list[str], str | None]:
    """(engine-os-arch prefix, gpu tokens, other tokens, ise token) of an official-style name."""
    parts = template_name.lower().split("-")
    os_idx = next((i for i, p in enumerate(parts) if p in OS_TOKENS and i > 0), None)
    if os_idx is None or os_idx + 1 >= len(parts):
        raise NamingError(
            f"cannot read {template_name!r} as <engine>-<os>-<arch>-…",
            hint="use an official LM Studio backend as the template",
        )
    prefix = "-".join(parts[: os_idx + 2])
    rest = parts[os_idx + 2 :]
    gpu: list[str] = []
    joined = "-".join(rest)
    for seq in sorted(_GPU_SEQS, key=len, reverse=True):
        if joined == seq or joined.startswith(seq + "-"):
            gpu = seq.split("-")
            rest = rest[len(gpu) :]
            break
    ise: str | None = None
    other: list[str] = []
    for tok in rest:
        if tok in ISE_TOKENS and ise is None:
            ise = tok
        elif tok != PROJECT_TOKEN:
            other.append(tok)
    return prefix, gpu, other, ise


def our_backend_name(template_name: str, variant: str) -> str:
    """Our manifest ``name`` for ``variant`` built from the template backend ``template_name``.

    ``variant``: ``[framework-]ise[-tag…]`` such as "cpu-avx1", "vulkan-avx1", "noavx",
    "cuda-avx1-kepler", "cuda" (template ISE kept). Raises :class:`NamingError` if the variant's
    framework does not match the template's GPU part.
    """
    prefix, gpu, _other, tmpl_ise = _split_template(template_name)
    vparts = [p for p in variant.lower().split("-") if p]
    framework = "cpu"
    if vparts and (vparts[0] in GPU_TOKENS or vparts[0] == "cpu"):
        framework = vparts.pop(0)
    ise: str | None = None
    tags: list[str] = []
    for p in vparts:
        if p in ISE_TOKENS and ise is None:
            ise = p
        elif p != PROJECT_TOKEN:
            tags.append(p)
    gpu_seq = "-".join(gpu)
    if framework == "cpu" and gpu:
        raise NamingError(
            f"variant {variant!r} is CPU-only but the template {template_name} is a {gpu_seq} backend",
            hint="use the official CPU backend as the template",
        )
    if framework != "cpu" and gpu_seq not in GPU_TOKENS[framework]:
        raise NamingError(
            f"variant {variant!r} needs a {framework} template, not {template_name}",
            hint=f"use an official {framework} backend as the template",
        )
    tokens = [prefix, *gpu]
    chosen = ise if ise is not None else tmpl_ise
    if chosen:
        tokens.append(chosen)
    tokens += [*tags, PROJECT_TOKEN]
    name = "-".join(tokens)
    validate_name(name)
    return name
