"""Three kinds of backend folder (official, ours, third-party), on homes built from the real manifests and on
LM Studio's real 1.48.0 Windows folders (``lmstudio_real`` marker).

STOOD IN: the Windows PE files of the fake folders are minimal MZ/PE headers carrying only a link time stamp
(LM Studio's binaries may not be redistributed); the real-data tests read the real ones.
"""

from __future__ import annotations

import json
import shutil
import struct
from datetime import UTC, datetime
from pathlib import Path

import py7zr
import pytest

from app.core.lmstudio.backends import PROVENANCE_FILE, list_backends
from app.core.lmstudio.kinds import KINDS, classify_backend, classify_folder, foreign_builds, pe_link_time
from app.core.lmstudio.naming import OFFICIAL_NAMES, looks_official, official_grammar
from tests.lmstudio_homes import OFFICIAL_KEYS, TEMPLATE_KEYS, make_home, template, write_backend


def kinds_by_key(tmp_path: Path) -> dict[str, str]:
    home = make_home(tmp_path, backends=TEMPLATE_KEYS)
    by_ident = {b.ident: classify_backend(b).kind for b in list_backends(home)}
    return {k: by_ident[template(k).ident] for k in TEMPLATE_KEYS}


def test_official_grammar_accepts_every_official_name_and_no_community_one() -> None:
    assert all(official_grammar(n) for n in OFFICIAL_NAMES)
    community = [
        "llama.cpp-win-x86_64-avx",  # theIvanR
        "llama.cpp-win-x86_64-avx0",
        "llama.cpp-win-x86_64-vulkan-avx1",
        "llama.cpp-linux-x86_64-nvidia-cuda-avx2-k40k80",  # Delitants
        "llama.cpp-kvmem-win-x86_64-nvidia-cuda13-avx2",  # KVMem
        "ffprocessor-spark-win-x86_64-vulkan-avx2",
        "llama.cpp-win-x86_64-avx1-unlocked",  # ours
        "llama.cpp-mac-arm64-apple-metal",  # wrong ISE token for mac-arm64
    ]
    assert [n for n in community if looks_official(n)] == []


def test_template_kinds(tmp_path: Path) -> None:
    got = kinds_by_key(tmp_path)
    assert {k for k, v in got.items() if v == "official"} == set(OFFICIAL_KEYS)
    assert {k for k, v in got.items() if v == "third-party"} == set(TEMPLATE_KEYS) - set(OFFICIAL_KEYS)
    assert set(got.values()) <= set(KINDS)


def test_ours_by_provenance_even_with_an_official_name(tmp_path: Path) -> None:
    d = write_backend(tmp_path / "llama.cpp-linux-x86_64-avx2-2.14.0", "linux-cpu-2.14.0")
    assert classify_folder(d).kind == "official"
    (d / PROVENANCE_FILE).write_text("{}")
    v = classify_folder(d)
    assert (v.kind, v.name_clash) == ("ours", True)


def test_edited_copy_that_kept_the_official_name_is_a_name_clash(tmp_path: Path) -> None:
    """The user's AVX edit of the official pack, not renamed: third-party, reported as a clash."""
    spec = template("win-cpu-1.48.0")
    d = write_backend(tmp_path / spec.folder_name, spec)
    m = d / "backend-manifest.json"
    m.write_bytes(m.read_bytes().replace(b'"AVX2"', b'"AVX"'))
    v = classify_folder(d)
    assert (v.kind, v.name_clash) == ("third-party", True)
    assert "ISE AVX" in v.reasons[0] and "lists AVX2" in v.reasons[0]


def test_copy_under_another_folder_name_is_not_official(tmp_path: Path) -> None:
    spec = template("linux-vulkan-2.14.0")
    d = write_backend(tmp_path / (spec.folder_name + ".backup"), spec)
    v = classify_folder(d)
    assert (v.kind, v.name_clash) == ("third-party", True) and "(a copy)" in v.reasons[0]


@pytest.mark.parametrize("marker", ["ffprocessor-build.json", "PRISM_VERSION"])
def test_other_projects_marker_file(tmp_path: Path, marker: str) -> None:
    d = write_backend(tmp_path / template("linux-cuda-2.14.0").folder_name, "linux-cuda-2.14.0")
    (d / marker).write_text("x")
    assert classify_folder(d).kind == "third-party"


