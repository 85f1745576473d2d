"""Where the app keeps its data: bundled resources (frozen or from source) and per-user dirs."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import platformdirs

APP_DIR_NAME = "lms-unlocked"


def resource_root() -> Path:
    """Root that holds `app/data` and `resources/`, both when frozen (PyInstaller) and from source."""
    meipass = getattr(sys, "_MEIPASS", None)
    if meipass:
        return Path(meipass)
    return Path(__file__).resolve().parents[2]


def data_path(*parts: str) -> Path:
    """A file under the package's `app/data/` folder."""
    return resource_root().joinpath("app", "data", *parts)


def resource_path(*parts: str) -> Path:
    """A file under the top-level `resources/` folder (icons, build-time assets)."""
    return resource_root().joinpath("resources", *parts)


def patches_dir() -> Path:
    return resource_root() / "patches"


def user_cache_dir() -> Path:
    """Per-user cache (source archives, downloads, build trees). Override with LMS_UNLOCKED_CACHE_DIR."""
    override = os.environ.get("LMS_UNLOCKED_CACHE_DIR")
    if override:
        return Path(override)
    return Path(platformdirs.user_cache_dir(APP_DIR_NAME, appauthor=False))


def user_data_dir() -> Path:
    """Per-user data (backups, staging, journals outside LM Studio's backends/). Override with LMS_UNLOCKED_DATA_DIR."""
    override = os.environ.get("LMS_UNLOCKED_DATA_DIR")
    if override:
        return Path(override)
    return Path(platformdirs.user_data_dir(APP_DIR_NAME, appauthor=False))


def user_log_dir() -> Path:
    override = os.environ.get("LMS_UNLOCKED_LOG_DIR")
    if override:
        return Path(override)
    return Path(platformdirs.user_log_dir(APP_DIR_NAME, appauthor=False))
