"""`install`, `patch` and `publish` through the real console script in a subprocess.

Each run gets its own LM Studio home (tests/lmstudio_homes.py), its own cache/data dirs (conftest),
and archives served by a real HTTP server on 127.0.0.1 where a URL is needed.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import tarfile
from pathlib import Path

import py7zr
import pytest

from tests.conftest import FIXTURES, HWDATA, REPO
from tests.core.fetch.backend_folder import make_backend_folder
from tests.core.test_patchonly import AVX2_SRC, AVX_SRC, LIB, VULKAN, build_lib, put_lib
from tests.httpserver import LocalHTTPServer
from tests.lmstudio_homes import make_home

EXE = REPO / ".venv" / "bin" / "lms-unlocked"
TEST_KEY = FIXTURES / "TEST-ONLY-catalog-signing.key"
TEST_PUB = FIXTURES / "TEST-ONLY-catalog-signing.pub"
IVY = HWDATA / "cpuinfo" / "ivybridge-i5-3570k.txt"
IDENT = "llama.cpp-linux-x86_64-vulkan-avx1-unlocked@2.14.0"


def run(*args: str | Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    assert EXE.exists(), "run scripts/test.sh (it installs the console script into .venv)"
    return subprocess.run([str(EXE), *map(str, args)], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONWARNINGS": "ignore", **(env or {})})


def installed(home: Path) -> list[str]:
    return sorted(p.name for p in (home / "extensions" / "backends").iterdir() if p.name != "vendor")


def no_traceback(p: subprocess.CompletedProcess[str]) -> None:
    assert "Traceback" not in p.stderr and "Traceback" not in p.stdout


@pytest.fixture
def home(tmp_path: Path) -> Path:
    return make_home(tmp_path)


@pytest.fixture
def archive(tmp_path: Path) -> Path:
    folder = make_backend_folder(tmp_path / "src", payload=200_000)
    path = tmp_path / "pack.7z"
    with py7zr.SevenZipFile(path, "w", filters=[{"id": py7zr.FILTER_COPY}]) as z:
        z.writeall(folder, folder.name)
    return path


def test_install_archive_with_sha_json(home: Path, archive: Path) -> None:
    sha = hashlib.sha256(archive.read_bytes()).hexdigest()
    p = run("install", "--from", archive, "--sha256", sha.upper(), "--home", home, "--json")
    assert p.returncode == 0, p.stderr
    out = json.loads(p.stdout)
    assert out["ok"] and out["installed"] == IDENT and out["nested_folder_normalised"]
    assert IDENT.replace("@", "-") in installed(home)


def test_install_archive_and_select(home: Path, archive: Path) -> None:
    p = run("install", "--from", archive, "--select", "--home", home, "--json")
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout)["selected"] is True
    prefs = (home / ".internal" / "backend-preferences-v1.json").read_text()
    assert "llama.cpp-linux-x86_64-vulkan-avx1-unlocked" in prefs and "2.14.0" in prefs


def test_install_url_dry_run_downloads_nothing(home: Path, archive: Path) -> None:
    before = installed(home)
    with LocalHTTPServer() as srv:
        srv.add("/pack.7z", archive)
        p = run("install", "--from", srv.url("/pack.7z"), "--home", home, "--dry-run")
        assert srv.requests == []
    assert p.returncode == 0, p.stderr
    assert "Dry run" in p.stdout and "sha256: NOT verified" in p.stdout
    assert "integrity is NOT verified" in p.stderr
    assert installed(home) == before


def test_install_url_then_wrong_sha(home: Path, archive: Path) -> None:
    sha = hashlib.sha256(archive.read_bytes()).hexdigest()
    before = installed(home)
    with LocalHTTPServer() as srv:
        srv.add("/pack.7z", archive)
        bad = run("install", "--from", srv.url("/pack.7z"), "--sha256", "0" * 64, "--home", home, "--json")
        assert bad.returncode == 1
        assert json.loads(bad.stdout)["error"] == "checksum-mismatch"
        assert "error: The downloaded file does not have the expected sha256" in bad.stderr
        no_traceback(bad)
        assert installed(home) == before
        good = run("install", "--from", srv.url("/pack.7z"), "--sha256", sha, "--home", home)
    assert good.returncode == 0, good.stderr
    assert f"Installed {IDENT}" in good.stdout


def test_plain_http_to_remote_host_refused(home: Path) -> None:
    p = run("install", "--from", "http://example.com/x.7z", "--home", home)
    assert p.returncode == 2 and "Refusing plain http" in p.stderr
    no_traceback(p)


def test_usage_errors_exit_2(home: Path, archive: Path, tmp_path: Path) -> None:
    assert run("install", "--from", archive, "--entry", "x@1", "--home", home).returncode == 2
    missing = run("install", "--from", tmp_path / "nope.7z", "--home", home)
    assert missing.returncode == 2 and "does not exist" in missing.stderr
    assert run("install", "--home", home).returncode == 2  # neither --from nor --catalog
    bad_sha = run("install", "--from", archive, "--sha256", "xyz", "--home", home)
    assert bad_sha.returncode == 2 and "64 hex digits" in bad_sha.stderr


def test_malicious_archive_refused(home: Path, tmp_path: Path) -> None:
    evil = tmp_path / "evil.tar.gz"
    with tarfile.open(evil, "w:gz") as tf:
        tf.addfile(tarfile.TarInfo("/etc/lms-unlocked-evil"))
    p = run("install", "--from", evil, "--home", home, "--json")
    assert p.returncode == 1 and json.loads(p.stdout)["error"] == "unsafe-archive"
    assert "absolute path" in p.stderr
    no_traceback(p)


@pytest.fixture
def catalog(tmp_path: Path) -> Path:
    folder = make_backend_folder(tmp_path / "pub", payload=100_000)
    out = tmp_path / "catalog"
    p = run("publish", folder, "--full", "--out", out, "--key", TEST_KEY, "--json")
    assert p.returncode == 0, p.stderr
    res = json.loads(p.stdout)
    assert res["entry"]["name"] + "@" + res["entry"]["version"] == IDENT and res["key_id"]
    assert "ISA audit" in res["audit"]
    return out


def test_catalog_install_named_entry(home: Path, catalog: Path) -> None:
    p = run("install", "--catalog", catalog, "--entry", IDENT, "--public-key", TEST_PUB, "--home", home, "--json")
    assert p.returncode == 0, p.stderr
    out = json.loads(p.stdout)
    assert out["installed"] == IDENT and out["catalog"]["signed_by"]


def test_catalog_best_match_explains_why_not(home: Path, catalog: Path) -> None:
    """A saved Ivy Bridge cpuinfo has no GPU: the Vulkan entry is not offered, and the reason is printed."""
    p = run("install", "--catalog", catalog, "--cpuinfo", IVY, "--public-key", TEST_PUB, "--home", home)
    assert p.returncode == 1
    assert "No entry of the catalog fits this machine: " + IDENT in p.stderr and "Vulkan" in p.stderr
    dry = run("install", "--catalog", catalog, "--entry", IDENT, "--cpuinfo", IVY, "--public-key", TEST_PUB,
              "--home", home, "--dry-run", "--json")
    out = json.loads(dry.stdout)
    assert out["matches"][0]["offered"] is False and any("Vulkan" in r for r in out["matches"][0]["reasons"])
    assert any("does not fit this machine" in w for w in out["warnings"])


def test_catalog_tampered_wrong_key_and_unsigned(home: Path, catalog: Path) -> None:
    before = installed(home)
    wrong_key = run("install", "--catalog", catalog, "--entry", IDENT, "--home", home, "--json")
    assert wrong_key.returncode == 1 and json.loads(wrong_key.stdout)["error"] == "bad-signature"
    # The app's key ring has no active key until a maintainer adds one (docs/publishing.md): it says so.
    assert "trusts no catalog signing key" in wrong_key.stderr
    cat = catalog / "catalog.json"
    cat.write_text(cat.read_text().replace('"variant": "vulkan-avx1"', '"variant": "cpu-avx1"'))
    tampered = run("install", "--catalog", catalog, "--entry", IDENT, "--public-key", TEST_PUB, "--home", home)
    assert tampered.returncode == 1 and "tampered" in tampered.stderr
    (catalog / "catalog.json.sig").unlink()
    missing = run("install", "--catalog", catalog, "--entry", IDENT, "--public-key", TEST_PUB, "--home", home)
    assert missing.returncode == 1 and "no signature file" in missing.stderr
    assert installed(home) == before
    loud = run("install", "--catalog", catalog, "--entry", IDENT, "--public-key", TEST_PUB, "--allow-unsigned",
               "--home", home)
    assert loud.returncode == 0, loud.stderr
    assert "!!! WARNING: the catalog's signature was NOT verified" in loud.stderr


def test_catalog_over_http(home: Path, catalog: Path) -> None:
    with LocalHTTPServer() as srv:
        srv.add_dir(catalog, "/c")
        p = run("install", "--catalog", srv.url("/c/"), "--entry", IDENT, "--public-key", TEST_PUB,
                "--home", home, "--json")
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout)["urls"][0].endswith(".7z")


def test_patch_dry_run_then_install_and_refusal(home: Path, tmp_path: Path) -> None:
    put_lib(home, build_lib(tmp_path, AVX_SRC, ["-mavx"], "avx"))
    dry = run("patch", "--from", VULKAN, "--cpuinfo", IVY, "--home", home, "--dry-run", "--json")
    assert dry.returncode == 0, dry.stderr
    plan = json.loads(dry.stdout)
    assert plan["safe"] is True and plan["new_backend"] == IDENT
    assert any(e.startswith(LIB) for e in plan["evidence"])
    assert IDENT.replace("@", "-") not in installed(home)
    p = run("patch", "--from", VULKAN, "--cpuinfo", IVY, "--home", home)
    assert p.returncode == 0, p.stderr
    assert "SAFE:" in p.stdout and f"Installed {IDENT}" in p.stdout
    # An AVX2/FMA build in another home is refused, with the evidence.
    home2 = make_home(tmp_path / "h2")
    put_lib(home2, build_lib(tmp_path, AVX2_SRC, ["-mavx2", "-mfma"], "avx2"))
    r = run("patch", "--from", VULKAN, "--cpuinfo", IVY, "--home", home2)
    assert r.returncode == 1 and "REFUSED" in r.stdout and "AVX2" in r.stdout
    assert "Patch-only refused" in r.stderr
    no_traceback(r)


def test_publish_new_key_and_unsigned_warning(tmp_path: Path) -> None:
    key = tmp_path / "k.pem"
    assert run("publish", "--new-key", key).returncode == 0
    assert key.read_text().startswith("-----BEGIN PRIVATE KEY") and (tmp_path / "k.pem.pub").exists()
    assert run("publish", "--new-key", key).returncode == 2  # never overwrite a key
    folder = make_backend_folder(tmp_path / "b", payload=1000)
    p = run("publish", folder, "--out", tmp_path / "o", "--format", "tar.xz")
    assert p.returncode == 2 and "overlay by default" in p.stderr  # a template, or --full, must be named
    p = run("publish", folder, "--full", "--out", tmp_path / "o", "--format", "tar.xz")
    assert p.returncode == 0 and "UNSIGNED" in p.stderr
    assert (tmp_path / "o" / (folder.name + ".tar.xz")).exists()
    shutil.rmtree(tmp_path / "o")
    assert run("publish", folder).returncode == 2


def test_overlay_published_by_the_ci_steps_served_over_loopback_and_installed(tmp_path: Path) -> None:
    """The release flow end to end through the CLI: a build job's `publish --template` (unsigned fragment), the
    publish job's `publish --merge --key-env` (signed with the key from the environment), the release folder served
    over loopback HTTP, `install --catalog --list` explaining a missing official pack, and `install --catalog`
    applying the overlay on the user's own pack (stand-ins: tests/core/fetch/overlay_packs.py)."""
    from tests.core.fetch.overlay_packs import OFFICIAL, OURS, built_backend, install_official, official_pack

    pack = official_pack(tmp_path / "templates", tmp_path / "libs")
    built = built_backend(tmp_path / "built", pack, tmp_path / "libs")
    p = run("publish", built, "--template", pack, "--variant", "cpu-avx1", "--out", tmp_path / "frag", "--json")
    assert p.returncode == 0, p.stderr
    entry = json.loads(p.stdout)["entry"]
    assert entry["kind"] == "overlay" and entry["base"]["name"] + "@" + entry["base"]["version"] == OFFICIAL
    release = tmp_path / "release"
    m = run("publish", "--merge", tmp_path / "frag" / "catalog.json", "--out", release, "--key-env", "SIGNING",
            "--json", env={"SIGNING": TEST_KEY.read_text()})
    assert m.returncode == 0 and json.loads(m.stdout)["signature"], m.stderr
    home = make_home(tmp_path, backends=["linux-vulkan-2.14.0"])
    with LocalHTTPServer() as srv:
        srv.add_dir(release, "/rel")
        url = srv.url("/rel/catalog.json")
        listed = run("install", "--catalog", url, "--list", "--cpuinfo", IVY, "--public-key", TEST_PUB, "--home", home)
        assert listed.returncode == 0, listed.stderr
        why = f"{OURS} (cpu-avx1, overlay on {OFFICIAL}): not offered: needs LM Studio's official runtime"
        assert why in listed.stdout
        assert "Mission Control → Runtime" in listed.stdout
        install_official(home, pack)
        p = run("install", "--catalog", url, "--cpuinfo", IVY, "--public-key", TEST_PUB, "--home", home, "--json")
    assert p.returncode == 0, p.stderr
    out = json.loads(p.stdout)
    assert out["installed"] == OURS and out["entry"]["kind"] == "overlay"
    assert out["proof"]["smoke"].startswith("smoke test: unlocked-server/llama-server generated 8 tokens")
    assert OURS.replace("@", "-") in installed(home)
    no_traceback(p)
