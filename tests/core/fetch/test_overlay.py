"""Overlays end to end in the core: publish from a built folder and its official template, load the signed catalog
over a real loopback HTTP server, judge entries against the official packs a home has, apply the overlay on the
user's own pack, prove it (ABI guard and ISA audit on real gcc-built ELF libraries, smoke test through a stand-in
server) and install it transactionally. What is stood in: tests/core/fetch/overlay_packs.py."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import py7zr
import pytest

from app.core.builder.abi import AbiError
from app.core.builder.smoke import SmokeTestFailed
from app.core.fetch.catalog import load_catalog
from app.core.fetch.download import RetryPolicy
from app.core.fetch.errors import CatalogError
from app.core.fetch.obtain import (
    ObtainPlan,
    catalog_offers,
    execute_obtain,
    plan_from,
    plan_from_catalog,
)
from app.core.fetch.overlay import OVERLAY_FILE, BaseMismatch, OverlayError, OverlaySpec, plan_overlay
from app.core.fetch.publish import merge_catalog, publish
from app.core.fetch.signing import load_private_key, sign_bytes
from app.core.install_check import InstallRefused
from app.core.lmstudio.provenance import file_digests, read_provenance
from tests.conftest import FIXTURES
from tests.core.fetch.backend_folder import staging_empty
from tests.core.fetch.overlay_packs import (
    GGML,
    LLAMA,
    OFFICIAL,
    OURS,
    SERVER_DIR,
    built_backend,
    install_official,
    official_pack,
)
from tests.core.fetch.reports import cpu_report, ivybridge_cpu_only
from tests.core.test_patchonly import AVX2_SRC
from tests.httpserver import LocalHTTPServer
from tests.lmstudio_homes import make_home, tree_hashes

TEST_KEY = FIXTURES / "TEST-ONLY-catalog-signing.key"
TEST_PUB = FIXTURES / "TEST-ONLY-catalog-signing.pub"
FAST = RetryPolicy(attempts=2, backoff_s=0.01, read_timeout_s=5)


@pytest.fixture
def pack(tmp_path: Path) -> Path:
    return official_pack(tmp_path / "templates", tmp_path / "libs")


@pytest.fixture
def built(tmp_path: Path, pack: Path) -> Path:
    return built_backend(tmp_path / "built", pack, tmp_path / "libs")


@pytest.fixture
def home(tmp_path: Path, pack: Path) -> Path:
    h = make_home(tmp_path, backends=["linux-vulkan-2.14.0"])
    install_official(h, pack)
    return h


@pytest.fixture
def published(tmp_path: Path, built: Path, pack: Path) -> Path:
    out = tmp_path / "catalog"
    res = publish(built, out, template=pack, key_path=TEST_KEY, variant="cpu-avx1")
    assert res.entry.kind == "overlay" and res.entry.base_ident == OFFICIAL and res.signature is not None
    return out


def publish_and_plan(tmp_path: Path, bad: Path, pack: Path, home: Path) -> ObtainPlan:
    """Publish `bad` (the publish-time audit skipped, to test the install-time guards) and plan its install."""
    out = tmp_path / "cat"
    publish(bad, out, template=pack, key_path=TEST_KEY, variant="cpu-avx1", audit=False)
    return plan_from_catalog(out, home=home, report=ivybridge_cpu_only(), entry_ident=OURS, public_key_path=TEST_PUB)


def official_folder(home: Path) -> Path:
    return home / "extensions" / "backends" / OFFICIAL.replace("@", "-")


def test_overlay_holds_only_what_we_built(built: Path, pack: Path, published: Path) -> None:
    (entry,) = load_catalog(published, public_key_path=TEST_PUB).entries
    archive = published / entry.url
    assert archive.name == f"{OURS.replace('@', '-')}.overlay.7z"
    with py7zr.SevenZipFile(archive) as z:
        names = {n.split("/", 1)[1] for n in z.getnames() if "/" in n}
    payload = {GGML, "backend-manifest.json", "display-data.json", "engine-protocol-server-artifacts.json",
               f"{SERVER_DIR}/llama-server", f"{SERVER_DIR}/libggml-cpu.so"}
    assert names - {SERVER_DIR} == payload | {OVERLAY_FILE}
    # None of LM Studio's own binaries travel: every kept file is only named, with its sha256.
    kept = {r: d for r, d in entry.base["files"].items() if r not in entry.base["replaced"]}
    assert LLAMA in kept and "llm_engine.node" in kept and "llama-server" in kept
    assert kept[LLAMA] == file_digests(pack)[LLAMA]
    assert entry.base["platform"] == "linux" and entry.base["display_name"] == "CPU llama.cpp (Linux)"
    assert entry.requires["cpu_isa"] == ["AVX"] and entry.engine_version == "2.14.0"


def test_install_over_loopback_rebuilds_the_built_folder_exactly(home: Path, built: Path, published: Path) -> None:
    official_before = tree_hashes(official_folder(home))
    with LocalHTTPServer() as srv:
        srv.add_dir(published, "/c")
        plan = plan_from_catalog(srv.url("/c/catalog.json"), home=home, report=ivybridge_cpu_only(),
                                 public_key_path=TEST_PUB, policy=FAST)
        assert plan.entry is not None and plan.entry.ident == OURS
        assert any("applied on your official " + OFFICIAL in line for line in plan.describe())
        res = execute_obtain(plan, policy=FAST)
    dest = res.install.dest
    assert file_digests(dest) == file_digests(built)  # the very folder the maintainer built
    assert tree_hashes(official_folder(home)) == official_before  # LM Studio's pack untouched
    assert res.proof is not None
    assert "ABI guard" in res.proof.abi and "nothing needs an instruction" in res.proof.audit
    assert res.proof.smoke.startswith(f"smoke test: {SERVER_DIR}/llama-server generated 8 tokens")
    prov = read_provenance(dest)
    assert prov is not None and prov["overlay"]["base"] == OFFICIAL and prov["variant"] == "cpu-avx1"
    assert prov["catalog_signed_by"] and prov["template"] == OFFICIAL
    assert staging_empty(home)


def test_offers_explain_a_missing_and_a_different_official_pack(tmp_path: Path, published: Path) -> None:
    report = ivybridge_cpu_only()
    # No official CPU pack: the entry names the runtime to download in LM Studio, and how.
    bare = make_home(tmp_path / "bare", backends=["linux-vulkan-2.14.0"])
    offers = catalog_offers(published, home=bare, report=report, public_key_path=TEST_PUB)
    assert offers.offered == ()
    (line,) = offers.explanations()
    assert f"needs LM Studio's official runtime {OFFICIAL}, which is not installed" in line
    assert "Mission Control → Runtime (Ctrl/⌘+Shift+R)" in line and "“CPU llama.cpp (Linux)”" in line
    assert "version 2.14.0" in line
    with pytest.raises(CatalogError, match="No entry of the catalog fits"):
        plan_from_catalog(published, home=bare, report=report, public_key_path=TEST_PUB)
    # Another build of the same version: refused before anything is downloaded, naming the differing file.
    other = make_home(tmp_path / "other", backends=["linux-cpu-2.14.0"])
    offers = catalog_offers(published, home=other, report=report, public_key_path=TEST_PUB)
    (line,) = offers.explanations()
    assert f"your {OFFICIAL} is a different build" in line and LLAMA in line
    with pytest.raises(CatalogError, match="different build"):
        plan_from_catalog(published, home=other, report=report, entry_ident=OURS, public_key_path=TEST_PUB)


def test_the_user_pack_changing_after_planning_is_caught_while_copying(home: Path, published: Path) -> None:
    """The kept files are verified on the copy that gets installed, so a pack that changes between the check and the
    install is still refused, and nothing is installed."""
    plan = plan_from_catalog(published, home=home, report=ivybridge_cpu_only(), public_key_path=TEST_PUB)
    (official_folder(home) / "llm_engine.node").write_bytes(b"updated by LM Studio meanwhile")
    before = sorted(p.name for p in (home / "extensions" / "backends").iterdir())
    with pytest.raises(BaseMismatch, match=r"different build.*llm_engine\.node"):
        execute_obtain(plan)
    assert sorted(p.name for p in (home / "extensions" / "backends").iterdir()) == before
    assert staging_empty(home)


def test_abi_guard_refuses_libraries_missing_a_symbol_the_kept_binaries_import(
    tmp_path: Path, pack: Path, home: Path
) -> None:
    src = "int ggml_other_function(int x) { return x + 1; }\n"  # built from another version: the symbol is gone
    bad = built_backend(tmp_path / "bad", pack, tmp_path / "libs", ggml_src=src, ggml_flags=())
    plan = publish_and_plan(tmp_path, bad, pack, home)
    with pytest.raises(AbiError, match="do not export 1 symbol"):
        execute_obtain(plan)
    assert OURS.replace("@", "-") not in os.listdir(home / "extensions" / "backends")


def test_isa_audit_refuses_code_this_cpu_lacks(tmp_path: Path, pack: Path, home: Path) -> None:
    """An AVX2/FMA build (exporting the symbol, so the ABI guard passes) on an Ivy Bridge: refused before install."""
    src = AVX2_SRC + "\nvoid ggml_vec_add_f32(int n, float *z, const float *x, const float *y) { *z = *x + *y + n; }\n"
    bad = built_backend(tmp_path / "bad", pack, tmp_path / "libs", ggml_src=src, ggml_flags=("-mavx2", "-mfma"))
    plan = publish_and_plan(tmp_path, bad, pack, home)
    with pytest.raises(InstallRefused, match=r"isa-audit|AVX2"):
        execute_obtain(plan)
    assert OURS.replace("@", "-") not in os.listdir(home / "extensions" / "backends")


def test_failing_smoke_test_installs_nothing(home: Path, published: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STANDIN_SERVER_EXIT", "3")
    plan = plan_from_catalog(published, home=home, report=ivybridge_cpu_only(), public_key_path=TEST_PUB)
    with pytest.raises(SmokeTestFailed, match="exited with code 3"):
        execute_obtain(plan)
    assert OURS.replace("@", "-") not in os.listdir(home / "extensions" / "backends")


def test_publish_refusals(tmp_path: Path, built: Path, pack: Path) -> None:
    out = tmp_path / "o"
    # A whole folder cloned from LM Studio's pack would redistribute its binaries.
    with pytest.raises(CatalogError, match="redistribute"):
        publish(built, out, key_path=TEST_KEY)
    # The template must be the official pack the folder was built from.
    other = official_pack(tmp_path / "t2", tmp_path / "libs2")
    man = json.loads((other / "backend-manifest.json").read_text())
    man["version"] = "2.15.0"
    (other / "backend-manifest.json").write_text(json.dumps(man))
    with pytest.raises(OverlayError, match=r"was built from llama\.cpp-linux-x86_64-avx2@2\.14\.0"):
        plan_overlay(built, other)
    # A kept file of the template that cannot be hashed: the users' packs could not be checked against it.
    broken = tmp_path / "t3"
    shutil.copytree(pack, broken, symlinks=True)
    (broken / "llm_engine.node").unlink()
    os.mkfifo(broken / "llm_engine.node")
    with pytest.raises(OverlayError, match="Cannot hash 1 file"):
        plan_overlay(built, broken)
    # A file of LM Studio's that differs but was not made by the build is never shipped.
    (built / "liblmstudiocore.so").write_bytes(b"changed by hand")
    with pytest.raises(OverlayError, match=r"not files the build made: liblmstudiocore\.so"):
        plan_overlay(built, pack)
    assert not out.exists() or not list(out.glob("*.7z"))


def test_overlay_archive_from_file_and_entry_mismatch(tmp_path: Path, home: Path, published: Path) -> None:
    """`install --from` an overlay archive works the same way; an archive that is not the entry's is refused."""
    cat = load_catalog(published, public_key_path=TEST_PUB)
    archive = published / cat.entries[0].url
    dry = plan_from(str(archive), home=home, report=ivybridge_cpu_only(), dry_run=True)
    assert any(f"apply the overlay {OURS} on your official {OFFICIAL}" in line for line in dry.describe())
    res = execute_obtain(plan_from(str(archive), home=home, report=ivybridge_cpu_only()))
    assert res.install.ident == OURS and res.proof is not None
    # A signed entry whose `base` is not the one described inside its archive: refused after the download.
    doc = json.loads((published / "catalog.json").read_text())
    doc["entries"][0]["base"]["display_name"] = "something else"
    raw = (json.dumps(doc, indent=2) + "\n").encode()
    (published / "catalog.json").write_bytes(raw)
    (published / "catalog.json.sig").write_text(sign_bytes(raw, load_private_key(TEST_KEY)))
    home2 = make_home(tmp_path / "h2", backends=[])
    install_official(home2, official_folder(home))
    plan = plan_from_catalog(published, home=home2, report=ivybridge_cpu_only(), public_key_path=TEST_PUB)
    with pytest.raises(CatalogError, match="is not what the catalog entry"):
        execute_obtain(plan)
    assert OURS.replace("@", "-") not in os.listdir(home2 / "extensions" / "backends")


