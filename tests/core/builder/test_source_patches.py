"""Source acquisition (tag archive over a real local HTTP server, --source dir/archive) and the patch series,
including both shipped patches against the real llama.cpp 0c1e57098 source."""

from __future__ import annotations

import hashlib
import io
import json
import random
import shutil
import tarfile
import zipfile
from pathlib import Path

import pytest

from app.core.builder.patches import (
    PatchEntry,
    PatchError,
    apply_patches,
    check_patch,
    is_applied,
    read_series,
    select_patches,
)
from app.core.builder.source import find_llama_root, obtain_archive, prepare_source
from app.core.errors import InputFileError
from app.core.fetch.errors import ChecksumMismatch
from app.core.paths import patches_dir
from tests.core.builder import realbuild as rb
from tests.httpserver import Fault, LocalHTTPServer

CMAKE = "cmake_minimum_required(VERSION 3.14)\nproject(llama.cpp)\n"


def tiny_tree(top: str = "llama.cpp-b1234") -> bytes:
    """A small tarball shaped like GitHub's tag archive (top dir, CMakeLists, ggml/, src/, docs/)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        for name, data in {
            f"{top}/CMakeLists.txt": CMAKE,
            f"{top}/ggml/CMakeLists.txt": "# ggml\n",
            f"{top}/ggml/src/ggml.c": "int ggml_x(void) { return 1; }\n",
            f"{top}/src/llama.cpp": "// llama\n",
            f"{top}/docs/big.md": "x" * 1000,
            f"{top}/ggml/src/blob.bin": random.Random(1).randbytes(20000),
        }.items():
            b = data.encode() if isinstance(data, str) else data
            ti = tarfile.TarInfo(name)
            ti.size = len(b)
            tf.addfile(ti, io.BytesIO(b))
    return buf.getvalue()


def test_tag_archive_download_is_cached_and_verified(tmp_path: Path) -> None:
    body = tiny_tree()
    with LocalHTTPServer() as srv:
        srv.add("/b1234.tar.gz", body, etag='"v1"')
        srv.set_fault("/b1234.tar.gz", Fault(drop_after=5000, times=1))  # first attempt cut off: resumed
        url = srv.url("/b1234.tar.gz")
        seen: list[int] = []
        path, sha = obtain_archive("b1234", cache_root=tmp_path, url=url, progress=lambda p: seen.append(p.done))
        assert len(body) > 10000
        assert sha == hashlib.sha256(body).hexdigest() and path.read_bytes() == body
        index = json.loads((tmp_path / "llama-src" / "index.json").read_text())
        assert index["archives"]["b1234"]["sha256"] == sha and index["archives"]["b1234"]["url"] == url
        gets = [r for r in srv.requests if r.method == "GET"]
        n = len(gets)
        assert n >= 2 and seen  # resumed after the cut
        # Second time: verified from the index, no request at all.
        path2, sha2 = obtain_archive("b1234", cache_root=tmp_path, url=url)
        assert (path2, sha2) == (path, sha) and len([r for r in srv.requests if r.method == "GET"]) == n
        # A corrupted cache file is re-downloaded and must match the recorded sha256.
        path.write_bytes(b"garbage")
        obtain_archive("b1234", cache_root=tmp_path, url=url)
        assert path.read_bytes() == body
        # Upstream changed the archive behind the same tag: refused, not silently used.
        path.unlink()
        srv.add("/b1234.tar.gz", tiny_tree("llama.cpp-b1234-x"), etag='"v2"')
        with pytest.raises(ChecksumMismatch):
            obtain_archive("b1234", cache_root=tmp_path, url=url)


def test_prepare_source_from_tag_archive(tmp_path: Path) -> None:
    with LocalHTTPServer() as srv:
        srv.add("/b1234.tar.gz", tiny_tree())
        t = prepare_source(
            tag="b1234",
            commit=None,
            cache_root=tmp_path,
            url=srv.url("/b1234.tar.gz"),
            patches_root=tmp_path / "nopatches",
        )
    assert t.root.name == "llama.cpp-b1234" and (t.root / "ggml" / "src" / "ggml.c").is_file()
    assert not (t.root / "docs").exists()  # docs are not extracted
    assert t.build_number == 1234 and t.archive_sha256
    # Reused: same tree, no server needed now (archive verified from cache).
    t2 = prepare_source(tag="b1234", commit=None, cache_root=tmp_path, url="http://127.0.0.1:9/none")
    assert t2.root == t.root


def test_archive_url_can_point_at_a_mirror(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with LocalHTTPServer() as srv:
        srv.add("/mirror/b77.tar.gz", tiny_tree("llama.cpp-b77"))
        monkeypatch.setenv("LMS_UNLOCKED_LLAMA_ARCHIVE_URL", srv.url("/mirror/{tag}.tar.gz"))
        t = prepare_source(tag="b77", commit=None, cache_root=tmp_path)
    assert t.root.name == "llama.cpp-b77" and t.origin.endswith("/mirror/b77.tar.gz")


def test_prepare_source_from_dir_and_zip(tmp_path: Path) -> None:
    src = tmp_path / "src"
    with tarfile.open(fileobj=io.BytesIO(tiny_tree("llama.cpp")), mode="r:gz") as tf:
        tf.extractall(src, filter="data")
    t = prepare_source(tag="b1", commit="abcdef1", cache_root=tmp_path / "c", source=src / "llama.cpp")
    assert (t.root / "CMakeLists.txt").read_text() == CMAKE and t.commit == "abcdef1"
    z = tmp_path / "s.zip"
    with zipfile.ZipFile(z, "w") as zf:
        zf.writestr("llama.cpp-b2/CMakeLists.txt", CMAKE)
        zf.writestr("llama.cpp-b2/ggml/CMakeLists.txt", "#")
        zf.writestr("llama.cpp-b2/src/a.cpp", "//")
    t = prepare_source(tag="b2", commit=None, cache_root=tmp_path / "c", source=z)
    assert t.root.name == "llama.cpp-b2"
    with pytest.raises(InputFileError, match=r"does not contain llama\.cpp"):
        find_llama_root(tmp_path / "src" / "llama.cpp" / "src")
    with pytest.raises(InputFileError, match="does not exist"):
        prepare_source(tag="b1", commit=None, cache_root=tmp_path / "c", source=tmp_path / "missing")


def test_series_is_valid_and_names_why() -> None:
    entries = read_series()
    assert {e.file for e in entries} == {"vulkan-layer-settings-header-guard.patch", "cuda-kepler-batched-gemm.patch"}
    for e in entries:
        text = (patches_dir() / e.file).read_text()
        head = text.split("--- a/")[0]
        assert "Why:" in head and "Applies to:" in head and "0c1e57098" in head
    sel = select_patches(entries, tag=None, commit="0c1e57098bba43ac", features=frozenset({"vulkan"}))
    assert [e.file for e in sel] == ["vulkan-layer-settings-header-guard.patch"]
    assert select_patches(entries, tag=None, commit="0c1e57098", features=frozenset()) == []
    assert select_patches(entries, tag="b6275", commit="e288693", features=frozenset({"vulkan"})) == []


def test_patch_entry_matching() -> None:
    e = PatchEntry("x.patch", ("b8000-b8999", "0c1e570"), "always")
    assert e.matches_source("b8861", None) and not e.matches_source("b9000", None)
    assert e.matches_source(None, "0c1e57098bba") and not e.matches_source(None, "0c1e571")
    assert PatchEntry("y", ("*",), "cuda").matches_source(None, None)


def test_malformed_series(tmp_path: Path) -> None:
    (tmp_path / "series").write_text("a.patch b1\n")
    with pytest.raises(PatchError, match="malformed"):
        read_series(tmp_path)
    (tmp_path / "series").write_text("missing.patch * always\n")
    with pytest.raises(PatchError, match="missing file"):
        read_series(tmp_path)


@pytest.fixture(scope="module")
def real_files(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The two files the shipped patches touch, unpatched, from the real sdist."""
    root = tmp_path_factory.mktemp("real")
    members = {
        "ggml/src/ggml-vulkan/ggml-vulkan.cpp",
        "ggml/src/ggml-cuda/ggml-cuda.cu",
    }
    prefix = "llama_cpp_python-0.3.36/vendor/llama.cpp/"
    with tarfile.open(rb.sdist_path()) as tf:
        for m in members:
            f = tf.extractfile(prefix + m)
            assert f is not None
            (root / m).parent.mkdir(parents=True, exist_ok=True)
            (root / m).write_bytes(f.read())
    return root


