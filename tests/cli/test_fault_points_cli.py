"""Every journal fault point of install / uninstall / select, through the real CLI in a subprocess, both as a
SIGKILL and as an injected I/O error (#14): never exit 70, never a state between old and new.

docs/reliability.md records this coverage (points x kill / I/O error) and the repeated trial runs of
bench/fault_trials.py.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from app.core.lmstudio.backends import PROVENANCE_FILE
from app.core.lmstudio.install import execute_install, plan_install, recover
from app.core.lmstudio.journal import FAULT_ENV, STATE_DIR_NAME
from tests.conftest import REPO
from tests.lmstudio_homes import make_home, prepare_our_backend, tree_hashes

OURS = "llama.cpp-linux-x86_64-avx1-unlocked"
OFFICIAL = "llama.cpp-linux-x86_64-avx2@2.14.0"
NONE = {"processes": lambda _h: []}
PREFS = [{"model_format": "gguf", "name": "llama.cpp-linux-x86_64-vulkan-avx2", "version": "2.14.0"}]


def _points(kind: str, ops: int, before: tuple[str, ...]) -> list[str]:
    return [f"{kind}:{p}" for p in before] + [f"{kind}:journal"] + [
        f"{kind}:op{i}{s}" for i in range(ops) for s in ("", ":recorded")
    ] + [f"{kind}:finished"]


# install v1 again over v1 (--select): back up v1, move in, preferences, records = 4 operations
FAULT_POINTS = {
    "install": _points("install", 4, ("staging", "prepared")),
    "uninstall": _points("uninstall", 3, ("prepared",)),  # move out, preferences, records
    "select": _points("select", 1, ("prepared",)),
}
CASES = [(cmd, p) for cmd, points in FAULT_POINTS.items() for p in points]


def _visible(home: Path) -> dict[str, str]:
    t = tree_hashes(home, exclude=(STATE_DIR_NAME,))
    return {k: ("marker" if k.endswith(PROVENANCE_FILE) else v) for k, v in t.items()}


@pytest.fixture(scope="module")
def homes(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A home with v1 of ours installed (selected), a second build of v1, and each command's after-state."""
    base = tmp_path_factory.mktemp("faults")
    home = make_home(base, prefs=PREFS)
    execute_install(plan_install(home, prepare_our_backend(base / "a", payload=b"one"), select=True, **NONE),
                    provenance={}, **NONE)
    src = prepare_our_backend(base / "b", payload=b"two")
    out: dict[str, Path] = {"home": home, "src": src}
    for cmd in FAULT_POINTS:
        after = base / f"after-{cmd}"
        shutil.copytree(home, after, symlinks=True)
        r = _cli(cmd, after, src, "")
        assert r.returncode == 0, r.stderr
        out[cmd] = after
    return out


def _cli(cmd: str, home: Path, src: Path, fault: str) -> subprocess.CompletedProcess[str]:
    args = {
        "install": ["install", "--from", str(src), "--select"],
        "uninstall": ["uninstall", f"{OURS}@2.14.0"],
        "select": ["select", OFFICIAL],
    }[cmd]
    env = dict(os.environ, **{FAULT_ENV: fault}) if fault else dict(os.environ)
    env.pop(FAULT_ENV, None) if not fault else None
    for _ in range(20):
        r = subprocess.run([sys.executable, "-m", "app", *args, "--home", str(home)], cwd=REPO, env=env,
                           capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)
        # other tests on this machine start a real process named `llmster` for a moment: wait for it to go
        if r.returncode != 2 or "LM Studio is running" not in r.stderr:
            return r
        time.sleep(0.5)
    return r


@pytest.mark.parametrize("how", ["kill", "io-error"])
@pytest.mark.parametrize(("cmd", "point"), CASES, ids=[p for _c, p in CASES])
def test_fault_point(tmp_path: Path, homes: dict[str, Path], cmd: str, point: str, how: str) -> None:
    home = tmp_path / "home"
    shutil.copytree(homes["home"], home, symlinks=True)
    old, new = _visible(home), _visible(homes[cmd])
    r = _cli(cmd, home, homes["src"], point if how == "kill" else f"raise:{point}")
    if how == "kill":
        assert r.returncode == -9, f"not killed at {point}: {r.returncode} {r.stderr}"
        recover(home)  # what the next command does first
    else:
        assert r.returncode in (0, 1, 2), f"exit {r.returncode} at raise:{point}: {r.stderr}"
        assert "internal error" not in r.stderr and "Traceback" not in r.stderr, r.stderr
        if r.returncode:
            assert "injected I/O error" in r.stderr and "hint:" in r.stderr, r.stderr
    state = _visible(home)
    assert state in (old, new), f"between old and new after {how} at {point}"
    assert not (home / STATE_DIR_NAME / "journal.json").exists()
    assert not list((home / STATE_DIR_NAME / "tx").iterdir())
    if how == "io-error" and point.endswith(":finished"):
        assert r.returncode == 0 and state == new  # the change was complete: success, not an error
