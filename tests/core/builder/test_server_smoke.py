"""The 2.x smoke path: the folder's own llama-server on 127.0.0.1, asked for tokens over HTTP, then stopped.

Building llama-server needs libllama-common and the server library (≈ 4 min cold on 2 cores, then cached in the
persistent test cache). The whole suite measured 11.5 min cold without it, so it is part of the default run;
LMS_UNLOCKED_TEST_SERVER=0 skips it on a machine where that build cannot be afforded.
"""

from __future__ import annotations

import os
from pathlib import Path

import psutil
import pytest

from app.core.builder.smoke import plan_smoke, run_smoke
from app.core.builder.tinymodel import shipped_model
from tests.core.builder import realbuild as rb

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1200)]


@pytest.fixture(scope="module")
def server_bin() -> Path:
    if os.environ.get("LMS_UNLOCKED_TEST_SERVER") == "0":
        pytest.skip("LMS_UNLOCKED_TEST_SERVER=0: the llama-server build was not wanted")
    return rb.build(rb.server_plan()).bin_dir


def test_server_smoke_and_no_leftover_process(server_bin: Path, tmp_path: Path) -> None:
    folder = tmp_path / "b"
    rb.copy_bin(server_bin, folder)
    r = run_smoke(plan_smoke(folder, shipped_model(), kind="server", n_tokens=8), timeout=120)
    assert r.ok and r.tokens == 8, r
    assert not [p for p in psutil.process_iter(["exe"]) if p.info["exe"] == str(folder / "llama-server")]


def test_server_sigill_under_old_cpu(server_bin: Path, tmp_path: Path) -> None:
    folder = tmp_path / "b"
    rb.copy_bin(server_bin, folder)
    r = run_smoke(plan_smoke(folder, shipped_model(), kind="server", qemu_cpu="Westmere", n_tokens=4), timeout=120)
    assert not r.ok and r.sigill, r


def test_2x_package_puts_the_server_in_a_subfolder_and_it_runs(server_bin: Path, tmp_path: Path) -> None:
    """2.x template (tests/lmstudio_homes stand-in with engine_protocol_server + artifacts file): the rebuilt server
    and its libraries go to unlocked-server/, the manifest and artifacts point there, and that server answers."""
    import json

    from app.core.builder.package import package_backend
    from tests.lmstudio_homes import write_backend

    tmpl = write_backend(tmp_path / "llama.cpp-linux-x86_64-avx2-2.14.0", "linux-cpu-2.14.0")
    plan = rb.server_plan()
    res = package_backend(
        plan, server_bin, tmpl, tmp_path / "out", template_name="llama.cpp-linux-x86_64-avx2", template_version="2.14.0"
    )
    assert res.server == "unlocked-server/llama-server"
    m = json.loads((res.folder / "backend-manifest.json").read_text())
    assert m["engine_protocol_server"]["executable_relative_path"] == "unlocked-server/llama-server"
    art = json.loads((res.folder / "engine-protocol-server-artifacts.json").read_text())
    assert art["executable_relative_path"] == "unlocked-server/llama-server"
    assert (tmpl / "llama-server").read_bytes() == (res.folder / "llama-server").read_bytes()  # LM Studio's kept
    assert (res.folder / "unlocked-server" / "libggml-cpu.so").is_symlink()
    assert res.audit.get("unlocked-server/llama-server").counted
    r = run_smoke(plan_smoke(res.folder, shipped_model(), kind="server", program=res.server, n_tokens=8), timeout=120)
    assert r.ok and r.tokens == 8, r
