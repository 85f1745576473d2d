"""End to end: folder / archive / URL / catalog -> staging -> transactional install into a temp LM Studio home.

After every scenario the LM Studio home and the cache are checked: the backend is either fully installed
or not there at all, staging is empty, and a `.part` exists only where a later resume is expected.
"""

from __future__ import annotations

import hashlib
import tarfile
from pathlib import Path

import py7zr
import pytest

from app.core.errors import CancelledError
from app.core.fetch.download import DownloadProgress, RetryPolicy
from app.core.fetch.errors import CatalogError, ChecksumMismatch, DownloadError, UnsafeArchiveError
from app.core.fetch.obtain import execute_obtain, plan_from, plan_from_catalog
from app.core.fetch.publish import publish
from app.core.lmstudio.backends import list_backends
from app.core.lmstudio.provenance import read_provenance
from app.core.runner import CancelToken
from tests.conftest import FIXTURES
from tests.core.fetch.backend_folder import make_backend_folder, staging_empty, tree
from tests.core.fetch.reports import ivybridge_with_vulkan_gpu
from tests.httpserver import Fault, LocalHTTPServer
from tests.lmstudio_homes import make_home

FAST = RetryPolicy(attempts=2, backoff_s=0.01, max_backoff_s=0.02, read_timeout_s=2)
TEST_KEY = FIXTURES / "TEST-ONLY-catalog-signing.key"
TEST_PUB = FIXTURES / "TEST-ONLY-catalog-signing.pub"
IDENT = "llama.cpp-linux-x86_64-vulkan-avx1-unlocked@2.14.0"


def backends_in(home: Path) -> list[str]:
    return sorted(p.name for p in (home / "extensions" / "backends").iterdir() if p.name != "vendor")


def cache_files(cache: Path) -> set[str]:
    return {p.name for p in cache.rglob("*") if p.is_file()} if cache.exists() else set()


@pytest.fixture
def home(tmp_path: Path) -> Path:
    return make_home(tmp_path)


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    return make_backend_folder(tmp_path / "src", payload=700_000)


@pytest.fixture
def archive(tmp_path: Path, folder: Path) -> Path:
    path = tmp_path / "pack.7z"
    # Stored (no compression): random stand-in bytes do not compress, and LZMA on them is slow.
    with py7zr.SevenZipFile(path, "w", filters=[{"id": py7zr.FILTER_COPY}]) as z:
        z.writeall(folder, folder.name)  # nested one level, as published packs are
    return path


def assert_installed(home: Path, folder: Path) -> Path:
    dest = home / "extensions" / "backends" / f"{folder.name}"
    assert dest.is_dir()
    got = tree(dest)
    got.pop("unlocked-install.json")
    assert got == tree(folder)
    assert IDENT in {b.ident for b in list_backends(home)}
    return dest


def assert_untouched(home: Path, before: list[str]) -> None:
    assert backends_in(home) == before
    assert staging_empty(home)


def test_from_folder(home: Path, folder: Path) -> None:
    plan = plan_from(str(folder), home=home)
    assert plan.kind == "folder" and plan.install_plan is not None
    res = execute_obtain(plan)
    dest = assert_installed(home, folder)
    assert res.install.ident == IDENT
    assert read_provenance(dest)["obtained_by"] == "folder"  # type: ignore[index]


def test_from_archive_with_sha_nested_and_staging_cleaned(home: Path, folder: Path, archive: Path) -> None:
    sha = hashlib.sha256(archive.read_bytes()).hexdigest()
    before = backends_in(home)
    dry = plan_from(str(archive), home=home, sha256=sha, dry_run=True)
    assert dry.install_plan is not None and any("install " + IDENT in x for x in dry.describe())
    assert_untouched(home, before)  # a dry run changes nothing
    res = execute_obtain(plan_from(str(archive), home=home, sha256=sha))
    assert res.nested
    dest = assert_installed(home, folder)
    prov = read_provenance(dest)
    assert prov is not None and prov["archive_sha256"] == sha and prov["archive_verified"] is True
    assert staging_empty(home)


def test_archive_with_wrong_sha_installs_nothing(home: Path, archive: Path) -> None:
    before = backends_in(home)
    with pytest.raises(ChecksumMismatch):
        execute_obtain(plan_from(str(archive), home=home, sha256="1" * 64))
    assert_untouched(home, before)


def test_malicious_archive_installs_nothing(home: Path, tmp_path: Path) -> None:
    evil = tmp_path / "evil.tar.gz"
    with tarfile.open(evil, "w:gz") as tf:
        ti = tarfile.TarInfo("pkg/../../../escape.txt")
        tf.addfile(ti)
    before = backends_in(home)
    with pytest.raises(UnsafeArchiveError):
        plan_from(str(evil), home=home)
    assert_untouched(home, before)
    assert not (tmp_path / "escape.txt").exists()


def test_from_url_resumes_after_drop(home: Path, folder: Path, archive: Path, tmp_path: Path) -> None:
    sha = hashlib.sha256(archive.read_bytes()).hexdigest()
    cache = tmp_path / "cache"
    with LocalHTTPServer() as srv:
        srv.add("/pack.7z", archive)
        srv.set_fault("/pack.7z", Fault(drop_after=300_000))
        res = execute_obtain(plan_from(srv.url("/pack.7z"), home=home, sha256=sha), policy=FAST, cache_root=cache)
        assert res.download is not None and res.download.resumed
        assert srv.requests_for("/pack.7z")[1].headers["Range"] == "bytes=300000-"
    assert_installed(home, folder)
    assert cache_files(cache) == {"pack.7z"}
    assert staging_empty(home)


