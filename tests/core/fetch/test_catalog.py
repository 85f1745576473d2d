"""Catalogs: publish real archives into a signed catalog, load it from a folder, a file and a real local
HTTP server, refuse tampering, and match entries to recorded hardware with reasons."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import pytest

from app.core.fetch.catalog import (
    UNSIGNED_WARNING,
    CatalogEntry,
    best_entry,
    load_catalog,
    match_catalog,
    parse_catalog,
    resolve_entry_source,
)
from app.core.fetch.download import RetryPolicy
from app.core.fetch.errors import CatalogError, SignatureError
from app.core.fetch.publish import publish
from app.core.fetch.signing import generate_keypair
from app.core.paths import data_path
from tests.conftest import FIXTURES
from tests.core.fetch.backend_folder import make_backend_folder
from tests.core.fetch.reports import core2_cpu_only, ivybridge_cpu_only, ivybridge_with_vulkan_gpu
from tests.httpserver import LocalHTTPServer

TEST_KEY = FIXTURES / "TEST-ONLY-catalog-signing.key"
TEST_PUB = FIXTURES / "TEST-ONLY-catalog-signing.pub"
FAST = RetryPolicy(attempts=2, backoff_s=0.01, read_timeout_s=2)


@pytest.fixture
def published(tmp_path: Path) -> Path:
    """A catalog folder with two real entries (vulkan-avx1 2.14.0 and a cpu-avx1 2.16.0) signed with the test key."""
    out = tmp_path / "out"
    v = make_backend_folder(tmp_path / "b1")
    publish(v, out, key_path=TEST_KEY)
    c = make_backend_folder(tmp_path / "b2", name="llama.cpp-linux-x86_64-avx1-unlocked", version="2.16.0")
    m = json.loads((c / "backend-manifest.json").read_text())
    m.pop("gpu")
    m.pop("vendor_lib_package_names")
    (c / "backend-manifest.json").write_text(json.dumps(m))
    publish(c, out, key_path=TEST_KEY, fmt="tar.xz")
    return out


def test_default_catalog_is_the_latest_release_catalog(monkeypatch: pytest.MonkeyPatch) -> None:
    """No catalog ships inside the app: the default is the catalog of the `backends` release the backends workflow
    refreshes on every run (tests/test_workflows.py checks the workflow uploads there)."""
    from app.core.fetch.catalog import CATALOG_ENV, DEFAULT_CATALOG_URL, RELEASE_TAG, default_catalog_source

    monkeypatch.delenv(CATALOG_ENV, raising=False)
    assert default_catalog_source() == DEFAULT_CATALOG_URL
    assert DEFAULT_CATALOG_URL.startswith("https://github.com/")
    assert DEFAULT_CATALOG_URL.endswith(f"/releases/download/{RELEASE_TAG}/catalog.json")
    assert not data_path("catalog.json").exists()
    monkeypatch.setenv(CATALOG_ENV, "/some/folder")
    assert default_catalog_source() == "/some/folder"


def test_published_catalog_loads_from_folder_and_file(published: Path) -> None:
    for src in (published, published / "catalog.json"):
        cat = load_catalog(src, public_key_path=TEST_PUB)
        assert [e.ident for e in cat.entries] == [
            "llama.cpp-linux-x86_64-avx1-unlocked@2.16.0",
            "llama.cpp-linux-x86_64-vulkan-avx1-unlocked@2.14.0",
        ]
        e = cat.find("llama.cpp-linux-x86_64-vulkan-avx1-unlocked@2.14.0")
        assert e.variant == "vulkan-avx1" and e.format == "7z" and e.url == e.name + "-2.14.0.7z"
        assert e.requires["cpu_isa"] == ["AVX"] and e.requires["gpu"] == "vulkan"
        assert e.requires["platforms"] == ["linux"] and e.manifest_version == "4"
        src_ = resolve_entry_source(cat, e)
        assert src_.local == published / e.url and src_.urls == ()


def test_catalog_over_http_with_relative_urls(published: Path) -> None:
    with LocalHTTPServer() as srv:
        srv.add_dir(published, "/cat")
        cat = load_catalog(srv.url("/cat/catalog.json"), public_key_path=TEST_PUB, policy=FAST)
        e = cat.find("llama.cpp-linux-x86_64-avx1-unlocked")  # newest version when none is named
        assert resolve_entry_source(cat, e).urls == (srv.url("/cat/" + e.url),)
        assert cat.base == srv.url("/cat/")
        # Signature fetched from the same place.
        assert [r.path for r in srv.requests] == ["/cat/catalog.json", "/cat/catalog.json.sig"]


def test_tampered_catalog_refused(published: Path) -> None:
    raw = (published / "catalog.json").read_text()
    (published / "catalog.json").write_text(raw.replace('"size": ', '"size": 1', 1))
    with pytest.raises(SignatureError, match="tampered"):
        load_catalog(published, public_key_path=TEST_PUB)


def test_tampered_catalog_over_http_refused(published: Path) -> None:
    with LocalHTTPServer() as srv:
        srv.add_dir(published, "/cat")
        evil = (published / "catalog.json").read_bytes().replace(b'"url": "', b'"url": "https://evil.example/')
        srv.add("/cat/catalog.json", evil)
        with pytest.raises(SignatureError):
            load_catalog(srv.url("/cat/catalog.json"), public_key_path=TEST_PUB, policy=FAST)


def test_missing_signature_refused_unless_allowed_loudly(published: Path) -> None:
    (published / "catalog.json.sig").unlink()
    with pytest.raises(SignatureError, match="no signature file"):
        load_catalog(published, public_key_path=TEST_PUB)
    cat = load_catalog(published, public_key_path=TEST_PUB, allow_unsigned=True)
    assert cat.signed_by == "" and cat.warnings[0].startswith(UNSIGNED_WARNING)
    assert len(cat.entries) == 2


def test_wrong_key_refused(published: Path) -> None:
    """No key of the app's key ring signed this test catalog (the ring has no active key yet at all)."""
    with pytest.raises(SignatureError, match=r"another key|trusts no catalog signing key"):
        load_catalog(published)


