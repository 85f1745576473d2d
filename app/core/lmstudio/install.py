"""Install, uninstall and select backends transactionally (docs/lmstudio-contract.md §4, §9.4, §12, §15).

Each change is a pure ``plan_*`` (what would be created / replaced / backed up, with validation
problems raised as typed errors) and an ``execute_*`` that runs the plan as one journaled
transaction (see :mod:`app.core.lmstudio.journal` for where staging, backups and the journal live:
``<home>/.lms-unlocked/``, outside ``extensions/backends``). The staged folder comes in with one
``rename``. Official folders (no marker of ours) are never modified, moved or deleted.

Call :func:`recover` at the start of every command: it finishes or undoes a change a killed
process left behind. ``execute_*`` call it too.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from app.core.errors import DiskError, disk_error
from app.core.lmstudio.backends import (
    MANIFEST_FILE,
    PROVENANCE_FILE,
    BackendInfo,
    find_backend,
    list_backends,
    read_backend,
)
from app.core.lmstudio.clone import copy_tree_exact
from app.core.lmstudio.errors import (
    HomeNotFound,
    InstallFailed,
    InvalidBackendFolder,
    LmStudioRunning,
    RefusedChange,
)
from app.core.lmstudio.home import LmsHome, as_home
from app.core.lmstudio.journal import (
    STAGING_DIR_NAME,
    HomeBusy,
    Journal,
    JournalError,
    Op,
    Transaction,
    fault_point,
    home_lock,
    new_txid,
    orphan_tx_dirs,
    state_dir,
)
from app.core.lmstudio.jsondoc import JsonDoc
from app.core.lmstudio.naming import OFFICIAL_NAMES, VALID_NAME
from app.core.lmstudio.prefs import Selection, load_preferences, selected_for, with_selection
from app.core.lmstudio.processes import CLOSE_HINT, LmsProcess, engines_in, lmstudio_processes, running_message
from app.core.lmstudio.provenance import read_provenance, write_provenance
from app.core.userfile import UserFileError, read_json

INSTALLED_FILE = "installed.json"
NO_SPACE = "not enough free space"
SPACE_MARGIN = 16 * 1024 * 1024
ProcessLister = Callable[[LmsHome], list[LmsProcess]]


def _default_procs(home: LmsHome) -> list[LmsProcess]:
    return lmstudio_processes(home.path)


# ---------------------------------------------------------------------------------------------- recovery


def recover_holding_lock(home: LmsHome) -> list[str]:
    """:func:`recover` for a caller that already holds the home's lock."""
    msgs: list[str] = []
    journal = Journal(home.path)
    pending = journal.pending()
    try:
        msg = journal.recover()
    except OSError as exc:
        d = disk_error(exc, doing="finishing an interrupted change", where=str(home.path),
                       outcome=f"the change stays pending in {journal.path}; it is finished at the next start")
        raise JournalError(d.message, context=d.context, hint=d.hint) from None
    if msg:
        msgs.append(msg)
    keep = [str(pending.get("txid"))] if pending and not msg else []
    for orphan in orphan_tx_dirs(home.path, keep):
        shutil.rmtree(orphan, ignore_errors=True)
        msgs.append(f"removed the staging folder {orphan} of a change that never started")
    return msgs


def recover(home: LmsHome | Path | str) -> list[str]:
    """Finish or undo a change interrupted by a crash or kill; returns what was done (empty: nothing)."""
    h = as_home(home)
    if not state_dir(h.path).exists():
        return []
    try:
        with home_lock(h.path):
            return recover_holding_lock(h)
    except HomeBusy:
        return []  # another lms-unlocked process is working on this home; its journal is its own


# ---------------------------------------------------------------------------------------------- records


def _installed_path(home: LmsHome) -> Path:
    return state_dir(home.path) / INSTALLED_FILE