@pytest.mark.parametrize("name", ["vulkan-layer-settings-header-guard.patch", "cuda-kepler-batched-gemm.patch"])
def test_shipped_patch_applies_to_real_source(real_files: Path, tmp_path: Path, name: str) -> None:
    tree = tmp_path / "t"
    shutil.copytree(real_files, tree)
    pf = patches_dir() / name
    check_patch(pf, tree)
    assert not is_applied(pf, tree)
    applied = apply_patches(tree, [PatchEntry(name, ("0c1e57098",), "always")])
    assert applied[0].file == name and applied[0].sha256 == hashlib.sha256(pf.read_bytes()).hexdigest()
    assert is_applied(pf, tree)
    # Applying again is a no-op that still records it.
    assert apply_patches(tree, [PatchEntry(name, ("0c1e57098",), "always")])[0].file == name
    if "vulkan" in name:
        text = (tree / "ggml/src/ggml-vulkan/ggml-vulkan.cpp").read_text()
        assert "#if VK_HEADER_VERSION >= 272" in text
    else:
        text = (tree / "ggml/src/ggml-cuda/ggml-cuda.cu").read_text()
        assert text.count("cublasSgemmBatched(") == 1 and text.count("cublasSgemmStridedBatched(") == 1
        assert "GGML_CUDA_KEPLER_GEMM_EX_MIN_CC 500" in text


def test_patch_that_does_not_fit_is_refused_before_anything_changes(real_files: Path, tmp_path: Path) -> None:
    tree = tmp_path / "t"
    shutil.copytree(real_files, tree)
    f = tree / "ggml/src/ggml-vulkan/ggml-vulkan.cpp"
    f.write_text(f.read_text().replace("vk::LayerSettingsCreateInfoEXT layer_setting_info(settings);", "// gone"))
    before = (tree / "ggml/src/ggml-cuda/ggml-cuda.cu").read_bytes()
    entries = [
        PatchEntry("cuda-kepler-batched-gemm.patch", ("*",), "always"),
        PatchEntry("vulkan-layer-settings-header-guard.patch", ("*",), "always"),
    ]
    with pytest.raises(PatchError, match="does not apply") as ei:
        apply_patches(tree, entries)
    assert ei.value.details
    assert (tree / "ggml/src/ggml-cuda/ggml-cuda.cu").read_bytes() == before  # checked all first, applied none
