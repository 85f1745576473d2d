"""Two folders, one ``name@version`` (docs/lmstudio-contract.md §15 #5, §4.3), and names that clash with LM Studio's.

Which copy stays: the one you chose (``repair --keep FOLDER``, the wizard asks), else the only copy compatible with
this computer, else - among the compatible ones, or all when none is - ours, then LM Studio's own (it is never
moved), then the newest. Never the only compatible copy is moved. When compatibility is unknown (no hardware
report) and the copies differ, or nothing breaks the tie, nothing is moved until you choose. LM Studio's own
folder always stays: a third-party copy that must stay beside it gets a name of its own instead.
"""

from __future__ import annotations

import os
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from app.core.lmstudio.backends import DISPLAY_DATA_FILE, MANIFEST_FILE, BackendInfo
from app.core.lmstudio.doctor.registry import Check, Context, Finding, Repairer, label
from app.core.lmstudio.jsondoc import atomic_write_bytes, load_json, save
from app.core.lmstudio.prefs import load_preferences, selections, with_selection
from app.core.lmstudio.provenance import sha256_file

OWN_NAME_SUFFIX = "local"


@dataclass(frozen=True)
class Candidate:
    """One copy of a duplicated ``name@version``, as the wizard shows it."""

    folder: Path
    kind: str
    compatible: bool | None  # None: no hardware report
    status: str
    newest: bool


@dataclass(frozen=True)
class DuplicateGroup:
    """Copies sharing one ``name@version``; ``keeper`` is None when the user must choose (``doubt``)."""

    ident: str
    candidates: tuple[Candidate, ...]
    keeper: Path | None
    reason: str  # why the keeper, or why in doubt

    @property
    def doubt(self) -> bool:
        return self.keeper is None


def _signature(b: BackendInfo) -> tuple[object, ...]:
    """Same file names and sizes and the same JSON bytes: a plain copy (cheap: no hashing of large binaries)."""
    files: list[tuple[str, int]] = []
    for dirpath, _dirs, names in os.walk(b.folder):
        for n in names:
            p = Path(dirpath) / n
            try:
                files.append((p.relative_to(b.folder).as_posix(), p.lstat().st_size))
            except OSError:
                continue
    js = []
    for rel in (MANIFEST_FILE, DISPLAY_DATA_FILE):
        try:
            js.append((b.folder / rel).read_bytes())
        except OSError:
            js.append(b"")
    return (tuple(sorted(files)), tuple(js))


def _content(b: BackendInfo) -> tuple[tuple[str, str], ...]:
    """sha256 of every file (links by target): equal sizes are common for PE builds (theIvanR's avx and noavx
    ggml-cpu.dll are both 610304 bytes), so "identical" needs the bytes."""
    out: list[tuple[str, str]] = []
    for dirpath, _dirs, names in os.walk(b.folder):
        for n in names:
            p = Path(dirpath) / n
            rel = p.relative_to(b.folder).as_posix()
            try:
                out.append((rel, "-> " + os.readlink(p) if p.is_symlink() else sha256_file(p)))
            except OSError:
                out.append((rel, "unreadable"))
    return tuple(sorted(out))


def _identical(group: Sequence[BackendInfo]) -> bool:
    """Plain copies: the cheap signature first, the bytes only when it matches."""
    return len({_signature(b) for b in group}) == 1 and len({_content(b) for b in group}) == 1


def _mtime(b: BackendInfo) -> float:
    try:
        return max((b.folder / MANIFEST_FILE).stat().st_mtime, b.folder.stat().st_mtime)
    except OSError:
        return 0.0


def _one(xs: Sequence[BackendInfo]) -> BackendInfo | None:
    return xs[0] if len(xs) == 1 else None


def choose_keeper(ctx: Context, group: Sequence[BackendInfo]) -> tuple[BackendInfo | None, str]:
    """The copy to keep and why, or (None, why in doubt)."""
    chosen = _one([b for b in group if Path(os.path.realpath(b.folder)) in ctx.keep])
    if chosen is not None:
        return chosen, "you chose to keep it"
    compat = [b for b in group if ctx.judge(b).compatible] if ctx.report is not None else None
    if compat is not None and len(compat) == 1:
        return compat[0], "the only copy compatible with this computer"
    pool = compat or list(group)
    ours = _one([b for b in pool if ctx.kind(b).kind == "ours"])
    if ours is not None:
        return ours, "ours" + (", compatible with this computer" if compat else "")
    official = _one([b for b in pool if ctx.kind(b).kind == "official"])
    same = _identical(group)
    if official is not None and (compat is not None or same):
        return official, "LM Studio's own folder (never moved)"
    if compat is None and not same:
        return None, "the copies differ and without a hardware report it is unknown which one works here"
    times = sorted(((_mtime(b), b) for b in pool), key=lambda t: t[0], reverse=True)
    if len(times) > 1 and times[0][0] == times[1][0]:
        if same:
            named = _one([b for b in pool if b.folder.name == b.expected_folder_name])
            if named is not None:
                return named, "identical copies: the one named <name>-<version> stays"
        return None, "nothing tells the copies apart"
    return times[0][1], "the newest" + (" compatible copy" if compat else " copy")


def duplicate_groups(ctx: Context) -> list[DuplicateGroup]:
    """Every duplicated ``name@version`` with its candidates and the keeper (what the wizard asks about)."""
    groups: dict[str, list[BackendInfo]] = defaultdict(list)
    for b in ctx.backends:
        if b.valid:
            groups[b.ident].append(b)
    out: list[DuplicateGroup] = []
    for ident, group in sorted(groups.items()):
        if len(group) < 2:
            continue
        keeper, why = choose_keeper(ctx, group)
        newest = max(group, key=_mtime)
        cands = tuple(
            Candidate(
                b.folder,
                ctx.kind(b).kind,
                ctx.judge(b).compatible if ctx.report is not None else None,
                ctx.judge(b).status,
                b is newest,
            )
            for b in group
        )
        out.append(DuplicateGroup(ident, cands, keeper.folder if keeper else None, why))
    return out


