"""Crash doctor: read what LM Studio printed when a model failed to load, and say why in words.

Input is text: a log file (`doctor --log FILE`), a paste from LM Studio's error box (the wizard's Repair
page), or LM Studio's own logs found on disk (`lmstudio_log_locations`). Output is a `CrashDiagnosis`:

- every engine exit code found, decoded (docs/lmstudio-contract.md §16.1): LM Studio prints a Windows
  NTSTATUS as an unsigned 64-bit number through a double, so `18446744072635812000` stands for a *range*
  (0xC0000401–0xC0000BFF: almost always 0xC0000409, the engine aborted) and `18446744072635810000` for
  another (0xC0000000–0xC0000400: access violation, **illegal instruction** 0xC000001D, missing DLL, ...);
  signed (`-1073741795`), hex (`0xC000001D`), unsigned 32-bit and POSIX (`132` = SIGILL) forms too;
- other known lines (GGML_ASSERT, out of memory, CUDA "no kernel image", Vulkan device lost, ...);
- for an illegal instruction (certain or possible), the ISA audit of the backend that crashed, against
  this CPU: "llama.cpp-win-x86_64-avx2@1.52.0 uses AVX2 outside any CPU check (ggml-cpu.dll: 10682),
  your CPU lacks it → install cpu-avx1".

Plain API for the wizard's paste box::

    diag = diagnose_crash(text, home=home, report=report)      # never raises on odd text
    diag.headline, diag.advice, diag.to_json()
"""

from __future__ import annotations

import dataclasses
import fnmatch
import os
import re
import sys
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from app.core.builder.audit import (
    FolderAudit,
    Violation,
    audit_folder,
    audit_violations,
    counts_for_target,
    usable_extensions,
)
from app.core.errors import InputFileError
from app.core.hardware.report import HardwareReport
from app.core.lmstudio.backends import BackendInfo, list_backends
from app.core.lmstudio.home import LmsHome
from app.core.lmstudio.prefs import selected_for

# NTSTATUS codes a crashed engine exits with (docs/lmstudio-contract.md §16.1).
NTSTATUS: Mapping[int, str] = {
    0xC0000005: "access violation",
    0xC0000017: "out of memory (STATUS_NO_MEMORY)",
    0xC000001D: "illegal instruction (an instruction this CPU does not have)",
    0xC000008E: "floating-point divide by zero",
    0xC0000094: "integer divide by zero",
    0xC000009A: "insufficient system resources",
    0xC00000FD: "stack overflow",
    0xC0000135: "a DLL was not found",
    0xC0000139: "an entry point was not found in a DLL",
    0xC0000142: "a DLL failed to initialise",
    0xC0000374: "heap corruption",
    0xC0000409: "fail-fast: the engine aborted (abort(), GGML_ASSERT)",
    0xC0000420: "assertion failure",
}
ILLEGAL_INSTRUCTION = 0xC000001D
ABORT = 0xC0000409
# POSIX: a child killed by signal N exits as 128+N in LM Studio's message.
SIGNALS: Mapping[int, str] = {
    4: "SIGILL (illegal instruction: an instruction this CPU does not have)",
    5: "SIGTRAP (the engine hit a trap, e.g. __builtin_trap or a debugger breakpoint)",
    6: "SIGABRT (the engine aborted: abort(), GGML_ASSERT)",
    7: "SIGBUS (bad memory access, e.g. a truncated model file that is memory-mapped)",
    8: "SIGFPE (arithmetic error)",
    9: "SIGKILL (killed, often by the out-of-memory killer)",
    11: "SIGSEGV (segmentation fault)",
}
# Vendor runtimes that pick their code with CPUID: never the culprit of an illegal instruction we can judge.
RUNTIME_GLOBS: tuple[str, ...] = ("msvcp*", "vcruntime*", "vcomp*", "*cudart*", "*cublas*", "libgomp*", "ucrtbase*")