def installed_records(home: LmsHome | Path | str, *, strict: bool = False) -> list[dict[str, Any]]:
    """What we installed, oldest first (each with the folders it replaced and the selection before).

    The records of one folder form a stack: installing X again pushes a record whose backup is the X it
    replaced; uninstalling X pops that one record and brings that X back. An unreadable file gives no
    records, or with ``strict`` (before a change that rewrites it) an :class:`InstallFailed`.
    """
    p = _installed_path(as_home(home))
    if not (p.exists() or p.is_symlink()):
        return []
    try:
        data = read_json(p, what=f"lms-unlocked's install records {p}")
    except UserFileError as exc:
        if not strict:
            return []
        raise InstallFailed(
            exc.message,
            context=str(p),
            hint=f"nothing was changed; move {p} aside (uninstall then cannot restore what older installs "
            "replaced; their backups stay under backups/) and try again",
        ) from None
    return [r for r in data if isinstance(r, dict)] if isinstance(data, list) else []


def record_of(home: LmsHome, b: BackendInfo) -> dict[str, Any] | None:
    """The install record of the folder ``b`` as it is now: the one whose transaction wrote its marker,
    else the newest for that folder name."""
    records = installed_records(home)
    tx = (read_provenance(b.folder) or {}).get("transaction") if b.ours else None
    by_tx = [r for r in records if tx and r.get("txid") == tx and r.get("folder") == b.folder.name]
    by_folder = [r for r in records if r.get("folder") == b.folder.name]
    hits = by_tx or by_folder
    return hits[-1] if hits else None


def _dump(obj: Any) -> bytes:
    return (json.dumps(obj, indent=2, ensure_ascii=False) + "\n").encode("utf-8")


# ---------------------------------------------------------------------------------------------- validation


@dataclass(frozen=True)
class Validation:
    info: BackendInfo
    problems: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return not self.problems


def _require_home(home: LmsHome) -> None:
    bdir = home.backends_dir
    if not home.path.is_dir():
        raise HomeNotFound(
            f"the LM Studio home {home.path} does not exist",
            context=home.describe(),
            hint="start LM Studio once, or pass the right folder with --home",
        )
    if bdir.exists() and not bdir.is_dir():
        raise HomeNotFound(
            f"{bdir} is not a directory",
            context=home.describe(),
            hint="move that file away; LM Studio recreates the folder when it starts",
        )
    if not bdir.is_dir():
        raise HomeNotFound(
            f"{bdir} is missing: LM Studio has not been started with this home yet",
            context=home.describe(),
            hint="start LM Studio once so it unpacks its own engines, quit it, then try again",
        )


def validate_backend_folder(folder: Path, home: LmsHome | Path | str) -> Validation:
    """Check a prepared backend folder before it may be installed into ``home``."""
    h = as_home(home)
    folder = Path(folder)
    problems: list[str] = []
    warnings: list[str] = []
    if not folder.is_dir():
        return Validation(BackendInfo(folder=folder), (f"{folder} is not a folder",))
    info = read_backend(folder)
    for prob in info.problems:
        if prob.code == "folder-name-mismatch":
            continue  # we install it as <name>-<version> anyway
        problems.append(prob.message)
    if not info.valid:
        return Validation(info, tuple(problems))
    name = info.name
    if not VALID_NAME.match(name) or not VALID_NAME.match(info.version.lower()):
        problems.append(f"name@version {info.ident} is not lower-case [a-z0-9._-] (LM Studio's own names never are)")
    not_ours = {b.name: b.folder for b in list_backends(h) if b.valid and not b.ours}
    if name in OFFICIAL_NAMES:
        problems.append(f"{name} is the name of an official LM Studio backend; ours must have a name of its own")
    elif name in not_ours:
        problems.append(
            f"{name} is already used by {not_ours[name]}, which lms-unlocked did not install; "
            "ours must have a name of its own"
        )
    if "" in info.ise:
        problems.append('cpu.instruction_set_extensions contains "" (LM Studio shows such a backend as incompatible)')
    for lib in info.target_libraries:
        if lib and not (folder / lib).exists():
            problems.append(f"declared library {lib} (target_libraries) is missing")
    if info.server_relpath and not (folder / info.server_relpath).exists():
        problems.append(f"engine_protocol_server executable {info.server_relpath} is missing")
    real = Path(os.path.realpath(folder))
    for dirpath, dirnames, filenames in os.walk(folder):
        for n in dirnames + filenames:
            p = Path(dirpath) / n
            if p.is_symlink() and not Path(os.path.realpath(p)).is_relative_to(real):
                problems.append(f"{p.relative_to(folder)} links outside the folder ({os.readlink(p)})")
    bdir = Path(os.path.realpath(h.backends_dir)) if h.backends_dir.exists() else None
    if bdir is not None and real.is_relative_to(bdir):
        problems.append(f"{folder} is already inside {h.backends_dir}; install from a folder outside it")
    # a folder unpacked in our staging next to the home is moved in, not copied: it needs no more space
    need = 0 if _moved_in(folder, h) else _folder_size(folder)
    try:
        free = shutil.disk_usage(h.path).free if h.path.exists() else None
    except OSError:
        free = None
    if free is not None and free < need + SPACE_MARGIN:
        problems.append(
            f"{NO_SPACE} in {h.path}: the staged copy needs {(need + SPACE_MARGIN) / 1e6:.0f} MB, "
            f"{free / 1e6:.0f} MB free"
        )
    for pkg in info.vendor_packages:
        if not (h.backends_dir / "vendor" / pkg).is_dir():
            warnings.append(
                f"vendor package {pkg} is not installed; download the matching official runtime in LM Studio "
                "once so it brings the package"
            )
    return Validation(info, tuple(problems), tuple(warnings))


