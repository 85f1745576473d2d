"""Safe extraction of backend archives (.zip, .tar.gz, .tar.xz, .tar, .7z) into a staging folder.

Every archive is listed and checked before a single byte is written:
- names must be relative, without `..`, drive letters or NUL; backslashes count as separators;
- symlinks may only point inside the archive; hard links, devices, FIFOs and sockets are refused;
- names with control characters (a newline) and a file and a folder at the same path are refused;
- the declared total size, the number of members and the compression ratio are bounded (zip/tar/7z bombs),
  and the free space where it unpacks must hold the declared total (the message says how much, and where);
- an incomplete archive is refused: a tar without its end-of-archive block (cut by a download that had no
  Content-Length and no sha256), a member shorter than its header, a symbolic link to a member that is absent;
then files are written with a byte counter that stops at the declared size and the total limit (a
lying header cannot inflate past either), symlinks last. A backend folder nested one level too deep
(`archive/<name>-<version>/backend-manifest.json`) is recognised and its inner folder returned.
"""

from __future__ import annotations

import bz2
import contextlib
import gzip
import lzma
import os
import posixpath
import re
import shutil
import stat
import tarfile
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Literal

import py7zr
import py7zr.exceptions
import py7zr.io

from app.core.fetch.errors import ArchiveError, UnsafeArchiveError
from app.core.runner import CancelToken

MANIFEST = "backend-manifest.json"
IGNORED_TOP_LEVEL = frozenset({"__MACOSX", ".DS_Store", "Thumbs.db"})
_CHUNK = 1 << 20
_MAX_LINK_TARGET = 4096
_DRIVE_RE = re.compile(r"^[A-Za-z]:")

# What the readers raise for damaged, encrypted or unsupported archives (zipfile: RuntimeError for an encrypted
# member, NotImplementedError for an unknown compression method).
_READ_ERRORS: tuple[type[BaseException], ...] = (
    zipfile.BadZipFile,
    tarfile.TarError,
    py7zr.exceptions.ArchiveError,
    py7zr.exceptions.PasswordRequired,
    EOFError,
    ValueError,
    RuntimeError,
    NotImplementedError,
)
_LIST_ERRORS: tuple[type[BaseException], ...] = (*_READ_ERRORS, OSError)

Kind = Literal["file", "dir", "symlink", "hardlink", "device", "other"]
Format = Literal["zip", "tar", "7z"]


@dataclass(frozen=True)
class ArchiveLimits:
    """Bounds that a real backend archive never reaches (the largest, ROCm, is ~0.5 GB and < 200 files)."""

    max_total_bytes: int = 8 << 30
    max_files: int = 20_000
    max_ratio: float = 100.0  # unpacked / archive size; real backends compress 2-10x (CUDA fatbins ~20x)
    ratio_floor: int = 64 << 20  # totals below this are never refused for their ratio
    free_margin: int = 64 << 20  # left free on the disk after unpacking


@dataclass(frozen=True)
class Member:
    name: str  # normalised relative posix path
    kind: Kind
    size: int  # declared uncompressed size
    executable: bool = False
    link: str = ""  # symlink target (as stored)


@dataclass(frozen=True)
class ExtractResult:
    staging: Path  # where everything was extracted
    root: Path  # the backend folder inside it (== staging unless nested)
    nested: bool  # the archive had one extra folder level that we stepped into
    files: int
    total_bytes: int


def archive_format(path: Path) -> Format:
    """Tell the format from the name, then from the magic bytes."""
    name = path.name.lower()
    if name.endswith(".zip"):
        return "zip"
    if name.endswith(".7z"):
        return "7z"
    if name.endswith((".tar.gz", ".tgz", ".tar.xz", ".txz", ".tar", ".tar.bz2", ".tbz2")):
        return "tar"
    try:
        head = path.read_bytes()[:8] if path.stat().st_size < 8 else path.open("rb").read(8)
    except OSError as exc:
        raise ArchiveError(f"Cannot read {path}: {exc.strerror or exc}.", context=str(path)) from exc
    if head.startswith(b"PK\x03\x04") or head.startswith(b"PK\x05\x06"):
        return "zip"
    if head.startswith(b"7z\xbc\xaf\x27\x1c"):
        return "7z"
    if head.startswith((b"\x1f\x8b", b"\xfd7zXZ\x00", b"BZh")) or tarfile.is_tarfile(path):
        return "tar"
    raise ArchiveError(
        f"{path.name} is not a .zip, .tar.gz, .tar.xz or .7z archive.",
        context=str(path),
        hint="Give the backend archive as downloaded, or an extracted backend folder.",
    )


