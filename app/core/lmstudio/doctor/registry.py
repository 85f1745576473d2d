"""The pieces every repair check is made of: :class:`Finding`, :class:`Check` (the registry), :class:`Context`
(what a check reads) and :class:`Repairer` (what a fix may do: back up, move out, journaled moves).

A check is one class: its codes, a human title and a paragraph for each code, ``detect`` next to ``fix``.
Defining the class registers it (``Check.__init_subclass__``); :data:`REGISTRY` keeps definition order, which
is the order of docs/lmstudio-contract.md §15. See docs/developers.md "Adding a repair check".
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, ClassVar

from app.core.hardware.report import HardwareReport
from app.core.lmstudio.backends import BackendInfo
from app.core.lmstudio.home import LmsHome
from app.core.lmstudio.journal import Journal, Op, Transaction, state_dir
from app.core.lmstudio.judge import Judgement, judge_backend
from app.core.lmstudio.kinds import KindVerdict, classify_backend
from app.core.lmstudio.processes import LmsProcess

SEVERITY_ORDER = {"error": 0, "warning": 1, "info": 2}
ProcessLister = Callable[[LmsHome], list[LmsProcess]]


@dataclass(frozen=True)
class Finding:
    code: str  # stable, for JSON and scripts
    severity: str  # "error", "warning", "info"
    backend: str  # name@version, folder name, or "" for the whole home
    explanation: str
    fix: str  # what repair does (auto) or what the user has to do
    auto: bool = False  # `repair` applies it
    needs_closed: bool = False  # only while LM Studio is not running
    target: str = ""  # path the fix works on
    data: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)
    kind: str = ""  # kind of the backend folder concerned ("" for the whole home)

    def key(self) -> tuple[str, str, str]:
        return (self.code, self.backend, self.target)

    @property
    def heading(self) -> str:
        """The check's human title for this code (``code`` when no check registers it)."""
        return TITLES.get(self.code, self.code)

    @property
    def title(self) -> str:
        """One line for a list: severity, human title, backend."""
        return f"{self.severity.capitalize()}: {self.heading}" + (f" ({self.backend})" if self.backend else "")

    def __str__(self) -> str:
        return f"{self.title}: {self.explanation}"

    @property
    def fixable(self) -> bool:
        """Same as ``auto``: repair can apply the fix."""
        return self.auto


@dataclass
class Context:
    """What checks read: the home, its backends (read once), the hardware, LM Studio's processes."""

    home: LmsHome
    backends: list[BackendInfo]
    report: HardwareReport | None = None
    app_version: str | None = None
    user_home: Path | None = None
    processes: list[LmsProcess] = field(default_factory=list)
    keep: frozenset[Path] = frozenset()  # real paths of folders the user chose to keep among duplicates (--keep)
    _kinds: dict[Path, KindVerdict] = field(default_factory=dict)
    _judged: dict[Path, Judgement] = field(default_factory=dict)

    def kind(self, b: BackendInfo) -> KindVerdict:
        if b.folder not in self._kinds:
            self._kinds[b.folder] = classify_backend(b)
        return self._kinds[b.folder]

    def judge(self, b: BackendInfo) -> Judgement:
        if b.folder not in self._judged:
            self._judged[b.folder] = judge_backend(b, self.report, app_version=self.app_version)
        return self._judged[b.folder]

    def may_change(self, b: BackendInfo) -> bool:
        """Repair changes ours and third-party folders (backed up); LM Studio's own stay byte-identical."""
        return self.kind(b).kind != "official"

    @cached_property
    def backends_real(self) -> Path:
        return Path(os.path.realpath(self.home.backends_dir))


def label(b: BackendInfo) -> str:
    return b.ident or b.folder.name


def refetch_advice(kind: str) -> str:
    """How to get a broken folder's files back, true for its kind (LM Studio only re-downloads its own packs)."""
    return {
        "ours": "re-install this backend (lms-unlocked install, or rebuild it)",
        "official": "re-download this runtime in LM Studio (Runtime page -> Manage versions)",
    }.get(
        kind,
        "get this pack again from where it came from (LM Studio never shipped it, so it cannot re-download it), "
        "or replace it with a build of lms-unlocked (lms-unlocked recommend)",
    )


class Check:
    """One repair check. Subclasses set ``codes`` ((code, human title) pairs) and ``about``, and implement
    ``detect`` (or ``detect_backend``) and, when it has an automatic fix, ``fix``."""

    codes: ClassVar[tuple[tuple[str, str], ...]] = ()
    about: ClassVar[str] = ""  # what it means and why, for docs and the wizard
    home_level: ClassVar[bool] = False  # runs even when extensions/backends is missing

    def __init_subclass__(cls, **kw: Any) -> None:
        super().__init_subclass__(**kw)
        if cls.codes:
            inst = cls()
            REGISTRY.append(inst)
            for c, title in cls.codes:
                if c in REGISTRY_BY_CODE:
                    raise TypeError(f"repair code {c} registered twice")
                REGISTRY_BY_CODE[c] = inst
                TITLES[c] = title

    def detect(self, ctx: Context) -> Iterable[Finding]:
        """Findings for the whole home; the default asks :meth:`detect_backend` for every backend folder."""
        for b in ctx.backends:
            yield from self.detect_backend(ctx, b)

    def detect_backend(self, ctx: Context, b: BackendInfo) -> Iterable[Finding]:
        return ()

    def fix(self, r: Repairer, f: Finding) -> str:
        """Apply ``f`` (only called for ``f.auto``); returns a sentence. Back up before changing anything."""
        raise RuntimeError(f"no automatic fix for {f.code}")


REGISTRY: list[Check] = []
REGISTRY_BY_CODE: dict[str, Check] = {}
TITLES: dict[str, str] = {}  # code -> human title


class Repairer:
    """What a fix may do. Every changed file is copied under ``<home>/.lms-unlocked/backups/<txid>/`` first."""

    def __init__(self, h: LmsHome, txid: str) -> None:
        self.h = h
        self.txid = txid
        self.backups = state_dir(h.path) / "backups" / txid

    def backup_file(self, p: Path) -> None:
        """Copy ``p`` into the backup (the first copy wins: two fixes of one file keep the original)."""
        rel = p.relative_to(self.h.path) if p.is_relative_to(self.h.path) else Path(p.name)
        dst = self.backups / rel
        if dst.exists():
            return
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(p, dst, follow_symlinks=False)

    def moved_out_path(self, p: Path) -> Path:
        dst = self.backups / "moved-out" / p.name
        n = 1
        while dst.exists() or dst.is_symlink():
            n += 1
            dst = self.backups / "moved-out" / f"{p.name}.{n}"
        return dst

    def move_out(self, p: Path) -> Path:
        """Move ``p`` out of LM Studio's sight into the backup (never deleted)."""
        dst = self.moved_out_path(p)
        dst.parent.mkdir(parents=True, exist_ok=True)
        os.rename(p, dst)
        return dst

    def journaled(self, summary: str, ops: Iterable[Op], cleanup: Iterable[Path] = ()) -> None:
        """Run renames as one journaled transaction: a crash rolls them forward at the next start."""
        ops = tuple(ops)
        Journal(self.h.path).run(
            Transaction(self.txid, "repair", ops, 1, cleanup=tuple(str(c) for c in cleanup), summary=summary)
        )

    @property
    def txdir(self) -> Path:
        return state_dir(self.h.path) / "tx" / self.txid


def iter_checks() -> Iterator[Check]:
    yield from REGISTRY