def _moved_in(folder: Path, home: LmsHome) -> bool:
    """Is ``folder`` in the home's staging (same file system), so that install moves it in instead of copying?"""
    staging = Path(os.path.abspath(state_dir(home.path) / STAGING_DIR_NAME))
    return Path(os.path.abspath(folder)).is_relative_to(staging)


def _folder_size(folder: Path) -> int:
    total = 0
    for dirpath, _dirs, files in os.walk(folder):
        for n in files:
            p = Path(dirpath) / n
            if not p.is_symlink():
                total += p.stat().st_size
    return total


# ---------------------------------------------------------------------------------------------- install


def plan_lines_end(lines: list[str], warnings: Sequence[str], blocked: str | None) -> list[str]:
    """The common end of a plan's describe(): its warnings, then what blocks it (if anything)."""
    return [*lines, *(f"warning: {w}" for w in warnings), *([f"blocked: {blocked}"] if blocked else [])]


@dataclass(frozen=True)
class InstallPlan:
    home: LmsHome
    source: Path
    info: BackendInfo
    dest: Path
    replaces: tuple[BackendInfo, ...] = ()
    select: bool = False
    model_format: str = "gguf"
    selection_before: Selection | None = None
    warnings: tuple[str, ...] = ()
    blocked: str = ""  # set when the plan cannot run now (LM Studio running and --select)
    txid: str = ""  # the transaction id execute_install uses, so describe() names the exact backup paths

    @property
    def ident(self) -> str:
        return self.info.ident

    def describe(self) -> list[str]:
        bk = state_dir(self.home.path) / "backups" / self.txid
        lines = [f"install {self.ident} into {self.home.describe()}"]
        for r in self.replaces:
            lines.append(f"back up {r.folder}  ->  {bk / r.folder.name}  ({r.ident}, ours)")
        verb = "replace" if any(r.folder == self.dest for r in self.replaces) else "create"
        lines.append(f"{verb} {self.dest}  (copied from {self.source}, moved in with one rename)")
        lines.append(f"create {self.dest / PROVENANCE_FILE}  (provenance: sha256 of every file)")
        if self.select:
            before = self.selection_before.ident if self.selection_before else "nothing"
            lines.append(
                f"back up {self.home.preferences_file}  ->  {bk / self.home.preferences_file.name}"
                if self.home.preferences_file.exists()
                else f"create {self.home.preferences_file}"
            )
            lines.append(f"select {self.ident} for {self.model_format} (was {before})")
        return plan_lines_end(lines, self.warnings, self.blocked)


@dataclass(frozen=True)
class InstallResult:
    ident: str
    dest: Path
    txid: str
    backed_up: tuple[Path, ...] = ()
    selected: bool = False
    provenance: Mapping[str, Any] = field(default_factory=dict, compare=False)