def test_merge_fragments_into_the_signed_catalog(tmp_path: Path, built: Path, pack: Path) -> None:
    """CI: each build job publishes an unsigned one-entry catalog; the publish job merges and signs them."""
    frag = tmp_path / "frag"
    publish(built, frag, template=pack, variant="cpu-avx1")
    assert not (frag / "catalog.json.sig").exists()
    out = tmp_path / "release"
    m = merge_catalog(frag, out, key=load_private_key(TEST_KEY))
    assert m.signature is not None and [e.ident for e in m.added] == [OURS]
    cat = load_catalog(out, public_key_path=TEST_PUB)
    assert cat.entries[0].kind == "overlay" and (out / cat.entries[0].url).is_file()
    (frag / cat.entries[0].url).write_bytes(b"swapped")
    with pytest.raises(CatalogError, match="not a file of that size and sha256"):
        merge_catalog(frag, out, key=load_private_key(TEST_KEY))


def test_cpu_without_avx_is_not_offered(home: Path, published: Path) -> None:
    core2 = cpu_report("core2-penryn-yorkfield-q9550.txt")
    offers = catalog_offers(published, home=home, report=core2, public_key_path=TEST_PUB)
    assert offers.offered == () and "AVX" in offers.explanations()[0]


@pytest.mark.parametrize("field", ["replaced", "added"])
def test_a_path_outside_the_folder_in_the_description_is_refused(tmp_path: Path, built: Path, pack: Path,
                                                                 field: str) -> None:
    """An overlay given with --from (no signed sha256) cannot make the install read or write outside its folders."""
    spec = plan_overlay(built, pack)
    doc = spec.to_dict()
    if field == "replaced":
        doc["base"]["replaced"] = [*doc["base"]["replaced"], "../../escape"]
    else:
        doc["added"] = [*doc["added"], "sub/../../escape"]
    with pytest.raises(OverlayError, match="not a relative path inside the backend folder"):
        OverlaySpec.from_dict(doc, source="t")


