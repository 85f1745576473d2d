"""The CLI as a process (#14): a closed pipe is not a crash, every command leaves a log where the README says,
old backups can be listed and cleaned."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from app.core.lmstudio.install import execute_install, plan_install
from tests.conftest import REPO
from tests.lmstudio_homes import make_home, prepare_our_backend

NONE = {"processes": lambda _h: []}
OURS = "llama.cpp-linux-x86_64-avx1-unlocked"


def _env(tmp_path: Path) -> dict[str, str]:
    return dict(os.environ, LMS_UNLOCKED_LOG_DIR=str(tmp_path / "log"))


def test_list_into_a_closed_pipe_is_quiet_and_writes_no_crash_log(tmp_path: Path) -> None:
    home = make_home(tmp_path)
    for args in (["list", "--no-probe"], ["list", "--no-probe", "--json"], ["doctor", "--no-probe"]):
        p = subprocess.Popen([sys.executable, "-m", "app", *args, "--home", str(home)], cwd=REPO, env=_env(tmp_path),
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)
        assert p.stdout is not None and p.stderr is not None
        p.stdout.close()  # what `| head -1` does once it has its line
        err = p.stderr.read().decode()
        p.wait(timeout=120)
        assert p.returncode == 141, (args, p.returncode, err)
        assert err == "", err
    assert not list((tmp_path / "log").glob("crash-*"))
    # and through a real shell pipeline
    r = subprocess.run(["sh", "-c", f"{sys.executable} -m app list --no-probe --home '{home}' | head -1"], cwd=REPO,
                       env=_env(tmp_path), capture_output=True, text=True, timeout=120)
    assert r.stdout.startswith("LM Studio home:") and "Error" not in r.stderr, r.stderr


def test_every_command_writes_its_log_to_the_log_folder(tmp_path: Path) -> None:
    home = make_home(tmp_path)
    env = _env(tmp_path)
    subprocess.run([sys.executable, "-m", "app", "list", "--no-probe", "--home", str(home)], cwd=REPO, env=env,
                   capture_output=True, timeout=120, check=True)
    r = subprocess.run([sys.executable, "-m", "app", "uninstall", "llama.cpp-linux-x86_64-avx2@2.14.0", "--home",
                        str(home)], cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 2
    text = (tmp_path / "log" / "lms-unlocked.log").read_text()
    assert f"list --no-probe --home {home}" in text and "exit 0" in text
    assert "exit 2: refused" in text and "official folders are never deleted" in text


def test_the_default_log_folder_is_the_one_the_readme_names(monkeypatch: pytest.MonkeyPatch) -> None:
    from app.core.paths import user_log_dir

    if sys.platform != "linux":
        pytest.skip("the README's Linux path")
    monkeypatch.delenv("LMS_UNLOCKED_LOG_DIR", raising=False)
    monkeypatch.delenv("XDG_STATE_HOME", raising=False)
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    assert str(user_log_dir()).replace(str(Path.home()), "~") == "~/.local/state/lms-unlocked/log"
    assert "~/.local/state/lms-unlocked/log" in readme


def test_clean_backups_lists_sizes_and_keeps_what_uninstall_needs(tmp_path: Path) -> None:
    home = make_home(tmp_path, prefs=[])
    execute_install(plan_install(home, prepare_our_backend(tmp_path / "a", payload=b"one"), select=True, **NONE),
                    provenance={}, **NONE)  # keeps the original preferences file: no uninstall needs it
    execute_install(plan_install(home, prepare_our_backend(tmp_path / "b", payload=b"two" * 100_000), **NONE),
                    provenance={}, **NONE)  # keeps the first build: uninstalling this one restores it
    backups = home / ".lms-unlocked" / "backups"
    second = next(p.name for p in backups.iterdir() if (p / f"{OURS}-2.14.0").is_dir())
    first = next(p.name for p in backups.iterdir() if p.name != second)
    exe = [sys.executable, "-m", "app"]
    env = _env(tmp_path)

    def run(*args: str) -> str:
        r = subprocess.run([*exe, *args, "--home", str(home)], cwd=REPO, env=env, capture_output=True, text=True,
                           timeout=120)
        assert r.returncode == 0, r.stderr
        return r.stdout

    listing = run("clean-backups")
    assert f"{first}" in listing and "not needed" in listing and f"uninstalling {OURS}@2.14.0 restores" in listing
    assert "MB" in listing and "clean-backups --yes" in listing
    assert sorted(p.name for p in backups.iterdir()) == sorted([first, second])  # nothing removed without --yes
    run("clean-backups", "--yes")
    assert sorted(p.name for p in backups.iterdir()) == [second]
    run("uninstall", f"{OURS}@2.14.0")  # still restores the first build from what was kept
    libs = home / "extensions" / "backends" / f"{OURS}-2.14.0"
    assert (libs / "libggml-cpu.so.0.0.8861").read_bytes() == b"one"
    run("clean-backups", "--yes")
    assert list(backups.iterdir()) == []
