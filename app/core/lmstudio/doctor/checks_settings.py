"""LM Studio's own files beside the backends (docs/lmstudio-contract.md §12-§14, §15 #12-#13): engine index cache,
settings toggles, the selection. Changed only with LM Studio closed, backed up first."""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path

from app.core.lmstudio.doctor.registry import Check, Context, Finding, Repairer
from app.core.lmstudio.engine_index import read_engine_index
from app.core.lmstudio.jsondoc import atomic_write_bytes, load_json, save
from app.core.lmstudio.prefs import (
    AUTO_DELETE_KEY,
    AUTO_UPDATE_KEY,
    PreferencesError,
    load_preferences,
    read_settings,
    selected_for,
    with_selection,
)
from app.core.userfile import UserFileError, read_json


class StaleEngineIndex(Check):
    codes = (("stale-engine-index", "LM Studio's engine cache is stale"),)
    about = (
        "internal-engine-index.json lists folders that no longer exist or lie outside this home's backends "
        "(a moved home). With LM Studio closed it is moved into lms-unlocked's backups; LM Studio rebuilds it (§13)."
    )

    def detect(self, ctx: Context) -> Iterable[Finding]:
        p = ctx.home.engine_index_file
        if not p.exists():
            return
        try:
            read_json(p)
        except UserFileError:
            yield self._finding(p, f"{p.name} (LM Studio's engine cache) is unreadable", "move it to a backup")
            return
        stale: list[str] = []
        for e in read_engine_index(ctx.home):
            d = e.dir_path
            # missing, or left over from where the home used to be (a copied home keeps the old paths valid)
            if d and (not Path(d).is_dir() or not Path(os.path.realpath(d)).is_relative_to(ctx.backends_real)):
                stale.append(d)
        if stale:
            yield self._finding(
                p,
                f"LM Studio's engine cache lists {len(stale)} folder(s) that do not exist (moved home or deleted "
                f"folders), e.g. {stale[0]}",
                "move internal-engine-index.json to a backup",
            )

    @staticmethod
    def _finding(p: Path, explanation: str, what: str) -> Finding:
        return Finding(
            "stale-engine-index",
            "warning",
            "",
            explanation,
            f"with LM Studio closed, {what} so LM Studio rebuilds it",
            auto=True,
            needs_closed=True,
            target=str(p),
        )

    def fix(self, r: Repairer, f: Finding) -> str:
        t = Path(f.target)
        dst = r.move_out(t)
        return f"moved {t.name} to {dst}; LM Studio rebuilds it at its next start"


class AutoToggles(Check):
    codes = (
        ("settings-unreadable", "settings.json is unreadable"),
        ("auto-update-on", "Auto-update of runtime packs is on"),
        ("auto-delete-on", "Auto-delete of runtime packs is on"),
    )
    about = (
        "Auto-update downloads a new official pack and may move the selection away; auto-delete removes least "
        "recently used packs, custom ones included (§14). Turned off with LM Studio closed, other keys kept."
    )

    def detect(self, ctx: Context) -> Iterable[Finding]:
        s = read_settings(ctx.home)
        sev = "warning" if any(ctx.kind(b).kind != "official" for b in ctx.backends) else "info"
        if s.problem:
            yield Finding(
                "settings-unreadable", "warning", "", f"settings.json: {s.problem}", "let LM Studio rewrite it"
            )
        for key, val, what in (
            (
                AUTO_UPDATE_KEY,
                s.auto_update_extension_packs,
                "auto-update downloads a new official pack and may move the selection away from ours",
            ),
            (
                AUTO_DELETE_KEY,
                s.auto_delete_extension_packs,
                "auto-delete removes least recently used runtime packs, ours and third-party ones included",
            ),
        ):
            if val:
                yield Finding(
                    "auto-update-on" if key == AUTO_UPDATE_KEY else "auto-delete-on",
                    sev,
                    "",
                    f"{key} is on in settings.json: {what}",
                    f"set {key} to false (settings.json backed up first)",
                    auto=True,
                    needs_closed=True,
                    target=str(ctx.home.settings_file),
                    data={"key": key},
                )

    def fix(self, r: Repairer, f: Finding) -> str:
        t = Path(f.target)
        r.backup_file(t)
        doc = load_json(t)
        doc.data[str(f.data["key"])] = False
        save(doc)
        return f"set {f.data['key']} to false in settings.json"


class Selection(Check):
    codes = (
        ("preferences-invalid", "backend-preferences-v1.json is unusable"),
        ("selection-missing", "The selected engine is not installed"),
        ("ours-not-selected", "Our backend is installed but not selected"),
    )
    about = (
        "LM Studio runs gguf models on the engine selected in .internal/backend-preferences-v1.json (§12). "
        "With one compatible backend of ours it is selected (preferences backed up first)."
    )

    def detect(self, ctx: Context) -> Iterable[Finding]:
        h = ctx.home
        try:
            load_preferences(h)
        except PreferencesError as exc:
            yield Finding(
                "preferences-invalid",
                "error",
                "",
                f"{h.preferences_file.name} is unusable: {exc.message}",
                "select the engine once in LM Studio (Ctrl+Shift+R) so it rewrites the file",
            )
            return
        sel = selected_for(h, "gguf")
        idents = {b.ident for b in ctx.backends if b.valid}
        ours = [
            b
            for b in ctx.backends
            if b.valid
            and b.ours
            and "gguf" in [f.lower() for f in b.model_formats]
            and (ctx.report is None or ctx.judge(b).compatible)
        ]
        one = ours[0].ident if len(ours) == 1 else ""
        if sel is not None and sel.ident not in idents:
            yield Finding(
                "selection-missing",
                "warning",
                sel.ident,
                f"the selected gguf engine {sel.ident} is not installed (auto-delete or auto-update removed it?)",
                f"select {one}" if one else "select an installed engine in LM Studio",
                auto=bool(one),
                needs_closed=True,
                target=str(h.preferences_file),
                data={"ident": one} if one else {},
            )
        elif ours and (sel is None or sel.ident not in {b.ident for b in ours}):
            yield Finding(
                "ours-not-selected",
                "warning",
                one,
                f"our backend {'is' if one else 'are'} installed but gguf models run on "
                f"{sel.ident if sel else 'LM Studio default'}",
                f"select {one} for gguf (preferences backed up first)"
                if one
                else "choose one with `lms-unlocked select NAME@VERSION`",
                auto=bool(one),
                needs_closed=True,
                target=str(h.preferences_file),
                data={"ident": one} if one else {},
            )

    def fix(self, r: Repairer, f: Finding) -> str:
        name, _, version = str(f.data["ident"]).partition("@")
        pdoc, _e = load_preferences(r.h)
        if pdoc is not None:
            r.backup_file(r.h.preferences_file)
        r.h.preferences_file.parent.mkdir(parents=True, exist_ok=True)
        new = with_selection(pdoc.data if pdoc else [], "gguf", name, version)
        atomic_write_bytes(r.h.preferences_file, pdoc.dumps(new) if pdoc else json.dumps(new).encode())
        return f"selected {f.data['ident']} for gguf"
