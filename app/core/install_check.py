"""Install judges before it writes: is a backend folder right for the target, before it enters LM Studio's home?

Every install path (a folder, an archive, a URL, a catalog entry, a build, an overlay) stages the backend
folder outside LM Studio's home first. :func:`check_install` then judges that staged folder against the
*target*: the LM Studio home it goes into and the computer that will run it (this one, or the one a saved
``--report``/``--cpuinfo`` describes). It returns findings, one per check, each ``ok``, ``info``,
``warning`` or ``refuse``:

* ``platform``: the manifest's ``platform`` must be the home's. The home's platform is read from the home
  itself (LM Studio unpacks only engines of its own platform into it, docs/lmstudio-contract.md §3), so a
  Windows home reached from WSL is a Windows home; only a home that shows nothing falls back to the target
  computer's OS. LM Studio lists a backend of another platform as ``incompatiblePlatform`` (§11.3).
* ``architecture``: ``cpu.architecture`` must be the target CPU's (and the home's engines') (§5.1, §11.3).
* ``ise``: every ``cpu.instruction_set_extensions`` entry must be in what LM Studio's survey reports for the
  target CPU (§11.1, §11.2); ``""`` never matches.
* ``isa-audit``: the binaries built from llama.cpp must not use instructions the target CPU lacks (the static
  audit of :mod:`app.core.builder.audit`); a manifest can claim ``["AVX"]`` for code that needs AVX2.
* ``engine-version``: the LM Studio engine the pack was made from (its template, else its manifest version) must
  be one this home has, the ABI of LM Studio's own files depends on it (§10); and the app must not be older
  than ``minimum_lmstudio_version`` where the app version is known.
* ``smoke``: a folder whose own smoke test failed (recorded in its ``unlocked-install.json``) is refused.
* ``gpu``: what LM Studio would say about the GPU (no such GPU, driver too old): a warning only, since a GPU
  driver can be installed after the backend.

``refuse`` findings stop the install with :class:`InstallRefused` unless forced (:func:`enforce`); a forced
install keeps the whole check in the installed backend's provenance (:meth:`InstallCheck.provenance_record`).
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from app.core.builder.audit import (
    AuditError,
    FolderAudit,
    audit_folder,
    audit_violations,
    counts_for_target,
    describe_count,
    usable_extensions,
)
from app.core.hardware.report import HardwareReport
from app.core.lmstudio.backends import BackendInfo, list_backends, read_backend
from app.core.lmstudio.engine_index import read_engine_index
from app.core.lmstudio.errors import RefusedChange
from app.core.lmstudio.home import LmsHome, as_home
from app.core.lmstudio.judge import host_ise, judge_backend
from app.core.lmstudio.kinds import classify_backend
from app.core.lmstudio.naming import OS_TOKENS
from app.core.lmstudio.provenance import read_provenance, smoke_of, verify_files
from app.core.version import older, version_key

SEVERITIES: tuple[str, ...] = ("refuse", "warning", "info", "ok")
CHECKS: tuple[str, ...] = ("platform", "architecture", "ise", "isa-audit", "engine-version", "smoke", "gpu")
CHECK_WORDS: dict[str, str] = {  # each check in words, for human text
    "platform": "its operating system",
    "architecture": "its CPU architecture",
    "ise": "the CPU extensions its manifest needs",
    "isa-audit": "the ISA audit of its binaries",
    "engine-version": "the LM Studio engine version it was made from",
    "smoke": "its smoke test",
    "gpu": "the GPU it needs",
}
PLATFORM_NAMES: Mapping[str, str] = {"win": "Windows", "linux": "Linux", "mac": "macOS"}
GPU_STATUSES = frozenset({"gpuRequiredButNoneFound", "noSupportedGpus", "gpuDriverUnsupported"})
FORCE_HINT = (
    "Nothing was written to LM Studio's folder. `--force` installs it anyway (never selected), and keeps these "
    "reasons in its unlocked-install.json."
)


@dataclass(frozen=True)
class Finding:
    """One check's verdict. ``severity``: "refuse" stops the install unless forced; "warning", "info", "ok"."""

    check: str  # one of CHECKS
    severity: str  # one of SEVERITIES
    message: str
    hint: str = ""
    details: tuple[str, ...] = ()

    @property
    def refuses(self) -> bool:
        return self.severity == "refuse"

    def to_dict(self) -> dict[str, Any]:
        return {
            "check": self.check,
            "severity": self.severity,
            "message": self.message,
            "hint": self.hint,
            "details": list(self.details),
        }

    def line(self) -> str:
        label = {"refuse": "REFUSED", "warning": "warning", "info": "note", "ok": "ok"}[self.severity]
        return f"{label} [{self.check}] {self.message}"


