"""Read ``display-data.json``: the display name and the llama.cpp build named in the release notes
(docs/lmstudio-contract.md §6).

The file is a list of ``[languageKey, entry]`` pairs. Release notes name the llama.cpp build in
many wordings (``release b6275 (commit e288693)``, ``updated to b4397 (eb5c3dc6)``, ``updated to
commit 1466621``, a full backticked hash, none at all); only lines that mention llama.cpp count,
so "version >= 0.3.21-b4" is never taken for a build number.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from app.core.version import is_llama_tag, older, version_key

_TAG_RE = re.compile(r"\bb(\d{2,6})\b")
_HEX_RE = re.compile(r"\b[0-9a-f]{7,40}\b")


@dataclass(frozen=True)
class LlamaBuild:
    """The llama.cpp build of an engine version. ``exact``: read from that version's own entry."""

    tag: str | None  # "b6275"
    commit: str | None  # "e288693"
    exact: bool
    warning: str = ""

    @property
    def known(self) -> bool:
        return self.tag is not None or self.commit is not None


def entries(display_data: Any) -> list[dict[str, Any]]:
    """The entry objects of a display-data list, English first; tolerant of odd shapes."""
    found: list[tuple[str, dict[str, Any]]] = []
    if isinstance(display_data, dict):
        return [display_data]
    if not isinstance(display_data, list):
        return []
    for item in display_data:
        if isinstance(item, list) and len(item) == 2 and isinstance(item[1], dict):
            found.append((str(item[0]), item[1]))
        elif isinstance(item, dict):
            found.append((str(item.get("langKey", "")), item))
    found.sort(key=lambda kv: 0 if kv[0] == "en" else 1)
    return [e for _, e in found]


def display_name(display_data: Any) -> str:
    for entry in entries(display_data):
        name = entry.get("displayName")
        if isinstance(name, str) and name:
            return name
    return ""


def parse_build_text(notes: str) -> tuple[str | None, str | None]:
    """(tag, commit) from release-note text; only lines mentioning llama.cpp are read."""
    tag: str | None = None
    commit: str | None = None
    for line in notes.splitlines():
        if "llama.cpp" not in line.lower():
            continue
        clean = line.replace("`", " ")
        if tag is None:
            m = _TAG_RE.search(clean)
            if m:
                tag = f"b{m.group(1)}"
        if commit is None:
            for h in _HEX_RE.findall(clean):
                if is_llama_tag(h) or not any(c.isdigit() for c in h):
                    continue
                commit = h
                break
    return tag, commit


def _release_notes(display_data: Any) -> list[dict[str, Any]]:
    for entry in entries(display_data):
        notes = entry.get("releaseNotes")
        if isinstance(notes, list):
            return [n for n in notes if isinstance(n, dict)]
    return []


def llama_cpp_build(display_data: Any, version: str, *, fallback: bool = True) -> LlamaBuild:
    """The llama.cpp build of engine ``version``, from its own release-note entry.

    If that entry names no build, an older entry may be used only when ``fallback`` is true, and
    the result then carries ``exact=False`` and a warning. Never guesses otherwise.
    """
    notes = _release_notes(display_data)
    own = [n for n in notes if str(n.get("version", "")) == version]
    for n in own:
        tag, commit = parse_build_text(str(n.get("releaseNotes", "")))
        if tag or commit:
            return LlamaBuild(tag, commit, True)
    why = (
        f"the release notes of {version} name no llama.cpp build"
        if own
        else f"display-data.json has no release notes for {version}"
    )
    if fallback:
        earlier = sorted(
            (n for n in notes if older(str(n.get("version", "")), version)),
            key=lambda n: version_key(str(n.get("version", ""))),
            reverse=True,
        )
        for n in earlier:
            tag, commit = parse_build_text(str(n.get("releaseNotes", "")))
            if tag or commit:
                ref = " / ".join(x for x in (tag, commit) if x)
                return LlamaBuild(
                    tag,
                    commit,
                    False,
                    f"{why}; using {ref} from the older entry {n.get('version')}, which may differ",
                )
    return LlamaBuild(None, None, False, f"llama.cpp build unknown: {why}")