def plan_install(
    home: LmsHome | Path | str,
    folder: Path,
    *,
    select: bool = False,
    model_format: str = "gguf",
    processes: ProcessLister = _default_procs,
) -> InstallPlan:
    """Validate ``folder`` and plan installing it; raises InvalidBackendFolder / RefusedChange / HomeNotFound."""
    h = as_home(home)
    _require_home(h)
    v = validate_backend_folder(folder, h)
    space = [p for p in v.problems if p.startswith(NO_SPACE)]
    if space:  # the disk's problem, not the folder's
        raise DiskError(
            f"cannot install {v.info.ident or folder}: {space[0]}",
            context=str(h.path),
            hint="nothing was changed; free some space on the disk that holds the LM Studio home and try again",
        )
    if not v.ok:
        raise InvalidBackendFolder(
            f"{folder} cannot be installed as an LM Studio backend ({len(v.problems)} problem(s))",
            problems=v.problems,
            context=str(folder),
            hint="; ".join(v.problems[:3]) + " - rebuild or re-package the backend folder",
        )
    info = v.info
    dest = h.backends_dir / info.expected_folder_name
    replaces: list[BackendInfo] = []
    for b in list_backends(h):
        same_folder = b.folder.name == dest.name
        same_ident = b.valid and b.ident == info.ident
        same_name = b.valid and b.name == info.name
        if not (same_folder or same_ident or same_name):
            continue
        if not b.ours:
            raise RefusedChange(
                f"{b.folder} ({b.ident or 'unreadable'}) is in the way and is not ours; official folders are never "
                "modified",
                hint="give our backend a name of its own (naming rule: ...-unlocked), or move that folder out of "
                "extensions/backends yourself",
            )
        replaces.append(b)
    procs = processes(h)
    warnings = list(v.warnings)
    blocked = ""
    before = selected_for(h, model_format)
    replaced_selected = before is not None and any(r.ident == before.ident for r in replaces)
    if replaced_selected and not select:
        assert before is not None
        if procs:
            warnings.append(
                f"{before.ident} is selected for {model_format} and will be replaced; with LM Studio closed, run "
                f"`lms-unlocked select {info.ident}`"
            )
        else:
            select = True  # the selection follows our backend instead of pointing at a folder that moved out
            warnings.append(f"the {model_format} selection moves from {before.ident} to {info.ident}")
    engines = _engines_running_from(procs, [r.folder for r in replaces])
    if engines:
        blocked = engines + "; " + ENGINE_HINT
    elif procs:
        if select:
            blocked = running_message(procs) + "; " + CLOSE_HINT
        else:
            warnings.append(running_message(procs) + "; it lists new backends only after a full restart")
    return InstallPlan(
        home=h,
        source=Path(folder),
        info=info,
        dest=dest,
        replaces=tuple(replaces),
        select=select,
        model_format=model_format,
        selection_before=before,
        warnings=tuple(warnings),
        blocked=blocked,
        txid=new_txid("install"),
    )


def _prefs_write_op(home: LmsHome, txdir: Path, backups: Path, new_data: Any, style: JsonDoc | None) -> Op:
    prefs = home.preferences_file
    new_file = txdir / "backend-preferences-v1.json.new"
    new_file.parent.mkdir(parents=True, exist_ok=True)
    if style is None:
        new_file.write_bytes(json.dumps(new_data, ensure_ascii=False).encode("utf-8"))
    else:
        new_file.write_bytes(style.dumps(new_data))
    orig = ""
    if prefs.exists():
        backups.mkdir(parents=True, exist_ok=True)
        shutil.copy2(prefs, backups / prefs.name)
        orig = str(backups / prefs.name)
    else:
        prefs.parent.mkdir(parents=True, exist_ok=True)
    return Op("write", str(new_file), str(prefs), orig)


def _prefs_delete_op(home: LmsHome, backups: Path) -> Op:
    prefs = home.preferences_file
    backups.mkdir(parents=True, exist_ok=True)
    shutil.copy2(prefs, backups / prefs.name)
    return Op("delete", "", str(prefs), str(backups / prefs.name))


