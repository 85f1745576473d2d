"""Where backend folders sit (docs/lmstudio-contract.md §15 #3, §4.3): misplaced, nested, loose files, stray
folders, folder names."""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from app.core.lmstudio.backends import (
    MANIFEST_FILE,
    VENDOR_DIR,
    BackendInfo,
    nested_backend_folders,
    read_backend,
)
from app.core.lmstudio.doctor.registry import Check, Context, Finding, Repairer, label
from app.core.lmstudio.errors import JsonFileError
from app.core.lmstudio.journal import Op
from app.core.lmstudio.jsondoc import load_json
from app.core.lmstudio.kinds import classify_backend


def rename_to_dest(f: Finding) -> str:
    """One rename of ``f.target`` to ``f.data["dest"]``: the folder is either where it was or in place."""
    os.rename(f.target, f.data["dest"])
    return f"moved {f.target} to {f.data['dest']}"


class MisplacedBackend(Check):
    codes = (("misplaced-backend", "Backend extracted next to extensions/backends"),)
    about = (
        "A folder with a backend-manifest.json directly in the home or in extensions/ (an archive extracted one "
        "level too high). LM Studio only looks in extensions/backends. Ours and third-party folders are moved in "
        "(one rename) when the name is free there."
    )

    def detect(self, ctx: Context) -> Iterable[Finding]:
        h = ctx.home
        for parent in (h.path / "extensions", h.path):
            try:
                children = sorted(parent.iterdir())
            except OSError:
                continue
            for c in children:
                if c.name in ("backends", "extensions", "models", ".internal", ".lms-unlocked"):
                    continue
                if not (c.is_dir() and (c / MANIFEST_FILE).is_file()):
                    continue
                b = read_backend(c)
                kind = classify_backend(b).kind
                name = b.expected_folder_name if b.ours else c.name
                dest = h.backends_dir / name if b.valid else None
                auto = kind != "official" and dest is not None and not dest.exists()
                yield Finding(
                    "misplaced-backend",
                    "error",
                    label(b),
                    f"{c} holds a backend, but LM Studio only looks in {h.backends_dir}",
                    f"move it to {dest}" if auto else f"move {c.name} into {h.backends_dir} (LM Studio closed)",
                    auto=auto,
                    target=str(c),
                    data={"dest": str(dest) if dest else ""},
                    kind=kind,
                )

    def fix(self, r: Repairer, f: Finding) -> str:
        return rename_to_dest(f)


class NestedFolder(Check):
    codes = (("nested-folder", "Backend one or two levels too deep"),)
    about = (
        "backends/<folder>/ has no manifest but a backend folder one level deeper (an archive 'X.zip' extracted into "
        "a folder 'X') or two (a repository zip with the pack inside). Each inner backend folder is moved up into "
        "extensions/backends (ours under <name>-<version>, others under their own folder name); the outer folder "
        "is removed when empty, else moved into lms-unlocked's backups. An inner folder with the outer one's name "
        "takes its place. Journaled: a crash is finished at the next start."
    )

    def detect_backend(self, ctx: Context, b: BackendInfo) -> Iterable[Finding]:
        if not b.has_problem("manifest-nested"):
            return
        inners = nested_backend_folders(b.folder)
        moves: list[tuple[str, str]] = []
        for inner in inners:
            info = read_backend(inner)
            if not info.valid:
                break
            moves.append(
                (str(inner), str(ctx.home.backends_dir / (info.expected_folder_name if info.ours else inner.name)))
            )
        dests = [Path(d) for _s, d in moves]
        free = all(d == b.folder or not (d.exists() or d.is_symlink()) for d in dests)
        auto = len(moves) == len(inners) > 0 and free and len(set(dests)) == len(dests)
        only_child = (
            len(inners) == 1
            and inners[0].parent == b.folder
            and [c.name for c in b.folder.iterdir()] == [inners[0].name]
        )
        problem = next(p.message for p in b.problems if p.code == "manifest-nested")
        names = ", ".join(Path(s).relative_to(b.folder).as_posix() for s, _d in moves) or "the inner folder"
        yield Finding(
            "nested-folder",
            "error",
            b.folder.name,
            f"{b.folder.name} has its backend too deep ({problem}); LM Studio does not list it",
            f"move {names} up to " + ", ".join(str(d) for d in dests)
            if auto
            else "move the inner folder up into extensions/backends by hand (a folder of that name is in the way)",
            auto=auto,
            target=str(b.folder),
            data={"moves": moves, "outer": str(b.folder), "outer_empty_after": only_child},
            kind=classify_backend(read_backend(inners[0])).kind if inners else "third-party",
        )

    def fix(self, r: Repairer, f: Finding) -> str:
        # inner folders out of backends/, the outer folder away, inner folders in under their names - journaled,
        # so a crash never leaves a half-moved folder inside backends/
        outer = Path(f.data["outer"])
        moves = [(Path(s), Path(d)) for s, d in f.data["moves"]]
        parked = [r.txdir / f"nested-{i}" / s.name for i, (s, _d) in enumerate(moves)]
        ops = [Op("rename", str(s), str(p)) for (s, _d), p in zip(moves, parked, strict=True)]
        if f.data.get("outer_empty_after"):
            ops.append(Op("rmdir", dst=str(outer)))
            away = ""
        else:
            away_path = r.moved_out_path(outer)
            ops.append(Op("rename", str(outer), str(away_path)))
            away = f"; the rest of {outer.name} is kept in {away_path}"
        ops += [Op("rename", str(p), str(d)) for p, (_s, d) in zip(parked, moves, strict=True)]
        r.journaled(f"move {', '.join(s.name for s, _d in moves)} up", ops, cleanup=[r.txdir])
        return "moved " + ", ".join(f"{s} up to {d}" for s, d in moves) + away


