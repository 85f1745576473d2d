"""Load a JSON file keeping its text facts (BOM, line ending, indent) and write it back faithfully.

Writes are UTF-8 without BOM (docs/lmstudio-contract.md §5.3), with the file's own line endings and indent, key
order and unknown keys kept, ``ensure_ascii=False``, through a temp file and one ``os.replace``.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from app.core.lmstudio.errors import JsonFileError
from app.core.userfile import JSON_LIMIT, loads_bounded, read_bounded

UTF8_BOM = b"\xef\xbb\xbf"
_OTHER_BOMS = {b"\xff\xfe": "UTF-16 LE", b"\xfe\xff": "UTF-16 BE"}


@dataclass(frozen=True)
class JsonDoc:
    """Parsed JSON plus the text facts needed to write it back the same way."""

    data: Any
    bom: bool = False
    newline: str = "\n"  # "\r\n" or "\n"
    indent: int | str | None = 2  # spaces, "\t", or None for a one-line file
    final_newline: bool = False
    path: Path | None = None

    def with_data(self, data: Any) -> JsonDoc:
        return replace(self, data=data)

    def dumps(self, data: Any | None = None) -> bytes:
        """Serialise ``data`` (default: ``self.data``) as UTF-8 without BOM, in this file's style."""
        value = self.data if data is None else data
        text = json.dumps(value, indent=self.indent, ensure_ascii=False)
        if self.newline != "\n":
            text = text.replace("\n", self.newline)  # JSON strings escape their own newlines
        if self.final_newline:
            text += self.newline
        return text.encode("utf-8")


def _detect_indent(text: str) -> int | str | None:
    m = re.search(r"\n([ \t]+)\S", text)
    if m is None:
        return None if "\n" not in text.strip() else 2
    ws = m.group(1)
    return "\t" if ws.startswith("\t") else len(ws)


def parse_json_bytes(raw: bytes, *, where: str = "") -> JsonDoc:
    """Parse bytes of a JSON file; raise :class:`JsonFileError` (kind "encoding" or "syntax")."""
    for bom, enc in _OTHER_BOMS.items():
        if raw.startswith(bom):
            raise JsonFileError(
                f"{where or 'the file'} is encoded as {enc}, not UTF-8",
                kind="encoding",
                context=where,
                hint="rewrite it as UTF-8 without a BOM (lms-unlocked repair does this for our backends)",
            )
    has_bom = raw.startswith(UTF8_BOM)
    body = raw[len(UTF8_BOM) :] if has_bom else raw
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise JsonFileError(
            f"{where or 'the file'} is not valid UTF-8 (byte {exc.start})",
            kind="encoding",
            context=where,
            hint="rewrite it as UTF-8 without a BOM",
        ) from None
    data = loads_bounded(text, where=where or "the file", error=JsonFileError)
    newline = "\r\n" if "\r\n" in text else "\n"
    stripped = text.rstrip(" \t")
    final_newline = stripped.endswith("\n")
    return JsonDoc(data, has_bom, newline, _detect_indent(text), final_newline)


def load_json(path: Path, *, limit: int = JSON_LIMIT) -> JsonDoc:
    """Read ``path`` (a regular file of at most ``limit`` bytes) as JSON, remembering its text facts.

    Raises :class:`JsonFileError` (a FIFO, a huge or deeply nested file included, see app.core.userfile)."""
    raw = read_bounded(path, limit=limit, error=JsonFileError)
    return replace(parse_json_bytes(raw, where=str(path)), path=path)


def fsync_dir(path: Path) -> None:
    """Make a rename or new entry in ``path`` durable (POSIX; a no-op where directories cannot be opened)."""
    if os.name == "nt":
        return
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write_bytes(path: Path, data: bytes, *, mode: int | None = None) -> None:
    """Write ``data`` to ``path`` via a temp file in the same directory and one ``os.replace``."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        if mode is not None:
            os.chmod(tmp, mode)
        elif path.exists():
            os.chmod(tmp, path.stat().st_mode & 0o7777)
        os.replace(tmp, path)
        fsync_dir(path.parent)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def write_json(path: Path, data: Any, *, like: JsonDoc | None = None) -> None:
    """Write ``data`` to ``path`` in the style of ``like`` (default: 2-space indent, LF, final newline)."""
    style = like if like is not None else JsonDoc(None, final_newline=True)
    atomic_write_bytes(path, style.dumps(data))


def save(doc: JsonDoc, path: Path | None = None) -> None:
    """Write ``doc.data`` back to ``path`` (default: where it was loaded from), BOM dropped."""
    target = path if path is not None else doc.path
    if target is None:
        raise ValueError("no path to save to")
    atomic_write_bytes(target, doc.dumps())