def _records_write_op(home: LmsHome, txdir: Path, records: list[dict[str, Any]]) -> Op:
    path = _installed_path(home)
    new_file = txdir / "installed.json.new"
    new_file.write_bytes(_dump(records))
    orig = ""
    if path.exists():
        shutil.copy2(path, txdir / "installed.json.orig")
        orig = str(txdir / "installed.json.orig")
    return Op("write", str(new_file), str(path), orig)


@contextmanager
def _prepare(doing: str, home: LmsHome, txid: str) -> Iterator[None]:
    """Preparing a transaction (staging, new file contents, backups of files) touches nothing LM Studio sees:
    a disk that fails here (full, read-only, I/O error) is a typed error, and what was prepared is removed."""
    sd = state_dir(home.path)
    try:
        yield
    except OSError as exc:
        shutil.rmtree(sd / "tx" / txid, ignore_errors=True)
        shutil.rmtree(sd / "backups" / txid, ignore_errors=True)
        raise disk_error(exc, doing=doing, where=str(sd), outcome="nothing in LM Studio's folder was changed") from None


def _engines_running_from(procs: list[LmsProcess], folders: Sequence[Path]) -> str:
    """'' or why moving ``folders`` out of backends/ is refused: an engine runs from one of them."""
    for f in folders:
        running = engines_in(procs, f)
        if running:
            what = ", ".join(f"{p.name} (pid {p.pid}, {p.exe})" for p in running)
            return f"{what} is running from {f}; moving that backend away would pull it out from under the engine"
    return ""


ENGINE_HINT = "eject the model in LM Studio (or quit LM Studio) so the engine stops, then try again"


def _fresh_txid(sd: Path, planned: str, kind: str) -> str:
    """The plan's transaction id (so the dry run named the real paths), unless it was used already."""
    if planned and not (sd / "tx" / planned).exists() and not (sd / "backups" / planned).exists():
        return planned
    return new_txid(kind)


def _check_running(home: LmsHome, processes: ProcessLister) -> None:
    procs = processes(home)
    if procs:
        raise LmStudioRunning(running_message(procs), context=str(home.path), hint=CLOSE_HINT)