# --- names and checks ---------------------------------------------------------------------------------------------


def _unsafe(archive: Path, message: str, name: str = "") -> UnsafeArchiveError:
    return UnsafeArchiveError(
        f"Refusing to extract {archive.name}: {message}" + (f" ({name!r})." if name else "."),
        context=str(archive),
        hint="This archive is damaged or malicious. Nothing was installed; get the backend from a trusted source.",
    )


def safe_member_name(raw: str, archive: Path) -> str:
    """Normalise a member name to a relative posix path, or refuse it."""
    if "\x00" in raw:
        raise _unsafe(archive, "a member name contains a NUL byte", raw)
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in raw):
        raise _unsafe(archive, "a member name contains a control character (a newline?)", raw)
    name = raw.replace("\\", "/")
    if name.startswith("/") or _DRIVE_RE.match(name):
        raise _unsafe(archive, "a member has an absolute path", raw)
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if any(p == ".." for p in parts):
        raise _unsafe(archive, "a member name contains '..' (path traversal)", raw)
    return "/".join(parts)


def check_members(members: list[Member], archive: Path, limits: ArchiveLimits) -> None:
    """Refuse links/devices that could escape, duplicates, and sizes/counts over the limits.

    Raises:
        UnsafeArchiveError: with the first problem found.
    """
    if len(members) > limits.max_files:
        raise _unsafe(archive, f"it holds {len(members)} entries, more than the limit of {limits.max_files}")
    total = sum(m.size for m in members if m.kind == "file")
    if total > limits.max_total_bytes:
        raise _unsafe(
            archive,
            f"it would unpack to {total / 2**30:.1f} GiB, more than the limit of "
            f"{limits.max_total_bytes / 2**30:.1f} GiB (archive bomb?)",
        )
    seen: set[str] = set()
    links = {m.name for m in members if m.kind == "symlink"}
    leaves = {m.name for m in members if m.kind != "dir"}
    dirs = {m.name for m in members if m.kind == "dir"}
    for m in members:  # a file and a folder at the same path: which one lands depends on the extractor
        parent = posixpath.dirname(m.name)
        while parent:
            dirs.add(parent)
            parent = posixpath.dirname(parent)
    present = {m.name for m in members} | dirs
    dangling: list[str] = []
    for m in members:
        if m.kind == "hardlink":
            raise _unsafe(archive, "it contains a hard link", m.name)
        if m.kind in ("device", "other"):
            raise _unsafe(archive, "it contains a device file, FIFO or socket", m.name)
        if not m.name:
            if m.kind == "dir":
                continue
            raise _unsafe(archive, "a member has an empty name")
        if m.name in seen and m.kind != "dir":
            raise _unsafe(archive, "it contains the same path twice", m.name)
        seen.add(m.name)
        parent = posixpath.dirname(m.name)
        while parent:
            if parent in links:
                raise _unsafe(archive, "a member would be written through a symbolic link", m.name)
            parent = posixpath.dirname(parent)
        if m.kind == "symlink":
            target = m.link.replace("\\", "/")
            if not target or target.startswith("/") or _DRIVE_RE.match(target) or "\x00" in target:
                raise _unsafe(archive, f"a symbolic link points to an absolute path {target!r}", m.name)
            resolved = posixpath.normpath(posixpath.join(posixpath.dirname(m.name), target))
            if resolved == ".." or resolved.startswith("../"):
                raise _unsafe(archive, f"a symbolic link points outside the archive ({target!r})", m.name)
            if resolved not in present and resolved != ".":
                dangling.append(f"the symbolic link {m.name} points to {target}, which is not in it")
    clash = sorted(leaves & dirs)
    if clash:
        raise _unsafe(archive, "it has a file and a folder at the same path", clash[0])
    if dangling:
        raise _incomplete(archive, dangling[0])


