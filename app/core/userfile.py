"""The one way to read a file we did not write ourselves: bounded, regular-file-only, depth-safe JSON.

Every user or LM Studio file (manifests, preferences, settings, the engine index, display-data, our
provenance marker, ``installed.json``, the journal, ``--cpuinfo``/``--report`` inputs) is read here, so
that one bad file is one clear :class:`UserFileError` about that file and never a hang (a FIFO named
``backend-manifest.json``), an unbounded read (``--cpuinfo /dev/zero``) or a ``RecursionError`` (JSON
nested a million levels deep).

* LM Studio's files must be regular files: they are opened with ``O_NONBLOCK`` (a FIFO cannot block
  the open) and checked with ``fstat`` before one byte is read.
* Files the user names on the command line may be pipes or ``/proc`` files (``--cpuinfo <(ssh host cat
  /proc/cpuinfo)``): ``regular_only=False`` lets them through, still bounded by ``limit``.
* JSON is checked for nesting depth before it is parsed (LM Studio's files are a few levels deep).
"""

from __future__ import annotations

import json
import os
import re
import stat
from array import array
from itertools import accumulate
from pathlib import Path
from typing import Any

from app.core.errors import InputFileError

MiB = 1024 * 1024
JSON_LIMIT = 16 * MiB  # LM Studio's largest JSON (the engine index) is well under 1 MiB; our marker a few hundred KB
JSON_MAX_DEPTH = 64
_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_NOT_BRACKET = re.compile(rb"[^\[\]{}]")
_DEPTH_TABLE = bytes.maketrans(b"[{]}", b"\x01\x01\xff\xff")


class UserFileError(InputFileError):
    """A file is missing, not a regular file, too large, unreadable, wrongly encoded or not valid JSON.

    ``kind`` is "missing", "not-regular", "too-large", "unreadable", "encoding", "syntax" or "too-deep".
    """

    code = "bad-input-file"

    def __init__(self, message: str, *, kind: str, context: str = "", hint: str = "", details: str = "") -> None:
        super().__init__(message, context=context, hint=hint, details=details)
        self.kind = kind


def _size(n: int) -> str:
    return f"{n / MiB:.1f} MiB" if n >= MiB else f"{n} bytes"


def read_bounded(
    path: Path | str,
    *,
    limit: int,
    what: str = "",
    regular_only: bool = True,
    error: type[UserFileError] = UserFileError,
    hint: str = "",
) -> bytes:
    """The bytes of ``path``, at most ``limit`` of them; raises ``error`` (a :class:`UserFileError`) otherwise.

    ``hint``, when given, replaces the generic hint of every error (say what the file should be)."""
    try:
        return _read_bounded(Path(path), limit, what or str(path), regular_only, error)
    except UserFileError as exc:
        if hint:
            exc.hint = hint
        raise


def _read_bounded(p: Path, limit: int, name: str, regular_only: bool, error: type[UserFileError]) -> bytes:
    nonblock = getattr(os, "O_NONBLOCK", 0) if regular_only else 0  # POSIX; Windows has no FIFOs to fear
    flags = os.O_RDONLY | getattr(os, "O_BINARY", 0) | nonblock
    try:
        fd = os.open(p, flags)
    except FileNotFoundError:
        raise error(f"{name} not found", kind="missing", context=str(p),
                    hint="check the path; relative paths are taken from the current folder") from None
    except OSError as exc:
        raise error(f"cannot read {name}: {exc.strerror or exc}", kind="unreadable", context=str(p),
                    hint="fix its permissions, or copy it somewhere readable") from None
    try:
        st = os.fstat(fd)
        if stat.S_ISDIR(st.st_mode):
            raise error(f"{name} is a folder, not a file", kind="not-regular", context=str(p),
                        hint="pass the path of the file itself")
        if regular_only and not stat.S_ISREG(st.st_mode):
            raise error(
                f"{name} is not a regular file (a {_file_type(st.st_mode)})",
                kind="not-regular",
                context=str(p),
                hint="move it away; the program that wrote it recreates it as a file",
            )
        if stat.S_ISREG(st.st_mode) and st.st_size > limit:
            raise _too_large(error, name, p, limit)
        if nonblock:
            os.set_blocking(fd, True)
        chunks: list[bytes] = []
        total = 0
        while total <= limit:
            chunk = os.read(fd, min(1 * MiB, limit + 1 - total))
            if not chunk:
                break
            chunks.append(chunk)
            total += len(chunk)
        if total > limit:
            raise _too_large(error, name, p, limit)
        return b"".join(chunks)
    except OSError as exc:
        raise error(f"cannot read {name}: {exc.strerror or exc}", kind="unreadable", context=str(p),
                    hint="check the disk, or copy the file somewhere readable") from None
    finally:
        os.close(fd)


def _too_large(error: type[UserFileError], name: str, p: Path, limit: int) -> UserFileError:
    return error(
        f"{name} is larger than {_size(limit)}, more than such a file ever holds; refusing to read it",
        kind="too-large",
        context=str(p),
        hint="check that this is the file you meant",
    )


def _file_type(mode: int) -> str:
    for test, label in ((stat.S_ISDIR, "folder"), (stat.S_ISFIFO, "named pipe"), (stat.S_ISSOCK, "socket"),
                        (stat.S_ISCHR, "character device"), (stat.S_ISBLK, "block device")):
        if test(mode):
            return label
    return "special file"


def json_depth(raw: bytes) -> int:
    """How deeply arrays/objects nest in the JSON text ``raw`` (brackets inside strings ignored)."""
    brackets = _NOT_BRACKET.sub(b"", _STRING.sub(b"", raw)).translate(_DEPTH_TABLE)
    return max(accumulate(array("b", brackets)), default=0)


def loads_bounded(
    text: str, *, where: str, max_depth: int = JSON_MAX_DEPTH, error: type[UserFileError] = UserFileError
) -> Any:
    """``json.loads`` that refuses nesting deeper than ``max_depth`` with a clear error, never RecursionError."""
    depth = json_depth(text.encode("utf-8", "surrogatepass"))
    if depth > max_depth:
        raise error(
            f"{where} nests {depth} levels deep (at most {max_depth} make sense here); refusing to parse it",
            kind="too-deep",
            context=where,
            hint="restore the file from a backup, or move it away",
        )
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise error(
            f"{where} is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}",
            kind="syntax",
            context=where,
            hint="restore the file from the template backend or from a backup",
        ) from None
    except RecursionError:  # belt and braces: the depth check above should make this unreachable
        raise error(f"{where} nests too deeply to parse", kind="too-deep", context=where) from None


def read_json(
    path: Path | str,
    *,
    limit: int = JSON_LIMIT,
    what: str = "",
    max_depth: int = JSON_MAX_DEPTH,
    regular_only: bool = True,
    error: type[UserFileError] = UserFileError,
) -> Any:
    """Parse a JSON file through :func:`read_bounded` and :func:`loads_bounded` (UTF-8, a BOM tolerated)."""
    raw = read_bounded(path, limit=limit, what=what, regular_only=regular_only, error=error)
    name = what or str(path)
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise error(f"{name} is not valid UTF-8 (byte {exc.start})", kind="encoding", context=str(path)) from None
    return loads_bounded(text, where=name, max_depth=max_depth, error=error)
