"""Shared fixtures: where the real recorded data lives, and a clean per-test environment."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
FIXTURES = Path(__file__).resolve().parent / "fixtures"
# Recorded real hardware dumps and real (public, community) LM Studio manifests, copied into the repository with
# their attribution (each folder's README.md): the default run needs nothing outside the checkout.
HWDATA = FIXTURES / "hwdata"
BACKEND_EXAMPLES = FIXTURES / "lmstudio-backend-examples"
# LM Studio's own binaries (two real Windows 1.48.0 backend folders) may not be redistributed: they are read from
# ../shared/lmstudio-real/ beside the checkout, only by tests marked `lmstudio_real`, which skip where it is absent.
SHARED = Path(os.environ.get("LMS_UNLOCKED_SHARED", REPO.parent / "shared"))
LMSTUDIO_REAL = SHARED / "lmstudio-real"
LMSTUDIO_REAL_SKIP = (f"needs LM Studio's real Windows backend folders in {LMSTUDIO_REAL} (third-party binaries that "
                      "may not be redistributed, so they are not in the repository)")


@pytest.fixture
def lmstudio_real() -> Path:
    """The folder holding the real 1.48.0 backend archives; tests using it must carry @pytest.mark.lmstudio_real."""
    if not (LMSTUDIO_REAL / "llama.cpp-win-x86_64-avx-1.48.0.7z").is_file():
        pytest.skip(LMSTUDIO_REAL_SKIP)
    return LMSTUDIO_REAL


@pytest.fixture(autouse=True)
def _isolated_user_dirs(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Never touch the real user's cache/data/log dirs from a test."""
    base = tmp_path_factory.mktemp("userdirs")
    monkeypatch.setenv("LMS_UNLOCKED_DATA_DIR", str(base / "data"))
    monkeypatch.setenv("LMS_UNLOCKED_LOG_DIR", str(base / "log"))
    if "LMS_UNLOCKED_CACHE_DIR" not in os.environ:
        monkeypatch.setenv("LMS_UNLOCKED_CACHE_DIR", str(base / "cache"))


def persistent_test_cache() -> Path:
    """Persistent cache for expensive test inputs (llama.cpp source, build trees) across runs."""
    d = Path(os.environ.get("LMS_UNLOCKED_TEST_CACHE", Path.home() / ".cache" / "lms-unlocked-tests"))
    d.mkdir(parents=True, exist_ok=True)
    return d