@dataclass(frozen=True)
class ExitCode:
    """One exit code as printed, and what it can stand for."""

    printed: str
    form: str  # "rounded-u64" | "signed" | "hex" | "unsigned" | "posix" | "other"
    low: int  # NTSTATUS (or exit status) range it stands for; low == high when exact
    high: int
    meaning: str
    candidates: tuple[tuple[int, str], ...] = ()  # known NTSTATUS codes in [low, high]
    illegal_instruction: str = "no"  # "yes" | "possible" | "no"

    @property
    def exact(self) -> bool:
        return self.low == self.high

    def describe(self) -> str:
        if self.form == "posix" or self.form == "other":
            return f"exit code {self.printed}: {self.meaning}"
        rng = f"0x{self.low:08X}" if self.exact else f"0x{self.low:08X}–0x{self.high:08X}"
        return f"exit code {self.printed} = {rng}: {self.meaning}"

    def to_json(self) -> dict[str, Any]:
        return {
            "printed": self.printed,
            "form": self.form,
            "low": f"0x{self.low:08X}",
            "high": f"0x{self.high:08X}",
            "meaning": self.meaning,
            "candidates": [{"code": f"0x{c:08X}", "meaning": m} for c, m in self.candidates],
            "illegal_instruction": self.illegal_instruction,
        }


def _ntstatus_range(low: int, high: int, printed: str, form: str) -> ExitCode:
    cands = tuple((c, m) for c, m in sorted(NTSTATUS.items()) if low <= c <= high)
    if low == high:
        meaning = NTSTATUS.get(low) or (
            "a Windows error status" if low >= 0xC0000000 else "a Windows status" if low >= 0x80000000 else "exit code"
        )
    elif ABORT in dict(cands) and high <= 0xC0000BFF:
        meaning = "the engine aborted (almost always 0xC0000409 fail-fast: abort() or GGML_ASSERT)"
    elif cands:
        meaning = "ambiguous crash: " + "; ".join(f"0x{c:08X} {m}" for c, m in cands)
    else:
        meaning = "not a Windows crash status LM Studio documents"
    ill = "no"
    if low <= ILLEGAL_INSTRUCTION <= high:
        ill = "yes" if low == high else "possible"
    return ExitCode(printed, form, low, high, meaning, cands, ill)


def decode_exit_code(printed: str) -> ExitCode | None:
    """Decode one exit code as LM Studio (or Windows, or a shell) prints it; None if it is no number."""
    s = printed.strip()
    try:
        value = int(s, 16) if s.lower().startswith("0x") else int(s)
    except ValueError:
        return None
    if s.lower().startswith("0x"):
        if value <= 0xFFFFFFFF:
            return _ntstatus_range(value, value, s, "hex")
        value &= 0xFFFFFFFFFFFFFFFF
    if value < 0:
        if value >= -(1 << 31):
            return _ntstatus_range(value & 0xFFFFFFFF, value & 0xFFFFFFFF, s, "signed")
        return ExitCode(s, "other", value, value, "a negative exit code outside 32 bits")
    if (1 << 53) <= value < (1 << 64) + 4096:
        # Printed through a double: the true 64-bit value is within half a step (2048 near 2^64) of it.
        d = int(float(s))
        step = 2 ** max(0, d.bit_length() - 53)
        half = step // 2 - (0 if (d // step) % 2 == 0 else 1)  # round-half-even: ties go to an even mantissa
        lo, hi = max(0, d - half), min((1 << 64) - 1, d + half)
        if lo >> 32 == 0xFFFFFFFF and hi >> 32 == 0xFFFFFFFF:
            low32 = lo & 0xFFFFFFFF
            if low32 < 0xC0000000 <= hi & 0xFFFFFFFF:
                low32 = 0xC0000000  # below are success/warning statuses, not a crash
            res = _ntstatus_range(low32, hi & 0xFFFFFFFF, s, "rounded-u64")
            if not res.candidates and not 0xC0000000 <= low32 < 0xD0000000:
                return dataclasses.replace(
                    res, form="other", meaning=f"a negative exit code near {d - (1 << 64)}, no crash status"
                )
            return res
        return ExitCode(s, "other", lo, hi, "a 64-bit value that is no Windows status")
    if value > 255 and value <= 0xFFFFFFFF:
        return _ntstatus_range(value, value, s, "unsigned")
    if 128 < value <= 128 + 64:
        sig = value - 128
        meaning = f"killed by signal {sig}: {SIGNALS.get(sig, 'see `kill -l`')}"
        ill = "yes" if sig == 4 else "no"
        return ExitCode(s, "posix", value, value, meaning, (), ill)
    return ExitCode(s, "other", value, value, "the engine exited with this status (no crash signal)")