def check_ratio_and_space(members: list[Member], archive: Path, limits: ArchiveLimits, where: Path) -> None:
    """Refuse a bomb by its compression ratio, and an unpack that the disk at ``where`` cannot hold."""
    total = sum(m.size for m in members if m.kind == "file")
    try:
        packed = max(1, archive.stat().st_size)
    except OSError:
        packed = 1
    if total > limits.ratio_floor and total / packed > limits.max_ratio:
        raise _unsafe(
            archive,
            f"it would unpack {packed / 2**20:.1f} MiB into {total / 2**20:.0f} MiB, a ratio of "
            f"{total / packed:.0f}:1, more than the limit of {limits.max_ratio:.0f}:1 (archive bomb?)",
        )
    probe = where
    while not probe.exists() and probe.parent != probe:
        probe = probe.parent
    try:
        free = shutil.disk_usage(probe).free
    except OSError:
        return
    need = total + limits.free_margin
    if free < need:
        raise ArchiveError(
            f"Not enough free space to unpack {archive.name}: it needs {need / 2**20:.0f} MiB in {probe}, "
            f"{free / 2**20:.0f} MiB are free.",
            context=str(probe),
            hint=f"Free {max(1, (need - free) // 2**20)} MiB on the disk that holds {probe}, then try again. "
            "Nothing was installed.",
        )


def _incomplete(archive: Path, message: str) -> ArchiveError:
    return ArchiveError(
        f"{archive.name} is incomplete: {message}.",
        context=str(archive),
        hint="The download was probably cut short (the server sent no size, and no sha256 was given to check it). "
        "Download it again, with --sha256 if you know it. Nothing was installed.",
    )


# --- listing per format -------------------------------------------------------------------------------------------


def _count_guard(archive: Path, limits: ArchiveLimits) -> Callable[[Member], None]:
    """Checks limits while headers stream in, so a bomb is refused before we read past its header."""
    state = {"n": 0, "bytes": 0}

    def guard(m: Member) -> None:
        state["n"] += 1
        state["bytes"] += m.size if m.kind == "file" else 0
        if state["n"] > limits.max_files:
            raise _unsafe(archive, f"it holds more than {limits.max_files} entries")
        if state["bytes"] > limits.max_total_bytes:
            raise _unsafe(
                archive,
                f"it would unpack to more than {limits.max_total_bytes / 2**30:.1f} GiB (archive bomb?)",
            )

    return guard


def _zip_kind(info: zipfile.ZipInfo) -> tuple[Kind, bool]:
    mode = (info.external_attr >> 16) & 0xFFFF if info.create_system == 3 else 0
    if info.is_dir():
        return "dir", False
    if mode and stat.S_ISLNK(mode):
        return "symlink", False
    if mode and (stat.S_ISCHR(mode) or stat.S_ISBLK(mode) or stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode)):
        return "device", False
    return "file", bool(mode & 0o111)


def _tar_kind(ti: tarfile.TarInfo) -> tuple[Kind, bool]:
    if ti.isdir():
        return "dir", False
    if ti.issym():
        return "symlink", False
    if ti.islnk():
        return "hardlink", False
    if ti.isdev() or ti.isfifo():
        return "device", False
    if ti.isreg():
        return "file", bool(ti.mode & 0o111)
    return "other", False


def _7z_kind(f: Any) -> tuple[Kind, bool]:
    mode = f.posix_mode or 0
    fmt = f.st_fmt or 0
    if f.is_directory:
        return "dir", False
    if f.is_symlink or (fmt and stat.S_ISLNK(fmt)):
        return "symlink", False
    if fmt and (stat.S_ISCHR(fmt) or stat.S_ISBLK(fmt) or stat.S_ISFIFO(fmt) or stat.S_ISSOCK(fmt)):
        return "device", False
    if f.is_socket:
        return "device", False
    return "file", bool(mode & 0o111)


