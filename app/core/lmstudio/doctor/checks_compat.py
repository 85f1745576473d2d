"""Compatibility: our offline judgement (docs/lmstudio-contract.md §11, §15 #6-#7) and LM Studio's own last verdict
from its engine index (§13, §15 #9), side by side for every kind, with what to do when they disagree."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from app.core.lmstudio.backends import MANIFEST_FILE, BackendInfo
from app.core.lmstudio.doctor.registry import Check, Context, Finding, Repairer
from app.core.lmstudio.engine_index import last_status
from app.core.lmstudio.jsondoc import load_json, save
from app.core.lmstudio.judge import STATUS_MEANING, SURVEY_CRASH, status_label
from app.core.lmstudio.provenance import read_provenance

_CODES = {
    "invalidCpuInstructionSetExtensions": "ise-unsupported",
    "incompatiblePlatform": "platform-mismatch",
    "invalidCpuArchitecture": "arch-mismatch",
    "incompatibleAppVersion": "app-too-old",
}
_FIXES = {
    "ise-unsupported": "install the variant built for this CPU (lms-unlocked recommend)",
    "ise-empty": "install the variant built for this CPU (lms-unlocked recommend)",
    "platform-mismatch": "install a backend made from a template of this operating system",
    "arch-mismatch": "install a backend made for this CPU architecture",
    "app-too-old": "update LM Studio, or use a template of the generation the installed app runs",
}
RECOMMEND = "pick a backend for this hardware (lms-unlocked recommend)"


def _severity(kind: str, code: str) -> str:
    if kind == "ours":
        return "warning" if code == "gpu-incompatible" else "error"
    return "warning" if kind == "third-party" else "info"


class OurVerdict(Check):
    codes = (
        ("ise-empty", 'Instruction set list contains ""'),
        ("ise-unsupported", "Needs an instruction set this CPU lacks"),
        ("platform-mismatch", "Built for another operating system"),
        ("arch-mismatch", "Built for another CPU architecture"),
        ("app-too-old", "Needs a newer LM Studio"),
        ("gpu-incompatible", "No GPU this backend can use"),
        ("incompatible", "LM Studio will not list it as compatible"),
    )
    about = (
        "Our offline version of LM Studio's compatibility check (§11) on this computer's hardware report. An empty "
        'ISE entry "" never matches; on our AVX1 builds it is set to ["AVX"] (backed up first) when the CPU has AVX.'
    )

    def detect_backend(self, ctx: Context, b: BackendInfo) -> Iterable[Finding]:
        kind = ctx.kind(b).kind
        if ctx.report is None and b.valid and "" in b.ise:
            yield Finding(
                "ise-empty",
                "error" if b.ours else "warning",
                b.ident,
                'instruction_set_extensions contains "", which never matches LM Studio\'s CPU survey '
                "(shown incompatible)",
                _FIXES["ise-empty"],
                target=str(b.folder / MANIFEST_FILE),
                kind=kind,
            )
        if ctx.report is None or not b.valid:
            return
        j = ctx.judge(b)
        if j.compatible or j.status == "missingLibraries":  # missing libraries are reported on their own
            return
        code = _CODES.get(
            j.status, "gpu-incompatible" if j.status.startswith(("gpu", "noSupported")) else "incompatible"
        )
        if code == "ise-unsupported" and "" in b.ise:
            code = "ise-empty"
        prov = read_provenance(b.folder) if b.ours else None
        variant = str(prov.get("variant", "")) if prov else ""
        host_avx = ctx.report.cpu is not None and ctx.report.cpu.has("AVX")
        auto = code == "ise-empty" and b.ours and "avx1" in variant and host_avx
        yield Finding(
            code,
            _severity(kind, code),
            b.ident,
            f"LM Studio will report {j.status} ({j.label}): {j.message}",
            'set instruction_set_extensions to ["AVX"] (an AVX1 build)' if auto else _FIXES.get(code, RECOMMEND),
            auto=auto,
            target=str(b.folder / MANIFEST_FILE),
            kind=kind,
        )

    def fix(self, r: Repairer, f: Finding) -> str:
        t = Path(f.target)
        r.backup_file(t)
        doc = load_json(t)
        doc.data["cpu"]["instruction_set_extensions"] = ["AVX"]
        save(doc)
        return f'set instruction_set_extensions to ["AVX"] in {t}'


def _lmstudio_advice(kind: str, status: str, ours_ok: bool | None) -> str:
    """What to do when LM Studio's cached verdict is not 'compatible', by kind and by whether we agree."""
    rerun = "restart LM Studio fully (tray -> Quit) and rerun its compatibility check (Runtime page -> Manage versions)"
    if status in SURVEY_CRASH:
        if kind == "official":
            return (
                "LM Studio's own pack: LM Studio requires AVX2 for it (its documentation); use an lms-unlocked build "
                "for this CPU (lms-unlocked recommend)"
            )
        what = (
            "rebuild without AVX2 / use a template whose bindings load on this CPU"
            if kind == "ours"
            else "the pack keeps LM Studio's bindings and they may not load on this CPU: use a build whose bindings "
            "load here (lms-unlocked recommend)"
        )
        return f"{rerun}; if it still says {status}: {what}"
    if ours_ok:
        return (
            f"our check passes: LM Studio's verdict may be cached from an earlier start or an older manifest; {rerun}. "
            f"If it still says {status}, believe LM Studio (it loads the engine) and run `lms-unlocked doctor --log` "
            "on what it printed"
        )
    if ours_ok is False:
        return f"our check agrees; {RECOMMEND}"
    return f"compare with `lms-unlocked list` (with hardware) and {rerun}"


