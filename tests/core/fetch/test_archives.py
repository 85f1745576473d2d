"""Archive extraction: real zip/tar/7z archives of a backend folder, and crafted malicious ones.

Each malicious archive is built in the test in all three formats (where the format can express the
attack), must be refused with a clear message, and nothing may appear outside the staging folder.
"""

from __future__ import annotations

import io
import os
import stat
import tarfile
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path

import py7zr
import py7zr.archiveinfo
import py7zr.py7zr
import pytest

from app.core.fetch.archives import (
    ArchiveLimits,
    extract_archive,
    find_backend_root,
    list_members,
)
from app.core.fetch.errors import ArchiveError, UnsafeArchiveError
from tests.conftest import persistent_test_cache
from tests.core.fetch.backend_folder import make_backend_folder, tree

GB = 1 << 30


# --- writers: (path, [(name, kind, data/target)]) for each format ------------------------------------------------

Entry = tuple[str, str, bytes]  # (name, "file"|"dir"|"symlink"|"hardlink"|"chardev", data or link target)


def write_zip(path: Path, entries: list[Entry]) -> None:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, kind, data in entries:
            zi = zipfile.ZipInfo(name)
            zi.create_system = 3
            mode = {"file": stat.S_IFREG | 0o644, "dir": stat.S_IFDIR | 0o755, "symlink": stat.S_IFLNK | 0o777,
                    "chardev": stat.S_IFCHR | 0o600}[kind]
            zi.external_attr = mode << 16
            zf.writestr(zi, data)


def write_tar(path: Path, entries: list[Entry]) -> None:
    with tarfile.open(path, "w:gz") as tf:
        for name, kind, data in entries:
            ti = tarfile.TarInfo(name)
            if kind == "file":
                ti.size = len(data)
                tf.addfile(ti, io.BytesIO(data))
                continue
            ti.type = {"dir": tarfile.DIRTYPE, "symlink": tarfile.SYMTYPE, "hardlink": tarfile.LNKTYPE,
                       "chardev": tarfile.CHRTYPE}[kind]
            ti.linkname = data.decode()
            tf.addfile(ti)


def write_7z(path: Path, entries: list[Entry], monkeypatch: pytest.MonkeyPatch) -> None:
    # py7zr refuses to *write* bad names; bypass its check so we can build the attack.
    monkeypatch.setattr(py7zr.py7zr, "check_archive_path", lambda name: True)
    monkeypatch.setattr(py7zr.py7zr, "get_sanitized_output_path", lambda name, path: Path(name), raising=False)
    with py7zr.SevenZipFile(path, "w") as z:
        for name, kind, data in entries:
            z.writestr(data, name)
            if kind != "file":
                mode = {"symlink": stat.S_IFLNK | 0o777, "chardev": stat.S_IFCHR | 0o600}[kind]
                z.header.files_info.files[-1]["attributes"] = 0x20 | 0x8000 | (mode << 16)
    monkeypatch.undo()


WRITERS = ["zip", "tar", "7z"]
EXT = {"zip": ".zip", "tar": ".tar.gz", "7z": ".7z"}