@dataclass(frozen=True)
class LogLine:
    """A line of the log that says something we recognise."""

    number: int  # 1-based
    text: str
    kind: str  # "exit-code" | "illegal-instruction" | "abort" | "out-of-memory" | "gpu" | "runtime" | ...
    meaning: str
    exit_code: ExitCode | None = None


# (kind, regex, meaning) for lines worth pointing at; first match wins.
_PATTERNS: tuple[tuple[str, re.Pattern[str], str], ...] = tuple(
    (k, re.compile(p, re.I), m)
    for k, p, m in (
        (
            "illegal-instruction",
            r"illegal instruction|\bSIGILL\b|trap invalid opcode|0xc000001d",
            "the CPU met an instruction it does not have",
        ),
        ("abort", r"GGML_ASSERT|GGML_ABORT|\babort\(\)|Aborted|0xc0000409", "the engine stopped itself (assertion)"),
        (
            "out-of-memory",
            r"out of memory|failed to allocate|ErrorOutOfDeviceMemory|cudaMalloc failed|std::bad_alloc",
            "not enough memory (RAM or VRAM): offload fewer layers or use a smaller context",
        ),
        (
            "gpu",
            r"no kernel image is available|CUBLAS_STATUS_ARCH_MISMATCH",
            "the CUDA build has no code for this GPU's compute capability",
        ),
        ("gpu", r"DeviceLost|device lost", "the GPU driver reset (Vulkan device lost): update the driver"),
        (
            "runtime",
            r"No LM Runtime found|no compatible runtime|invalidCpuArchitecture|incompatible",
            "LM Studio found no backend it accepts for this model on this computer",
        ),
        (
            "missing-library",
            r"cannot open shared object|error while loading shared libraries|The specified module could not be found"
            r"|LoadLibrary.*failed|dlopen.*failed",
            "a library the backend needs is missing",
        ),
    )
)
_EXIT_RE = re.compile(
    r"(?:exit code|exit status|exitcode|exception code|\bcode)\s*(?:of|is|was|[:=])?\s*[`'\"(]?\s*"
    r"(-?0x[0-9a-f]+|-?\d+)",
    re.I,
)
_BARE_BIG_RE = re.compile(r"(?<![\d.])(1844674407\d{10})(?!\d)")  # a rounded 64-bit status printed on its own
_IDENT_RE = re.compile(r"\b(llama\.cpp-[a-z0-9_.-]+?)@(\d+\.\d+\.\d+)\b", re.I)


def scan_log(text: str) -> list[LogLine]:
    """Every recognised line of `text` (exit codes decoded), in order."""
    out: list[LogLine] = []
    for i, line in enumerate(text.splitlines(), 1):
        codes = [m.group(1) for m in _EXIT_RE.finditer(line)]
        codes += [m.group(1) for m in _BARE_BIG_RE.finditer(line) if m.group(1) not in codes]
        found = False
        for c in codes:
            ec = decode_exit_code(c)
            if ec is not None:
                out.append(LogLine(i, line.strip(), "exit-code", ec.describe(), ec))
                found = True
        if found:
            continue
        for kind, rx, meaning in _PATTERNS:
            if rx.search(line):
                out.append(LogLine(i, line.strip(), kind, meaning))
                break
    return out


@dataclass(frozen=True)
class AuditFinding:
    """The ISA audit of the backend that crashed, against this CPU."""

    backend: str  # NAME@VERSION or folder
    folder: str
    violations: tuple[Violation, ...]  # in the llama.cpp binaries (what a backend build replaces)
    judged: int  # binaries judged
    guarded: dict[str, int] = field(default_factory=dict)  # extension -> instructions behind a CPU check
    # In LM Studio's own files (llm_engine*, *.node, lmstudiocore*): no backend build replaces them.
    lmstudio_violations: tuple[Violation, ...] = ()

    def to_json(self) -> dict[str, Any]:
        def rows(vs: tuple[Violation, ...]) -> list[dict[str, Any]]:
            return [{"file": v.file, "extension": v.extension, "count": v.count, "guarded": v.guarded} for v in vs]

        return {
            "backend": self.backend,
            "folder": self.folder,
            "judged": self.judged,
            "violations": rows(self.violations),
            "lmstudio_violations": rows(self.lmstudio_violations),
            "guarded": self.guarded,
        }


