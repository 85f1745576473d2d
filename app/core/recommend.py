"""Which backend variant fits this machine, ranked, with the reasons and a why_not for the rest.

Variants are data (app/data/variants.json, validated against variants.schema.json); this module only combines
them with a HardwareReport through the same matcher the catalog uses.

Contract (issue #2): with no usable GPU, an AVX2 CPU gets `recommended=None, official_supported=True`; AVX without
AVX2 gets cpu-avx1; no AVX gets noavx (experimental). A useful Vulkan GPU with an AVX-only CPU puts vulkan-avx1
first. An NVIDIA GPU below the official CUDA minimum puts cuda among the candidates with its toolkit and driver
constraints spelled out.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from app.core.errors import UnlockedError
from app.core.hardware.nvidia import architecture_of, cc_from_name, cc_key
from app.core.hardware.report import CpuInfo, HardwareReport, NvidiaGpu
from app.core.isa_flags import cmake_isa_flags, isa_from_cmake_flags, manifest_ise
from app.core.matcher import why_not
from app.core.paths import data_path
from app.core.serial import to_jsonable
from app.core.version import Version, older, version_key


class VariantsDataError(UnlockedError):
    """The bundled variants data is broken (a packaging bug)."""

    code = "bad-bundled-data"


@dataclass(frozen=True)
class CudaProfile:
    id: str
    label: str
    cc_min: str
    cc_max: str
    cuda_toolkit_max: str
    driver_branch: str
    driver_min_linux: str
    driver_min_win: str
    driver_max_major: int | None
    architectures: tuple[str, ...]
    host_compiler: str
    patches: tuple[str, ...]
    notes: tuple[str, ...]

    def covers(self, cc: str) -> bool:
        key, lo, hi = cc_key(cc), cc_key(self.cc_min), cc_key(self.cc_max)
        return key is not None and lo is not None and hi is not None and lo <= key <= hi


@dataclass(frozen=True)
class Variant:
    id: str
    label: str
    rank: int
    gpu_framework: str  # "none", "vulkan", "cuda"
    experimental: bool
    requires: Mapping[str, Any] = field(compare=False)
    not_when_requires: Mapping[str, Any] | None = field(compare=False)
    not_when_why: str
    must_not_need: tuple[str, ...]
    manifest_ise: tuple[str, ...] | None
    generic_baseline: str | None
    cmake_flags: tuple[str, ...]
    reasons: tuple[str, ...]
    notes: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()
    cuda_profiles: tuple[CudaProfile, ...] = ()
    reject_hints: tuple[tuple[Mapping[str, Any], str], ...] = field(default=(), compare=False)


@dataclass(frozen=True)
class GpuWarning:
    id: str
    variants: tuple[str, ...]
    text: str
    vendor: str = ""
    architecture: str = ""
    max_batch_size: int | None = None


@dataclass(frozen=True)
class VariantsData:
    official_cpu_isa: tuple[str, ...]
    official_cuda_min_cc: str
    variants: tuple[Variant, ...]
    gpu_warnings: tuple[GpuWarning, ...]


@dataclass(frozen=True)
class CudaPlan:
    """What a CUDA build for this machine's GPUs needs (toolkit, driver, architectures)."""

    profile: str
    label: str
    gpus: tuple[str, ...]
    cuda_toolkit_max: str
    driver_branch: str
    driver_min: str
    current_driver: str
    architectures: tuple[str, ...]
    host_compiler: str
    patches: tuple[str, ...]
    notes: tuple[str, ...]


@dataclass(frozen=True)
class Candidate:
    variant: str
    label: str
    reasons: tuple[str, ...]
    warnings: tuple[str, ...]
    cmake_flags: tuple[str, ...]  # a local build tailored to this CPU's exact usable ISA (+ the variant's own flags)
    manifest_ise: tuple[str, ...]  # what the tailored build's LM Studio manifest may claim
    gpu_framework: str
    experimental: bool
    generic_cmake_flags: tuple[str, ...] = ()  # a prebuilt download for this variant (empty: none exists)
    notes: tuple[str, ...] = ()
    max_batch_size: int | None = None  # LM Studio "Evaluation batch size" limit from the GPU warnings
    cuda: CudaPlan | None = None