def _read_small(fp: IO[bytes], archive: Path, name: str) -> str:
    data = fp.read(_MAX_LINK_TARGET + 1)
    if len(data) > _MAX_LINK_TARGET:
        raise _unsafe(archive, "a symbolic link target is too long", name)
    return data.decode("utf-8", "replace")


def list_members(archive: Path, limits: ArchiveLimits | None = None) -> list[Member]:
    """Every member of the archive with its kind and declared size (limits checked while listing).

    Raises:
        UnsafeArchiveError: over a limit or an unsafe name.
        ArchiveError: not an archive we can read.
    """
    limits = limits or ArchiveLimits()
    fmt = archive_format(archive)
    guard = _count_guard(archive, limits)
    members: list[Member] = []
    try:
        if fmt == "zip":
            with zipfile.ZipFile(archive) as zf:
                infos = zf.infolist()
                if len(infos) > limits.max_files:
                    raise _unsafe(archive, f"it holds {len(infos)} entries, more than the limit of {limits.max_files}")
                for info in infos:
                    kind, exe = _zip_kind(info)
                    name = safe_member_name(info.filename, archive)
                    link = ""
                    if kind == "symlink":
                        with zf.open(info) as fp:
                            link = _read_small(fp, archive, name)
                    m = Member(name, kind, info.file_size, exe, link)
                    guard(m)
                    members.append(m)
        elif fmt == "tar":
            with tarfile.open(archive, "r:*") as tf:
                for ti in tf:  # headers stream in: a bomb header is seen before its (missing) data
                    kind, exe = _tar_kind(ti)
                    m = Member(safe_member_name(ti.name, archive), kind, ti.size, exe, ti.linkname)
                    guard(m)
                    members.append(m)
                _check_tar_end(tf, archive, len(members))
        else:
            with py7zr.SevenZipFile(archive) as sz:
                for f in sz.files:
                    kind, exe = _7z_kind(f)
                    m = Member(safe_member_name(f.filename, archive), kind, int(f.uncompressed or 0), exe)
                    guard(m)
                    members.append(m)
                links = [m.name for m in members if m.kind == "symlink"]
            if links:
                targets = _read_7z_links(archive, links)
                members = [
                    Member(m.name, m.kind, m.size, m.executable, targets.get(m.name, "")) if m.kind == "symlink" else m
                    for m in members
                ]
    except (UnsafeArchiveError, ArchiveError):
        raise
    except _LIST_ERRORS as exc:
        raise ArchiveError(
            f"{archive.name} is damaged or not a supported archive: {exc}",
            context=str(archive),
            hint="Download it again (a cached copy is re-verified), or give another archive.",
        ) from exc
    return members


def _check_tar_end(tf: tarfile.TarFile, archive: Path, count: int) -> None:
    """tarfile stops silently where the data ends: a complete tar ends with a zero block, and a compressed one
    with its stream's end marker (reading on to it raises EOFError when the download was cut)."""
    f: Any = tf.fileobj
    if isinstance(f, gzip.GzipFile | lzma.LZMAFile | bz2.BZ2File):
        while f.read(_CHUNK):  # forward only: the padding after the end block, then the stream's trailer
            pass
        return
    f.seek(tf.offset)
    if f.read(tarfile.BLOCKSIZE) != tarfile.NUL * tarfile.BLOCKSIZE:
        raise _incomplete(archive, f"it ends after {count} member(s) without tar's end-of-archive block")


class _MemIO(py7zr.io.Py7zIO):
    def __init__(self, limit: int) -> None:
        self._buf = bytearray()
        self._limit = limit

    def write(self, s: bytes | bytearray) -> int:
        if len(self._buf) + len(s) > self._limit:
            raise ArchiveError("a symbolic link target is too long")
        self._buf += s
        return len(s)

    def read(self, size: int | None = None) -> bytes:
        return bytes(self._buf)

    def seek(self, offset: int, whence: int = 0) -> int:
        return 0

    def flush(self) -> None:
        pass

    def size(self) -> int:
        return len(self._buf)