@dataclass(frozen=True)
class CrashDiagnosis:
    lines: tuple[LogLine, ...]
    exit_codes: tuple[ExitCode, ...]
    illegal_instruction: str  # "yes" | "possible" | "no"
    backend: str  # the backend we looked at ("" when none)
    audit: AuditFinding | None
    headline: str
    advice: tuple[str, ...]

    def describe(self) -> list[str]:
        """Lines for a terminal or the wizard: the verdict, the advice, then the lines it rests on."""
        out = [self.headline]
        out += [f"  → {a}" for a in self.advice if a != self.headline]
        if self.lines:
            out.append("what the log says:")
            out += [f"  line {x.number}: {x.meaning}" for x in self.lines[-8:]]
        return out

    def to_json(self) -> dict[str, Any]:
        return {
            "headline": self.headline,
            "advice": list(self.advice),
            "illegal_instruction": self.illegal_instruction,
            "backend": self.backend,
            "exit_codes": [e.to_json() for e in self.exit_codes],
            "lines": [
                {"line": x.number, "kind": x.kind, "meaning": x.meaning, "text": x.text[:400]} for x in self.lines
            ],
            "audit": self.audit.to_json() if self.audit else None,
        }


def _judge_everything(fa: FolderAudit) -> FolderAudit:
    """For a crash every binary loaded by the engine may be the culprit, except CPUID-dispatching runtimes."""
    out = []
    for b in fa.binaries:
        runtime = any(fnmatch.fnmatch(os.path.basename(b.path).lower(), g) for g in RUNTIME_GLOBS)
        out.append(dataclasses.replace(b, counted=not runtime))
    return dataclasses.replace(fa, binaries=tuple(out))


def _suggest_variant(info: BackendInfo | None, isa: Iterable[str]) -> str:
    if "AVX" not in set(isa):
        return "noavx"
    if info is not None and info.gpu_framework.lower() == "vulkan":
        return "vulkan-avx1"
    return "cpu-avx1"


def _pick_backend(
    home: LmsHome | None, backend: BackendInfo | Path | None, mentioned: list[str]
) -> tuple[str, Path | None, BackendInfo | None]:
    if isinstance(backend, Path):
        return (backend.name, backend, None)
    if isinstance(backend, BackendInfo):
        return (backend.ident, backend.folder, backend)
    if home is None or not home.exists:
        return ("", None, None)
    try:
        installed = list_backends(home)
    except Exception:  # an unreadable backends folder: doctor reports it on its own
        installed = []
    by_ident = {b.ident: b for b in installed}
    for ident in mentioned:
        if ident in by_ident:
            return (ident, by_ident[ident].folder, by_ident[ident])
    sel = selected_for(home, "gguf")
    if sel is not None and sel.ident in by_ident:
        return (sel.ident, by_ident[sel.ident].folder, by_ident[sel.ident])
    return ("", None, None)


def diagnose_crash(
    text: str,
    *,
    home: LmsHome | None = None,
    report: HardwareReport | None = None,
    backend: BackendInfo | Path | None = None,
    audit: Callable[[Path], FolderAudit] = audit_folder,
) -> CrashDiagnosis:
    """Read a crash log / pasted error and explain it; audit the backend when it may be an illegal instruction.

    `backend`: the backend that crashed, if known; otherwise one the log names (NAME@VERSION) that is
    installed in `home`, else the one selected for GGUF models there. `report`: this computer (for the
    audit's target CPU). Never raises for odd text; an unreadable backend folder is said in `advice`.
    """
    lines = scan_log(text)
    codes = tuple(x.exit_code for x in lines if x.exit_code is not None)
    ill = "no"
    if any(x.kind == "illegal-instruction" for x in lines) or any(c.illegal_instruction == "yes" for c in codes):
        ill = "yes"
    elif any(c.illegal_instruction == "possible" for c in codes):
        ill = "possible"
    mentioned = [f"{m.group(1)}@{m.group(2)}" for m in _IDENT_RE.finditer(text)]
    name, folder, info = _pick_backend(home, backend, mentioned)
    advice: list[str] = []
    finding: AuditFinding | None = None
    isa = tuple(report.cpu.isa) if report is not None and report.cpu is not None else ()
    if ill != "no" and folder is not None and isa:
        try:
            fa = _judge_everything(audit(folder))
        except Exception as exc:  # AuditError or an unreadable folder: say so instead of failing
            advice.append(f"could not audit {name}: {exc}")
        else:
            everything = audit_violations(fa, isa)
            viol = tuple(v for v in everything if counts_for_target(v.file))
            theirs = tuple(v for v in everything if not counts_for_target(v.file))
            guarded: dict[str, int] = {}
            for b in fa.binaries:
                for ext, n in b.guarded.items():
                    guarded[ext] = guarded.get(ext, 0) + n
            judged = sum(1 for b in fa.binaries if b.counted)
            finding = AuditFinding(name, str(folder), viol, judged, guarded, theirs)
    headline = _headline(lines, codes, ill, finding, name, info, isa)
    advice = [*_advice(lines, codes, ill, finding, name, info, isa, folder is not None), *advice]
    return CrashDiagnosis(tuple(lines), codes, ill, name, finding, headline, tuple(advice))