@dataclass(frozen=True)
class Rejected:
    variant: str
    why_not: str  # one plain sentence (clauses joined with "; ")
    label: str = ""
    reasons: tuple[str, ...] = ()  # the same, one clause per unmet requirement


@dataclass(frozen=True)
class Recommendation:
    recommended: str | None
    official_supported: bool
    summary: str
    candidates: tuple[Candidate, ...]
    rejected: tuple[Rejected, ...]

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = to_jsonable(self)
        return d

    def candidate(self, variant: str) -> Candidate | None:
        return next((c for c in self.candidates if c.variant == variant), None)

    def rejection(self, variant: str) -> Rejected | None:
        return next((r for r in self.rejected if r.variant == variant), None)


# ------------------------------------------------------------------------------------------------- loading


def _validator() -> Any:
    from jsonschema import Draft202012Validator
    from referencing import Registry, Resource

    schemas = [json.loads(data_path(n).read_text(encoding="utf-8"))
               for n in ("variants.schema.json", "requirements.schema.json")]
    registry: Registry[Any] = Registry().with_resources((s["$id"], Resource.from_contents(s)) for s in schemas)
    return Draft202012Validator(schemas[0], registry=registry)


def validate_variants_json(data: Any) -> list[str]:
    """Schema errors of a variants.json document ("" list = valid)."""
    return [f"{'/'.join(str(p) for p in e.absolute_path) or '(top)'}: {e.message}"
            for e in _validator().iter_errors(data)]


def _profile(p: Mapping[str, Any]) -> CudaProfile:
    return CudaProfile(
        id=p["id"], label=p["label"], cc_min=p["cc_min"], cc_max=p["cc_max"],
        cuda_toolkit_max=p["cuda_toolkit_max"], driver_branch=p["driver_branch"],
        driver_min_linux=p["driver_min"].get("linux", ""), driver_min_win=p["driver_min"].get("win", ""),
        driver_max_major=p["driver_max_major"], architectures=tuple(p["architectures"]),
        host_compiler=p["host_compiler"], patches=tuple(p["patches"]), notes=tuple(p["notes"]),
    )


def _variant(v: Mapping[str, Any]) -> Variant:
    not_when = v.get("not_when")
    return Variant(
        id=v["id"], label=v["label"], rank=v["rank"], gpu_framework=v["gpu_framework"],
        experimental=v["experimental"], requires=dict(v["requires"]),
        not_when_requires=dict(not_when["requires"]) if not_when else None,
        not_when_why=not_when["why_not"] if not_when else "",
        must_not_need=tuple(v["must_not_need"]),
        manifest_ise=tuple(v["manifest_ise"]) if v["manifest_ise"] is not None else None,
        generic_baseline=v["generic_baseline"], cmake_flags=tuple(v["cmake_flags"]),
        reasons=tuple(v["reasons"]), notes=tuple(v["notes"]), warnings=tuple(v.get("warnings", ())),
        cuda_profiles=tuple(_profile(p) for p in v.get("cuda_profiles", ())),
        reject_hints=tuple((dict(h["when"]), h["text"]) for h in v.get("reject_hints", ())),
    )


@lru_cache(maxsize=1)
def load_variants_data() -> VariantsData:
    """app/data/variants.json, validated against its schema.

    Raises:
        VariantsDataError: the bundled file is missing or invalid.
    """
    path = data_path("variants.json")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise VariantsDataError(f"cannot read the bundled variants data: {exc}", context=str(path),
                                hint="reinstall LM Studio Unlocked") from None
    errors = validate_variants_json(data)
    if errors:
        raise VariantsDataError("the bundled variants data is invalid", context=str(path),
                                hint="reinstall LM Studio Unlocked", details="\n".join(errors))
    return VariantsData(
        official_cpu_isa=tuple(data["official"]["cpu_isa"]),
        official_cuda_min_cc=data["official"]["cuda_min_cc"],
        variants=tuple(sorted((_variant(v) for v in data["variants"]), key=lambda v: v.rank)),
        gpu_warnings=tuple(
            GpuWarning(id=w["id"], variants=tuple(w["variants"]), text=w["text"], vendor=w.get("vendor", ""),
                       architecture=w.get("architecture", ""), max_batch_size=w.get("max_batch_size"))
            for w in data["gpu_warnings"]
        ),
    )