class LooseFiles(Check):
    codes = (("loose-files", "Files extracted loose into extensions/backends"),)
    about = (
        "Files lying directly in extensions/backends (an archive's content extracted without its folder). With a "
        "backend-manifest.json among them they are a backend LM Studio cannot see: they are moved into a folder "
        "<name>-<version>. Without one they are moved into lms-unlocked's backups. Journaled."
    )

    def detect(self, ctx: Context) -> Iterable[Finding]:
        bdir = ctx.home.backends_dir
        try:
            loose = sorted(p for p in bdir.iterdir() if not p.is_dir())  # a symlinked folder is a backend
        except OSError:
            return
        if not loose:
            return
        dest: Path | None = None
        ident = ""
        if (bdir / MANIFEST_FILE) in loose:
            try:
                m = load_json(bdir / MANIFEST_FILE).data
            except JsonFileError:
                m = None
            if isinstance(m, dict) and isinstance(m.get("name"), str) and isinstance(m.get("version"), str):
                ident = f"{m['name']}@{m['version']}"
                dest = bdir / f"{m['name']}-{m['version']}"
        has_manifest = (bdir / MANIFEST_FILE) in loose
        auto = (dest is not None and not dest.exists()) or not has_manifest
        shown = ", ".join(p.name for p in loose[:5]) + (f" and {len(loose) - 5} more" if len(loose) > 5 else "")
        yield Finding(
            "loose-files",
            "error" if has_manifest else "info",
            ident,
            f"{len(loose)} file(s) lie loose in {bdir}: {shown}"
            + (
                "; they are a backend's files, which LM Studio only reads from a folder of their own"
                if has_manifest
                else ""
            ),
            (f"move them into {dest}" if dest is not None else "")
            if has_manifest and auto
            else "move them out of extensions/backends (into lms-unlocked's backups)"
            if auto
            else "move them into a folder of their own by hand (the manifest is unreadable or the folder exists)",
            auto=auto,
            target=str(bdir),
            data={"files": [p.name for p in loose], "dest": str(dest) if dest else ""},
            kind="third-party",
        )

    def fix(self, r: Repairer, f: Finding) -> str:
        bdir = Path(f.target)
        files = [bdir / n for n in f.data["files"]]
        if f.data["dest"]:
            dest = Path(f.data["dest"])
            ops = [Op("rename", str(p), str(dest / p.name)) for p in files]
            r.journaled(f"gather loose files into {dest.name}", ops)
            return f"moved {len(files)} loose file(s) into {dest}"
        away = r.backups / "moved-out" / "loose-files"
        r.journaled("move loose files out", [Op("rename", str(p), str(away / p.name)) for p in files])
        return f"moved {len(files)} loose file(s) to {away}"


class NotABackend(Check):
    codes = (("not-a-backend", "Folder without a manifest in extensions/backends"),)
    about = "LM Studio registers every sub-folder of extensions/backends; one without a manifest is clutter."

    def detect_backend(self, ctx: Context, b: BackendInfo) -> Iterable[Finding]:
        if b.has_problem("manifest-missing") and b.folder.name != VENDOR_DIR:
            yield Finding(
                "not-a-backend",
                "warning",
                b.folder.name,
                f"{b.folder.name} in backends/ has no {MANIFEST_FILE}",
                "remove it or move it out of extensions/backends (LM Studio registers every sub-folder)",
                kind="third-party",
            )


class FolderNameMismatch(Check):
    codes = (("folder-name-mismatch", "Folder not named <name>-<version>"),)
    about = (
        "LM Studio goes by the manifest, but tools that find backends from the preferences file assume "
        "<name>-<version> (§4.3). Ours are renamed; other folders keep the name their author or user gave them."
    )

    def detect_backend(self, ctx: Context, b: BackendInfo) -> Iterable[Finding]:
        if not (b.valid and b.has_problem("folder-name-mismatch")):
            return
        dest = b.folder.parent / b.expected_folder_name
        auto = b.ours and not dest.exists()
        yield Finding(
            "folder-name-mismatch",
            "info",
            label(b),
            f"the folder {b.folder.name} is not named {b.expected_folder_name}; LM Studio goes by the manifest, "
            "but tools that find backends from the preferences file assume <name>-<version>",
            f"rename it to {dest.name}" if auto else "leave it, or rename it by hand with LM Studio closed",
            auto=auto,
            target=str(b.folder),
            data={"dest": str(dest)},
            kind=ctx.kind(b).kind,
        )

    def fix(self, r: Repairer, f: Finding) -> str:
        return rename_to_dest(f)
