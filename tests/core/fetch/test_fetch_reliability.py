"""Issue #14 items 4, 6, 7 for downloads and archives: stalls, cut downloads without Content-Length, bombs by
ratio, free space (a real small tmpfs), names with a newline, a file and a folder at one path."""

from __future__ import annotations

import io
import os
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

from app.core.fetch.archives import ArchiveLimits, extract_archive
from app.core.fetch.download import RetryPolicy, download_file
from app.core.fetch.errors import ArchiveError, DownloadError, UnsafeArchiveError
from app.core.fetch.obtain import execute_obtain, plan_from
from app.core.lmstudio.backends import list_backends
from tests.conftest import REPO
from tests.httpserver import Fault, LocalHTTPServer
from tests.lmstudio_homes import make_home, prepare_our_backend, tree_hashes
from tests.mounts import mount_namespace_problem, run_with_mounts, tmpfs

MiB = 1 << 20


def _tar(path: Path, entries: list[tuple[str, str, bytes]], mode: str = "w") -> Path:
    with tarfile.open(path, mode) as tf:
        for name, kind, data in entries:
            ti = tarfile.TarInfo(name)
            if kind == "file":
                ti.size = len(data)
                tf.addfile(ti, io.BytesIO(data))
            elif kind == "dir":
                ti.type = tarfile.DIRTYPE
                tf.addfile(ti)
            else:
                ti.type, ti.linkname = tarfile.SYMTYPE, data.decode()
                tf.addfile(ti)
    return path


MANIFEST = ("pkg/backend-manifest.json", "file", b"{}")


@pytest.mark.parametrize(
    ("entries", "message"),
    [
        ([MANIFEST, ("pkg/evil\nname.so", "file", b"x")], "control character"),
        ([MANIFEST, ("pkg/lib", "file", b"x"), ("pkg/lib/inner.so", "file", b"y")], "a file and a folder"),
        ([MANIFEST, ("pkg/lib", "file", b"x"), ("pkg/lib", "dir", b"")], "a file and a folder"),
    ],
    ids=["newline", "file-then-folder", "file-and-dir-entry"],
)
@pytest.mark.parametrize("fmt", ["tar", "zip"])
def test_ambiguous_names_are_refused(tmp_path: Path, fmt: str, entries: list[tuple[str, str, bytes]],
                                     message: str) -> None:
    if fmt == "tar":
        archive = _tar(tmp_path / "a.tar.gz", entries, "w:gz")
    else:
        archive = tmp_path / "a.zip"
        with zipfile.ZipFile(archive, "w") as zf:
            for name, kind, data in entries:
                zf.writestr(name + ("/" if kind == "dir" else ""), data)
    with pytest.raises(UnsafeArchiveError, match=message):
        extract_archive(archive, tmp_path / "staging")
    assert not (tmp_path / "staging").exists()


def _backend_tar_cut_before(tmp_path: Path, last: str) -> tuple[Path, bytes]:
    """An uncompressed tar of a real backend folder with ``last`` as its final member, and the same bytes
    cut where that member starts (what a download without Content-Length leaves when the connection drops)."""
    folder = prepare_our_backend(tmp_path / "src")
    names = sorted(os.listdir(folder), key=lambda n: (n == last, n))
    whole = tmp_path / "whole.tar"
    with tarfile.open(whole, "w", format=tarfile.GNU_FORMAT) as tf:
        for n in names:
            tf.add(folder / n, f"{folder.name}/{n}", recursive=True)
    with tarfile.open(whole) as tf:
        cut = next(ti.offset for ti in tf.getmembers() if ti.name.endswith("/" + last))
    return whole, whole.read_bytes()[:cut]


def test_a_cut_uncompressed_tar_is_refused_not_installed_with_a_dangling_library(tmp_path: Path) -> None:
    home = make_home(tmp_path)
    before = tree_hashes(home, exclude=(".lms-unlocked",))
    whole, cut = _backend_tar_cut_before(tmp_path, "libggml-cpu.so.0.0.8861")
    with LocalHTTPServer() as srv:
        srv.add("/b.tar", whole.read_bytes())
        srv.set_fault("/b.tar", Fault(no_length=True, drop_after=len(cut)))
        plan = plan_from(srv.url("/b.tar"), home=home)
        with pytest.raises(ArchiveError, match="incomplete") as ei:
            execute_obtain(plan, policy=RetryPolicy(attempts=1), cache_root=tmp_path / "cache")
    assert "end-of-archive" in ei.value.message and "--sha256" in ei.value.hint
    assert tree_hashes(home, exclude=(".lms-unlocked",)) == before
    staging = home / ".lms-unlocked" / "staging"
    assert not staging.exists() or list(staging.iterdir()) == []  # unpacked next to the home, then removed
    assert not any(b.ours for b in list_backends(home))
    # cut inside a member: also refused (tarfile reads short data), and a complete archive installs
    mid = tmp_path / "mid.tar"
    mid.write_bytes(whole.read_bytes()[: len(cut) + 700])
    with pytest.raises(ArchiveError):
        extract_archive(mid, tmp_path / "staging-mid")
    res = extract_archive(whole, tmp_path / "staging-ok")
    assert (res.root / "libggml-cpu.so").resolve().is_file()


def test_a_cut_gzip_tar_is_refused(tmp_path: Path) -> None:
    folder = prepare_our_backend(tmp_path / "src")
    tgz = tmp_path / "b.tar.gz"
    with tarfile.open(tgz, "w:gz") as tf:
        tf.add(folder, folder.name)
    cut = tmp_path / "cut.tar.gz"
    cut.write_bytes(tgz.read_bytes()[:-40])
    with pytest.raises(ArchiveError, match="damaged"):
        extract_archive(cut, tmp_path / "staging")