class LmStudioVerdict(Check):
    codes = (
        ("lmstudio-says-incompatible", "LM Studio's own check said incompatible"),
        ("lmstudio-says-compatible", "LM Studio's own check said compatible, ours does not"),
    )
    about = (
        "LM Studio caches its last verdict per engine in .internal/internal-engine-index.json (§13). It is "
        "explained for every kind next to ours: a survey crash (errorSurveyingHardware, invalidCpuArchitecture, "
        "cpuSurveyUnsuccessful) usually means the engine's bindings did not load on this CPU (§15 #9); when the "
        "two disagree, LM Studio's cache may predate a change, so it is rerun before anything is rebuilt."
    )

    def detect(self, ctx: Context) -> Iterable[Finding]:
        said = last_status(ctx.home)
        for b in ctx.backends:
            e = said.get(b.ident) if b.valid else None
            if e is None or e.status == "unknown":
                continue
            kind = ctx.kind(b).kind
            j = ctx.judge(b) if ctx.report is not None else None
            ours_ok = None if j is None or j.status == "unknown" else j.compatible
            ours_text = f"ours says {j.status} ({j.message})" if ours_ok is not None and j else "ours was not run"
            if e.status == "compatible":
                if ours_ok is False and j is not None:
                    yield Finding(
                        "lmstudio-says-compatible",
                        "info" if kind == "official" else "warning",
                        b.ident,
                        f"LM Studio's own check last reported compatible for {b.ident}; {ours_text}. Its verdict is "
                        "cached from its last start (before a manifest edit or a hardware change?)",
                        "restart LM Studio fully and rerun its compatibility check; if it still lists it as compatible "
                        "but loading fails, run `lms-unlocked doctor --log` on what it printed",
                        kind=kind,
                    )
                continue
            crash = " - its survey child probably crashed loading the bindings" if e.status in SURVEY_CRASH else ""
            yield Finding(
                "lmstudio-says-incompatible",
                _severity(kind, ""),
                b.ident,
                f"LM Studio's own check last reported {e.status} ({status_label(e.status)}) for {b.ident}{crash}. "
                f"That usually means: {STATUS_MEANING.get(e.status, STATUS_MEANING['unknown'])}; {ours_text}",
                _lmstudio_advice(kind, e.status, ours_ok),
                kind=kind,
                data={"lmstudio": e.status, "ours": j.status if j else ""},
            )
