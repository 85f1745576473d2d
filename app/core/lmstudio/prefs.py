"""Engine selection per model format (``.internal/backend-preferences-v1.json``,
docs/lmstudio-contract.md §12) and the settings
that silently remove or replace custom backends (``settings.json``, §14)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from app.core.lmstudio.errors import JsonFileError, LmStudioError
from app.core.lmstudio.home import LmsHome
from app.core.lmstudio.jsondoc import JsonDoc, load_json


class PreferencesError(LmStudioError):
    code = "bad-preferences-file"
    exit_code = 2


@dataclass(frozen=True)
class Selection:
    model_format: str
    name: str
    version: str

    @property
    def ident(self) -> str:
        return f"{self.name}@{self.version}"


def load_preferences(home: LmsHome) -> tuple[JsonDoc | None, list[dict[str, Any]]]:
    """The preferences document (None when absent) and its entries. Raises PreferencesError if unusable."""
    path = home.preferences_file
    if not path.exists():
        return None, []
    try:
        doc = load_json(path)
    except JsonFileError as exc:
        raise PreferencesError(exc.message, context=str(path), hint=exc.hint) from None
    if not isinstance(doc.data, list):
        raise PreferencesError(
            f"{path} is not the list LM Studio writes ([{{model_format, name, version}}, ...])",
            context=str(path),
            hint="select the engine in LM Studio (Ctrl+Shift+R) once so it rewrites the file",
        )
    return doc, [e for e in doc.data if isinstance(e, dict)]


def selections(home: LmsHome) -> list[Selection]:
    """Current selections; an unreadable file gives none (doctor reports it separately)."""
    try:
        _doc, entries = load_preferences(home)
    except PreferencesError:
        return []
    return [
        Selection(str(e.get("model_format", "")), str(e.get("name", "")), str(e.get("version", "")))
        for e in entries
        if e.get("name")
    ]


def selected_for(home: LmsHome, model_format: str = "gguf") -> Selection | None:
    for s in selections(home):
        if s.model_format.lower() == model_format.lower():
            return s
    return None


def with_selection(data: Any, model_format: str, name: str | None, version: str | None) -> list[Any]:
    """A copy of the preferences list with the entry for ``model_format`` set (or removed when name is None).

    Other entries and unknown keys stay as they are, in their order.
    """
    items = list(data) if isinstance(data, list) else []
    out: list[Any] = []
    placed = False
    for e in items:
        if isinstance(e, dict) and str(e.get("model_format", "")).lower() == model_format.lower():
            if placed or name is None:
                continue
            ne = dict(e)
            ne["name"], ne["version"] = name, version
            out.append(ne)
            placed = True
        else:
            out.append(e)
    if not placed and name is not None:
        out.append({"model_format": model_format, "name": name, "version": version})
    return out


@dataclass(frozen=True)
class LmsSettings:
    """Toggles of ``settings.json`` that matter to us; None = not set / unknown."""

    auto_update_extension_packs: bool | None = None
    auto_delete_extension_packs: bool | None = None
    engine_protocol_runtime3: bool | None = None
    problem: str = ""
    present: bool = False


AUTO_UPDATE_KEY = "autoUpdateExtensionPacks"
AUTO_DELETE_KEY = "autoDeleteExtensionPacks"


def _bool(v: Any) -> bool | None:
    return v if isinstance(v, bool) else None


def read_settings(home: LmsHome | Path) -> LmsSettings:
    path = home.settings_file if isinstance(home, LmsHome) else Path(home) / "settings.json"
    if not path.exists():
        return LmsSettings()
    try:
        doc = load_json(path)
    except JsonFileError as exc:
        return LmsSettings(problem=exc.message, present=True)
    d = doc.data if isinstance(doc.data, dict) else {}
    return LmsSettings(
        _bool(d.get(AUTO_UPDATE_KEY)),
        _bool(d.get(AUTO_DELETE_KEY)),
        _bool(d.get("useLlamaCppEngineProtocolRuntime3")),
        "" if isinstance(doc.data, dict) else "settings.json is not a JSON object",
        True,
    )