def _lacking(finding: AuditFinding, isa: Iterable[str]) -> list[str]:
    usable = usable_extensions(isa)
    exts = sorted({v.extension for v in finding.violations if v.extension not in usable})
    return exts


def _headline(
    lines: list[LogLine],
    codes: tuple[ExitCode, ...],
    ill: str,
    finding: AuditFinding | None,
    name: str,
    info: BackendInfo | None,
    isa: tuple[str, ...],
) -> str:
    if finding is not None and finding.violations:
        exts = ", ".join(_lacking(finding, isa))
        per_file: dict[str, int] = {}
        for v in finding.violations:
            per_file[v.file] = per_file.get(v.file, 0) + v.count
        files = ", ".join(f"{f}: {n} instructions" for f, n in sorted(per_file.items())[:3])
        return (
            f"{name} uses {exts} outside any CPU check ({files}), your CPU lacks it "
            f"→ install {_suggest_variant(info, isa)}"
        )
    if ill == "yes":
        return "the engine hit an illegal instruction: the backend uses an instruction set this CPU does not have"
    if codes:
        return codes[-1].describe()
    if lines:
        return lines[-1].meaning
    return "no crash message LM Studio prints was found in this text"


def _advice(
    lines: list[LogLine],
    codes: tuple[ExitCode, ...],
    ill: str,
    finding: AuditFinding | None,
    name: str,
    info: BackendInfo | None,
    isa: tuple[str, ...],
    have_backend: bool,
) -> list[str]:
    out: list[str] = []
    if finding is not None:
        variant = _suggest_variant(info, isa)
        if finding.violations:
            for v in finding.violations:
                out.append(v.describe())
            out.append(
                f"install the {variant} backend (`lms-unlocked install --catalog`, or build it: "
                f"`lms-unlocked build --variant {variant}`) and select it in LM Studio"
            )
        elif finding.lmstudio_violations:
            for v in finding.lmstudio_violations:
                out.append(f"LM Studio's own {v.describe()}")
            out.append(
                "if that code is what crashed, no backend build can fix it (LM Studio ships these files); the "
                "llama.cpp libraries of this backend need nothing your CPU lacks"
            )
        else:
            g = ", ".join(f"{k} {n}" for k, n in sorted(finding.guarded.items()))
            out.append(
                f"the audit of {name} finds nothing this CPU lacks outside a CPU check"
                + (f" ({g} instructions sit behind one)" if g else "")
                + ": the crash is probably not an unsupported instruction"
            )
    elif ill != "no":
        if not have_backend:
            out.append(
                "tell which backend crashed (--backend NAME@VERSION, or select it in LM Studio) to audit it "
                "against this CPU"
            )
        elif not isa:
            out.append("the CPU could not be probed, so the backend could not be judged against it")
    if any(c.low <= ABORT <= c.high for c in codes) or any(x.kind == "abort" for x in lines):
        out.append(
            "an abort usually means the model or settings hit a limit: lower the evaluation batch size "
            "(≤ 384 on old GPUs with Vulkan), turn flash attention off, offload fewer layers, and check the GPU "
            "is supported"
        )
    if any(c.illegal_instruction == "possible" for c in codes) and ill == "possible":
        out.append(
            "this exit code is ambiguous (access violation, illegal instruction, missing DLL, ...): check "
            "that the backend's DLLs and the GPU vendor's libraries are present first, then the CPU instruction "
            "sets (the audit above)"
        )
    seen: set[str] = set()
    for x in lines:
        if x.kind not in ("exit-code", "illegal-instruction", "abort") and x.meaning not in seen:
            seen.add(x.meaning)
            out.append(x.meaning)
    return out