@dataclass(frozen=True)
class InstallTarget:
    """Where a backend goes and what will run it, with how each part was found (for the messages)."""

    home: LmsHome
    report: HardwareReport | None
    platform: str = ""  # "win" | "linux" | "mac" | "" (unknown)
    platform_source: str = ""
    arch: str = ""  # normalised: "x86_64" | "arm64" | "" (unknown)
    arch_source: str = ""
    home_arch: str = ""  # the arch of the home's own engines, "" when unknown
    engine_versions: tuple[str, ...] = ()  # LM Studio's own llama.cpp engines in the home, this platform
    app_version: str | None = None
    notes: tuple[str, ...] = ()

    def describe(self) -> list[str]:
        cpu = self.report.cpu if self.report is not None else None
        what = (cpu.brand or cpu.microarchitecture_label) if cpu is not None else "unknown CPU"
        lines = [
            f"target: {PLATFORM_NAMES.get(self.platform, 'unknown platform')} ({self.platform_source})",
            f"  CPU: {what}, {self.arch or 'unknown architecture'} ({self.arch_source})",
            "  LM Studio engines in the home: " + (", ".join(self.engine_versions) or "none found"),
        ]
        lines += [f"  {n}" for n in self.notes]
        return lines

    def to_dict(self) -> dict[str, Any]:
        return {
            "home": str(self.home.path),
            "platform": self.platform,
            "platform_source": self.platform_source,
            "arch": self.arch,
            "arch_source": self.arch_source,
            "home_arch": self.home_arch,
            "engine_versions": list(self.engine_versions),
            "app_version": self.app_version,
            "report_source": self.report.source if self.report is not None else None,
            "cpu": _cpu_words(self.report),
            "cpu_isa": list(self.report.cpu.isa) if self.report is not None and self.report.cpu is not None else [],
            "notes": list(self.notes),
        }


@dataclass(frozen=True)
class InstallCheck:
    """The verdict on one staged backend folder for one target."""

    folder: Path
    ident: str
    target: InstallTarget
    findings: tuple[Finding, ...] = ()
    audit: FolderAudit | None = field(default=None, compare=False)

    @property
    def refusals(self) -> tuple[Finding, ...]:
        return tuple(f for f in self.findings if f.refuses)

    @property
    def warnings(self) -> tuple[Finding, ...]:
        return tuple(f for f in self.findings if f.severity == "warning")

    @property
    def refused(self) -> bool:
        return bool(self.refusals)

    def finding(self, check: str) -> Finding | None:
        return next((f for f in self.findings if f.check == check), None)

    def describe(self) -> list[str]:
        lines = [f"checked {self.ident or self.folder.name} against the target before installing:"]
        lines += ["  " + x for x in self.target.describe()]
        for f in self.findings:
            lines.append("  " + f.line())
            lines += ["      " + d for d in f.details]
            if f.hint and f.severity in ("refuse", "warning"):
                lines.append(f"      what to do: {f.hint}")
        return lines

    def to_dict(self) -> dict[str, Any]:
        return {
            "backend": self.ident,
            "folder": str(self.folder),
            "refused": self.refused,
            "target": self.target.to_dict(),
            "findings": [f.to_dict() for f in self.findings],
        }

    def provenance_record(self, *, forced: bool) -> dict[str, Any]:
        """What the installed backend's ``unlocked-install.json`` keeps under ``install_check``."""
        return {
            "forced": forced,
            "refusals_overridden": [f.message for f in self.refusals] if forced else [],
            "warnings": [f.message for f in self.warnings],
            "target": self.target.to_dict(),
            "findings": [f.to_dict() for f in self.findings],
        }


class InstallRefused(RefusedChange):
    """The backend does not fit the target (wrong platform, CPU, engine, failed smoke test); nothing was written."""

    code = "install-refused"

    def __init__(self, message: str, *, check: InstallCheck, context: str = "", hint: str = "") -> None:
        super().__init__(message, context=context, hint=hint, details="\n".join(check.describe()))
        self.check = check

    def to_dict(self) -> dict[str, Any]:
        d = super().to_dict()
        d["check"] = self.check.to_dict()
        return d