def _read_7z_links(archive: Path, names: list[str]) -> dict[str, str]:
    """A 7z symlink's target is its content: read just those members into memory."""
    bufs: dict[str, _MemIO] = {}

    class Factory(py7zr.io.WriterFactory):
        def create(self, filename: str) -> py7zr.io.Py7zIO:
            io = _MemIO(_MAX_LINK_TARGET)
            bufs[filename.replace("\\", "/")] = io
            return io

    with py7zr.SevenZipFile(archive) as sz:
        sz.extract(targets=names, factory=Factory())
    out: dict[str, str] = {}
    for key, io in bufs.items():
        for n in names:
            if key == n or key.endswith("/" + n):
                out[n] = io.read().decode("utf-8", "replace")
    return out


# --- extraction ----------------------------------------------------------------------------------------------------


class _Counter:
    """Bytes written so far, checked against the declared size of a member and the total limit."""

    def __init__(self, archive: Path, limits: ArchiveLimits, cancel: CancelToken | None) -> None:
        self.archive = archive
        self.limits = limits
        self.total = 0
        self.files = 0
        self.cancel = cancel

    def add(self, name: str, n: int, written: int, declared: int) -> None:
        self.total += n
        if written > declared:
            raise _unsafe(self.archive, "a member unpacks to more bytes than its header declares", name)
        if self.total > self.limits.max_total_bytes:
            raise _unsafe(self.archive, "it unpacks to more than the size limit (archive bomb?)", name)
        if self.cancel is not None:
            self.cancel.raise_if_cancelled()


def _open_new(path: Path, executable: bool) -> IO[bytes]:
    path.parent.mkdir(parents=True, exist_ok=True)
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0) | getattr(os, "O_NOFOLLOW", 0)
    fd = os.open(path, flags, 0o755 if executable else 0o644)
    return os.fdopen(fd, "wb")


def _copy_stream(src: IO[bytes], dest: Path, m: Member, counter: _Counter) -> None:
    written = 0
    with _open_new(dest, m.executable) as out:
        while chunk := src.read(_CHUNK):
            written += len(chunk)
            counter.add(m.name, len(chunk), written, m.size)
            out.write(chunk)
    if written < m.size:
        raise _incomplete(counter.archive, f"{m.name} has {written} of its {m.size} bytes")
    counter.files += 1


class _DiskIO(py7zr.io.Py7zIO):
    def __init__(self, dest: Path, m: Member, counter: _Counter) -> None:
        self._fp = _open_new(dest, m.executable)
        self._m = m
        self._counter = counter
        self._written = 0

    def write(self, s: bytes | bytearray) -> int:
        self._written += len(s)
        self._counter.add(self._m.name, len(s), self._written, self._m.size)
        return self._fp.write(s)

    def read(self, size: int | None = None) -> bytes:
        return b""

    def seek(self, offset: int, whence: int = 0) -> int:
        return self._fp.seek(offset, whence)

    def flush(self) -> None:
        self._fp.flush()

    def size(self) -> int:
        return self._written

    def close(self) -> None:
        if not self._fp.closed:
            self._fp.close()
            self._counter.files += 1


def _extract_7z(archive: Path, staging: Path, by_name: dict[str, Member], counter: _Counter) -> None:
    opened: list[_DiskIO] = []
    scratch = Path(os.path.abspath(staging / ".7z-scratch"))  # py7zr may create folders under the path it is given

    class Factory(py7zr.io.WriterFactory):
        def create(self, filename: str) -> py7zr.io.Py7zIO:
            full = Path(os.path.abspath(filename))
            rel = full.relative_to(scratch).as_posix() if full.is_relative_to(scratch) else filename
            m = by_name.get(safe_member_name(rel, archive))
            if m is None or m.kind != "file":
                return py7zr.io.NullIO()  # type: ignore[no-untyped-call]
            io = _DiskIO(staging / m.name, m, counter)
            opened.append(io)
            return io

    files = [name for name, m in by_name.items() if m.kind == "file"]
    try:
        if files:
            with py7zr.SevenZipFile(archive) as sz:
                sz.extract(path=scratch, targets=files, factory=Factory())
    finally:
        for io in opened:
            io.close()
        with contextlib.suppress(OSError):
            shutil.rmtree(scratch)