# --- LM Studio's own logs -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LogLocation:
    path: Path
    what: str
    confidence: str  # "high" | "medium" | "low": how well public sources agree on this place
    source: str


def lmstudio_log_locations(
    home: LmsHome | None, *, platform: str = sys.platform, env: Mapping[str, str] | None = None
) -> list[LogLocation]:
    """Where LM Studio writes its logs, as public sources show (docs/troubleshooting.md lists them).

    The Electron app's `main.log` (model-load errors, "Exit code: ..." lines) and the server's
    per-day logs in the LM Studio home (`server-logs/<YYYY-MM>/<YYYY-MM-DD>.N.log`; empty when file
    logging is off). LM Studio documents neither, so each place carries how sure we are.
    """
    e = os.environ if env is None else env
    user = Path(e.get("USERPROFILE") or e.get("HOME") or Path.home())
    out: list[LogLocation] = []
    if platform.startswith("win"):
        appdata = Path(e.get("APPDATA") or user / "AppData" / "Roaming")
        out.append(
            LogLocation(appdata / "LM Studio" / "logs" / "main.log", "app log", "high", "many public scripts and notes")
        )
    elif platform == "darwin":
        out.append(
            LogLocation(
                user / "Library" / "Application Support" / "LM Studio" / "logs" / "main.log",
                "app log",
                "medium",
                "public scripts",
            )
        )
        out.append(
            LogLocation(user / "Library" / "Logs" / "LM Studio" / "main.log", "app log", "medium", "public notes")
        )
    else:
        config = Path(e.get("XDG_CONFIG_HOME") or user / ".config")
        out.append(
            LogLocation(
                config / "LM Studio" / "logs" / "main.log", "app log", "low", "one public script; Electron's default"
            )
        )
    if home is not None:
        out.append(LogLocation(home.path / "server-logs", "server logs (per day)", "high", "several public tools"))
    return out


def collect_lmstudio_logs(
    home: LmsHome | None, *, platform: str = sys.platform, env: Mapping[str, str] | None = None
) -> tuple[str, list[Path], list[LogLocation]]:
    """The text of LM Studio's newest log files (oldest first), the files read and every place looked at."""
    locations = lmstudio_log_locations(home, platform=platform, env=env)
    files = recent_log_files(locations)
    texts = []
    for f in reversed(files):
        try:
            texts.append(read_log_text(f, max_bytes=MAX_LOG_BYTES // 4))
        except InputFileError:
            continue
    return ("\n".join(texts), files, locations)


def recent_log_files(locations: Iterable[LogLocation], *, limit: int = 3) -> list[Path]:
    """The existing log files among `locations`, newest first (server-log folders: their newest files)."""
    files: list[Path] = []
    for loc in locations:
        if loc.path.is_file():
            files.append(loc.path)
        elif loc.path.is_dir():
            files.extend(p for p in loc.path.rglob("*.log") if p.is_file())
    files.sort(key=lambda p: p.stat().st_mtime, reverse=True)
    return files[:limit]


MAX_LOG_BYTES = 4 * 1024 * 1024


def read_log_text(path: Path | str, *, max_bytes: int = MAX_LOG_BYTES) -> str:
    """The (last `max_bytes` of the) text of a log file, decoded leniently.

    Raises:
        InputFileError: missing, a folder, or unreadable.
    """
    p = Path(path)
    if not p.exists():
        raise InputFileError(f"log file not found: {p}", context=str(p), hint="check the path")
    if not p.is_file():
        raise InputFileError(f"{p} is not a file", context=str(p), hint="give the log file itself")
    try:
        size = p.stat().st_size
        with open(p, "rb") as f:
            if size > max_bytes:
                f.seek(size - max_bytes)
            data = f.read()
    except OSError as exc:
        raise InputFileError(f"cannot read {p}: {exc.strerror or exc}", context=str(p)) from exc
    if data.startswith(b"\xff\xfe") or data.startswith(b"\xfe\xff"):
        return data.decode("utf-16", errors="replace")
    return data.decode("utf-8", errors="replace").lstrip("\ufeff")
