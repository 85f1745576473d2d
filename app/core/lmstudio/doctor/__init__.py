"""Why a backend does not show up or run: diagnose (docs/lmstudio-contract.md §15 checklist) and repair what is safe.

Each check is one class in a ``checks_*`` module holding its detection, its human title and explanation, and its
fix, side by side (:mod:`.registry`; docs/developers.md "Adding a repair check"). :func:`diagnose` runs them all
and returns :class:`Finding` objects; :func:`repair` applies the fixes marked ``auto`` and diagnoses again.

Every backend folder is one of three kinds (:mod:`app.core.lmstudio.kinds`). Repair changes ours and third-party
folders, LM Studio's settings, preferences and engine index (those with LM Studio closed), and backs up everything
it changes under ``<home>/.lms-unlocked/backups/<txid>/`` first; extra copies are moved out of ``backends/``, never
deleted. LM Studio's own (official) folders stay byte-identical.

For the wizard: :func:`duplicate_groups` lists duplicated ``name@version`` copies with the proposed keeper (or none
when the user must choose); ``repair(home, keep=[folder])`` applies the choice.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from app.core.hardware.report import HardwareReport
from app.core.lmstudio.backends import list_backends
from app.core.lmstudio.doctor import (  # noqa: F401  (importing a module registers its checks, in this order)
    checks_compat,
    checks_dupes,
    checks_files,
    checks_home,
    checks_json,
    checks_layout,
    checks_settings,
)
from app.core.lmstudio.doctor.checks_dupes import Candidate, DuplicateGroup
from app.core.lmstudio.doctor.checks_dupes import duplicate_groups as _duplicate_groups
from app.core.lmstudio.doctor.registry import (
    REGISTRY,
    REGISTRY_BY_CODE,
    SEVERITY_ORDER,
    Check,
    Context,
    Finding,
    ProcessLister,
    Repairer,
)
from app.core.lmstudio.errors import JsonFileError
from app.core.lmstudio.home import LmsHome, as_home
from app.core.lmstudio.journal import JournalError, home_lock, new_txid
from app.core.lmstudio.prefs import PreferencesError
from app.core.lmstudio.processes import CLOSE_HINT, LmsProcess, lmstudio_processes, running_message

__all__ = [
    "REGISTRY",
    "Candidate",
    "Check",
    "DuplicateGroup",
    "Finding",
    "RepairOutcome",
    "diagnose",
    "duplicate_groups",
    "repair",
    "repair_plan",
]


def _default_procs(home: LmsHome) -> list[LmsProcess]:
    return lmstudio_processes(home.path)


def _context(
    h: LmsHome,
    report: HardwareReport | None,
    app_version: str | None,
    user_home: Path | None,
    processes: ProcessLister,
    keep: Iterable[Path | str] = (),
) -> Context:
    backends = list_backends(h) if h.backends_dir.is_dir() else []
    procs = processes(h) if h.backends_dir.is_dir() else []
    keep_real = frozenset(Path(os.path.realpath(k)) for k in keep)
    return Context(h, backends, report, app_version, user_home, procs, keep_real)


def diagnose(
    home: LmsHome | Path | str,
    *,
    report: HardwareReport | None = None,
    app_version: str | None = None,
    user_home: Path | None = None,
    processes: ProcessLister = _default_procs,
    keep: Iterable[Path | str] = (),
) -> list[Finding]:
    """Every finding of the §15 checklist for ``home``, most severe first. Reads only.

    ``keep``: folders the user chose to keep among duplicates (see :func:`duplicate_groups`).
    """
    h = as_home(home)
    ctx = _context(h, report, app_version, user_home, processes, keep)
    has_backends = h.backends_dir.is_dir()
    findings: list[Finding] = []
    for check in REGISTRY:
        if has_backends or check.home_level:
            findings += check.detect(ctx)
    findings.sort(key=lambda f: SEVERITY_ORDER.get(f.severity, 9))
    return findings


def duplicate_groups(
    home: LmsHome | Path | str,
    *,
    report: HardwareReport | None = None,
    app_version: str | None = None,
    keep: Iterable[Path | str] = (),
) -> list[DuplicateGroup]:
    """Duplicated ``name@version`` copies, each with its candidates and the copy repair would keep (``keeper``;
    None when the user must choose: pass the chosen folder to :func:`repair` as ``keep``). Reads only."""
    h = as_home(home)
    return _duplicate_groups(_context(h, report, app_version, None, lambda _h: [], keep))


# ------------------------------------------------------------------------------------------------ repair


@dataclass(frozen=True)
class RepairOutcome:
    before: tuple[Finding, ...]
    after: tuple[Finding, ...]
    applied: tuple[str, ...] = ()  # sentences
    skipped: tuple[str, ...] = ()
    backup_dir: Path | None = None

    @property
    def fixed(self) -> tuple[Finding, ...]:
        keys = {f.key() for f in self.after}
        return tuple(f for f in self.before if f.key() not in keys)


def repair_plan(findings: list[Finding]) -> list[str]:
    """The lines ``repair --dry-run`` prints: what would be done, and what needs the user."""
    lines = []
    for f in findings:
        what = f"[{f.code}] {f.backend + ': ' if f.backend else ''}{f.fix}"
        if f.auto:
            lines.append(("fix     " if not f.needs_closed else "fix (LM Studio closed) ") + what)
        else:
            lines.append("manual  " + what)
    if any(f.auto and f.code in MOVING_CODES for f in findings):
        lines.append("then    look again and apply the automatic fixes the moved folders need (e.g. a manifest's "
                     "Windows line endings), in the same run")
    return lines


_FIX_ERRORS = (OSError, RuntimeError, KeyError, TypeError, JsonFileError, JournalError, PreferencesError)
MOVING_CODES = frozenset({"nested-folder", "loose-files", "misplaced-backend", "wrong-home", "name-clash"})
_REPAIR_PASSES = 4  # a move reveals findings; one more pass fixes them (4 covers move -> rename -> rewrite)


def repair(
    home: LmsHome | Path | str,
    chosen: Iterable[Finding] | None = None,
    *,
    report: HardwareReport | None = None,
    app_version: str | None = None,
    user_home: Path | None = None,
    processes: ProcessLister = _default_procs,
    only: set[str] | None = None,
    keep: Iterable[Path | str] = (),
) -> RepairOutcome:
    """Apply every safe fix (``auto`` findings; those needing LM Studio closed only when it is), then diagnose again.

    ``chosen`` (findings from an earlier :func:`diagnose`) or ``only`` (codes) limit what is fixed; ``keep`` names
    the folders to keep among duplicates.
    """
    h = as_home(home)
    keep = tuple(keep)
    kw: dict[str, Any] = {
        "report": report,
        "app_version": app_version,
        "user_home": user_home,
        "processes": processes,
        "keep": keep,
    }
    before = diagnose(h, **kw)
    applied: list[str] = []
    skipped: list[str] = []
    r = Repairer(h, new_txid("repair"))
    keys = {c.key() for c in chosen} if chosen is not None else None
    seen = {f.key() for f in before}  # what the user saw (and chose from) before anything changed
    tried: set[tuple[str, str, str]] = set()
    with home_lock(h.path):
        running = processes(h)
        findings = before
        # A fix that moves a folder (nested, loose files, name clash, wrong home) reveals or re-keys the folder's
        # other findings (e.g. the CRLF of theIvanR's manifest): diagnose again and fix those in the same run.
        # Later passes fix only findings nobody saw before, so a finding the user left unchosen stays unfixed.
        for npass in range(_REPAIR_PASSES):
            existed = {f.target for f in findings if f.target and os.path.lexists(f.target)}
            deferred, done = False, len(applied)
            for f in findings:
                if not f.auto or (only is not None and f.code not in only) or f.key() in tried:
                    continue
                if npass == 0 and keys is not None and f.key() not in keys:
                    continue
                if npass > 0 and f.key() in seen:
                    continue
                if f.target in existed and not os.path.lexists(f.target):
                    deferred = True  # an earlier fix of this pass moved it: judged again in the next pass
                    continue
                tried.add(f.key())
                if f.needs_closed and running:
                    skipped.append(f"[{f.code}] skipped: {running_message(running)}; {CLOSE_HINT}")
                    continue
                try:
                    applied.append(f"[{f.code}] " + REGISTRY_BY_CODE[f.code].fix(r, f))
                except _FIX_ERRORS as exc:
                    skipped.append(f"[{f.code}] failed: {exc}")
            if not deferred and len(applied) == done:
                break  # nothing changed in this pass: nothing new to find
            findings = diagnose(h, **kw)
            if not any(f.auto and f.key() not in tried and f.key() not in seen for f in findings):
                break
    after = diagnose(h, **kw)
    return RepairOutcome(
        tuple(before), tuple(after), tuple(applied), tuple(skipped), r.backups if r.backups.exists() else None
    )