def test_a_symlink_to_an_absent_member_is_refused(tmp_path: Path) -> None:
    archive = _tar(tmp_path / "a.tar", [MANIFEST, ("pkg/libx.so", "symlink", b"libx.so.0")])
    with pytest.raises(ArchiveError, match=r"libx\.so\.0, which is not in it"):
        extract_archive(archive, tmp_path / "staging")


def test_compression_ratio_bomb_is_refused_with_default_limits(tmp_path: Path) -> None:
    """A ~100 KB zip that unpacks to 100 MiB (the issue's 1 MB -> 1 GiB, smaller): refused before writing."""
    archive = tmp_path / "bomb.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("pkg/backend-manifest.json", b"{}")
        with zf.open("pkg/zeros.bin", "w", force_zip64=True) as f:
            for _ in range(100):
                f.write(bytes(MiB))
    assert archive.stat().st_size < MiB
    with pytest.raises(UnsafeArchiveError, match="ratio of") as ei:
        extract_archive(archive, tmp_path / "staging")
    assert "limit of 100:1" in ei.value.message
    assert not (tmp_path / "staging").exists()
    extract_archive(archive, tmp_path / "ok", limits=ArchiveLimits(max_ratio=10_000))  # a limit, not a ban


_EXTRACT = r"""
import sys
from pathlib import Path
from app.core.fetch.archives import extract_archive
from app.core.fetch.errors import ArchiveError
try:
    extract_archive(Path(sys.argv[1]), Path(sys.argv[2]) / "staging")
except ArchiveError as exc:
    print("REFUSED", exc.message)
    print("HINT", exc.hint)
    sys.exit(3)
print("EXTRACTED")
"""


@pytest.mark.skipif(bool(mount_namespace_problem()), reason=mount_namespace_problem() or "n/a")
def test_free_space_is_checked_before_unpacking_on_a_real_small_disk(tmp_path: Path) -> None:
    archive = tmp_path / "big.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_STORED) as zf:  # stored: no ratio, just size
        zf.writestr("pkg/backend-manifest.json", b"{}")
        zf.writestr("pkg/lib.so", os.urandom(12 * MiB))
    disk = tmp_path / "small-disk"
    disk.mkdir()
    r = run_with_mounts([tmpfs(disk, "8m")], [sys.executable, "-c", _EXTRACT, str(archive), str(disk)], cwd=REPO)
    assert r.returncode == 3, r.stdout + r.stderr
    assert f"in {disk}" in r.stdout and "MiB are free" in r.stdout and "Free " in r.stdout
    r = run_with_mounts([tmpfs(disk, "200m")], [sys.executable, "-c", _EXTRACT, str(archive), str(disk)], cwd=REPO)
    assert r.returncode == 0 and "EXTRACTED" in r.stdout, r.stdout + r.stderr


def test_a_slow_drip_server_times_out_with_a_clear_message(tmp_path: Path) -> None:
    """64 bytes every 50 ms never trips a 2 s read timeout; the stall window (1 s, 16 KiB) does."""
    payload = os.urandom(256 * 1024)
    policy = RetryPolicy(attempts=2, backoff_s=0.01, read_timeout_s=2, stall_window_s=1.0, stall_min_bytes=16 * 1024)
    with LocalHTTPServer() as srv:
        srv.add("/slow.tar", payload)
        srv.set_fault("/slow.tar", Fault(drip=0.05, times=None))
        with pytest.raises(DownloadError) as ei:
            download_file([srv.url("/slow.tar")], tmp_path / "slow.tar", sha256=None, policy=policy)
    assert "stalled" in ei.value.message and "too slow" in ei.value.message
    assert "(at " in ei.value.details


_STAGER = r"""
import os, signal, sys, time
from app.core.fetch.obtain import staging_area
with staging_area() as d:
    d.mkdir()
    (d / "half-extracted.so").write_bytes(b"x" * 1000)
    print(d, flush=True)
    if sys.argv[1] == "die":
        os.kill(os.getpid(), signal.SIGKILL)
    time.sleep(120)
"""


def test_stale_staging_of_a_killed_install_is_cleaned_at_the_next_start(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Real processes: one killed inside its staging area (SIGKILL, like a killed archive install), one alive."""
    import subprocess

    from app.core.fetch.obtain import staging_area, staging_root

    monkeypatch.setenv("LMS_UNLOCKED_DATA_DIR", str(tmp_path / "data"))
    env = dict(os.environ)
    dead = subprocess.run([sys.executable, "-c", _STAGER, "die"], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=60)
    assert dead.returncode == -9
    stale = Path(dead.stdout.strip())
    assert stale.is_dir() and stale.parent == staging_root()
    live = subprocess.Popen([sys.executable, "-c", _STAGER, "live"], cwd=REPO, env=env, stdout=subprocess.PIPE,
                            text=True)
    try:
        assert live.stdout is not None
        busy = Path(live.stdout.readline().strip())
        with staging_area() as mine:
            assert not stale.exists() and not Path(str(stale) + ".lock").exists()  # the killed one: gone
            assert busy.is_dir()  # the running one: untouched
            assert mine.parent == staging_root()
    finally:
        live.kill()
        live.wait()
    with staging_area():
        assert not busy.exists()
    assert list(staging_root().iterdir()) == []