def load_variants() -> tuple[Variant, ...]:
    """Every variant, by rank (validated against app/data/variants.schema.json)."""
    return load_variants_data().variants


def variant_by_id(variant_id: str) -> Variant:
    for v in load_variants():
        if v.id == variant_id:
            return v
    raise KeyError(variant_id)


# ----------------------------------------------------------------------------------------- plain language


def describe_cpu(cpu: CpuInfo) -> str:
    """"Intel Core i5-3570K (Ivy Bridge, 2012)"."""
    name = cpu.brand or f"{cpu.vendor or 'unknown'} CPU"
    if cpu.microarchitecture != "unknown":
        extra = cpu.microarchitecture_label + (f", {cpu.year}" if cpu.year else "")
        return f"{name} ({extra})"
    return name


def describe_isa(cpu: CpuInfo) -> str:
    """"has AVX but not AVX2" and similar, for a sentence about the CPU."""
    if cpu.architecture not in ("x86_64", "x86"):
        return f"is an {cpu.architecture} CPU"
    has = set(cpu.isa)
    parts: list[str]
    if "AVX2" in has:
        parts = ["has AVX2"]
        if "AVX512F" in has:
            parts = ["has AVX2 and AVX-512"]
        missing = [x for x in ("FMA", "F16C") if x not in has]
        if missing:
            parts.append(f"but not {' or '.join(missing)}")
    elif "AVX" in has:
        extras = [x for x in ("F16C", "FMA") if x in has]
        parts = ["has AVX" + (f" (with {' and '.join(extras)})" if extras else ""), "but not AVX2"]
    else:
        best = next((x for x in ("SSE4.2", "SSE4.1", "SSSE3", "SSE3") if x in has), "")
        parts = ["has no AVX" + (f" (its newest vector extension is {best})" if best else "")]
    text = " ".join(parts)
    if cpu.disabled_isa:
        text += f"; {', '.join(cpu.disabled_isa)} is supported by the CPU but disabled (BIOS / hypervisor / OS)"
    return text


def cpu_sentence(cpu: CpuInfo) -> str:
    """"Your Intel Core i5-3570K (Ivy Bridge, 2012) has AVX but not AVX2."."""
    s = f"Your {describe_cpu(cpu)} {describe_isa(cpu)}."
    if cpu.hypervisor:
        s += " It runs in a virtual machine, which may hide instruction sets the real CPU has."
    return s


# ---------------------------------------------------------------------------------------------- recommend


def official_cpu_supported(report: HardwareReport, data: VariantsData | None = None) -> bool:
    """LM Studio's own CPU backends run here: an x86_64 CPU with AVX2+FMA+F16C usable, or an ARM/Apple machine."""
    data = data or load_variants_data()
    cpu = report.cpu
    if cpu is None:
        return False
    if cpu.architecture == "x86_64":
        return all(x in cpu.isa for x in data.official_cpu_isa)
    return cpu.architecture == "arm64"


def _nvidia_arch(name: str, cc: str) -> str:
    return architecture_of(cc or cc_from_name(name))


def _tailored_isa(cpu: CpuInfo, variant: Variant) -> tuple[str, ...]:
    return tuple(x for x in cpu.isa if x not in variant.must_not_need)


def _gpu_warnings(data: VariantsData, variant: Variant, gpus: Sequence[tuple[str, str, str]]
                  ) -> tuple[list[str], int | None]:
    """Warnings that apply to this variant on these GPUs: (name, vendor, architecture) each."""
    texts: list[str] = []
    max_batch: int | None = None
    for w in data.gpu_warnings:
        if variant.id not in w.variants:
            continue
        for name, vendor, arch in gpus:
            if (not w.vendor or w.vendor == vendor) and (not w.architecture or w.architecture == arch):
                texts.append(w.text.format(gpu=name))
                if w.max_batch_size is not None:
                    max_batch = w.max_batch_size if max_batch is None else min(max_batch, w.max_batch_size)
                break
    return texts, max_batch


