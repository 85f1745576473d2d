"""Our marker and provenance file in every backend folder we install (docs/lmstudio-contract.md §9.4).

``unlocked-install.json`` records the variant, the template ``name@version``, the llama.cpp tag,
the build flags, our tool version and the sha256 of every file in the folder (symlinks by their
target). Repair recognises our folders by it and checks their contents against it.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from app import __version__
from app.core.lmstudio.backends import ARTIFACTS_FILE, DISPLAY_DATA_FILE, MANIFEST_FILE, PROVENANCE_FILE
from app.core.lmstudio.errors import JsonFileError
from app.core.lmstudio.jsondoc import atomic_write_bytes, load_json

PROVENANCE_SCHEMA = 1
JSON_FILES = (MANIFEST_FILE, DISPLAY_DATA_FILE, ARTIFACTS_FILE)
SMOKE_KEY = "smoke"  # the folder's own smoke test: {"ok", "reason", "cpu", "at", ...} (see record_smoke)
__all__ = [
    "PROVENANCE_FILE",
    "SMOKE_KEY",
    "FileDiff",
    "file_digests",
    "read_provenance",
    "record_smoke",
    "smoke_of",
    "verify_files",
    "write_provenance",
]


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def file_digests(folder: Path, *, errors: dict[str, str] | None = None) -> dict[str, str]:
    """relpath -> sha256 for files, "symlink:<target>" for links; our own marker excluded.

    With `errors`, a file that cannot be read (or is neither a regular file nor a link) is recorded there with the
    reason instead of raising or being skipped."""
    out: dict[str, str] = {}
    for dirpath, dirnames, filenames in os.walk(folder):
        d = Path(dirpath)
        for name in sorted(dirnames + filenames):
            p = d / name
            rel = p.relative_to(folder).as_posix()
            if rel == PROVENANCE_FILE:
                continue
            if p.is_symlink():
                out[rel] = "symlink:" + os.readlink(p)
                if name in dirnames:
                    dirnames.remove(name)
            elif p.is_file():
                try:
                    out[rel] = sha256_file(p)
                except OSError as exc:
                    if errors is None:
                        raise
                    errors[rel] = exc.strerror or str(exc)
            elif errors is not None and not p.is_dir():
                errors[rel] = "not a regular file"
    return dict(sorted(out.items()))


def executable_files(folder: Path) -> list[str]:
    if os.name == "nt":
        return []
    return sorted(
        rel for rel in file_digests(folder) if not (folder / rel).is_symlink() and os.access(folder / rel, os.X_OK)
    )


def write_provenance(folder: Path, info: Mapping[str, Any]) -> dict[str, Any]:
    """Write our marker into ``folder`` with ``info`` (variant, template, llama_cpp_tag, flags, ...).

    Adds ``schema``, ``tool_version``, ``files`` (sha256 of every file) and ``executables``.
    Returns what was written.
    """
    data: dict[str, Any] = {"schema": PROVENANCE_SCHEMA, "tool": "lms-unlocked", "tool_version": __version__}
    data.update({k: v for k, v in info.items() if k not in ("files", "executables", "json_copies")})
    data["files"] = file_digests(folder)
    data["executables"] = executable_files(folder)
    # copies of our JSON files, so repair can restore them if something mangles them (§15 #4, §17 #14)
    copies: dict[str, str] = {}
    for rel in JSON_FILES:
        p = folder / rel
        if p.is_file() and not p.is_symlink():
            try:
                copies[rel] = p.read_bytes().decode("utf-8")
            except UnicodeDecodeError:
                continue
    data["json_copies"] = copies
    atomic_write_bytes(folder / PROVENANCE_FILE, (json.dumps(data, indent=2, ensure_ascii=False) + "\n").encode())
    return data


def stored_copy(folder: Path, rel: str, provenance: Mapping[str, Any]) -> bytes | None:
    """Our stored copy of a JSON file, only if it still matches the hash recorded at install."""
    copies = provenance.get("json_copies")
    files = provenance.get("files")
    if not isinstance(copies, dict) or not isinstance(files, dict) or not isinstance(copies.get(rel), str):
        return None
    data = str(copies[rel]).encode("utf-8")
    return data if hashlib.sha256(data).hexdigest() == files.get(rel) else None


def read_provenance(folder: Path) -> dict[str, Any] | None:
    """Our marker's content, or None when the folder is not ours or the marker is unreadable."""
    try:
        doc = load_json(folder / PROVENANCE_FILE)
    except JsonFileError:
        return None
    return doc.data if isinstance(doc.data, dict) else None


def record_smoke(folder: Path, result: Mapping[str, Any]) -> bool:
    """Store the result of the folder's own smoke test in its marker (only a folder of ours has one).

    ``result`` holds at least ``ok`` (bool) and ``reason``; ``at`` (UTC) is added. The file hashes are not
    touched: the marker never hashes itself. Returns False when the folder has no readable marker.
    """
    prov = read_provenance(folder)
    if prov is None:
        return False
    prov[SMOKE_KEY] = {**dict(result), "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    atomic_write_bytes(folder / PROVENANCE_FILE, (json.dumps(prov, indent=2, ensure_ascii=False) + "\n").encode())
    return True


def smoke_of(provenance: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """The recorded smoke result (a dict with a boolean ``ok``), or None when none was recorded."""
    rec = provenance.get(SMOKE_KEY) if provenance else None
    if not isinstance(rec, dict) or not isinstance(rec.get("ok"), bool):
        return None
    return dict(rec)


@dataclass(frozen=True)
class FileDiff:
    missing: tuple[str, ...] = ()
    changed: tuple[str, ...] = ()
    added: tuple[str, ...] = ()
    lost_exec: tuple[str, ...] = ()

    @property
    def clean(self) -> bool:
        return not (self.missing or self.changed or self.lost_exec)


def verify_files(folder: Path, provenance: Mapping[str, Any]) -> FileDiff:
    """Compare the folder with the hashes and exec bits its marker recorded."""
    want = provenance.get("files")
    if not isinstance(want, dict):
        return FileDiff()
    have = file_digests(folder)
    execs = provenance.get("executables") if isinstance(provenance.get("executables"), list) else []
    assert isinstance(execs, list)
    lost = tuple(
        str(r)
        for r in execs
        if os.name != "nt" and (folder / str(r)).is_file() and not os.access(folder / str(r), os.X_OK)
    )
    return FileDiff(
        missing=tuple(sorted(r for r in want if r not in have)),
        changed=tuple(sorted(r for r in want if r in have and have[r] != want[r])),
        added=tuple(sorted(r for r in have if r not in want)),
        lost_exec=lost,
    )