# --------------------------------------------------------------------------------------------- the target


def norm_arch(arch: str) -> str:
    a = arch.strip().lower()
    return {"amd64": "x86_64", "x64": "x86_64", "x86-64": "x86_64", "aarch64": "arm64", "armv8": "arm64"}.get(a, a)


def is_official(b: BackendInfo) -> bool:
    """One of LM Studio's own engines (official name grammar and content, §4): what tells the home's platform."""
    return classify_backend(b).kind == "official"


def _platform_token(name: str) -> str:
    """ "win" from "llama.cpp-win-x86_64-avx2" or "win-llama-cuda12-vendor-v2"; "" when none."""
    parts = name.lower().split("-")
    return next((p for p in parts if p in OS_TOKENS), "")


def _one(values: Iterable[str]) -> str:
    vals = {v for v in values if v}
    return vals.pop() if len(vals) == 1 else ""


def home_platform(home: LmsHome, backends: list[BackendInfo]) -> tuple[str, str]:
    """(platform, how it was found) from the home's own contents; ("", why not) when it shows nothing clear."""
    official = [b for b in backends if is_official(b)]
    plat = _one(b.platform for b in official)
    if plat:
        shown = ", ".join(sorted({b.ident for b in official})[:2])
        return plat, f"LM Studio's own engines in the home are {PLATFORM_NAMES.get(plat, plat)} ones ({shown})"
    vendor = home.backends_dir / "vendor"
    try:
        pkgs = [p.name for p in vendor.iterdir() if p.is_dir() and not p.name.startswith("_")]
    except OSError:
        pkgs = []
    plat = _one(_platform_token(p) for p in pkgs)
    if plat:
        return plat, f"LM Studio's vendor packages in the home are {PLATFORM_NAMES.get(plat, plat)} ones"
    dirs = [e.dir_path for e in read_engine_index(home) if e.dir_path]
    if dirs and all(re.match(r"^[A-Za-z]:[\\/]", d) for d in dirs):
        return "win", "LM Studio's engine index in the home records Windows paths"
    if (home.path / "bin" / "lms.exe").is_file():
        return "win", "the home holds LM Studio's Windows CLI (bin/lms.exe)"
    return "", "the home holds none of LM Studio's own engines to tell its platform"


def install_target(
    home: LmsHome | Path | str, report: HardwareReport | None, *, app_version: str | None = None
) -> InstallTarget:
    """The target of an install: the home's platform, engines and arch, and the CPU ``report`` describes."""
    h = as_home(home)
    backends = list_backends(h) if h.backends_dir.is_dir() else []
    notes: list[str] = []
    plat, plat_src = home_platform(h, backends)
    rep_plat = report.os.platform if report is not None and report.os is not None else ""
    rep_words = {"live": "this computer", "cpuinfo-file": "the saved /proc/cpuinfo"}.get(
        report.source if report is not None else "live", "the saved report"
    )
    if not plat and rep_plat:
        plat, plat_src = rep_plat, f"{plat_src}; {rep_words} runs {PLATFORM_NAMES.get(rep_plat, rep_plat)}"
    elif plat and rep_plat and rep_plat != plat:
        notes.append(
            f"{rep_words} runs {PLATFORM_NAMES.get(rep_plat, rep_plat)}, but the home is a "
            f"{PLATFORM_NAMES.get(plat, plat)} one (for example a Windows home reached from WSL): "
            "the home decides"
        )
    official = [b for b in backends if is_official(b) and (not plat or b.platform == plat)]
    home_arch = _one(norm_arch(b.arch) for b in official)
    cpu_arch = norm_arch(report.cpu.architecture) if report is not None and report.cpu is not None else ""
    if cpu_arch:
        arch, arch_src = cpu_arch, f"the CPU of {rep_words}"
    elif home_arch:
        arch, arch_src = home_arch, "LM Studio's own engines in the home (the CPU is unknown)"
    else:
        arch, arch_src = "", "neither the CPU nor the home's engines tell it"
    engines = sorted(
        {b.version for b in official if b.name.startswith("llama.cpp-")}, key=version_key
    )
    return InstallTarget(h, report, plat, plat_src, arch, arch_src, home_arch, tuple(engines), app_version,
                         tuple(notes))


# --------------------------------------------------------------------------------------------- the checks