def extract_archive(
    archive: Path,
    staging: Path,
    *,
    limits: ArchiveLimits | None = None,
    cancel: CancelToken | None = None,
    require_manifest: bool = True,
) -> ExtractResult:
    """Check, then extract `archive` into the new folder `staging`; return where the backend folder is.

    Raises:
        UnsafeArchiveError: refused by a check (nothing is written outside `staging`).
        ArchiveError: unreadable archive, or no backend-manifest.json where one must be.
    """
    limits = limits or ArchiveLimits()
    members = list_members(archive, limits)
    check_members(members, archive, limits)
    check_ratio_and_space(members, archive, limits, staging)
    staging.mkdir(parents=True, exist_ok=False)
    counter = _Counter(archive, limits, cancel)
    by_name = {m.name: m for m in members if m.name}
    for m in members:
        if m.kind == "dir" and m.name:
            (staging / m.name).mkdir(parents=True, exist_ok=True)
    fmt = archive_format(archive)
    try:
        if fmt == "zip":
            with zipfile.ZipFile(archive) as zf:
                for info in zf.infolist():
                    zm = by_name.get(safe_member_name(info.filename, archive))
                    if zm is not None and zm.kind == "file":
                        with zf.open(info) as zsrc:
                            _copy_stream(zsrc, staging / zm.name, zm, counter)
        elif fmt == "tar":
            with tarfile.open(archive, "r:*") as tf:
                for ti in tf:
                    tm = by_name.get(safe_member_name(ti.name, archive))
                    if tm is None or tm.kind != "file":
                        continue
                    tsrc = tf.extractfile(ti)
                    if tsrc is None:
                        continue
                    with tsrc:
                        _copy_stream(tsrc, staging / tm.name, tm, counter)
        else:
            _extract_7z(archive, staging, by_name, counter)
    except (UnsafeArchiveError, ArchiveError):
        raise
    except _READ_ERRORS as exc:
        raise ArchiveError(
            f"{archive.name} is damaged, encrypted or uses an unsupported compression: {exc}",
            context=str(archive),
            hint="Download it again, or give another archive.",
        ) from exc
    for m in members:
        if m.kind == "symlink":
            _make_link(staging, m)
    root, nested = find_backend_root(staging) if require_manifest else (staging, False)
    return ExtractResult(staging=staging, root=root, nested=nested, files=counter.files, total_bytes=counter.total)


def _make_link(staging: Path, m: Member) -> None:
    link = staging / m.name
    link.parent.mkdir(parents=True, exist_ok=True)
    target = m.link.replace("\\", "/")
    try:
        os.symlink(target, link)
    except OSError:
        # No symlink privilege (Windows): a copy of the (already checked, in-archive) target does the job.
        src = (link.parent / target).resolve()
        if src.is_file() and src.is_relative_to(staging.resolve()):
            shutil.copy2(src, link)


def find_backend_root(folder: Path) -> tuple[Path, bool]:
    """The folder that holds backend-manifest.json: `folder` itself or its single sub-folder.

    Returns:
        (root, nested) where nested says the single sub-folder was used.

    Raises:
        ArchiveError: no manifest at either level.
    """
    if (folder / MANIFEST).is_file():
        return folder, False
    entries = [p for p in folder.iterdir() if p.name not in IGNORED_TOP_LEVEL and p.name != ".7z-scratch"]
    if len(entries) == 1 and entries[0].is_dir() and not entries[0].is_symlink():
        inner = entries[0]
        if (inner / MANIFEST).is_file():
            return inner, True
    raise ArchiveError(
        f"No {MANIFEST} found in {folder.name} (looked at the top level and one folder down).",
        context=str(folder),
        hint="This is not an LM Studio backend. A backend folder has backend-manifest.json at its top level.",
    )
