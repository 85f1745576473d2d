"""Judge a backend the way LM Studio does, offline, from our HardwareReport (docs/lmstudio-contract.md §11).

Returns LM Studio's own status vocabulary (camelCase, as current LM Studio and its index files
write it) with one sentence. Old human-readable labels ("Invalid CPU instruction set
extensions", "CPU survey unsuccesful") are accepted by :func:`normalize_status`.

Where the reference marks a rule as unknown (CUDA manifest without ``gpu.targets``, ROCm targets we
cannot probe, vendor packages) the status stays at what is known and the doubt goes into
``caveats``, so either answer is safe.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from app.core.hardware.report import HardwareReport
from app.core.lmstudio.backends import BackendInfo
from app.core.version import older

# camelCase (current) -> label (before March 2026), docs/lmstudio-contract.md §11.3
STATUSES: dict[str, str] = {
    "compatible": "Compatible",
    "incompatibleAppVersion": "Incompatible app version",
    "incompatibleBackendVersion": "Incompatible backend version",
    "invalidCpuArchitecture": "Invalid CPU architecture",
    "invalidCpuInstructionSetExtensions": "Invalid CPU instruction set extensions",
    "cpuSurveyUnsuccessful": "CPU survey unsuccessful",
    "gpuSurveyUnsuccessful": "GPU survey unsuccessful",
    "gpuRequiredButNoneFound": "GPU required but none found",
    "gpuTargetsRequiredButNoneSpecified": "GPU targets required but none specified",
    "gpuDriverUnsupported": "GPU driver unsupported",
    "noSupportedGpus": "No supported GPUs",
    "incompatiblePlatform": "Incompatible platform",
    "libraryOutdated": "Library outdated",
    "invalidLibraryVersionFormat": "Invalid library version format",
    "missingLibraries": "Missing libraries",
    "errorSurveyingHardware": "Error surveying hardware",
    "errorCheckingCompatibility": "Error checking compatibility",
    "unknown": "Unknown",
}
# what each status usually means (docs/lmstudio-contract.md §11.3 "likely trigger"), for explanations
STATUS_MEANING: dict[str, str] = {
    "compatible": "every check LM Studio makes passed",
    "incompatibleAppVersion": "the manifest's minimum_lmstudio_version is above the installed app",
    "incompatibleBackendVersion": "LM Studio rejected the engine version (its format)",
    "invalidCpuArchitecture": "the manifest's CPU architecture does not match - or LM Studio's survey child crashed "
    "loading the engine's bindings and reported an unknown architecture (it does so on CPUs without AVX2)",
    "invalidCpuInstructionSetExtensions": "the manifest lists an instruction set LM Studio's CPU survey did not "
    'report (an empty "" entry never matches)',
    "cpuSurveyUnsuccessful": "LM Studio's CPU survey child failed (often: its bindings need AVX2)",
    "gpuSurveyUnsuccessful": "the GPU probe failed (driver or runtime missing)",
    "gpuRequiredButNoneFound": "a GPU pack, and no usable GPU of its framework was found",
    "gpuTargetsRequiredButNoneSpecified": "a CUDA/ROCm manifest without gpu.targets",
    "gpuDriverUnsupported": "the driver is older than gpu.minimum_driver_version",
    "noSupportedGpus": "no GPU's compute capability is in gpu.targets",
    "incompatiblePlatform": "the manifest's platform is not this operating system",
    "libraryOutdated": "a target_libraries version is too old",
    "invalidLibraryVersionFormat": "a target_libraries version is malformed",
    "missingLibraries": "a target_libraries file is missing",
    "errorSurveyingHardware": "LM Studio's survey child crashed loading the engine's bindings (missing "
    "dependencies, or AVX2 code on a CPU without it)",
    "errorCheckingCompatibility": "LM Studio had an internal error",
    "unknown": "LM Studio gave no status we know",
}
# statuses that mean "LM Studio's survey child crashed" rather than a rule that failed (§11.3, §15 #9)
SURVEY_CRASH = frozenset({"errorSurveyingHardware", "invalidCpuArchitecture", "cpuSurveyUnsuccessful"})
_ALIASES = {"cpu survey unsuccesful": "cpuSurveyUnsuccessful"}  # the SDK's old misspelling


def _key(s: str) -> str:
    return re.sub(r"[^a-z0-9]", "", s.lower())


_LOOKUP: dict[str, str] = {}
for _camel, _label in STATUSES.items():
    _LOOKUP[_key(_camel)] = _camel
    _LOOKUP[_key(_label)] = _camel
for _alias, _camel in _ALIASES.items():
    _LOOKUP[_key(_alias)] = _camel


def normalize_status(value: str) -> str:
    """camelCase status for any LM Studio spelling (camelCase or old label, any case); else "unknown"."""
    return _LOOKUP.get(_key(value or ""), "unknown")


def status_label(status: str) -> str:
    return STATUSES.get(normalize_status(status), "Unknown")


@dataclass(frozen=True)
class Judgement:
    status: str  # camelCase LM Studio status
    message: str
    caveats: tuple[str, ...] = ()

    @property
    def compatible(self) -> bool:
        return self.status == "compatible"

    @property
    def label(self) -> str:
        return status_label(self.status)


def _norm_arch(a: str) -> str:
    a = a.lower()
    return {"amd64": "x86_64", "x64": "x86_64", "aarch64": "arm64", "armv8": "arm64"}.get(a, a)


def cuda_driver_number(text: str) -> int | None:
    """ "12.4" -> 12040 (LM Studio's major*1000 + minor*10); "12040" stays."""
    if re.fullmatch(r"\d{4,6}", text.strip()):
        return int(text)
    m = re.match(r"(\d+)\.(\d+)", text.strip())
    return int(m.group(1)) * 1000 + int(m.group(2)) * 10 if m else None


def host_ise(report: HardwareReport) -> list[str]:
    if report.cpu is None:
        return []
    if _norm_arch(report.cpu.architecture) == "arm64":
        return ["AdvSIMD"]  # every ARMv8 CPU has it
    return report.cpu.lmstudio_ise()


def judge_backend(info: BackendInfo, report: HardwareReport | None, *, app_version: str | None = None) -> Judgement:
    """LM Studio's verdict for ``info`` on the host described by ``report`` (None: unknown)."""
    if not info.valid:
        why = "; ".join(p.message for p in info.problems) or "no readable manifest"
        return Judgement("unknown", f"LM Studio cannot read this backend, so it will not list it: {why}")
    caveats: list[str] = []
    if older(app_version, info.minimum_lmstudio_version):  # "0.4.0+14" < "0.4.0+15"; a beta before its release
        return Judgement(
            "incompatibleAppVersion",
            f"needs LM Studio {info.minimum_lmstudio_version} or newer; this is {app_version}",
        )
    for lib in info.target_libraries:
        if lib and not (info.folder / lib).exists():
            return Judgement("missingLibraries", f"the declared library {lib} is missing from {info.folder.name}")
    for t in info.manifest.get("target_libraries") or []:
        if isinstance(t, dict) and "version" in t and not re.fullmatch(r"\d+(\.\d+)*", str(t.get("version"))):
            return Judgement(
                "invalidLibraryVersionFormat", f"target library {t.get('name')} has version {t.get('version')!r}"
            )
    if report is None:
        return Judgement("unknown", "no hardware report, so compatibility was not checked")
    if report.os is not None and info.platform and info.platform != report.os.platform:
        return Judgement(
            "incompatiblePlatform", f"built for {info.platform}, but this computer runs {report.os.platform}"
        )
    if report.cpu is None:
        return Judgement("cpuSurveyUnsuccessful", "the CPU could not be surveyed")
    host_arch = _norm_arch(report.cpu.architecture)
    if info.arch and _norm_arch(info.arch) != host_arch:
        return Judgement("invalidCpuArchitecture", f"built for {info.arch} CPUs, this one is {host_arch}")
    have = host_ise(report)
    missing = [x for x in info.ise if x not in have]
    if missing:
        shown = ", ".join(repr(x) if x == "" else x for x in missing)
        return Judgement(
            "invalidCpuInstructionSetExtensions",
            f"needs {shown}, but LM Studio's survey of this CPU "
            + (f"reports only {', '.join(have)}" if have else "reports neither AVX nor AVX2")
            + (' (an empty "" entry never matches)' if "" in missing else ""),
        )
    fw = info.gpu_framework.lower()
    if fw == "cuda":
        gpus = report.nvidia_gpus
        if not gpus:
            return Judgement("gpuRequiredButNoneFound", "a CUDA backend, but no NVIDIA GPU was found")
        if not info.gpu_targets:
            caveats.append(
                "the manifest lists no gpu.targets; whether LM Studio then reports "
                "gpuTargetsRequiredButNoneSpecified is unknown"
            )
        else:
            ok = [g for g in gpus if g.compute_capability in info.gpu_targets]
            if not ok:
                ccs = ", ".join(f"{g.name} ({g.compute_capability or '?'})" for g in gpus)
                return Judgement(
                    "noSupportedGpus",
                    f"built for compute capability {', '.join(info.gpu_targets)}; this computer has {ccs}",
                )
        if info.gpu_min_driver:
            want = cuda_driver_number(info.gpu_min_driver)
            haves = [cuda_driver_number(g.cuda_driver_version) for g in gpus if g.cuda_driver_version]
            have_n = max((h for h in haves if h is not None), default=None)
            if want is not None and have_n is not None and have_n < want:
                return Judgement(
                    "gpuDriverUnsupported",
                    f"needs a driver for CUDA {want // 1000}.{want % 1000 // 10} or newer; the installed driver "
                    f"supports CUDA {have_n // 1000}.{have_n % 1000 // 10}",
                )
    elif fw == "vulkan":
        useful = report.useful_vulkan_devices()
        if not useful:
            soft = [d.name for d in report.vulkan_devices if d.software]
            extra = f" (only the software renderer {', '.join(soft)})" if soft else ""
            return Judgement("gpuRequiredButNoneFound", f"a Vulkan backend, but no usable Vulkan GPU was found{extra}")
    elif fw:
        caveats.append(f"{info.gpu_framework} GPUs cannot be checked offline")
    for pkg in info.vendor_packages:
        vendor = info.folder.parent / "vendor" / pkg
        if not vendor.is_dir():
            caveats.append(f"vendor package {pkg} is missing; the engine may fail to load")
    return Judgement("compatible", "all checks LM Studio makes pass on this computer", tuple(caveats))
