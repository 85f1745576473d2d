"""read_backend / list_backends / find_backend on homes built from the real manifests."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from app.core.lmstudio.backends import PROVENANCE_FILE, find_backend, list_backends, read_backend
from app.core.lmstudio.errors import AmbiguousBackend, BackendNotFound
from app.core.lmstudio.home import resolve_home
from tests.lmstudio_homes import TEMPLATE_KEYS, make_home, template


def test_every_template_reads_clean(tmp_path: Path) -> None:
    home = make_home(tmp_path, backends=TEMPLATE_KEYS)
    infos = list_backends(home)
    assert sorted(b.ident for b in infos) == sorted(template(k).ident for k in TEMPLATE_KEYS)
    for b in infos:
        assert b.problems == (), b.ident
        assert b.valid and not b.ours
    assert "vendor" not in {b.folder.name for b in infos}


def test_real_1x_windows_fields(tmp_path: Path) -> None:
    home = make_home(tmp_path, backends=["win-avx-1.48.0"])
    b = find_backend(home, "llama.cpp-win-x86_64-avx@1.48.0")
    assert (b.generation, b.manifest_version, b.platform, b.arch, b.ise) == ("1.x", "3", "win", "x86_64", ("AVX",))
    assert (b.llama_tag, b.llama_commit, b.llama_build_exact) == ("b6275", "e288693", True)
    assert b.display_name == "CPU llama.cpp (Windows, AVX1)"
    assert b.target_libraries == ("llm_engine.node", "liblmstudio_bindings.node")
    assert b.gpu_framework == "" and b.server_relpath == ""


def test_real_2x_linux_cuda_fields(tmp_path: Path) -> None:
    home = make_home(tmp_path, backends=["linux-cuda-k40k80-2.14.0"])
    b = find_backend(home, "llama.cpp-linux-x86_64-nvidia-cuda-avx2-k40k80")  # name alone: one version
    assert (b.generation, b.gpu_make, b.gpu_framework, b.gpu_targets) == ("2.x", "Nvidia", "CUDA", ())
    assert b.vendor_packages == ("linux-llama-cuda-vendor-v1",)
    assert b.minimum_lmstudio_version == "0.4.0+15" and b.llama_tag == "b8861"


def test_broken_folders_come_back_with_problems(tmp_path: Path) -> None:
    home = make_home(tmp_path, backends=["linux-cpu-2.14.0"])
    bdir = resolve_home(home).backends_dir
    (bdir / "empty").mkdir()
    nested = bdir / "outer"
    shutil.copytree(bdir / "llama.cpp-linux-x86_64-avx2-2.14.0", nested / "inner", symlinks=True)
    (bdir / "syntax").mkdir()
    (bdir / "syntax" / "backend-manifest.json").write_bytes(b'{"name": "x",')
    (bdir / "utf16").mkdir()
    (bdir / "utf16" / "backend-manifest.json").write_bytes("{}".encode("utf-16"))
    (bdir / "partial").mkdir()
    (bdir / "partial" / "backend-manifest.json").write_bytes(b'\xef\xbb\xbf{"name": "p", "version": "1.0.0"}')
    (bdir / "notobj").mkdir()
    (bdir / "notobj" / "backend-manifest.json").write_bytes(b"[1]")
    (bdir / "stray-file.txt").write_bytes(b"x")
    by = {b.folder.name: b for b in list_backends(home)}
    assert set(by) == {"empty", "outer", "syntax", "utf16", "partial", "notobj", "llama.cpp-linux-x86_64-avx2-2.14.0"}
    codes = {k: {p.code for p in v.problems} for k, v in by.items()}
    assert codes["empty"] == {"manifest-missing"}
    assert codes["outer"] == {"manifest-nested"}
    assert codes["syntax"] == {"manifest-syntax"}
    assert codes["utf16"] == {"manifest-encoding"}
    assert codes["notobj"] == {"manifest-not-object"}
    assert codes["partial"] == {"manifest-bom", "manifest-field-missing", "folder-name-mismatch"}
    assert by["partial"].ident == "p@1.0.0" and by["partial"].valid
    assert not by["syntax"].valid


def test_ours_marker(tmp_path: Path) -> None:
    home = make_home(tmp_path, backends=["linux-cpu-2.14.0"])
    folder = resolve_home(home).backends_dir / "llama.cpp-linux-x86_64-avx2-2.14.0"
    (folder / PROVENANCE_FILE).write_text("{}")
    assert read_backend(folder).ours


def test_find_errors(tmp_path: Path) -> None:
    home = make_home(tmp_path, backends=["linux-cpu-2.14.0"])
    with pytest.raises(BackendNotFound) as ei:
        find_backend(home, "nope@1.0")
    assert "llama.cpp-linux-x86_64-avx2@2.14.0" in ei.value.hint
    bdir = resolve_home(home).backends_dir
    shutil.copytree(bdir / "llama.cpp-linux-x86_64-avx2-2.14.0", bdir / "copy.backup", symlinks=True)
    with pytest.raises(AmbiguousBackend):
        find_backend(home, "llama.cpp-linux-x86_64-avx2@2.14.0")


def test_missing_backends_dir_lists_nothing(tmp_path: Path) -> None:
    assert list_backends(tmp_path / "nothing here") == []
