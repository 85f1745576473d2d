"""Resolve the LM Studio home exactly as LM Studio's own resolver does (docs/lmstudio-contract.md §2), read-only.

LM Studio (``lmstudio-js`` ``findLMStudioHome.ts``): take the real path of the user's home
directory (``%USERPROFILE%`` on Windows); if ``<home-dir>/.lmstudio-home-pointer`` exists its
stripped content is the home; else ``<home-dir>/.cache/lm-studio`` if that directory exists
(legacy); else ``<home-dir>/.lmstudio``. LM Studio then writes the pointer file; we never do.
A pointer to a directory that does not exist is reported in ``problem``, not skipped.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from app.core.userfile import UserFileError, read_bounded

POINTER_FILE_NAME = ".lmstudio-home-pointer"
LEGACY_RELATIVE = Path(".cache") / "lm-studio"
DEFAULT_RELATIVE = Path(".lmstudio")


@dataclass(frozen=True)
class LmsHome:
    """Where LM Studio keeps its data, and how we found it.

    how_found: "override" (``--home``), "pointer", "legacy" or "default".
    exists: the directory exists.
    problem: "" when the home looks usable, else one sentence (missing, pointer to nowhere, never started).
    """

    path: Path
    how_found: str
    exists: bool
    problem: str = ""
    pointer_file: Path | None = None

    @property
    def backends_dir(self) -> Path:
        return self.path / "extensions" / "backends"

    @property
    def internal_dir(self) -> Path:
        return self.path / ".internal"

    @property
    def preferences_file(self) -> Path:
        return self.internal_dir / "backend-preferences-v1.json"

    @property
    def engine_index_file(self) -> Path:
        return self.internal_dir / "internal-engine-index.json"

    @property
    def settings_file(self) -> Path:
        return self.path / "settings.json"

    def describe(self) -> str:
        how = {
            "override": "given with --home",
            "pointer": f"named by {self.pointer_file}",
            "legacy": "legacy location ~/.cache/lm-studio",
            "default": "default location ~/.lmstudio",
        }.get(self.how_found, self.how_found)
        return f"{self.path} ({how})"


def _default_user_home() -> Path:
    if os.name == "nt":
        profile = os.environ.get("USERPROFILE")
        if profile:
            return Path(profile)
    return Path.home()


def _problem_for(path: Path, how_found: str, pointer_file: Path | None, *, empty: bool = False) -> str:
    if empty:
        return f"the pointer file {pointer_file} is empty, so LM Studio has no usable home"
    if not path.exists():
        if how_found == "pointer":
            return (
                f"the pointer file {pointer_file} names {path}, which does not exist "
                "(moved or unmounted disk?); LM Studio would use it as it is"
            )
        if how_found == "override":
            return f"{path} does not exist"
        return f"{path} does not exist: LM Studio has probably never been started by this user"
    if not path.is_dir():
        return f"{path} is not a directory"
    if not (path / "extensions" / "backends").is_dir():
        return (
            f"{path / 'extensions' / 'backends'} is missing: LM Studio unpacks its engines there on its "
            "first start, so start LM Studio once"
        )
    return ""


def resolve_home(override: str | Path | None = None, *, user_home: Path | None = None) -> LmsHome:
    """Find the LM Studio home like LM Studio does; ``override`` (``--home``) wins. Never writes anything."""
    if override is not None and str(override) != "":
        path = Path(override).expanduser()
        path = Path(os.path.abspath(path))
        return LmsHome(path, "override", path.is_dir(), _problem_for(path, "override", None))
    base = Path(os.path.realpath(user_home if user_home is not None else _default_user_home()))
    pointer = base / POINTER_FILE_NAME
    if pointer.is_file():
        try:
            # JavaScript's trim() (what LM Studio uses) also removes U+FEFF, e.g. a BOM left by Notepad
            raw = read_bounded(pointer, limit=64 * 1024, what=f"the pointer file {pointer}")
            text = raw.decode("utf-8").strip().strip("\ufeff").strip()
        except (UserFileError, UnicodeDecodeError) as exc:
            return LmsHome(pointer, "pointer", False, f"cannot read the pointer file {pointer}: {exc}", pointer)
        path = Path(text)
        problem = _problem_for(path, "pointer", pointer, empty=not text)
        if text and not path.is_absolute() and not problem:
            problem = f"the pointer file {pointer} holds a relative path ({text}); LM Studio resolves it elsewhere"
        return LmsHome(path, "pointer", bool(text) and path.is_dir(), problem, pointer)
    legacy = base / LEGACY_RELATIVE
    if legacy.is_dir():
        return LmsHome(legacy, "legacy", True, _problem_for(legacy, "legacy", None))
    default = base / DEFAULT_RELATIVE
    return LmsHome(default, "default", default.is_dir(), _problem_for(default, "default", None))


def as_home(home: LmsHome | str | Path) -> LmsHome:
    """Accept an LmsHome or a plain path (treated as an override)."""
    if isinstance(home, LmsHome):
        return home
    return resolve_home(home)
