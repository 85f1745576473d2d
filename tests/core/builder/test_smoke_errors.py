"""The smoke test reports a server that cannot even start (wrong format, no exec bit) as a failed check, not a crash."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.core.builder.smoke import SmokeTestFailed, plan_smoke, require_smoke, run_smoke
from app.core.builder.tinymodel import shipped_model


@pytest.mark.parametrize("content,mode", [(b"MZ\x90\x00 a Windows program", 0o755), (b"#!/bin/sh\necho hi\n", 0o644)])
def test_unstartable_server_is_a_failed_smoke_test(tmp_path: Path, content: bytes, mode: int) -> None:
    exe = tmp_path / "llama-server"
    exe.write_bytes(content)
    exe.chmod(mode)
    res = run_smoke(plan_smoke(tmp_path, shipped_model(), kind="server"), timeout=20)
    assert not res.ok and res.reason.startswith("could not start llama-server")
    with pytest.raises(SmokeTestFailed, match="could not start"):
        require_smoke(res, folder=tmp_path)
