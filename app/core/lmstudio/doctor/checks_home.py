"""Checks of the home as a whole (docs/lmstudio-contract.md §15 #1-#2): which home, our journal, LM Studio running."""

from __future__ import annotations

import errno
import os
import shutil
from collections.abc import Iterable
from pathlib import Path

from app.core.lmstudio.backends import list_backends, nested_backend_folders
from app.core.lmstudio.doctor.registry import Check, Context, Finding, Repairer, label
from app.core.lmstudio.errors import InstallFailed
from app.core.lmstudio.home import DEFAULT_RELATIVE, LEGACY_RELATIVE, resolve_home
from app.core.lmstudio.install import installed_records, recover_holding_lock
from app.core.lmstudio.journal import Journal, JournalError, orphan_tx_dirs
from app.core.lmstudio.kinds import classify_backend
from app.core.lmstudio.processes import CLOSE_HINT, running_message


class HomeProblem(Check):
    codes = (("home-problem", "LM Studio's home cannot be used"),)
    about = "The pointer file or the home folder is missing or unreadable; nothing else can be checked."
    home_level = True

    def detect(self, ctx: Context) -> Iterable[Finding]:
        h = ctx.home
        if h.problem:
            yield Finding(
                "home-problem",
                "error",
                "",
                f"LM Studio home {h.describe()}: {h.problem}",
                "start LM Studio once with this user, or point --home at the right folder; the pointer file "
                "~/.lmstudio-home-pointer is never changed by lms-unlocked",
            )


class WrongHome(Check):
    codes = (("wrong-home", "Backend installed in a home LM Studio does not use"),)
    about = (
        "LM Studio reads one home (the pointer file ~/.lmstudio-home-pointer names it, §2). A backend in another "
        "candidate home (~/.lmstudio, ~/.cache/lm-studio) is never listed. A third-party folder is moved into the "
        "home LM Studio uses (same file system: one rename; else copied there first, then the original moved "
        "into the other home's backups); one of ours is installed again so its provenance follows."
    )
    home_level = True

    def detect(self, ctx: Context) -> Iterable[Finding]:
        h, user_home = ctx.home, ctx.user_home
        if h.how_found == "override" and user_home is None:
            return
        base = Path(os.path.realpath(user_home)) if user_home is not None else Path.home()
        resolved = resolve_home(user_home=base) if h.how_found == "override" else h
        for cand in sorted({resolved.path, base / LEGACY_RELATIVE, base / DEFAULT_RELATIVE, h.path} - {h.path}):
            for b in list_backends(cand):
                if b.has_problem("manifest-missing") and not nested_backend_folders(b.folder):
                    continue  # no backend inside (an empty or unrelated folder): moving it would only add a problem
                kind = classify_backend(b).kind
                if kind == "official":  # LM Studio downloads its own packs into the home it uses
                    continue
                dest = h.backends_dir / b.folder.name
                auto = kind == "third-party" and h.backends_dir.is_dir() and not dest.exists()
                yield Finding(
                    "wrong-home",
                    "error",
                    label(b),
                    f"{'our' if kind == 'ours' else 'the third-party'} backend {label(b)} is in {cand}, but LM Studio "
                    f"uses {h.path}",
                    f"move {b.folder.name} into {h.backends_dir}"
                    if auto
                    else f"install it again into {h.path} (`lms-unlocked install --from {b.folder}` after moving it "
                    "out of that home)"
                    if kind == "ours"
                    else f"move {b.folder.name} into {h.backends_dir} by hand ({dest.name} is taken there)",
                    auto=auto,
                    needs_closed=True,
                    target=str(b.folder),
                    data={"dest": str(dest), "other_home": str(cand)},
                    kind=kind,
                )

    def fix(self, r: Repairer, f: Finding) -> str:
        src, dest = Path(f.target), Path(f.data["dest"])
        if dest.exists():
            raise RuntimeError(f"{dest} exists")
        try:
            os.rename(src, dest)
            return f"moved {src} to {dest}"
        except OSError as exc:
            if exc.errno != errno.EXDEV:  # another file system: copy
                raise
        staged = r.txdir / "wrong-home" / src.name
        shutil.copytree(src, staged, symlinks=True)
        os.rename(staged, dest)  # complete or absent inside backends/
        other = Path(f.data["other_home"]) / ".lms-unlocked" / "backups" / r.txid / "moved-out" / src.name
        other.parent.mkdir(parents=True, exist_ok=True)
        os.rename(src, other)
        return f"copied {src} to {dest}; the original is kept in {other}"


class JournalState(Check):
    codes = (
        ("journal-unreadable", "lms-unlocked's journal is unreadable"),
        ("interrupted-change", "A change was interrupted"),
        ("stale-staging", "Leftover staging folder"),
        ("records-unreadable", "lms-unlocked's install records are unreadable"),
    )
    about = (
        "lms-unlocked journals every change (journal.json under <home>/.lms-unlocked). An unfinished transaction is "
        "rolled forward or back; staging folders of changes that never started are deleted (LM Studio never sees "
        "them: they are outside extensions/backends)."
    )

    def detect(self, ctx: Context) -> Iterable[Finding]:
        try:
            pending = Journal(ctx.home.path).pending()
        except JournalError as exc:  # unreadable journal: report, do not guess
            yield Finding("journal-unreadable", "error", "", exc.message, exc.hint)
            return
        if pending is not None:
            yield Finding(
                "interrupted-change",
                "error",
                "",
                f"a change was interrupted ({pending.get('summary') or pending.get('kind')}, "
                f"transaction {pending.get('txid')}); the home may be half-changed",
                "roll it forward or back from the journal (what every lms-unlocked command does at start)",
                auto=True,
            )
        try:
            installed_records(ctx.home, strict=True)
        except InstallFailed as exc:  # one bad file is one finding (#14); install/uninstall refuse until it is fixed
            yield Finding("records-unreadable", "error", "", exc.message, exc.hint, target=exc.context)
        keep = [str(pending.get("txid"))] if pending else []
        for d in orphan_tx_dirs(ctx.home.path, keep):
            yield Finding(
                "stale-staging",
                "info",
                "",
                f"{d} is left over from a change that never started",
                "delete it (it is outside extensions/backends, LM Studio never sees it)",
                auto=True,
                target=str(d),
            )

    def fix(self, r: Repairer, f: Finding) -> str:
        if f.code == "interrupted-change":
            return "; ".join(recover_holding_lock(r.h)) or "nothing left to recover"
        shutil.rmtree(f.target, ignore_errors=True)
        return f"deleted {f.target}"


class LmStudioRunning(Check):
    codes = (("lmstudio-running", "LM Studio is running"),)
    about = "LM Studio scans backends only at startup (§15 #2); fixes of its files wait until it is closed."

    def detect(self, ctx: Context) -> Iterable[Finding]:
        if ctx.processes:
            yield Finding(
                "lmstudio-running",
                "warning",
                "",
                running_message(ctx.processes) + ". It scans backends only at startup, and closing its window "
                "leaves the tray app and the llmster daemon running",
                CLOSE_HINT + "; start LM Studio again afterwards",
            )
