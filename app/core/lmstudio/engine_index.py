"""Read LM Studio's engine cache ``.internal/internal-engine-index.json`` tolerantly (docs/lmstudio-contract.md §13).

A superjson file ``{"json": [{manifest, dirPath, backendCompatibility: {status}, ...}], "meta": ...}``.
We only read it: what LM Studio last concluded about each engine. It is never written here.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from app.core.lmstudio.home import LmsHome
from app.core.lmstudio.judge import normalize_status
from app.core.userfile import UserFileError, read_json


@dataclass(frozen=True)
class IndexEntry:
    ident: str
    dir_path: str
    status: str  # camelCase, "unknown" when absent or not understood
    raw_status: str = ""


def _entries(data: Any) -> list[Any]:
    items = data.get("json") if isinstance(data, dict) else data
    return items if isinstance(items, list) else []


def read_engine_index(home: LmsHome | Path) -> list[IndexEntry]:
    """Entries of the engine index; an absent or unreadable file gives none."""
    path = home.engine_index_file if isinstance(home, LmsHome) else Path(home) / ".internal/internal-engine-index.json"
    try:
        data = read_json(path)
    except UserFileError:
        return []
    out: list[IndexEntry] = []
    for e in _entries(data):
        if not isinstance(e, dict):
            continue
        m = e.get("manifest") if isinstance(e.get("manifest"), dict) else {}
        assert isinstance(m, dict)
        comp = e.get("backendCompatibility") if isinstance(e.get("backendCompatibility"), dict) else {}
        assert isinstance(comp, dict)
        raw = str(comp.get("status", ""))
        name, version = str(m.get("name", "")), str(m.get("version", ""))
        out.append(
            IndexEntry(
                f"{name}@{version}" if name else "",
                str(e.get("dirPath", "")),
                normalize_status(raw) if raw else "unknown",
                raw,
            )
        )
    return out


def last_status(home: LmsHome | Path) -> dict[str, IndexEntry]:
    """name@version -> what LM Studio last concluded (the last entry wins)."""
    return {e.ident: e for e in read_engine_index(home) if e.ident}