def _cuda_plan(report: HardwareReport, variant: Variant) -> tuple[CudaPlan | None, list[str], list[NvidiaGpu]]:
    in_range = [g for g in report.nvidia_gpus
                if g.compute_capability and any(p.covers(g.compute_capability) for p in variant.cuda_profiles)]
    if not in_range:
        return None, [], []
    lowest = min(in_range, key=lambda g: cc_key(g.compute_capability) or (99, 0))
    profile = next(p for p in variant.cuda_profiles if p.covers(lowest.compute_capability))
    archs = set(profile.architectures)
    for g in report.nvidia_gpus:
        if g.compute_capability and cc_key(g.compute_capability):
            archs.add(g.compute_capability.replace(".", ""))
    platform = report.os.platform if report.os else "linux"
    driver_min = profile.driver_min_win if platform == "win" else profile.driver_min_linux
    driver = lowest.driver_version
    warnings: list[str] = []
    if older(driver, driver_min):
        warnings.append(
            f"Your NVIDIA driver {driver} is too old for CUDA {profile.cuda_toolkit_max}: install the "
            f"{profile.driver_branch} driver (at least {driver_min})."
        )
    have = Version.parse_or_none(driver)
    if have is not None and profile.driver_max_major is not None and have.major > profile.driver_max_major:
        warnings.append(
            f"Driver {driver} is newer than the {profile.driver_branch} branch, the last that supports "
            f"{profile.label.split(' ')[0]} GPUs: install a {profile.driver_max_major}.x driver."
        )
    plan = CudaPlan(
        profile=profile.id,
        label=profile.label,
        gpus=tuple(f"{g.name} (compute capability {g.compute_capability})" for g in in_range),
        cuda_toolkit_max=profile.cuda_toolkit_max,
        driver_branch=profile.driver_branch,
        driver_min=driver_min,
        current_driver=driver,
        architectures=tuple(sorted(archs, key=int)),
        host_compiler=profile.host_compiler,
        patches=profile.patches,
        notes=profile.notes,
    )
    return plan, warnings, in_range


_NAMED_ISA = ("SSE4.2", "AVX", "F16C", "FMA", "BMI2", "AVX2", "AVX_VNNI", "AVX512F")


def _isa_words(isa: tuple[str, ...] | list[str]) -> str:
    """ "SSE4.2, AVX, F16C and FMA": the instruction sets a tailored build uses, as the flags say."""
    names = [x for x in _NAMED_ISA if x in isa] or ["the x86-64 baseline (SSE2)"]
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]


