"""The real portable-toolchain wheels (cmake, ninja, ziglang) for the tests, fetched from PyPI once.

They are cached in persistent_test_cache()/toolchain-wheels and served to the product from a loopback
mirror (tests/httpserver.py, LMS_UNLOCKED_TOOLCHAIN_MIRROR), so the product's own download, sha256 check,
safe extraction and reuse run on the real files without the network.
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

from app.core.builder.toolchain import Wheel, wheel_for
from tests.conftest import persistent_test_cache


def wheels_dir() -> Path:
    d = persistent_test_cache() / "toolchain-wheels"
    d.mkdir(parents=True, exist_ok=True)
    return d


def real_wheel(package: str) -> tuple[Wheel, Path]:
    """The pinned Linux x86-64 wheel of `package`, downloaded with pip the first time and verified."""
    w = wheel_for(package, "linux-x86_64")
    p = wheels_dir() / w.file
    if not p.is_file() or hashlib.sha256(p.read_bytes()).hexdigest() != w.sha256:
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "download",
                "--only-binary",
                ":all:",
                "--no-deps",
                "--python-version",
                "3.11",
                "--platform",
                w.file.rsplit("-", 1)[1].removesuffix(".whl").split(".")[0],
                "-d",
                str(wheels_dir()),
                f"{package}=={w.version}",
            ],
            check=True,
        )
        got = hashlib.sha256(p.read_bytes()).hexdigest()
        assert got == w.sha256, f"{w.file}: sha256 {got}, expected the pinned {w.sha256}"
    return w, p