class Duplicates(Check):
    codes = (
        ("duplicate-backend", "Two folders carry the same name@version"),
        ("name-clash", "Uses the name of an official LM Studio pack"),
    )
    about = (
        "LM Studio registers every sub-folder, backups included, and cannot tell two folders with one name@version "
        "apart (§4.3). Extra copies are moved outside extensions/backends (into lms-unlocked's backups, never "
        "deleted); see the module doc for which copy stays. A third-party folder that kept an official name without "
        "official content clashes with LM Studio's own pack: beside it, it gets a name of its own (<name>-local, "
        "manifest backed up, folder renamed, selection kept)."
    )

    def detect(self, ctx: Context) -> Iterable[Finding]:
        by_folder = {b.folder: b for b in ctx.backends}
        in_groups: set[Path] = set()
        for g in duplicate_groups(ctx):
            in_groups |= {c.folder for c in g.candidates}
            yield from self._group(ctx, g, by_folder)
        for b in ctx.backends:
            v = ctx.kind(b)
            if b.valid and v.kind == "third-party" and v.name_clash and b.folder not in in_groups:
                yield Finding(
                    "name-clash",
                    "warning",
                    label(b),
                    f"{label(b)} uses the name of LM Studio's own pack but is not it ({'; '.join(v.reasons)}); "
                    "LM Studio's auto-update or a re-download of its pack overwrites or shadows it",
                    f"give it a name of its own: set name to {b.name}-{OWN_NAME_SUFFIX} in {MANIFEST_FILE} and rename "
                    "the folder to match (LM Studio closed), then select it again",
                    target=str(b.folder),
                    kind="third-party",
                )

    def _group(self, ctx: Context, g: DuplicateGroup, by_folder: dict[Path, BackendInfo]) -> Iterable[Finding]:
        where = ", ".join(c.folder.name for c in g.candidates)
        choose = (
            f"choose the copy to keep: `lms-unlocked repair --keep FOLDER` (one of {where}); the others are moved "
            "out of extensions/backends, never deleted"
        )
        data = {"candidates": [str(c.folder) for c in g.candidates], "reason": g.reason}
        if g.keeper is None:
            yield Finding(
                "duplicate-backend",
                "error",
                g.ident,
                f"{where} carry the same name@version; LM Studio cannot tell them apart and may run the wrong one. "
                f"Not moved: {g.reason}",
                choose,
                target=str(g.candidates[0].folder),
                data=data,
                kind=g.candidates[0].kind,
            )
            return
        keeper = by_folder[g.keeper]
        for c in g.candidates:
            if c.folder == g.keeper:
                continue
            if c.kind == "official":  # LM Studio's own stays; the copy that must stay gets a name of its own
                new = f"{keeper.name}-{OWN_NAME_SUFFIX}"
                yield Finding(
                    "name-clash",
                    "error",
                    g.ident,
                    f"{keeper.folder.name} ({ctx.kind(keeper).kind}, kept: {g.reason}) has the name@version of "
                    f"LM Studio's own {c.folder.name}, which is never moved; LM Studio cannot tell them apart",
                    f"give {keeper.folder.name} a name of its own: {new} (manifest backed up, folder renamed, "
                    "selection kept)",
                    auto=not (keeper.folder.parent / f"{new}-{keeper.version}").exists(),
                    needs_closed=True,
                    target=str(keeper.folder),
                    data={**data, "new_name": new},
                    kind=ctx.kind(keeper).kind,
                )
                continue
            yield Finding(
                "duplicate-backend",
                "error",
                g.ident,
                f"{c.folder.name} carries the same name@version as {keeper.folder.name}; LM Studio cannot tell them "
                f"apart and may run the wrong one. {keeper.folder.name} stays: {g.reason}",
                f"move the extra copy {c.folder.name} out of extensions/backends (into lms-unlocked's backups, not "
                f"deleted); to keep another one instead: {choose}",
                auto=True,
                target=str(c.folder),
                data={**data, "keeper": str(keeper.folder)},
                kind=c.kind,
            )

    def fix(self, r: Repairer, f: Finding) -> str:
        t = Path(f.target)
        if f.code == "duplicate-backend":
            dst = r.move_out(t)
            return f"moved the extra copy {t.name} out of backends/ to {dst}"
        return give_own_name(r, t, str(f.data["new_name"]))


def give_own_name(r: Repairer, folder: Path, new_name: str) -> str:
    """Rename a third-party backend: manifest ``name`` (backed up), folder, and any selection of it."""
    m = folder / MANIFEST_FILE
    doc = load_json(m)
    old_name, version = str(doc.data["name"]), str(doc.data["version"])
    dest = folder.parent / f"{new_name}-{version}"
    if dest.exists():
        raise RuntimeError(f"{dest} exists")
    r.backup_file(m)
    doc.data["name"] = new_name
    save(doc)
    os.rename(folder, dest)
    selected = [s for s in selections(r.h) if s.ident == f"{old_name}@{version}"]
    if selected:
        pdoc, _entries = load_preferences(r.h)
        if pdoc is not None:
            r.backup_file(r.h.preferences_file)
            data = pdoc.data
            for s in selected:
                data = with_selection(data, s.model_format, new_name, version)
            atomic_write_bytes(r.h.preferences_file, pdoc.dumps(data))
    return f"renamed {old_name}@{version} to {new_name}@{version} ({dest})" + (
        f"; selection for {', '.join(s.model_format for s in selected)} kept" if selected else ""
    )