def _cpu_words(report: HardwareReport | None) -> str:
    cpu = report.cpu if report is not None else None
    if cpu is None:
        return ""
    label = cpu.microarchitecture_label if cpu.microarchitecture_label != "unknown" else ""
    return cpu.brand + (f" ({label})" if label and label not in cpu.brand else "") if cpu.brand else label


def _pack_platform(info: BackendInfo) -> str:
    return info.platform or _platform_token(info.name)


def _check_platform(info: BackendInfo, t: InstallTarget) -> Finding:
    pack = _pack_platform(info)
    if not pack:
        return Finding("platform", "warning", "the manifest names no platform; LM Studio may not list it")
    words = PLATFORM_NAMES.get(pack, pack)
    if not t.platform:
        return Finding("platform", "info", f"a {words} backend; the target's platform is unknown ({t.platform_source})")
    if pack != t.platform:
        return Finding(
            "platform",
            "refuse",
            f"a {words} backend (manifest platform \"{info.platform or pack}\"), but the target is "
            f"{PLATFORM_NAMES.get(t.platform, t.platform)}: {t.platform_source}. LM Studio would list it as "
            "incompatiblePlatform and never load it",
            hint=f"install the {PLATFORM_NAMES.get(t.platform, t.platform)} build of this backend "
            "(`lms-unlocked recommend` names the one for this computer)",
        )
    named = _platform_token(info.name)
    if info.platform and named and named != info.platform:
        return Finding(
            "platform",
            "warning",
            f"the manifest says platform \"{info.platform}\" but the name says {PLATFORM_NAMES.get(named, named)}; "
            "LM Studio goes by the manifest",
            hint="check that this is the build for this platform",
        )
    return Finding("platform", "ok", f"a {words} backend for a {words} home")


def _check_arch(info: BackendInfo, t: InstallTarget) -> Finding:
    pack = norm_arch(info.arch)
    if not pack:
        return Finding("architecture", "warning", "the manifest names no cpu.architecture; LM Studio may not list it")
    if not t.arch:
        return Finding("architecture", "info", f"an {pack} backend; the target's architecture is unknown")
    wrong = []
    if pack != t.arch:
        wrong.append(f"the target CPU is {t.arch} ({t.arch_source})")
    if t.home_arch and t.home_arch != pack and t.home_arch != t.arch:
        wrong.append(f"LM Studio's own engines in the home are {t.home_arch}")
    if wrong:
        return Finding(
            "architecture",
            "refuse",
            f"built for {pack} CPUs, but " + " and ".join(wrong)
            + "; LM Studio would list it as invalidCpuArchitecture",
            hint=f"install the {t.arch or t.home_arch} build of this backend",
        )
    return Finding("architecture", "ok", f"built for {pack}, the target is {t.arch}")


def _check_ise(info: BackendInfo, t: InstallTarget) -> Finding:
    report = t.report
    if report is None or report.cpu is None:
        return Finding(
            "ise",
            "warning",
            f"the manifest needs {info.ise or '[]'}; the target CPU is unknown, so this was not checked",
            hint="probe this computer, or pass --report/--cpuinfo of the one it is for",
        )
    have = host_ise(report)
    missing = [x for x in info.ise if x not in have]
    if not missing:
        return Finding("ise", "ok", f"the manifest needs {', '.join(info.ise) or 'nothing'}; LM Studio's survey of "
                       f"the target CPU reports {', '.join(have)}")
    shown = ", ".join('"" (an empty entry, which never matches)' if x == "" else x for x in missing)
    return Finding(
        "ise",
        "refuse",
        f"the manifest needs {shown}, but LM Studio's survey of {_cpu_words(report) or 'the CPU'} "
        f"reports {'only ' + ', '.join(have) if have else 'neither AVX nor AVX2'}; LM Studio would list it as "
        "invalidCpuInstructionSetExtensions",
        hint="install the variant made for this CPU (`lms-unlocked recommend` names it)",
    )