def test_unreadable_manifest(tmp_path: Path) -> None:
    """Under one of LM Studio's folder names: its own, damaged (never changed); under another name: third-party."""
    d = write_backend(tmp_path / template("linux-cpu-2.14.0").folder_name, "linux-cpu-2.14.0")
    (d / "backend-manifest.json").write_bytes(b"{broken")
    assert classify_folder(d).kind == "official"
    assert classify_folder(d.rename(tmp_path / "my-cpu-pack")).kind == "third-party"


def _pe(path: Path, when: datetime) -> None:
    """A minimal MZ/PE header with a COFF link time (stands in for a Windows DLL)."""
    head = bytearray(0x100)
    head[:2] = b"MZ"
    struct.pack_into("<I", head, 0x3C, 0x80)
    head[0x80:0x84] = b"PE\0\0"
    struct.pack_into("<HHI", head, 0x84, 0x8664, 1, int(when.timestamp()))
    path.write_bytes(bytes(head))


def test_swapped_libraries_in_an_official_named_windows_pack(tmp_path: Path) -> None:
    """ggml DLLs linked days after LM Studio's own libraries: swapped, so not LM Studio's content."""
    spec = template("win-cpu-1.48.0")
    d = write_backend(tmp_path / spec.folder_name, spec)
    lms = datetime(2025, 8, 25, 20, 5, tzinfo=UTC)
    for n in ("llm_engine.dll", "llm_engine.node", "liblmstudio_bindings.node", "lmstudiocore.dll", "llama.dll"):
        _pe(d / n, lms)
    _pe(d / "VCRUNTIME140.dll", datetime(1978, 1, 20, tzinfo=UTC))  # reproducible-build hash, not a date
    _pe(d / "ggml-cpu.dll", lms)
    assert classify_folder(d).kind == "official" and foreign_builds(d) == []
    _pe(d / "ggml-cpu.dll", datetime(2025, 8, 29, 16, 1, tzinfo=UTC))
    v = classify_folder(d)
    assert (v.kind, v.name_clash) == ("third-party", True)
    assert v.reasons == (
        "ggml-cpu.dll linked on 2025-08-29, apart from LM Studio's own libraries (2025-08-25): rebuilt or swapped",
    )
    assert pe_link_time(d / "backend-manifest.json") is None


# ------------------------------------------------------------------------------------ LM Studio's real folders


def extract_real(lmstudio_real: Path, which: str, dest: Path) -> Path:
    """Extract ``llama.cpp-win-x86_64-<which>-1.48.0.7z`` under ``dest``; the backend folder inside."""
    with py7zr.SevenZipFile(lmstudio_real / f"llama.cpp-win-x86_64-{which}-1.48.0.7z") as z:
        z.extractall(dest)
    return dest / f"llama.cpp-win-x86_64-{which}-1.48.0"


@pytest.mark.lmstudio_real
@pytest.mark.parametrize("which", ["avx", "noavx"])
def test_real_community_folders_are_third_party(lmstudio_real: Path, tmp_path: Path, which: str) -> None:
    d = extract_real(lmstudio_real, which, tmp_path)
    v = classify_folder(d)
    assert (v.kind, v.name_clash) == ("third-party", False)
    # LM Studio's own files (linked 2025-08-25) beside ggml DLLs rebuilt by theIvanR days later
    odd = foreign_builds(d)
    assert len(odd) == 1 and "ggml-base.dll, ggml-cpu.dll, ggml_llamacpp.dll linked on" in odd[0]
    assert "(2025-08-25)" in odd[0]


@pytest.mark.lmstudio_real
def test_real_avx_folder_renamed_back_to_the_official_name_is_still_third_party(
    lmstudio_real: Path, tmp_path: Path
) -> None:
    """The user's copy that kept LM Studio's name and ISE: only the rebuilt ggml DLLs tell it apart."""
    d = extract_real(lmstudio_real, "avx", tmp_path / "x")
    m = d / "backend-manifest.json"
    data = json.loads(m.read_bytes())
    data["name"], data["cpu"]["instruction_set_extensions"] = "llama.cpp-win-x86_64-avx2", ["AVX2"]
    official = tmp_path / "llama.cpp-win-x86_64-avx2-1.48.0"
    shutil.move(d, official)
    (official / "backend-manifest.json").write_text(json.dumps(data))
    v = classify_folder(official)
    assert (v.kind, v.name_clash) == ("third-party", True) and "rebuilt or swapped" in v.reasons[0]
