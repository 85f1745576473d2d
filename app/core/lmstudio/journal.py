"""A small write-ahead journal so an interrupted change rolls forward or back at the next start.

Everything we keep lives OUTSIDE ``extensions/backends`` (LM Studio registers every sub-folder
there, backup copies included: docs/lmstudio-contract.md §4.3), in ``<home>/.lms-unlocked/``, inside
the LM Studio home so that every move is one ``rename`` on the same file system:

* ``journal.json`` - the transaction in flight (at most one), removed when it is finished
* ``lock`` - an OS lock (``flock``/``LockFileEx`` through the ``filelock`` package) held for the whole
  transaction, from re-planning to the last journal write; the file holds the holder's pid, for messages only
* ``tx/<txid>/`` - staged folders, new file contents, folders being removed
* ``staging/<id>/`` - an archive being unpacked for an install (with ``<id>.lock`` held while in use)
* ``backups/<txid>/`` - replaced folders and the original preferences/settings, kept for undo
* ``installed.json`` - what we installed and what each install replaced (read by uninstall)

A transaction is prepared without touching anything LM Studio sees (staging under ``tx/``), then a
journal listing idempotent operations (``rename``, ``write``, ``delete``) and a commit index is
written. After each operation the journal records progress. :func:`recover` rolls an interrupted
transaction back when it stopped before the commit index (the home is as before) and forward
otherwise (the home is as after). Every operation can be done or undone twice without harm, so a
crash between an operation and its journal update is safe.

Tests kill the process at named points through the ``LMS_UNLOCKED_FAULT`` environment variable
(:func:`fault_point`); nothing happens when it is unset.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import shutil
import signal
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import filelock

from app.core.errors import disk_error
from app.core.lmstudio.errors import LmStudioError
from app.core.lmstudio.jsondoc import atomic_write_bytes, fsync_dir
from app.core.lmstudio.kinds import classify_folder
from app.core.userfile import UserFileError, read_json

log = logging.getLogger(__name__)

STATE_DIR_NAME = ".lms-unlocked"
JOURNAL_FILE = "journal.json"
STAGING_DIR_NAME = "staging"  # archives unpacked for an install (app.core.fetch.obtain), moved in, never copied
LOCK_FILE = "lock"
FAULT_ENV = "LMS_UNLOCKED_FAULT"
LOCK_WAIT_ENV = "LMS_UNLOCKED_LOCK_WAIT"  # seconds a change waits for another process's lock (default: 0, refuse)


class JournalError(LmStudioError):
    code = "journal-error"


class HomeBusy(LmStudioError):
    code = "home-busy"
    exit_code = 2


def state_dir(home_path: Path) -> Path:
    return home_path / STATE_DIR_NAME


def fault_point(label: str) -> None:
    """Test hook: ``LMS_UNLOCKED_FAULT=<label>`` SIGKILLs this process there; ``raise:<label>`` raises an
    OSError there instead (a disk that fails mid-change)."""
    value = os.environ.get(FAULT_ENV)
    if not value:
        return
    if value == label:
        os.kill(os.getpid(), signal.SIGKILL if hasattr(signal, "SIGKILL") else signal.SIGTERM)
    if value == f"raise:{label}":
        raise OSError(5, f"injected I/O error at {label}")


def new_txid(kind: str) -> str:
    return f"{time.strftime('%Y%m%dT%H%M%S')}-{kind}-{secrets.token_hex(3)}"


@dataclass(frozen=True)
class Op:
    """One idempotent step.

    kinds: "rename" (src -> dst), "write" (copy src bytes to dst), "delete" (dst), "rmdir" (empty dst).
    """

    kind: str
    src: str = ""
    dst: str = ""
    orig: str = ""  # write/delete: where the original of dst is kept for undo ("" = dst did not exist)

    def to_dict(self) -> dict[str, str]:
        return {"kind": self.kind, "src": self.src, "dst": self.dst, "orig": self.orig}


def _do(op: Op) -> None:
    src, dst = Path(op.src), Path(op.dst)
    if op.kind == "rename":
        if _exists(src) and not _exists(dst):
            dst.parent.mkdir(parents=True, exist_ok=True)
            os.rename(src, dst)
            fsync_dir(dst.parent)
            fsync_dir(src.parent)
        elif _exists(src) and _exists(dst):
            raise JournalError(f"cannot move {src} to {dst}: both exist", hint="move one of them away by hand")
    elif op.kind == "write":
        atomic_write_bytes(dst, src.read_bytes())
    elif op.kind == "delete":
        if _exists(dst):
            os.unlink(dst)
    elif op.kind == "rmdir":
        if dst.is_dir() and not dst.is_symlink() and not any(dst.iterdir()):
            os.rmdir(dst)
    else:
        raise JournalError(f"unknown journal operation {op.kind}")


def _undo(op: Op) -> None:
    src, dst = Path(op.src), Path(op.dst)
    if op.kind == "rename":
        if _exists(dst) and not _exists(src):
            src.parent.mkdir(parents=True, exist_ok=True)
            os.rename(dst, src)
            fsync_dir(src.parent)
    elif op.kind == "rmdir":
        if not _exists(dst):
            dst.mkdir(parents=True)
    elif op.kind in ("write", "delete"):
        if op.orig:
            atomic_write_bytes(dst, Path(op.orig).read_bytes())
        elif _exists(dst):
            os.unlink(dst)


def _exists(p: Path) -> bool:
    return p.exists() or p.is_symlink()


@dataclass(frozen=True)
class Transaction:
    txid: str
    kind: str  # "install", "uninstall", "select", "repair"
    ops: tuple[Op, ...]
    commit: int  # ops[:commit] done -> roll forward; fewer -> roll back
    cleanup: tuple[str, ...] = ()  # paths removed after success (tx dirs)
    summary: str = ""


class Journal:
    def __init__(self, home_path: Path) -> None:
        self.home_path = home_path
        self.dir = state_dir(home_path)
        self.path = self.dir / JOURNAL_FILE

    def pending(self) -> dict[str, Any] | None:
        if not (self.path.exists() or self.path.is_symlink()):
            return None
        try:
            data = read_json(self.path, what=f"the journal {self.path}")
        except UserFileError as exc:
            raise JournalError(
                f"the journal {self.path} is unreadable: {exc.message}",
                hint=f"inspect {self.dir} by hand; backups are under {self.dir / 'backups'}",
            ) from None
        return data if isinstance(data, dict) else None

    def _rel(self, p: str) -> str:
        """Paths inside the home are journaled relative to it, so a moved or copied home recovers in place."""
        if not p:
            return p
        path = Path(p)
        return path.relative_to(self.home_path).as_posix() if path.is_relative_to(self.home_path) else p

    def _abs(self, p: str) -> str:
        return p if not p or Path(p).is_absolute() else str(self.home_path / p)

    def _ops(self, state: dict[str, Any]) -> list[Op]:
        try:
            return [
                Op(
                    str(o["kind"]),
                    self._abs(o.get("src", "")),
                    self._abs(o.get("dst", "")),
                    self._abs(o.get("orig", "")),
                )
                for o in state.get("ops", [])
            ]
        except (KeyError, TypeError, AttributeError) as exc:
            raise JournalError(
                f"the journal {self.path} is not one lms-unlocked can read ({exc})",
                hint=f"inspect {self.dir} by hand; backups are under {self.dir / 'backups'}",
            ) from None

    def _confine(self, ops: Sequence[Op], forward: bool, cleanup: Sequence[str]) -> None:
        """Refuse a journal that would touch anything a transaction of ours never touches.

        Every path lies inside the home. Files are written or deleted only in our state folder and as LM
        Studio's preferences file. Renames (and removals of empty folders) stay within our state folder and
        ``extensions/backends`` (never ``vendor/``), and never touch anything in a folder that is LM Studio's own
        (:func:`app.core.lmstudio.kinds.classify_folder`, the rule repair follows too). So even a crafted journal
        cannot delete or move anything inside an official backend folder, or outside the home.
        """
        home = Path(os.path.abspath(self.home_path))
        state = Path(os.path.abspath(self.dir))
        backends = home / "extensions" / "backends"
        prefs = home / ".internal" / "backend-preferences-v1.json"

        def refuse(why: str) -> JournalError:
            return JournalError(
                f"the journal {self.path} asks to {why}; lms-unlocked never does that, so it does not recover it",
                hint=f"inspect {self.dir} by hand (backups are under {self.dir / 'backups'}), then remove the journal",
            )

        def norm(p: str) -> Path:
            q = Path(os.path.normpath(os.path.abspath(p)))
            if not q.is_relative_to(home):
                raise refuse(f"touch {p}, outside the LM Studio home")
            return q

        def movable(p: Path, what: str) -> None:
            if p.is_relative_to(state) and p != state:
                return
            if not p.is_relative_to(backends) or p == backends:
                raise refuse(f"{what} {p}, which is neither in extensions/backends nor lms-unlocked's own")
            top = backends / p.relative_to(backends).parts[0]
            if top.name == "vendor":
                raise refuse(f"{what} {p}, inside LM Studio's vendor packages")
            if top.is_dir() and not top.is_symlink() and classify_folder(top).kind == "official":
                raise refuse(f"{what} {p}, inside LM Studio's own backend {top.name}")

        for op in ops:
            src, dst, orig = (norm(x) if x else None for x in (op.src, op.dst, op.orig))
            if op.kind in ("write", "delete"):
                if dst is None or not (dst.is_relative_to(state) or dst == prefs):
                    raise refuse(f"{op.kind} {op.dst}")
                if any(x is not None and not x.is_relative_to(state) for x in (src, orig)):
                    raise refuse(f"take the content of {op.dst} from outside its own folder")
            elif op.kind == "rmdir" and dst is not None:
                movable(dst, "remove the folder")
            elif op.kind == "rename" and src is not None and dst is not None:
                movable(src, "move")
                movable(dst, "move something to")
            else:
                raise refuse(f"do an unknown or incomplete operation {op.kind!r}")
        for c in cleanup:
            if not norm(c).is_relative_to(state / "tx"):
                raise refuse(f"remove {c}")

    def _write(self, data: dict[str, Any]) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(self.path, json.dumps(data, indent=2, ensure_ascii=False).encode("utf-8"))

    def run(self, tx: Transaction) -> None:
        """Apply ``tx`` with progress recorded after every operation; remove the journal at the end."""
        state: dict[str, Any] = {
            "txid": tx.txid,
            "kind": tx.kind,
            "summary": tx.summary,
            "ops": [{k: self._rel(v) if k != "kind" else v for k, v in o.to_dict().items()} for o in tx.ops],
            "commit": tx.commit,
            "cleanup": [self._rel(c) for c in tx.cleanup],
            "done": 0,
            "pid": os.getpid(),
        }
        try:
            self._write(state)
            fault_point(f"{tx.kind}:journal")
            for i, op in enumerate(tx.ops):
                _do(op)
                fault_point(f"{tx.kind}:op{i}")
                state["done"] = i + 1
                self._write(state)
                fault_point(f"{tx.kind}:op{i}:recorded")
        except (OSError, JournalError) as exc:
            # an error we are still alive to handle: resolve the transaction now, as recover() would
            try:
                outcome = self.recover()
            except (OSError, JournalError) as exc2:
                raise JournalError(
                    f"{tx.summary or tx.kind} failed ({exc}) and could not be undone ({exc2})",
                    hint=f"the journal {self.path} is kept; run `lms-unlocked repair` once the cause is fixed",
                ) from exc
            if isinstance(exc, OSError):
                d = disk_error(exc, doing=tx.summary or tx.kind, where=str(self.home_path),
                               outcome=outcome or "nothing was changed")
                raise JournalError(d.message, context=d.context, hint=d.hint) from exc
            raise JournalError(
                f"{tx.summary or tx.kind} failed: {exc}",
                hint=f"{outcome or 'nothing was changed'}; fix the cause (disk full, permissions) and try again",
            ) from exc
        self._finish(state)

    def _finish(self, state: dict[str, Any]) -> None:
        """The change is complete once its last operation is recorded: nothing here may fail it."""
        try:
            os.unlink(self.path)
            fault_point(f"{state.get('kind')}:finished")
        except OSError as exc:  # the journal stays; the next start re-runs its (idempotent) operations
            log.warning("%s is complete, but its journal %s could not be removed: %s", state.get("txid"), self.path,
                        exc)
        for p in state.get("cleanup", []):
            shutil.rmtree(self._abs(str(p)), ignore_errors=True)

    def recover(self) -> str:
        """Finish or undo a transaction left by a killed process. Returns what was done ("" if nothing)."""
        state = self.pending()
        if state is None:
            return ""
        ops = self._ops(state)
        try:
            done = int(state.get("done", 0))
            commit = int(state.get("commit", len(ops)))
        except (TypeError, ValueError):
            raise JournalError(f"the journal {self.path} is damaged", hint=f"inspect {self.dir} by hand") from None
        forward = done >= commit
        self._confine(ops[done:] if forward else ops[: min(done + 1, len(ops))], forward,
                      [self._abs(str(p)) for p in state.get("cleanup", [])])
        if done >= commit:
            for op in ops[done:]:
                _do(op)
            result = f"finished the interrupted {state.get('kind')} {state.get('txid')} ({state.get('summary')})"
            self._finish(state)
            return result
        # roll back: the op in flight (index ``done``) may or may not have happened; undo is idempotent
        for op in reversed(ops[: min(done + 1, len(ops))]):
            _undo(op)
        os.unlink(self.path)
        for p in state.get("cleanup", []):
            shutil.rmtree(self._abs(str(p)), ignore_errors=True)
        return f"rolled back the interrupted {state.get('kind')} {state.get('txid')} ({state.get('summary')})"


def _lock_wait() -> float:
    try:
        return max(0.0, float(os.environ.get(LOCK_WAIT_ENV, "0")))
    except ValueError:
        return 0.0


@contextmanager
def home_lock(home_path: Path) -> Iterator[None]:
    """Only one process changes a home at a time: an OS lock on ``<home>/.lms-unlocked/lock``.

    The kernel releases it when the holder exits or is killed, so there is no stale lock to judge. A second
    process is refused at once (:class:`HomeBusy`), or waits up to ``$LMS_UNLOCKED_LOCK_WAIT`` seconds.
    """
    d = state_dir(home_path)
    try:
        d.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise HomeBusy(
            f"cannot create lms-unlocked's folder {d}: a file is in the way",
            hint=f"{d} must be a writable folder (it holds staging, backups and the journal); move away whatever "
            "is there and check the permissions of the LM Studio home",
        ) from None
    except OSError as exc:
        raise _unwritable(exc, home_path, d) from None
    path = d / LOCK_FILE
    lock = filelock.FileLock(str(path), timeout=_lock_wait(), is_singleton=False)
    try:
        lock.acquire()
    except filelock.Timeout:
        try:
            pid = path.read_text(encoding="ascii").strip()
        except (OSError, ValueError):
            pid = ""
        who = f" (pid {pid})" if pid.isdigit() else ""
        raise HomeBusy(
            f"another lms-unlocked process{who} is changing {home_path}",
            hint="wait for it to finish, then try again",
        ) from None
    except OSError as exc:
        raise _unwritable(exc, home_path, path) from None
    try:
        try:
            with open(path, "r+", encoding="ascii") as fh:  # for the message above only; the lock is the flock
                fh.write(f"{os.getpid():<12}")
        except OSError:
            pass
        yield
    finally:
        lock.release()


def _unwritable(exc: OSError, home_path: Path, what: Path) -> HomeBusy:
    d = disk_error(exc, doing=f"changing the LM Studio home {home_path}", where=str(home_path),
                   outcome="nothing was changed")
    return HomeBusy(d.message, context=str(what), hint=d.hint + f" ({what} must be writable)")


def orphan_tx_dirs(home_path: Path, keep: Sequence[str] = ()) -> list[Path]:
    txroot = state_dir(home_path) / "tx"
    if not txroot.is_dir():
        return []
    return [p for p in txroot.iterdir() if p.name not in keep]
