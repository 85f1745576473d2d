"""What ``<home>/.lms-unlocked/backups/`` holds, what uninstall still needs, and cleaning the rest.

Every change keeps what it replaced under ``backups/<txid>/`` (folders of ours it replaced, the original
preferences file, the folder an uninstall removed). An uninstall restores from the backups its install
record names (``installed.json``, "replaced"); everything else is only kept for doing a change by hand.
:func:`clean_backups` removes the rest, under the home's lock and after any interrupted change is resolved.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from app.core.errors import disk_error
from app.core.lmstudio.home import LmsHome, as_home
from app.core.lmstudio.install import installed_records, recover_holding_lock
from app.core.lmstudio.journal import home_lock, state_dir


@dataclass(frozen=True)
class Backup:
    txid: str
    path: Path
    size: int  # bytes, links not followed
    needed_for: str = ""  # the install whose uninstall restores from it ("" = not needed)

    @property
    def needed(self) -> bool:
        return bool(self.needed_for)


def tree_size(path: Path) -> int:
    """Bytes of every file under ``path`` (links not followed)."""
    total = 0
    for dirpath, _dirs, files in os.walk(path):
        for n in files:
            try:
                total += (Path(dirpath) / n).lstat().st_size
            except OSError:
                continue
    return total


def list_backups(home: LmsHome | Path | str) -> list[Backup]:
    """Every ``backups/<txid>`` folder, oldest first, with its size and the install that still needs it."""
    h = as_home(home)
    root = state_dir(h.path) / "backups"
    if not root.is_dir():
        return []
    needed: dict[str, str] = {}
    for rec in installed_records(h, strict=True):  # an unreadable record file: clean nothing, say why
        for r in rec.get("replaced", []) if isinstance(rec.get("replaced"), list) else []:
            parts = Path(str(r.get("backup", ""))).parts if isinstance(r, dict) else ()
            if len(parts) >= 2 and parts[0] == "backups":
                needed[parts[1]] = f"uninstalling {rec.get('ident')} restores {r.get('ident')} from it"
    return [
        Backup(p.name, p, tree_size(p), needed.get(p.name, ""))
        for p in sorted(root.iterdir(), key=lambda q: q.name)
        if p.is_dir() and not p.is_symlink()
    ]


def clean_backups(home: LmsHome | Path | str) -> list[Backup]:
    """Remove every backup no install record needs; returns what was removed."""
    h = as_home(home)
    with home_lock(h.path):
        recover_holding_lock(h)  # a pending journal may point into backups/: resolve it first
        removed: list[Backup] = []
        for b in list_backups(h):
            if not b.needed:
                try:
                    shutil.rmtree(b.path)
                except OSError as exc:
                    raise disk_error(exc, doing="removing old backups", where=str(b.path),
                                     outcome=f"{len(removed)} backup(s) were removed before this one") from None
                removed.append(b)
        return removed