def execute_install(
    plan: InstallPlan, *, provenance: Mapping[str, Any], processes: ProcessLister = _default_procs
) -> InstallResult:
    """Run ``plan``: stage a copy with our provenance file, back up what it replaces, rename it in."""
    h = plan.home
    with home_lock(h.path):
        recover_holding_lock(h)
        procs = processes(h)
        # the world may have changed since planning
        fresh = plan_install(
            h, plan.source, select=plan.select, model_format=plan.model_format, processes=lambda _h: procs
        )
        engines = _engines_running_from(procs, [r.folder for r in fresh.replaces])
        if engines:
            raise LmStudioRunning(engines, context=str(plan.dest), hint=ENGINE_HINT)
        if fresh.select and procs:
            raise LmStudioRunning(running_message(procs), context=str(h.path), hint=CLOSE_HINT)
        sd = state_dir(h.path)
        txid = _fresh_txid(sd, plan.txid, "install")
        txdir = sd / "tx" / txid
        staged = txdir / "staged" / plan.dest.name
        info: dict[str, Any] = dict(read_provenance(plan.source) or {})
        info.update(provenance)
        info.setdefault("backend", fresh.ident)
        info["installed_at"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        info["transaction"] = txid
        with _prepare(f"installing {fresh.ident}", h, txid):
            staged.parent.mkdir(parents=True)
            if _moved_in(plan.source, h):
                os.rename(plan.source, staged)  # unpacked for this install only: move, don't copy
            else:
                copy_tree_exact(plan.source, staged, skip=frozenset({PROVENANCE_FILE}))
            written = write_provenance(staged, info)
            fault_point("install:staging")
            ops = _install_ops(h, plan, fresh, staged, txid, info["installed_at"])
            if not read_backend(staged).valid:
                shutil.rmtree(txdir, ignore_errors=True)
                raise InvalidBackendFolder(f"the staged copy of {plan.source} does not read back as a backend")
            fault_point("install:prepared")
        commit = len(fresh.replaces) + 1  # roll forward once the staged folder's move-in is recorded
        Journal(h.path).run(
            Transaction(txid, "install", tuple(ops), commit, cleanup=(str(txdir),), summary=f"install {fresh.ident}")
        )
        backed_up = tuple(sd / "backups" / txid / r.folder.name for r in fresh.replaces)
        return InstallResult(fresh.ident, plan.dest, txid, backed_up, fresh.select, written)


def _install_ops(
    h: LmsHome, plan: InstallPlan, fresh: InstallPlan, staged: Path, txid: str, installed_at: str
) -> list[Op]:
    """Back up what is replaced, move the staged folder in, then selection and our records."""
    sd = state_dir(h.path)
    txdir = sd / "tx" / txid
    backups = sd / "backups" / txid
    ops: list[Op] = []
    for r in fresh.replaces:
        ops.append(Op("rename", str(r.folder), str(backups / r.folder.name)))
    ops.append(Op("rename", str(staged), str(plan.dest)))
    before = fresh.selection_before
    if fresh.select:
        doc, _entries = load_preferences(h)
        new_prefs = with_selection(doc.data if doc else [], plan.model_format, fresh.info.name, fresh.info.version)
        ops.append(_prefs_write_op(h, txdir, backups, new_prefs, doc))
    records = installed_records(h, strict=True)
    records.append(
        {
            "txid": txid,
            "ident": fresh.ident,
            "folder": plan.dest.name,
            "installed_at": installed_at,
            "replaced": [
                {"ident": r.ident, "folder": r.folder.name, "backup": f"backups/{txid}/{r.folder.name}"}
                for r in fresh.replaces
            ],
            "selected": fresh.select,
            "created_preferences": fresh.select and not h.preferences_file.exists(),
            "model_format": plan.model_format,
            "selection_before": ({"name": before.name, "version": before.version} if before is not None else None),
        }
    )
    ops.append(_records_write_op(h, txdir, records))
    return ops


# ---------------------------------------------------------------------------------------------- uninstall


@dataclass(frozen=True)
class UninstallPlan:
    home: LmsHome
    info: BackendInfo
    restores: tuple[tuple[Path, Path], ...] = ()  # (backup, back into backends/)
    prefs_change: tuple[str, str | None, str | None] | None = None  # (format, name, version) or None
    record_txid: str = ""
    warnings: tuple[str, ...] = ()
    blocked: str = ""
    txid: str = ""
    prefs_created: bool = False  # the install created the preferences file (no file before it)

    @property
    def ident(self) -> str:
        return self.info.ident

    def describe(self) -> list[str]:
        kept = state_dir(self.home.path) / "backups" / self.txid / "removed" / self.info.folder.name
        lines = [
            f"uninstall {self.ident} from {self.home.describe()}",
            f"delete {self.info.folder}  (moved to {kept}, kept for restore)",
        ]
        for src, dst in self.restores:
            lines.append(f"restore {dst}  <-  {src}  (what this install replaced)")
        if self.prefs_change is not None:
            fmt, name, version = self.prefs_change
            what = f"{name}@{version}" if name else "no explicit selection (LM Studio picks its default)"
            bk = state_dir(self.home.path) / "backups" / self.txid / self.home.preferences_file.name
            lines.append(f"back up {self.home.preferences_file}  ->  {bk}")
            lines.append(f"select {what} for {fmt}")
            if self.prefs_created and name is None:
                lines.append(f"delete {self.home.preferences_file} if no entry is left (the install created it)")
        return plan_lines_end(lines, self.warnings, self.blocked)


@dataclass(frozen=True)
class UninstallResult:
    ident: str
    removed: Path  # where the folder was
    restored: tuple[Path, ...] = ()  # folders of ours it had replaced, back in backends/
    txid: str = ""
    kept: Path | None = None  # the removed folder, kept under <home>/.lms-unlocked/backups/ for restore_uninstall
    home: LmsHome | None = None
    was_selected: bool = False


def plan_uninstall(
    home: LmsHome | Path | str, ident: str, *, processes: ProcessLister = _default_procs
) -> UninstallPlan:
    h = as_home(home)
    _require_home(h)
    b = find_backend(h, ident)
    if not b.ours:
        raise RefusedChange(
            f"{b.ident} in {b.folder} was not installed by lms-unlocked; official folders are never deleted",
            hint=f"remove LM Studio's own runtimes in LM Studio or with `lms runtime remove {b.ident}`",
        )
    rec = record_of(h, b)
    restores: list[tuple[Path, Path]] = []
    warnings: list[str] = []
    restored_idents: set[str] = set()
    if rec is not None:
        for r in rec.get("replaced", []):
            src = state_dir(h.path) / str(r.get("backup", ""))  # relative: the home may have moved
            dst = h.backends_dir / str(r.get("folder", ""))
            if not src.is_dir():
                warnings.append(f"the backup {src} of {r.get('ident')} is gone; it cannot be restored")
            elif dst.exists() and dst != b.folder:
                warnings.append(f"{dst} exists again; the backup {src} stays where it is")
            else:
                restores.append((src, dst))
                restored_idents.add(str(r.get("ident")))
    prefs_change: tuple[str, str | None, str | None] | None = None
    for fmt in b.model_formats or ("gguf",):
        cur = selected_for(h, fmt)
        if cur is None or cur.ident != b.ident:
            continue
        prev = rec.get("selection_before") if rec is not None and rec.get("model_format") == fmt else None
        name = version = None
        if isinstance(prev, dict):
            prev_ident = f"{prev.get('name')}@{prev.get('version')}"
            still_there = any(x.ident == prev_ident for x in list_backends(h) if x.folder != b.folder)
            if still_there or prev_ident in restored_idents:
                name, version = str(prev.get("name")), str(prev.get("version"))
        prefs_change = (fmt, name, version)
        break
    procs = processes(h)
    blocked = _engines_running_from(procs, [b.folder])
    if blocked:
        blocked += "; " + ENGINE_HINT
    elif procs:
        if prefs_change is not None:
            blocked = running_message(procs) + "; " + CLOSE_HINT
        else:
            warnings.append(running_message(procs) + "; restart it fully afterwards")
    return UninstallPlan(
        h,
        b,
        tuple(restores),
        prefs_change,
        str(rec.get("txid", "")) if rec else "",
        tuple(warnings),
        blocked,
        new_txid("uninstall"),
        bool(rec and rec.get("created_preferences")),
    )


def execute_uninstall(plan: UninstallPlan, *, processes: ProcessLister = _default_procs) -> UninstallResult:
    h = plan.home
    with home_lock(h.path):
        recover_holding_lock(h)
        procs = processes(h)
        engines = _engines_running_from(procs, [plan.info.folder])
        if engines:
            raise LmStudioRunning(engines, context=str(plan.info.folder), hint=ENGINE_HINT)
        if plan.prefs_change is not None and procs:
            raise LmStudioRunning(running_message(procs), context=str(h.path), hint=CLOSE_HINT)
        if not (plan.info.folder / MANIFEST_FILE).exists() or not read_backend(plan.info.folder).ours:
            raise RefusedChange(f"{plan.info.folder} changed since the plan was made", hint="run the command again")
        sd = state_dir(h.path)
        txid = _fresh_txid(sd, plan.txid, "uninstall")
        txdir = sd / "tx" / txid
        backups = sd / "backups" / txid
        kept = backups / "removed" / plan.info.folder.name
        with _prepare(f"uninstalling {plan.ident}", h, txid):
            txdir.mkdir(parents=True)
            ops = [Op("rename", str(plan.info.folder), str(kept))]
            for src, dst in plan.restores:
                ops.append(Op("rename", str(src), str(dst)))
            if plan.prefs_change is not None:
                fmt, name, version = plan.prefs_change
                doc, _entries = load_preferences(h)
                new_prefs = with_selection(doc.data if doc else [], fmt, name, version)
                if not new_prefs and plan.prefs_created:  # our install created the file: leave no `[]` behind
                    ops.append(_prefs_delete_op(h, backups))
                else:
                    ops.append(_prefs_write_op(h, txdir, backups, new_prefs, doc))
            records = installed_records(h, strict=True)
            if plan.record_txid:  # pop this install's record only: older installs of the folder stay restorable
                records = [r for r in records if r.get("txid") != plan.record_txid]
            else:
                records = [r for r in records if r.get("folder") != plan.info.folder.name]
            ops.append(_records_write_op(h, txdir, records))
            fault_point("uninstall:prepared")
        Journal(h.path).run(
            Transaction(txid, "uninstall", tuple(ops), 1, cleanup=(str(txdir),), summary=f"uninstall {plan.ident}")
        )
        return UninstallResult(
            plan.ident,
            plan.info.folder,
            tuple(d for _s, d in plan.restores),
            txid,
            kept,
            h,
            plan.prefs_change is not None,
        )


def restore_uninstall(result: UninstallResult, *, processes: ProcessLister = _default_procs) -> InstallResult:
    """Undo an uninstall: install the kept copy again (re-selecting it if it was selected)."""
    if result.kept is None or result.home is None or not result.kept.is_dir():
        raise RefusedChange(
            f"the removed copy of {result.ident} is no longer kept",
            hint="install the backend again from its package",
        )
    plan = plan_install(result.home, result.kept, select=result.was_selected, processes=processes)
    return execute_install(plan, provenance={"restored_from": str(result.kept)}, processes=processes)


# ---------------------------------------------------------------------------------------------- select


@dataclass(frozen=True)
class SelectPlan:
    home: LmsHome
    info: BackendInfo
    model_format: str
    before: Selection | None
    blocked: str = ""
    txid: str = ""

    @property
    def ident(self) -> str:
        return self.info.ident

    @property
    def unchanged(self) -> bool:
        return self.before is not None and self.before.ident == self.ident

    def describe(self) -> list[str]:
        p = self.home.preferences_file
        before = self.before.ident if self.before else "nothing"
        if self.unchanged:
            lines = [f"{self.ident} is already selected for {self.model_format}; nothing to do"]
        else:
            lines = [
                f"back up {p}  ->  {state_dir(self.home.path) / 'backups' / self.txid / p.name}"
                if p.exists()
                else f"create {p}",
                f"select {self.ident} for {self.model_format} (was {before}); other formats' entries kept",
            ]
        return plan_lines_end(lines, (), self.blocked)


def plan_select(
    home: LmsHome | Path | str, ident: str, model_format: str = "gguf", *, processes: ProcessLister = _default_procs
) -> SelectPlan:
    h = as_home(home)
    _require_home(h)
    b = find_backend(h, ident)
    if not b.valid:
        raise RefusedChange(f"{b.folder} is not a readable backend", hint="run `lms-unlocked doctor`")
    formats = [f.lower() for f in b.model_formats]
    if formats and model_format.lower() not in formats:
        raise RefusedChange(
            f"{b.ident} does not run {model_format} models (it supports {', '.join(b.model_formats)})",
            hint="pick a backend for that model format",
        )
    load_preferences(h)  # raises on a malformed file before anything else
    procs = processes(h)
    blocked = running_message(procs) + "; " + CLOSE_HINT if procs else ""
    return SelectPlan(h, b, model_format, selected_for(h, model_format), blocked, new_txid("select"))


def execute_select(plan: SelectPlan, *, processes: ProcessLister = _default_procs) -> Selection:
    h = plan.home
    with home_lock(h.path):
        recover_holding_lock(h)
        _check_running(h, processes)
        sel = Selection(plan.model_format, plan.info.name, plan.info.version)
        if plan.unchanged:
            return sel
        sd = state_dir(h.path)
        txid = _fresh_txid(sd, plan.txid, "select")
        txdir = sd / "tx" / txid
        with _prepare(f"selecting {plan.ident}", h, txid):
            txdir.mkdir(parents=True)
            doc, _entries = load_preferences(h)
            new = with_selection(doc.data if doc else [], plan.model_format, plan.info.name, plan.info.version)
            op = _prefs_write_op(h, txdir, sd / "backups" / txid, new, doc)
            fault_point("select:prepared")
        Journal(h.path).run(
            Transaction(txid, "select", (op,), 1, cleanup=(str(txdir),), summary=f"select {plan.ident}")
        )
        return sel