def _candidate(report: HardwareReport, variant: Variant, data: VariantsData) -> Candidate:
    cpu = report.cpu
    assert cpu is not None  # every variant requires cpu facts, so a fitting one implies a probed CPU
    isa = _tailored_isa(cpu, variant)
    flags = list(cmake_isa_flags(isa))
    generic: tuple[str, ...] = ()
    if variant.generic_baseline is not None:
        generic = (*cmake_isa_flags((), generic=variant.generic_baseline), *variant.cmake_flags)
    warnings = list(variant.warnings)
    notes = list(variant.notes)
    fmt: dict[str, str] = {
        "cpu": f"your {cpu.brand}" if cpu.brand else "your CPU",
        "official_cc": data.official_cuda_min_cc,
        "vulkan_gpu": "",
        "nvidia_gpu": "",
        "cc": "",
        "isa_summary": "SSE4.2" if "SSE4.2" in isa else "the x86-64 baseline (SSE2)",
        "isa_used": _isa_words(isa),
    }
    gpus: list[tuple[str, str, str]] = []
    cuda: CudaPlan | None = None
    extra_flags: list[str] = list(variant.cmake_flags)
    if variant.gpu_framework == "vulkan":
        useful = report.useful_vulkan_devices()
        fmt["vulkan_gpu"] = " and ".join(d.name for d in useful)
        gpus = [(d.name, d.vendor, _nvidia_arch(d.name, "") if d.vendor == "NVIDIA" else "") for d in useful]
    elif variant.gpu_framework == "cuda":
        cuda, cuda_warnings, in_range = _cuda_plan(report, variant)
        warnings += cuda_warnings
        if cuda is not None:
            notes += list(cuda.notes)
            extra_flags.append(f"-DCMAKE_CUDA_ARCHITECTURES={';'.join(cuda.architectures)}")
            fmt["nvidia_gpu"] = in_range[0].name
            fmt["cc"] = in_range[0].compute_capability
        gpus = [(g.name, "NVIDIA", _nvidia_arch(g.name, g.compute_capability)) for g in in_range]
    gpu_warns, max_batch = _gpu_warnings(data, variant, gpus)
    warnings += gpu_warns
    flags += extra_flags
    ise = manifest_ise(isa_from_cmake_flags(flags))  # what the tailored build needs, in LM Studio's terms
    return Candidate(
        variant=variant.id,
        label=variant.label,
        reasons=tuple(r.format(**fmt) for r in variant.reasons),
        warnings=tuple(warnings),
        cmake_flags=tuple(flags),
        manifest_ise=tuple(ise),
        gpu_framework=variant.gpu_framework,
        experimental=variant.experimental,
        generic_cmake_flags=generic,
        notes=tuple(notes),
        max_batch_size=max_batch,
        cuda=cuda,
    )


def recommend(report: HardwareReport) -> Recommendation:
    """Rank the variants for `report`; see the module docstring for the contract."""
    data = load_variants_data()
    official = official_cpu_supported(report, data)
    candidates: list[Candidate] = []
    rejected: list[Rejected] = []
    for v in data.variants:
        reasons = why_not(report, v.requires)
        if not reasons and v.not_when_requires is not None and not why_not(report, v.not_when_requires):
            reasons = [v.not_when_why]
        if reasons:
            reasons += [text for when, text in v.reject_hints if not why_not(report, when)]
            rejected.append(Rejected(variant=v.id, why_not="; ".join(reasons), label=v.label,
                                     reasons=tuple(reasons)))
        else:
            candidates.append(_candidate(report, v, data))
    has_useful_vulkan = bool(report.useful_vulkan_devices())
    recommended: str | None
    if official:
        # The official packs serve the CPU (and a Vulkan GPU); only an NVIDIA GPU they no longer support gains.
        cuda = next((c for c in candidates if c.gpu_framework == "cuda"), None)
        recommended = cuda.variant if cuda is not None and not has_useful_vulkan else None
    else:
        recommended = candidates[0].variant if candidates else None
    return Recommendation(
        recommended=recommended,
        official_supported=official,
        summary=_summary(report, official, recommended, candidates, rejected),
        candidates=tuple(candidates),
        rejected=tuple(rejected),
    )


def _summary(report: HardwareReport, official: bool, recommended: str | None, candidates: Sequence[Candidate],
             rejected: Sequence[Rejected]) -> str:
    cpu = report.cpu
    if cpu is None:
        errs = report.errors_for("cpu")
        why = f" ({errs[0].message})" if errs else ""
        return f"The CPU could not be probed{why}, so no backend can be recommended."
    parts = [cpu_sentence(cpu)]
    by_id = {c.variant: c for c in candidates}
    if official:
        parts.append("LM Studio's own backends already support this CPU.")
        if recommended is None:
            parts.append("You don't need LM Studio Unlocked for it.")
            cuda = next((c for c in candidates if c.gpu_framework == "cuda"), None)
            if cuda is not None:
                parts.append(f"Optional: the {cuda.label} can also use your "
                             f"{', '.join(cuda.cuda.gpus) if cuda.cuda else 'NVIDIA GPU'}, which LM Studio's "
                             "official CUDA packs no longer support.")
    if recommended is not None:
        c = by_id[recommended]
        tag = " (experimental)" if c.experimental and "experimental" not in c.label.lower() else ""
        parts.append(f"Recommended: {c.label}{tag}: {c.reasons[0]}.")
    elif not official:
        # the most permissive variant (last by rank) says best why nothing fits
        last = rejected[-1] if rejected else None
        why = f": {last.label or last.variant}: {last.why_not}." if last else "."
        parts.append("No variant fits this machine" + why)
    return " ".join(parts)


