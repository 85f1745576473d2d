"""`lms-unlocked smoke <folder>` on LM Studio's real 1.48.0 Windows CPU folder (``lmstudio_real`` marker).

The folder (LM Studio's MSVC-built llama.dll b6275 with the community's AVX ggml DLLs and the MSVC runtime it
carries) is extracted to a temporary folder, never copied into the repository. Our host program, compiled
header-less (we have no b6275 llama.h) and cross-built for Windows, runs under Wine (standing in for Windows)
and must generate tokens through the folder's own DLLs.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from app.cli import main
from app.core.builder.smoke import find_wine
from tests.core.lmstudio.test_lms_kinds import extract_real as extract

pytestmark = [
    pytest.mark.lmstudio_real,
    pytest.mark.skipif(find_wine() is None, reason="wine64 missing: scripts/test.sh installs it"),
]


def test_smoke_real_lmstudio_folder_under_wine(
    lmstudio_real: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = extract(lmstudio_real, "avx", tmp_path)
    assert main(["smoke", str(folder), "--json"]) == 0
    r = json.loads(capsys.readouterr().out)
    assert r["ok"] and r["tokens"] == 16 and r["runner"] == "wine", r
    names = {p.rsplit("\\", 1)[-1].lower() for p in r["loaded"]}
    assert {"llama.dll", "ggml_llamacpp.dll", "ggml-base.dll", "ggml-cpu.dll"} <= names, r["loaded"]
    # Every llama/ggml DLL that ran is the folder's own.
    assert all(p.lower().startswith("z:" + str(folder).replace("/", "\\").lower()) for p in r["loaded"]), r
    # Human output says where it ran.
    assert main(["smoke", str(folder)]) == 0
    out = capsys.readouterr().out
    assert out.startswith("OK: 16 tokens") and "(wine)" in out and "llama.dll" in out


def test_smoke_refuses_qemu_for_a_windows_folder(
    lmstudio_real: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = extract(lmstudio_real, "avx", tmp_path)
    assert main(["smoke", str(folder), "--qemu-cpu", "IvyBridge"]) == 2
    err = capsys.readouterr().err
    assert "qemu cannot check" in err and "PE audit" in err