def _check_audit(info: BackendInfo, t: InstallTarget, audit: FolderAudit | None) -> tuple[Finding, FolderAudit | None]:
    report = t.report
    pack = norm_arch(info.arch)
    if report is None or report.cpu is None:
        return Finding("isa-audit", "warning", "not run: the target CPU is unknown"), None
    if pack != "x86_64" or t.arch != "x86_64":
        return Finding("isa-audit", "info", f"not run: the audit reads x86-64 code, this is {pack or 'unknown'} for "
                       f"{t.arch or 'an unknown CPU'}"), None
    if audit is None:
        try:
            audit = audit_folder(info.folder, include=counts_for_target)
        except AuditError as exc:
            return Finding("isa-audit", "warning", f"the audit could not read a binary: {exc.message}",
                           hint="the file may be damaged; get the backend again"), None
    judged = [b for b in audit.binaries if b.counted]
    unreadable = [f"{b.path}: {b.skipped}" for b in judged if b.skipped]
    violations = audit_violations(audit, report.cpu.isa)
    if violations:
        files = sorted({v.file for v in violations})
        exts = sorted({v.extension for v in violations})
        return Finding(
            "isa-audit",
            "refuse",
            f"{', '.join(files)} use{'s' if len(files) == 1 else ''} {', '.join(exts)} instructions outside any CPU "
            f"check, which {_cpu_words(report) or 'the target CPU'} lacks: it would crash with an illegal "
            "instruction when LM Studio loads a model",
            hint="install the variant built for this CPU (`lms-unlocked recommend`), or build one "
            "(`lms-unlocked build`)",
            details=tuple(v.describe() for v in violations),
        ), audit
    if unreadable:
        return Finding("isa-audit", "warning", "some binaries could not be audited", details=tuple(unreadable)), audit
    if not judged:
        return Finding("isa-audit", "info", "no binary built from llama.cpp (ggml*, llama*, mtmd*) to audit"), audit
    usable = usable_extensions(report.cpu.isa)
    guarded = sorted(
        f"{b.path}: {describe_count(b, ext)}" for b in judged for ext in b.guarded if ext not in usable
    )
    behind = " (what it lacks appears only behind CPU checks, which skip that code on this CPU)" if guarded else ""
    return Finding(
        "isa-audit",
        "ok",
        f"{len(judged)} llama.cpp binar{'y' if len(judged) == 1 else 'ies'} audited: nothing needs an instruction "
        f"{_cpu_words(report) or 'the target CPU'} lacks outside a CPU check{behind}",
        details=tuple(guarded),
    ), audit


def pack_engine_version(info: BackendInfo, provenance: Mapping[str, Any] | None) -> tuple[str, str]:
    """(LM Studio engine version the pack was made from, where that came from)."""
    template = str((provenance or {}).get("template") or "")
    if "@" in template:
        return template.rsplit("@", 1)[1], f"its template {template}"
    return info.version, "its manifest version"


def _generation(version: str) -> str:
    major = version.split(".")[0]
    return f"{major}.x" if major.isdigit() else "unknown"


def _check_engine(info: BackendInfo, t: InstallTarget, prov: Mapping[str, Any] | None) -> Finding:
    app = t.app_version
    need_app = info.minimum_lmstudio_version
    if older(app, need_app):  # "0.4.0+14" is older than "0.4.0+15" (docs/lmstudio-contract.md §5.1)
        return Finding(
            "engine-version",
            "refuse",
            f"needs LM Studio {need_app} or newer (minimum_lmstudio_version); this is {app}",
            hint="update LM Studio, or install the backend made for this LM Studio's engine",
        )
    engine = str(info.manifest.get("engine") or "")
    if not (info.name.startswith("llama.cpp-") or engine == "llama.cpp"):
        return Finding("engine-version", "info", f"not a llama.cpp engine ({engine or info.name}); version not checked")
    version, source = pack_engine_version(info, prov)
    if not t.engine_versions:
        return Finding(
            "engine-version",
            "info",
            f"made from LM Studio engine {version} ({source}); the home holds none of LM Studio's own llama.cpp "
            "engines to compare with",
        )
    if version in t.engine_versions:
        return Finding("engine-version", "ok", f"made from LM Studio engine {version}, which this home has")
    have = ", ".join(t.engine_versions)
    gens = {_generation(v) for v in t.engine_versions}
    gen = _generation(version)
    why = (
        f"a {gen} engine, while this LM Studio runs {' and '.join(sorted(gens))} engines"
        if gen not in gens
        else "LM Studio's own files in it (.node, llm_engine, server) expect that engine's libraries"
    )
    return Finding(
        "engine-version",
        "refuse",
        f"made from LM Studio engine {version} ({source}), but this home has engine(s) {have}: "
        f"{why}",
        hint=f"get the backend made for engine {t.engine_versions[-1]} (or build it: `lms-unlocked build`), or "
        f"download engine {version} in LM Studio first",
    )


