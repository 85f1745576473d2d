"""clone_template on template folders built from the real manifests: byte-identical copy, minimal rewrites."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from app.core.lmstudio.backends import PROVENANCE_FILE, read_backend
from app.core.lmstudio.clone import CloneError, clone_template
from app.core.lmstudio.naming import NamingError
from tests.lmstudio_homes import TemplateSpec, template, tree_hashes, write_backend


def _tmpl(tmp_path: Path, key: str) -> tuple[TemplateSpec, Path]:
    spec = template(key)
    return spec, write_backend(tmp_path / "tmpl" / spec.folder_name, spec)


def test_clone_1x_windows_cpu(tmp_path: Path) -> None:
    spec, src = _tmpl(tmp_path, "win-cpu-1.48.0")
    before = tree_hashes(src)
    new_cpu = tmp_path / "ggml-cpu.dll"
    new_cpu.write_bytes(b"our AVX1 ggml-cpu build")
    dest = clone_template(
        src,
        tmp_path / "out" / "llama.cpp-win-x86_64-avx1-unlocked-1.48.0",
        new_name="llama.cpp-win-x86_64-avx1-unlocked",
        ise=["AVX"],
        display_suffix="(AVX1, Unlocked)",
        replace_files={"ggml-cpu.dll": new_cpu},
    )
    assert tree_hashes(src) == before  # template untouched
    after = tree_hashes(dest)
    changed = {k for k in after if after[k] != before.get(k)}
    assert changed == {"backend-manifest.json", "display-data.json", "ggml-cpu.dll"}
    assert (dest / "ggml-cpu.dll").read_bytes() == b"our AVX1 ggml-cpu build"
    # manifest: exactly the same bytes as theIvanR's edit except our name (CRLF kept, no BOM)
    raw = (dest / "backend-manifest.json").read_bytes()
    assert raw == spec.manifest.replace(
        b'"llama.cpp-win-x86_64-avx2"', b'"llama.cpp-win-x86_64-avx1-unlocked"'
    ).replace(b'"AVX2"', b'"AVX"')
    assert b"\r\n" in raw and not raw.startswith(b"\xef\xbb\xbf")
    dd = json.loads((dest / "display-data.json").read_text(encoding="utf-8"))
    assert dd[0][0] == "en" and dd[0][1]["displayName"] == "CPU llama.cpp (Windows) (AVX1, Unlocked)"
    old_dd = json.loads(spec.display_data)
    old_dd[0][1]["displayName"] = dd[0][1]["displayName"]
    assert dd == old_dd  # release notes and everything else kept
    assert (dest / "display-data.json").read_bytes() == spec.display_data.replace(
        b'"CPU llama.cpp (Windows)"', b'"CPU llama.cpp (Windows) (AVX1, Unlocked)"'
    )  # byte for byte: LF, indent, no final newline, non-ASCII kept
    info = read_backend(dest)
    assert (info.ident, info.ise, info.problems) == ("llama.cpp-win-x86_64-avx1-unlocked@1.48.0", ("AVX",), ())


def test_clone_2x_linux_keeps_symlinks_exec_bits_and_replaces_through_links(tmp_path: Path) -> None:
    spec, src = _tmpl(tmp_path, "linux-vulkan-2.14.0")
    lib = tmp_path / "libggml-cpu.so"
    lib.write_bytes(b"rebuilt cpu lib")
    os.chmod(lib, 0o600)
    dest = clone_template(
        src,
        tmp_path / "out" / "x",
        new_name="llama.cpp-linux-x86_64-vulkan-avx1-unlocked",
        ise=["AVX"],
        display_suffix="— Unlocked",
        replace_files={"libggml-cpu.so": lib},  # a symlink chain in the template
    )
    for rel, target in spec.symlinks.items():
        assert os.readlink(dest / rel) == target
    assert (dest / "libggml-cpu.so.0.0.8861").read_bytes() == b"rebuilt cpu lib"
    assert os.access(dest / "libggml-cpu.so.0.0.8861", os.X_OK)  # mode of the file it replaced
    for rel in spec.executables:
        assert os.stat(dest / rel).st_mode & 0o777 == os.stat(src / rel).st_mode & 0o777
    m = json.loads((dest / "backend-manifest.json").read_text(encoding="utf-8"))
    orig = spec.manifest_json
    assert list(m) == list(orig)  # key order kept
    assert {k for k in m if m[k] != orig[k]} == {"name", "cpu"}


def test_clone_cuda_gpu_targets(tmp_path: Path) -> None:
    _spec, src = _tmpl(tmp_path, "linux-cuda-2.14.0")
    dest = clone_template(
        src,
        tmp_path / "o",
        new_name="llama.cpp-linux-x86_64-nvidia-cuda-avx1-kepler-unlocked",
        ise=["AVX"],
        display_suffix="(Kepler)",
        gpu_targets=["3.5", "3.7"],
    )
    info = read_backend(dest)
    assert info.gpu_targets == ("3.5", "3.7") and info.gpu_make == "Nvidia"


def test_artifacts_follow_a_server_in_a_subfolder(tmp_path: Path) -> None:
    _spec, src = _tmpl(tmp_path, "linux-cpu-2.14.0")
    server = tmp_path / "llama-server"
    server.write_bytes(b"#!/bin/sh\necho ours\n")
    os.chmod(server, 0o755)
    impl = tmp_path / "libllama.so"
    impl.write_bytes(b"ours")
    dest = clone_template(
        src,
        tmp_path / "o",
        new_name="llama.cpp-linux-x86_64-avx1-unlocked",
        ise=["AVX"],
        display_suffix="",
        replace_files={"unlocked/llama-server": server, "unlocked/libllama.so": impl},
        server_relpath="unlocked/llama-server",
    )
    art = json.loads((dest / "engine-protocol-server-artifacts.json").read_text(encoding="utf-8"))
    assert art["executable_relative_path"] == "unlocked/llama-server"
    rels = {f["relative_path"]: f["executable"] for f in art["files"]}
    assert rels == {
        "llama-server": True,
        "libllama-server-impl.so": True,
        "unlocked/llama-server": True,
        "unlocked/libllama.so": False,
    }
    assert read_backend(dest).server_relpath == "unlocked/llama-server"


def test_artifacts_untouched_when_nothing_moves(tmp_path: Path) -> None:
    spec, src = _tmpl(tmp_path, "linux-cpu-2.14.0")
    dest = clone_template(
        src, tmp_path / "o", new_name="llama.cpp-linux-x86_64-avx1-unlocked", ise=["AVX"], display_suffix=""
    )
    assert (dest / "engine-protocol-server-artifacts.json").read_bytes() == spec.artifacts
    assert (dest / "display-data.json").read_bytes() == spec.display_data


def test_marker_of_a_template_is_not_copied(tmp_path: Path) -> None:
    _spec, src = _tmpl(tmp_path, "linux-cpu-2.14.0")
    (src / PROVENANCE_FILE).write_text("{}")
    dest = clone_template(
        src, tmp_path / "o", new_name="llama.cpp-linux-x86_64-avx1-unlocked", ise=["AVX"], display_suffix=""
    )
    assert not (dest / PROVENANCE_FILE).exists()


def test_refusals_leave_nothing_behind(tmp_path: Path) -> None:
    _spec, src = _tmpl(tmp_path, "linux-vulkan-2.14.0")
    with pytest.raises(NamingError):
        clone_template(
            src, tmp_path / "a", new_name="llama.cpp-linux-x86_64-vulkan-avx2", ise=["AVX"], display_suffix=""
        )
    with pytest.raises(CloneError):
        clone_template(
            src, tmp_path / "b", new_name="x-unlocked", ise=["AVX"], display_suffix="", replace_files={"../evil": src}
        )
    with pytest.raises(CloneError):
        clone_template(
            src,
            tmp_path / "c",
            new_name="x-unlocked",
            ise=["AVX"],
            display_suffix="",
            gpu_targets=None,
            replace_files={"a.so": tmp_path / "missing"},
        )
    _s2, cpu = _tmpl(tmp_path / "2", "linux-cpu-2.14.0")
    with pytest.raises(CloneError):
        clone_template(cpu, tmp_path / "d", new_name="x-unlocked", ise=["AVX"], display_suffix="", gpu_targets=["3.5"])
    os.symlink("/etc/hostname", src / "abs-link")
    with pytest.raises(CloneError):
        clone_template(src, tmp_path / "e", new_name="x-unlocked", ise=["AVX"], display_suffix="")
    assert not any((tmp_path / n).exists() for n in "abcde")