def test_schema_violations_are_refused() -> None:
    good: dict[str, object] = {"schema_version": 1}
    good["entries"] = [
        {"name": "x", "version": "1", "variant": "cpu-avx1", "platform": "linux", "arch": "x86_64",
         "engine_version": "1", "url": "x.7z", "size": 1, "sha256": "a" * 64, "requires": {"gpu": "amd"}}
    ]
    with pytest.raises(CatalogError, match="schema"):
        parse_catalog(json.dumps(good).encode(), source="t")
    good["entries"][0]["requires"] = {"cpu_isa": ["AVX"]}
    good["entries"][0]["sha256"] = "XYZ"
    with pytest.raises(CatalogError, match="sha256"):
        parse_catalog(json.dumps(good).encode(), source="t")
    with pytest.raises(CatalogError, match="not valid JSON"):
        parse_catalog(b"{", source="t")


def test_matching_explains_and_picks_best(published: Path) -> None:
    cat = load_catalog(published, public_key_path=TEST_PUB)
    # Ivy Bridge (AVX, no AVX2) with a recorded GTX 770 Vulkan device, LM Studio has engine 2.14.0 only.
    m = match_catalog(cat, ivybridge_with_vulkan_gpu(), engine_versions={"2.14.0"})
    assert m[0].offered and m[0].entry.variant == "vulkan-avx1"
    assert not m[1].offered
    assert m[1].reasons == ("is made for LM Studio engine 2.16.0; this LM Studio has engine version(s) 2.14.0",)
    assert best_entry(m) == m[0].entry
    # With both engine versions, the Vulkan variant still ranks first (variants.json rank).
    m = match_catalog(cat, ivybridge_with_vulkan_gpu(), engine_versions={"2.14.0", "2.16.0"})
    assert [x.offered for x in m] == [True, True] and m[0].entry.variant == "vulkan-avx1"
    # No GPU: the Vulkan entry says why.
    m = match_catalog(cat, ivybridge_cpu_only(), engine_versions={"2.16.0", "2.14.0"})
    assert best_entry(m) is not None and best_entry(m).variant == "cpu-avx1"  # type: ignore[union-attr]
    vul = next(x for x in m if x.entry.variant == "vulkan-avx1")
    assert any("Vulkan" in r for r in vul.reasons), vul.reasons
    # Core 2 (no AVX): nothing is offered, each entry names AVX.
    m = match_catalog(cat, core2_cpu_only())
    assert best_entry(m) is None and all(any("AVX" in r for r in x.reasons) for x in m)


def test_matching_platform_from_entry(published: Path) -> None:
    cat = load_catalog(published, public_key_path=TEST_PUB)
    e = dataclasses.replace(cat.entries[0], platform="win", requires={"cpu_isa": ["AVX"]})
    (m,) = match_catalog([e], ivybridge_cpu_only())
    assert any("Windows" in r for r in m.reasons)


def test_publish_updates_entry_and_refuses_to_resign_a_changed_catalog(tmp_path: Path, published: Path) -> None:
    v = make_backend_folder(tmp_path / "again", payload=1000)
    res = publish(v, published, key_path=TEST_KEY)
    assert res.replaced
    cat = load_catalog(published, public_key_path=TEST_PUB)
    assert len(cat.entries) == 2
    assert cat.find(res.entry.ident).size == res.archive.stat().st_size
    # Someone edits the signed catalog on disk: publishing with the key must not bless the edit.
    p = published / "catalog.json"
    p.write_text(p.read_text().replace("vulkan-avx1\"", "cpu-avx1\"", 1))
    with pytest.raises(SignatureError):
        publish(v, published, key_path=TEST_KEY)
    # Without a key the catalog is written unsigned and any old signature removed.
    shutil.rmtree(published)
    res = publish(v, published)
    assert res.signature is None and not (published / "catalog.json.sig").exists()
    with pytest.raises(SignatureError):
        load_catalog(published, public_key_path=TEST_PUB)


def test_publish_with_another_key_makes_a_catalog_the_app_key_refuses(tmp_path: Path) -> None:
    priv, pub = generate_keypair()
    (tmp_path / "k").write_bytes(priv)
    (tmp_path / "k.pub").write_bytes(pub)
    res = publish(make_backend_folder(tmp_path / "b"), tmp_path / "out", key_path=tmp_path / "k")
    assert load_catalog(tmp_path / "out", public_key_path=tmp_path / "k.pub").signed_by == res.key_id
    with pytest.raises(SignatureError):
        load_catalog(tmp_path / "out", public_key_path=TEST_PUB)


def test_entry_round_trip() -> None:
    e = CatalogEntry("n", "1.0", "cpu-avx1", "linux", "x86_64", "1.0", "u", 5, "a" * 64, {"cpu_isa": ["AVX"]},
                     mirrors=("https://m/u",), notes=("n1",))
    assert CatalogEntry.from_dict(e.to_dict()) == e


def test_schema_files_are_valid_json_schema() -> None:
    import jsonschema

    for name in ("catalog.schema.json", "requirements.schema.json", "catalog-keys.schema.json"):
        jsonschema.Draft202012Validator.check_schema(json.loads(data_path(name).read_text()))