# ------------------------------------------------------------------------------------- NVIDIA cards, templates


@dataclass(frozen=True)
class NvidiaSupport:
    """What an NVIDIA card can run, by compute capability (docs/lmstudio-contract.md §16.4, §16.5).

    ``kind``: "unknown" (no compute capability), "too-old" (below every CUDA build we know),
    "unlocked" (below LM Studio's official CUDA minimum, covered by one of our CUDA profiles: ``profile``),
    "official" (LM Studio's own CUDA backend supports it).
    """

    kind: str
    cc: str
    profile: CudaProfile | None = None
    official_min_cc: str = ""

    def sentence(self) -> str:
        """One plain clause for people (the wizard's hardware page, `probe`)."""
        if self.kind == "unknown":
            return "compute capability unknown"
        if self.kind == "too-old":
            return "too old for any CUDA build LM Studio can use; Vulkan may still work"
        if self.kind == "official":
            return "supported by LM Studio's official CUDA backend"
        assert self.profile is not None
        p = self.profile
        cuda = f"CUDA {p.cuda_toolkit_max.split('.')[0]}"
        if p.driver_max_major is not None:  # the last toolkit and driver branch for this generation (Kepler)
            return (f"{p.label.split(' ')[0]}: LM Studio's CUDA backend no longer supports it; usable through "
                    f"Vulkan or a {cuda} build")
        return f"older than LM Studio's current CUDA packs target; usable through a {cuda} build or Vulkan"


def nvidia_support(cc: str, data: VariantsData | None = None) -> NvidiaSupport:
    """Classify a compute capability ("3.7") against the official minimum and our CUDA profiles (variants.json)."""
    data = data or load_variants_data()
    key, official = cc_key(cc), cc_key(data.official_cuda_min_cc)
    if key is None or official is None:
        return NvidiaSupport("unknown", cc, official_min_cc=data.official_cuda_min_cc)
    if key >= official:
        return NvidiaSupport("official", cc, official_min_cc=data.official_cuda_min_cc)
    profile = next((p for v in data.variants for p in v.cuda_profiles if p.covers(cc)), None)
    if profile is None:
        return NvidiaSupport("too-old", cc, official_min_cc=data.official_cuda_min_cc)
    return NvidiaSupport("unlocked", cc, profile, data.official_cuda_min_cc)


class NoBuildTemplate(UnlockedError):
    """No official backend of the needed kind is installed to package a build into."""

    code = "no-build-template"


def pick_build_template(backends: Sequence[Any], framework: str, platform: str = "") -> Any:
    """The official backend a build is packaged into: an official, valid llama.cpp backend of the build's GPU
    `framework` ("vulkan", "cuda"; "", "none" or "cpu" for CPU builds) on `platform` (any when ""), the newest
    engine version.

    `backends` are app.core.lmstudio.backends.BackendInfo (passed in: this module reads no folders).

    Raises:
        NoBuildTemplate: none fits (LM Studio has not downloaded that kind of runtime yet).
    """
    fw = "" if framework.lower() in ("", "none", "cpu") else framework.lower()
    found = [
        b for b in backends
        if b.valid and not b.ours and b.name.startswith("llama.cpp-") and b.gpu_framework.lower() == fw
        and (not platform or b.platform == platform)
    ]
    if not found:
        kind = f"{fw} " if fw else "CPU "
        raise NoBuildTemplate(f"No official {kind}backend of LM Studio is installed to build into.",
                              hint="Start LM Studio once and let it download its runtimes, then try again.")
    return max(found, key=lambda b: version_key(b.version))