@pytest.mark.lmstudio_real
def test_real_windows_pack_overlay_carries_none_of_lm_studios_binaries(lmstudio_real: Path, tmp_path: Path) -> None:
    """On LM Studio's real 1.48.0 Windows pack (tests/core/fetch/overlay_packs.real_windows_pair): the overlay holds
    the two rebuilt DLLs and our two JSON files only; applied on a home that has the official pack, the ABI guard
    reads the real PE import tables of LM Studio's kept binaries, and the installed folder equals the built one."""
    from tests.core.fetch.overlay_packs import real_windows_pair

    template, built = real_windows_pair(lmstudio_real, tmp_path / "real")
    out = tmp_path / "cat"
    res = publish(built, out, template=template, key_path=TEST_KEY, audit=False)
    assert sorted(res.entry.base["replaced"]) == ["backend-manifest.json", "display-data.json", "ggml-base.dll",
                                                  "ggml-cpu.dll"]
    with py7zr.SevenZipFile(res.archive) as z:
        shipped = {n.split("/", 1)[1] for n in z.getnames() if "/" in n}
    assert shipped == {*res.entry.base["replaced"], OVERLAY_FILE}
    assert not {"llm_engine.node", "llama.dll", "lmstudiocore.dll", "liblmstudio_bindings.node"} & shipped
    home = make_home(tmp_path, backends=[], vendor=())
    install_official(home, template)
    plan = plan_from_catalog(out, home=home, report=ivybridge_cpu_only(), entry_ident=res.entry.ident,
                             public_key_path=TEST_PUB, force=True)  # a Windows pack judged on this Linux host
    got = execute_obtain(plan)
    assert file_digests(got.install.dest) == file_digests(built)
    assert got.proof is not None and "from our 2 file(s) is exported" in got.proof.abi
    assert got.proof.smoke.startswith("smoke test: not possible")
    # The same with a ggml-base.dll that is not one (another DLL of the pack under its name): LM Studio's kept
    # binaries import ggml-base's functions, which it does not export; refused before anything is installed.
    shutil.copyfile(built / "ggml_llamacpp.dll", built / "ggml-base.dll")
    out2 = tmp_path / "cat2"
    bad = publish(built, out2, template=template, key_path=TEST_KEY, audit=False)
    home2 = make_home(tmp_path / "h2", backends=[], vendor=())
    install_official(home2, template)
    plan = plan_from_catalog(out2, home=home2, report=ivybridge_cpu_only(), entry_ident=bad.entry.ident,
                             public_key_path=TEST_PUB, force=True)
    with pytest.raises(AbiError, match=r"ggml-base\.dll|symbol"):
        execute_obtain(plan)
    assert bad.entry.name + "-1.48.0" not in os.listdir(home2 / "extensions" / "backends")