@pytest.fixture
def write(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[[str, list[Entry]], Path]:
    def _write(fmt: str, entries: list[Entry]) -> Path:
        path = tmp_path / ("evil" + EXT[fmt])
        if fmt == "zip":
            write_zip(path, entries)
        elif fmt == "tar":
            write_tar(path, entries)
        else:
            write_7z(path, entries, monkeypatch)
        return path

    return _write


def snapshot(d: Path) -> set[str]:
    return {p.relative_to(d).as_posix() for p in d.rglob("*")}


@pytest.fixture
def sandbox(tmp_path: Path) -> Iterator[tuple[Path, Path]]:
    """(outer, staging): outer holds staging; after a refused extract, nothing new may be in outer."""
    outer = tmp_path / "outer"
    outer.mkdir()
    yield outer, outer / "staging"


BENIGN: list[Entry] = [("pkg/backend-manifest.json", "file", b"{}")]


# --- good archives ---------------------------------------------------------------------------------------------------


def make_real_archive(fmt: str, folder: Path, dest: Path) -> Path:
    """The way users get them: the folder itself as the single top-level entry."""
    base = folder.parent
    if fmt == "zip":
        with zipfile.ZipFile(dest, "w", zipfile.ZIP_DEFLATED) as zf:
            for p in sorted(folder.rglob("*")):
                arc = p.relative_to(base).as_posix()
                if p.is_symlink():
                    zi = zipfile.ZipInfo(arc)
                    zi.create_system = 3
                    zi.external_attr = (stat.S_IFLNK | 0o777) << 16
                    zf.writestr(zi, os.readlink(p))
                else:
                    zf.write(p, arc)
    elif fmt == "tar":
        with tarfile.open(dest, "w:xz") as tf:
            tf.add(folder, folder.name)
    else:
        with py7zr.SevenZipFile(dest, "w") as z:
            z.writeall(folder, folder.name)
    return dest


@pytest.mark.parametrize("fmt", WRITERS)
def test_real_archive_round_trips_and_nested_folder_is_normalised(fmt: str, tmp_path: Path) -> None:
    folder = make_backend_folder(tmp_path / "src")
    archive = make_real_archive(fmt, folder, tmp_path / ("b" + EXT[fmt].replace(".gz", ".xz")))
    res = extract_archive(archive, tmp_path / "staging")
    assert res.nested and res.root == tmp_path / "staging" / folder.name
    assert tree(res.root) == tree(folder)  # bytes, exec bits and the .so symlink survive
    assert res.files == 6


def test_flat_archive_is_its_own_root(tmp_path: Path) -> None:
    folder = make_backend_folder(tmp_path / "src")
    with tarfile.open(tmp_path / "flat.tar.gz", "w:gz") as tf:
        for p in folder.iterdir():
            tf.add(p, p.name)
    res = extract_archive(tmp_path / "flat.tar.gz", tmp_path / "st")
    assert not res.nested and res.root == tmp_path / "st"
    assert tree(res.root) == tree(folder)


def test_archive_without_manifest_is_refused(tmp_path: Path) -> None:
    write_zip(tmp_path / "x.zip", [("a/b/backend-manifest.json", "file", b"{}")])  # two levels: not normalised
    with pytest.raises(ArchiveError, match=r"No backend-manifest\.json"):
        extract_archive(tmp_path / "x.zip", tmp_path / "st")


def test_not_an_archive(tmp_path: Path) -> None:
    (tmp_path / "x.7z").write_bytes(b"hello, this is not 7z")
    with pytest.raises(ArchiveError, match="damaged or not a supported archive"):
        extract_archive(tmp_path / "x.7z", tmp_path / "st")
    (tmp_path / "x.bin").write_bytes(b"just some text " * 40)
    with pytest.raises(ArchiveError):
        list_members(tmp_path / "x.bin")


def test_find_backend_root_ignores_macos_junk(tmp_path: Path) -> None:
    folder = make_backend_folder(tmp_path / "st")
    (tmp_path / "st" / "__MACOSX").mkdir()
    assert find_backend_root(tmp_path / "st") == (folder, True)


# --- malicious archives -----------------------------------------------------------------------------------------------

ATTACKS: dict[str, tuple[list[Entry], str]] = {
    "zip-slip": ([*BENIGN, ("pkg/../../evil.txt", "file", b"pwned")], "'..'"),
    "absolute": ([*BENIGN, ("/tmp/lms-unlocked-evil.txt", "file", b"pwned")], "absolute path"),
    "drive-letter": ([*BENIGN, ("C:/evil.txt", "file", b"pwned")], "absolute path"),
    "symlink-escape": ([*BENIGN, ("pkg/lib", "symlink", b"../../../etc")], "outside the archive"),
    "symlink-absolute": ([*BENIGN, ("pkg/lib", "symlink", b"/etc/passwd")], "absolute path"),
    "write-through-symlink": (
        [*BENIGN, ("pkg/lib", "symlink", b"sub"), ("pkg/lib/x", "file", b"x")],
        "through a symbolic link",
    ),
    "device": ([*BENIGN, ("pkg/null", "chardev", b"")], "device file"),
}


@pytest.mark.parametrize("fmt", WRITERS)
@pytest.mark.parametrize("attack", list(ATTACKS))
def test_malicious_archive_refused(
    fmt: str, attack: str, write: Callable[[str, list[Entry]], Path], sandbox: tuple[Path, Path]
) -> None:
    entries, message = ATTACKS[attack]
    if fmt == "tar" and attack == "device":
        entries = [*BENIGN, ("pkg/null", "chardev", b"")]
    archive = write(fmt, entries)
    outer, staging = sandbox
    with pytest.raises(UnsafeArchiveError) as ei:
        extract_archive(archive, staging)
    assert message in ei.value.message
    assert ei.value.message.startswith(f"Refusing to extract {archive.name}")
    assert "Nothing was installed" in ei.value.hint
    assert snapshot(outer) == set()  # refused before anything was written, even the staging folder
    assert not Path("/tmp/lms-unlocked-evil.txt").exists()


def test_tar_hard_link_refused(write: Callable[[str, list[Entry]], Path], sandbox: tuple[Path, Path]) -> None:
    """Only tar can express a hard link (zip and 7z have no such member type)."""
    archive = write("tar", [*BENIGN, ("pkg/passwd", "hardlink", b"/etc/passwd")])
    outer, staging = sandbox
    with pytest.raises(UnsafeArchiveError, match="hard link"):
        extract_archive(archive, staging)
    archive = write("tar", [*BENIGN, ("pkg/copy", "hardlink", b"pkg/backend-manifest.json")])
    with pytest.raises(UnsafeArchiveError, match="hard link"):  # even one pointing inside
        extract_archive(archive, staging)
    assert snapshot(outer) == set()


def _zip_claiming(path: Path, claim_each: int, n: int) -> None:
    """A zip whose central directory claims `claim_each` bytes for each of n tiny members."""
    write_zip(path, [*BENIGN, *[(f"pkg/big{i}.bin", "file", b"x" * 10) for i in range(n)]])
    data = bytearray(path.read_bytes())
    pos = 0
    while (pos := data.find(b"PK\x01\x02", pos)) != -1:
        name_len = int.from_bytes(data[pos + 28 : pos + 30], "little")
        name = bytes(data[pos + 46 : pos + 46 + name_len])
        if name.startswith(b"pkg/big"):
            data[pos + 24 : pos + 28] = claim_each.to_bytes(4, "little")
        pos += 4
    path.write_bytes(bytes(data))


def _tar_claiming(path: Path, claim: int) -> None:
    """A tar.gz whose last header claims `claim` bytes (the data is not there)."""
    with tarfile.open(path, "w:gz") as tf:
        ti = tarfile.TarInfo("pkg/backend-manifest.json")
        ti.size = 2
        tf.addfile(ti, io.BytesIO(b"{}"))
        big = tarfile.TarInfo("pkg/big.bin")
        big.size = claim
        tf.fileobj.write(big.tobuf(tarfile.GNU_FORMAT))  # type: ignore[union-attr]
        tf.fileobj.write(b"\0" * 1024)  # type: ignore[union-attr]


def _7z_claiming(path: Path, claim: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """A 7z whose header claims `claim` bytes of unpacked data for a tiny member."""
    real_write = py7zr.archiveinfo.UnpackInfo.write

    def lying_write(self: py7zr.archiveinfo.UnpackInfo, file: object) -> None:
        for folder in self.folders:
            if folder.unpacksizes and folder.unpacksizes[-1] == 10:
                folder.unpacksizes = [claim for _ in folder.unpacksizes]
        real_write(self, file)

    monkeypatch.setattr(py7zr.archiveinfo.UnpackInfo, "write", lying_write)
    with py7zr.SevenZipFile(path, "w") as z:
        z.writestr(b"{}", "pkg/backend-manifest.json")
    with py7zr.SevenZipFile(path, "a") as z:  # a folder of its own, so its size is the folder's size
        z.writestr(b"x" * 10, "pkg/big.bin")
    monkeypatch.undo()


@pytest.mark.parametrize("fmt", WRITERS)
def test_10gb_bomb_claim_refused_before_writing(
    fmt: str, tmp_path: Path, sandbox: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / ("bomb" + EXT[fmt])
    if fmt == "zip":
        _zip_claiming(path, 3_500_000_000, 3)  # 3 x 3.5 GB = 10.5 GB claimed
    elif fmt == "tar":
        _tar_claiming(path, 10 * 10**9)
    else:
        _7z_claiming(path, 10 * 10**9, monkeypatch)
    outer, staging = sandbox
    with pytest.raises(UnsafeArchiveError, match="archive bomb"):
        extract_archive(path, staging)
    assert snapshot(outer) == set()


def _many_files_archive(fmt: str, n: int) -> Path:
    """A real archive of n empty files, built once and kept in the persistent test cache (7z takes ~10 s)."""
    path = persistent_test_cache() / "fetch-archives" / f"many-{n}{EXT[fmt]}"
    if path.exists():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp" + EXT[fmt])
    if fmt == "zip":
        with zipfile.ZipFile(tmp, "w") as zf:
            for i in range(n):
                zf.writestr(f"pkg/f{i}", b"")
    elif fmt == "tar":
        with tarfile.open(tmp, "w:gz", compresslevel=1) as tf:
            for i in range(n):
                tf.addfile(tarfile.TarInfo(f"pkg/f{i}"), io.BytesIO(b""))
    else:
        with py7zr.SevenZipFile(tmp, "w") as z:
            for i in range(n):
                z.writestr(b"", f"pkg/f{i}")
    os.replace(tmp, path)
    return path


@pytest.mark.parametrize("fmt", WRITERS)
def test_100k_files_refused(fmt: str, tmp_path: Path, sandbox: tuple[Path, Path]) -> None:
    path = _many_files_archive(fmt, 100_000)
    outer, staging = sandbox
    with pytest.raises(UnsafeArchiveError, match=r"more than (the limit of )?20000"):
        extract_archive(path, staging)
    assert snapshot(outer) == set()


@pytest.mark.parametrize("fmt", ["zip", "7z"])
def test_header_lying_small_cannot_inflate(fmt: str, tmp_path: Path, sandbox: tuple[Path, Path],
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """Declared 100 bytes, really 1 MB: the byte counter stops at the declared size (or the reader fails)."""
    path = tmp_path / ("liar" + EXT[fmt])
    if fmt == "zip":
        write_zip(path, [*BENIGN, ("pkg/big.bin", "file", b"A" * 1_000_000)])
        data = bytearray(path.read_bytes())
        pos = data.rfind(b"PK\x01\x02")
        data[pos + 24 : pos + 28] = (100).to_bytes(4, "little")
        path.write_bytes(bytes(data))
    else:
        _7z_small_claim(path, monkeypatch)
    outer, staging = sandbox
    with pytest.raises((UnsafeArchiveError, ArchiveError)):
        extract_archive(path, staging)
    big = staging / "pkg" / "big.bin"
    assert not big.exists() or big.stat().st_size <= 100
    assert {p.split("/")[0] for p in snapshot(outer)} <= {"staging"}


def _7z_small_claim(path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real_write = py7zr.archiveinfo.UnpackInfo.write

    def lying_write(self: py7zr.archiveinfo.UnpackInfo, file: object) -> None:
        for folder in self.folders:
            if folder.unpacksizes and folder.unpacksizes[-1] == 1_000_000:
                folder.unpacksizes = [100 for _ in folder.unpacksizes]
        real_write(self, file)

    monkeypatch.setattr(py7zr.archiveinfo.UnpackInfo, "write", lying_write)
    with py7zr.SevenZipFile(path, "w") as z:
        z.writestr(b"{}", "pkg/backend-manifest.json")
    with py7zr.SevenZipFile(path, "a") as z:
        z.writestr(b"A" * 1_000_000, "pkg/big.bin")
    monkeypatch.undo()


def test_limits_are_configurable(tmp_path: Path) -> None:
    folder = make_backend_folder(tmp_path / "src")
    archive = make_real_archive("tar", folder, tmp_path / "b.tar.xz")
    with pytest.raises(UnsafeArchiveError, match="more than"):
        extract_archive(archive, tmp_path / "st", limits=ArchiveLimits(max_files=3))
    with pytest.raises(UnsafeArchiveError, match="archive bomb"):
        extract_archive(archive, tmp_path / "st2", limits=ArchiveLimits(max_total_bytes=1000))


def test_windows_separators_are_normalised_and_checked(tmp_path: Path) -> None:
    path = tmp_path / "win.zip"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("pkg\\backend-manifest.json", b"{}")
        zf.writestr("pkg\\sub\\ggml.dll", b"MZ")
    res = extract_archive(path, tmp_path / "st")
    assert res.nested and (res.root / "sub" / "ggml.dll").read_bytes() == b"MZ"
    evil = tmp_path / "evil.zip"
    with zipfile.ZipFile(evil, "w") as zf:
        zf.writestr("pkg\\backend-manifest.json", b"{}")
        zf.writestr("pkg\\..\\..\\evil.dll", b"MZ")
    with pytest.raises(UnsafeArchiveError, match=r"'\.\.'"):
        extract_archive(evil, tmp_path / "st2")
    assert not (tmp_path / "st2").exists()


@pytest.mark.parametrize("fmt", WRITERS)
def test_relative_staging_path_and_empty_files(fmt: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = make_backend_folder(tmp_path / "src", payload=1000)
    (folder / "empty.marker").write_bytes(b"")
    archive = make_real_archive(fmt, folder, tmp_path / ("b" + EXT[fmt]))
    monkeypatch.chdir(tmp_path)
    res = extract_archive(archive, Path("staging"))
    assert tree(res.root) == tree(folder)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["src", archive.name, "staging"])


def test_encrypted_7z_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "enc.7z"
    with py7zr.SevenZipFile(path, "w", password="secret", header_encryption=True) as z:
        z.writestr(b"{}", "pkg/backend-manifest.json")
    with pytest.raises(ArchiveError, match=r"encrypted|damaged"):
        extract_archive(path, tmp_path / "st")
