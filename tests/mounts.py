"""Run a command with real file-system faults: a small tmpfs ("disk full") or a read-only bind mount.

As root, ``chmod`` does not make a folder read-only, and filling the shared disk is not an option, so the
command runs in its own mount namespace (``unshare -m``; ``-r`` maps the caller to root where user
namespaces allow it without root). The mounts vanish with the namespace, even if the test is killed.
Where no mount namespace can be made (:func:`mount_namespace_problem` says why), tests skip with that reason.
"""

from __future__ import annotations

import functools
import os
import shlex
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path


def _unshare() -> list[str]:
    return ["unshare", "-m", "--propagation", "private"] + ([] if os.geteuid() == 0 else ["-r"])


@functools.cache
def mount_namespace_problem() -> str:
    """'' when tmpfs and read-only bind mounts work in a private mount namespace here, else why not."""
    if shutil.which("unshare") is None:
        return "unshare (util-linux) is not installed"
    d = Path("/tmp") / f"lms-unlocked-mount-probe-{os.getpid()}"
    d.mkdir(exist_ok=True)
    try:
        script = f"mount -t tmpfs -o size=1m tmpfs {d} && mount --bind {d} {d} && mount -o remount,ro,bind {d}"
        r = subprocess.run([*_unshare(), "sh", "-c", script], capture_output=True, text=True, timeout=30)
        return "" if r.returncode == 0 else f"no private mount namespace here: {r.stderr.strip()}"
    finally:
        d.rmdir()


def tmpfs(path: Path, size: str) -> str:
    """A mount command: a fresh tmpfs of ``size`` (e.g. "4m") over ``path`` (which must exist)."""
    return f"mount -t tmpfs -o size={size} tmpfs {shlex.quote(str(path))}"


def tmpfs_copy(path: Path, size: str) -> str:
    """A tmpfs of ``size`` over ``path`` that starts with ``path``'s current content (cp -a)."""
    q = shlex.quote(str(path))
    keep = "/tmp/.lms-keep.$$"
    return f"cp -a {q} {keep} && {tmpfs(path, size)} && cp -a {keep}/. {q} && rm -rf {keep}"


def read_only(path: Path) -> str:
    """A mount command: ``path`` bound onto itself, read-only."""
    q = shlex.quote(str(path))
    return f"mount --bind {q} {q} && mount -o remount,ro,bind {q}"


def run_with_mounts(
    mounts: Sequence[str], argv: Sequence[str], *, env: Mapping[str, str] | None = None, cwd: Path | None = None,
    timeout: float = 300,
) -> subprocess.CompletedProcess[str]:
    """Run ``argv`` in a private mount namespace after the mount commands (tmpfs/read_only)."""
    script = " && ".join([*mounts, 'exec "$@"'])
    return subprocess.run(
        [*_unshare(), "sh", "-c", script, "sh", *argv], capture_output=True, text=True, timeout=timeout,
        env=dict(env) if env is not None else None, cwd=cwd, stdin=subprocess.DEVNULL,
    )