@pytest.mark.parametrize(
    ("fault", "error"),
    [(Fault(status=404, times=None), DownloadError), (Fault(status=500, times=None), DownloadError),
     (Fault(headers_delay=3, times=None), DownloadError), (Fault(body=b"x" * 1000, times=None), ChecksumMismatch)],
    ids=["404", "500", "timeout", "wrong-bytes"],
)
def test_url_failures_leave_home_and_cache_clean(
    home: Path, archive: Path, tmp_path: Path, fault: Fault, error: type[Exception]
) -> None:
    sha = hashlib.sha256(archive.read_bytes()).hexdigest()
    cache = tmp_path / "cache"
    before = backends_in(home)
    policy = RetryPolicy(attempts=2, backoff_s=0.01, read_timeout_s=0.5)
    with LocalHTTPServer() as srv:
        srv.add("/pack.7z", archive)
        srv.set_fault("/pack.7z", fault)
        with pytest.raises(error):
            execute_obtain(plan_from(srv.url("/pack.7z"), home=home, sha256=sha), policy=policy, cache_root=cache)
    assert_untouched(home, before)
    assert cache_files(cache) == set()  # nothing to resume from


def test_cancel_keeps_part_then_resume_installs(home: Path, folder: Path, archive: Path, tmp_path: Path) -> None:
    sha = hashlib.sha256(archive.read_bytes()).hexdigest()
    cache = tmp_path / "cache"
    before = backends_in(home)
    token = CancelToken()

    def progress(p: DownloadProgress) -> None:
        if p.done > 200_000:
            token.cancel()

    with LocalHTTPServer() as srv:
        srv.add("/pack.7z", archive)
        srv.set_fault("/pack.7z", Fault(chunk_delay=0.005))
        plan = plan_from(srv.url("/pack.7z"), home=home, sha256=sha)
        with pytest.raises(CancelledError):
            execute_obtain(plan, progress=progress, cancel=token, policy=FAST, cache_root=cache)
        assert_untouched(home, before)
        assert cache_files(cache) == {"pack.7z.part", "pack.7z.part.json"}  # kept for the resume
        res = execute_obtain(plan, policy=FAST, cache_root=cache)
        assert res.download is not None and res.download.resumed
    assert_installed(home, folder)
    assert cache_files(cache) == {"pack.7z"}
    # A second install from the cache re-verifies and does not download again.
    again = execute_obtain(plan, policy=FAST, cache_root=cache)
    assert again.download is not None and again.download.from_cache


def test_catalog_over_http_best_match_installs(home: Path, folder: Path, tmp_path: Path) -> None:
    out = tmp_path / "catalog"
    publish(folder, out, key_path=TEST_KEY)
    with LocalHTTPServer() as srv:
        srv.add_dir(out, "/c")
        plan = plan_from_catalog(srv.url("/c/catalog.json"), home=home, report=ivybridge_with_vulkan_gpu(),
                                 public_key_path=TEST_PUB, policy=FAST)
        assert plan.entry is not None and plan.entry.ident == IDENT
        assert plan.matches[0].offered  # home has the official engine 2.14.0
        res = execute_obtain(plan, policy=FAST, cache_root=tmp_path / "cache")
    dest = assert_installed(home, folder)
    prov = read_provenance(dest)
    assert prov is not None and prov["catalog_entry"] == IDENT and prov["catalog_signed_by"]
    assert res.download is not None and res.download.sha256 == plan.entry.sha256


def test_catalog_no_fit_explains(home: Path, folder: Path, tmp_path: Path) -> None:
    out = tmp_path / "catalog"
    publish(folder, out, key_path=TEST_KEY)
    with pytest.raises(CatalogError, match="No entry") as ei:
        plan_from_catalog(out, home=home, report=ivybridge_with_vulkan_gpu(), public_key_path=TEST_PUB,
                          engine_versions={"2.16.0"})
    assert "made for LM Studio engine 2.14.0" in ei.value.details


def test_catalog_entry_archive_mismatch_installs_nothing(home: Path, folder: Path, tmp_path: Path) -> None:
    out = tmp_path / "catalog"
    res = publish(folder, out, key_path=TEST_KEY)
    other = make_backend_folder(tmp_path / "other", name="llama.cpp-linux-x86_64-vulkan-avx1-other-unlocked")
    res.archive.unlink()
    with py7zr.SevenZipFile(res.archive, "w") as z:
        z.writeall(other, other.name)
    publish(folder, tmp_path / "unused", key_path=TEST_KEY)  # unrelated; keeps `publish` honest about paths
    # Re-sign the catalog for the swapped archive's size/hash so only the content check can catch it.
    import json

    from app.core.fetch.signing import load_private_key, sign_bytes
    data = json.loads((out / "catalog.json").read_text())
    raw_archive = res.archive.read_bytes()
    data["entries"][0]["size"] = len(raw_archive)
    data["entries"][0]["sha256"] = hashlib.sha256(raw_archive).hexdigest()
    raw = (json.dumps(data, indent=2) + "\n").encode()
    (out / "catalog.json").write_bytes(raw)
    (out / "catalog.json.sig").write_text(sign_bytes(raw, load_private_key(TEST_KEY)))
    before = backends_in(home)
    plan = plan_from_catalog(out, home=home, report=None, entry_ident=IDENT, public_key_path=TEST_PUB)
    with pytest.raises(CatalogError, match="but the catalog entry is"):
        execute_obtain(plan)
    assert_untouched(home, before)
