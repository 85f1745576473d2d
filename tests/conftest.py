"""Shared fixtures: where the real recorded data lives, and a clean per-test environment."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
# ../shared beside the checkout holds recorded real hardware dumps and real LM Studio manifests.
SHARED = Path(os.environ.get("LMS_UNLOCKED_SHARED", REPO.parent / "shared"))
HWDATA = SHARED / "hwdata"
BACKEND_EXAMPLES = SHARED / "lmstudio-backend-examples"
FIXTURES = Path(__file__).resolve().parent / "fixtures"


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