def _check_smoke(info: BackendInfo, prov: Mapping[str, Any] | None) -> Finding:
    if prov is None:
        return Finding("smoke", "info", "not built by lms-unlocked: no smoke test recorded")
    rec = smoke_of(prov)
    changed: tuple[str, ...] = ()
    if isinstance(prov.get("files"), dict):
        diff = verify_files(info.folder, prov)
        changed = diff.missing + diff.changed
    if rec is None:
        return Finding("smoke", "info", "no smoke test recorded in its provenance (built with --no-smoke?)")
    where = f"on {rec.get('cpu') or 'the build machine'}" + (f", {rec['at']}" if rec.get("at") else "")
    if not rec["ok"]:
        return Finding(
            "smoke",
            "refuse",
            f"its own smoke test failed {where}: {rec.get('reason') or 'no reason recorded'}",
            hint=f"fix or rebuild it, then run `lms-unlocked smoke {info.folder}` again",
        )
    if changed:
        return Finding(
            "smoke",
            "warning",
            f"its smoke test passed {where}, but {len(changed)} file(s) changed since, so that result does not "
            "vouch for this content",
            details=changed[:10],
            hint=f"run `lms-unlocked smoke {info.folder}` again",
        )
    return Finding("smoke", "ok", f"its own smoke test passed {where}")


def _check_gpu(info: BackendInfo, t: InstallTarget) -> Finding | None:
    report = t.report
    if not info.gpu_framework:
        return None
    if report is None or report.source == "cpuinfo-file":
        return Finding("gpu", "info", f"a {info.gpu_framework} backend; the GPU was not checked (no report of it)")
    j = judge_backend(info, dataclasses.replace(report, os=None))  # the platform is judged above, for the home
    if j.status in GPU_STATUSES:
        return Finding("gpu", "warning", f"LM Studio would list it as {j.status}: {j.message}",
                       hint="install the GPU driver first, or choose the CPU variant")
    return Finding("gpu", "ok" if j.compatible else "info", j.message, details=j.caveats)


def check_install(
    folder: Path | str,
    target: InstallTarget,
    *,
    audit: FolderAudit | None = None,
) -> InstallCheck:
    """Judge the staged backend ``folder`` (outside LM Studio's home) against ``target``; writes nothing.

    Never raises for a wrong backend: the findings say what is wrong. ``audit`` reuses an audit already made of
    this folder (the build's). A folder that is not a readable backend gives one refusal (install validation then
    says more).
    """
    p = Path(folder)
    info = read_backend(p)
    if not info.valid:
        why = "; ".join(x.message for x in info.problems) or "no readable backend-manifest.json"
        return InstallCheck(p, "", target, (Finding("platform", "refuse", f"not a readable backend folder: {why}"),))
    prov = read_provenance(p)
    findings = [_check_platform(info, target), _check_arch(info, target), _check_ise(info, target)]
    audit_finding, fa = _check_audit(info, target, audit)
    findings += [audit_finding, _check_engine(info, target, prov), _check_smoke(info, prov)]
    gpu = _check_gpu(info, target)
    if gpu is not None:
        findings.append(gpu)
    return InstallCheck(p, info.ident, target, tuple(findings), fa)


def check_folder(
    folder: Path | str,
    home: LmsHome | Path | str,
    report: HardwareReport | None,
    *,
    app_version: str | None = None,
) -> InstallCheck:
    """:func:`check_install` for a staged folder, a home and a hardware report (the one call overlays need)."""
    return check_install(folder, install_target(home, report, app_version=app_version))


def enforce(check: InstallCheck, *, force: bool, source: str = "") -> None:
    """Raise :class:`InstallRefused` when the check refused and ``force`` is off; a forced install goes on."""
    if not check.refused or force:
        return
    first = check.refusals[0]
    more = len(check.refusals) - 1
    msg = f"{check.ident or check.folder.name} was not installed: {first.message}"
    if more:
        msg += f" (and {more} more reason{'s' if more > 1 else ''}: " + "; ".join(
            CHECK_WORDS.get(f.check, f.check) for f in check.refusals[1:]
        ) + ")"
    raise InstallRefused(
        msg,
        check=check,
        context=source or str(check.folder),
        hint=(first.hint + ". " if first.hint else "") + FORCE_HINT,
    )
