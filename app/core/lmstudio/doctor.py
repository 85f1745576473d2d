"""Why a backend does not show up or run: diagnose (docs/lmstudio-contract.md §15 checklist) and repair what is safe.

:func:`diagnose` returns :class:`Finding` objects (code, severity, backend, explanation, fix).
:func:`repair` applies the fixes marked ``auto``; it only ever touches folders we installed (our
marker file) plus, with LM Studio closed, the preferences, settings and engine-index files, and it
backs up everything it changes under ``<home>/.lms-unlocked/backups/<txid>/`` first. Extra copies
of a backend are moved out of ``backends/`` (never deleted). Official folders are never modified.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from app.core.hardware.report import HardwareReport
from app.core.lmstudio.backends import (
    DISPLAY_DATA_FILE,
    MANIFEST_FILE,
    VENDOR_DIR,
    BackendInfo,
    list_backends,
    read_backend,
)
from app.core.lmstudio.clone import sync_artifacts
from app.core.lmstudio.engine_index import last_status, read_engine_index
from app.core.lmstudio.errors import JsonFileError
from app.core.lmstudio.home import DEFAULT_RELATIVE, LEGACY_RELATIVE, LmsHome, as_home, resolve_home
from app.core.lmstudio.install import recover_holding_lock
from app.core.lmstudio.journal import (
    Journal,
    JournalError,
    Op,
    Transaction,
    home_lock,
    new_txid,
    orphan_tx_dirs,
    state_dir,
)
from app.core.lmstudio.jsondoc import UTF8_BOM, atomic_write_bytes, load_json, save
from app.core.lmstudio.judge import judge_backend
from app.core.lmstudio.naming import OFFICIAL_NAMES
from app.core.lmstudio.prefs import (
    AUTO_DELETE_KEY,
    AUTO_UPDATE_KEY,
    PreferencesError,
    load_preferences,
    read_settings,
    selected_for,
    with_selection,
)
from app.core.lmstudio.processes import CLOSE_HINT, LmsProcess, lmstudio_processes, running_message
from app.core.lmstudio.provenance import read_provenance, stored_copy, verify_files
from app.core.userfile import UserFileError, read_json

SEVERITY_ORDER = {"error": 0, "warning": 1, "info": 2}
ProcessLister = Callable[[LmsHome], list[LmsProcess]]


def _default_procs(home: LmsHome) -> list[LmsProcess]:
    return lmstudio_processes(home.path)


@dataclass(frozen=True)
class Finding:
    code: str
    severity: str  # "error", "warning", "info"
    backend: str  # name@version, folder name, or "" for the whole home
    explanation: str
    fix: str  # what repair does (auto) or what the user has to do
    auto: bool = False  # `repair` applies it
    needs_closed: bool = False  # only while LM Studio is not running
    target: str = ""  # path the fix works on
    data: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)

    def key(self) -> tuple[str, str, str]:
        return (self.code, self.backend, self.target)

    @property
    def title(self) -> str:
        """One line for a list: severity, code and backend."""
        return f"{self.severity.capitalize()}: {self.code}" + (f" ({self.backend})" if self.backend else "")

    def __str__(self) -> str:
        return f"{self.title}: {self.explanation}"

    @property
    def fixable(self) -> bool:
        """Same as ``auto``: repair can apply the fix."""
        return self.auto


def _label(b: BackendInfo) -> str:
    return b.ident or b.folder.name


# ------------------------------------------------------------------------------------------------ checks


def _check_home(h: LmsHome, user_home: Path | None) -> list[Finding]:
    out: list[Finding] = []
    if h.problem:
        out.append(
            Finding(
                "home-problem",
                "error",
                "",
                f"LM Studio home {h.describe()}: {h.problem}",
                "start LM Studio once with this user, or point --home at the right folder; the pointer file "
                "~/.lmstudio-home-pointer is never changed by lms-unlocked",
            )
        )
    if h.how_found == "override" and user_home is None:
        return out
    base = Path(os.path.realpath(user_home)) if user_home is not None else Path.home()
    resolved = resolve_home(user_home=base) if h.how_found == "override" else h
    candidates = {resolved.path, base / LEGACY_RELATIVE, base / DEFAULT_RELATIVE, h.path}
    for cand in sorted(candidates - {h.path}):
        for b in list_backends(cand):
            if b.ours:
                out.append(
                    Finding(
                        "wrong-home",
                        "error",
                        _label(b),
                        f"our backend {_label(b)} is installed in {cand}, but LM Studio uses {h.path}",
                        f"install it again into {h.path} (`lms-unlocked install --from {b.folder}` after moving it "
                        "out of that home)",
                        target=str(b.folder),
                    )
                )
    return out


def _check_state(h: LmsHome) -> list[Finding]:
    out: list[Finding] = []
    try:
        pending = Journal(h.path).pending()
    except JournalError as exc:  # unreadable journal: report, do not guess
        return [Finding("journal-unreadable", "error", "", exc.message, exc.hint)]
    if pending is not None:
        out.append(
            Finding(
                "interrupted-change",
                "error",
                "",
                f"a change was interrupted ({pending.get('summary') or pending.get('kind')}, "
                f"transaction {pending.get('txid')}); the home may be half-changed",
                "roll it forward or back from the journal (what every lms-unlocked command does at start)",
                auto=True,
            )
        )
    keep = [str(pending.get("txid"))] if pending else []
    for d in orphan_tx_dirs(h.path, keep):
        out.append(
            Finding(
                "stale-staging",
                "info",
                "",
                f"{d} is left over from a change that never started",
                "delete it (it is outside extensions/backends, LM Studio never sees it)",
                auto=True,
                target=str(d),
            )
        )
    return out


def _check_running(procs: list[LmsProcess]) -> list[Finding]:
    if not procs:
        return []
    return [
        Finding(
            "lmstudio-running",
            "warning",
            "",
            running_message(procs) + ". It scans backends only at startup, and closing its window leaves the "
            "tray app and the llmster daemon running",
            CLOSE_HINT + "; start LM Studio again afterwards",
        )
    ]


def _misplaced(h: LmsHome) -> list[Finding]:
    """Backend folders extracted next to backends/ instead of into it."""
    out: list[Finding] = []
    for parent in (h.path / "extensions", h.path):
        try:
            children = sorted(parent.iterdir())
        except OSError:
            continue
        for c in children:
            if c.name in ("backends", "extensions", "models", ".internal", ".lms-unlocked"):
                continue
            if c.is_dir() and (c / MANIFEST_FILE).is_file():
                b = read_backend(c)
                dest = h.backends_dir / b.expected_folder_name if b.valid else None
                auto = b.ours and dest is not None and not dest.exists()
                out.append(
                    Finding(
                        "misplaced-backend",
                        "error",
                        _label(b),
                        f"{c} holds a backend, but LM Studio only looks in {h.backends_dir}",
                        f"move it to {dest}" if auto else f"move {c.name} into {h.backends_dir} (LM Studio closed)",
                        auto=auto,
                        target=str(c),
                        data={"dest": str(dest) if dest else ""},
                    )
                )
    return out


def _check_folder(b: BackendInfo, h: LmsHome) -> list[Finding]:
    out: list[Finding] = []
    label = _label(b)
    prov = read_provenance(b.folder) if b.ours else None
    for p in b.problems:
        if p.code == "manifest-nested":
            inner = next((c for c in sorted(b.folder.iterdir()) if (c / MANIFEST_FILE).is_file()), None)
            inner_info = read_backend(inner) if inner else None
            only_child = inner is not None and [c.name for c in b.folder.iterdir()] == [inner.name]
            dest = h.backends_dir / inner_info.expected_folder_name if inner_info and inner_info.valid else None
            auto = bool(
                inner_info and inner_info.ours and only_child and dest and (not dest.exists() or dest == b.folder)
            )
            out.append(
                Finding(
                    "nested-folder",
                    "error",
                    b.folder.name,
                    f"{b.folder.name} has its backend one level too deep ({p.message}); LM Studio does not list it",
                    f"move {inner.name if inner else 'the inner folder'} up to {dest}"
                    if auto
                    else "move the inner folder up into extensions/backends by hand",
                    auto=auto,
                    target=str(inner) if inner else str(b.folder),
                    data={"dest": str(dest) if dest else "", "outer": str(b.folder)},
                )
            )
        elif p.code == "manifest-missing":
            out.append(
                Finding(
                    "not-a-backend",
                    "warning",
                    b.folder.name,
                    f"{b.folder.name} in backends/ has no {MANIFEST_FILE}",
                    "remove it or move it out of extensions/backends (LM Studio registers every sub-folder)",
                )
            )
        elif p.code in ("manifest-bom", "display-data-bom"):
            rel = MANIFEST_FILE if p.code == "manifest-bom" else DISPLAY_DATA_FILE
            out.append(
                Finding(
                    "json-bom",
                    "error",
                    label,
                    f"{rel} of {label} starts with a UTF-8 BOM, which LM Studio may reject",
                    f"rewrite {rel} as UTF-8 without BOM"
                    if b.ours
                    else "official folder: re-download this runtime in LM Studio",
                    auto=b.ours,
                    needs_closed=False,
                    target=str(b.folder / rel),
                )
            )
        elif p.code in (
            "manifest-encoding",
            "manifest-syntax",
            "manifest-not-object",
            "manifest-field-missing",
            "display-data-encoding",
            "display-data-syntax",
        ):
            rel = DISPLAY_DATA_FILE if p.code.startswith("display") else MANIFEST_FILE
            copy = stored_copy(b.folder, rel, prov) if prov else None
            code = (
                "json-encoding"
                if p.code.endswith("encoding")
                else ("manifest-fields" if p.code == "manifest-field-missing" else "json-invalid")
            )
            out.append(
                Finding(
                    code,
                    "error",
                    label,
                    f"{p.message}; LM Studio cannot read {label}",
                    f"restore {rel} from the copy stored at install"
                    if copy is not None
                    else "re-install this backend (official: re-download it in LM Studio)",
                    auto=copy is not None,
                    target=str(b.folder / rel),
                )
            )
    if not b.valid:
        return out
    if b.has_problem("folder-name-mismatch"):
        dest = b.folder.parent / b.expected_folder_name
        auto = b.ours and not dest.exists()
        out.append(
            Finding(
                "folder-name-mismatch",
                "info",
                label,
                f"the folder {b.folder.name} is not named {b.expected_folder_name}; LM Studio goes by the manifest, "
                "but tools that find backends from the preferences file assume <name>-<version>",
                f"rename it to {dest.name}" if auto else "leave it, or rename it by hand with LM Studio closed",
                auto=auto,
                target=str(b.folder),
                data={"dest": str(dest)},
            )
        )
    if b.ours and b.name in OFFICIAL_NAMES:
        out.append(
            Finding(
                "official-name",
                "error",
                label,
                f"{label} uses the name of an official backend; LM Studio's own unpacker or auto-update may "
                "overwrite it",
                "re-install it under a name of its own (…-unlocked)",
            )
        )
    for lib, problem in _library_problems(b):
        out.append(
            Finding(
                "missing-library",
                "error",
                label,
                f"the library {lib} that the backend lists {problem}, so LM Studio cannot load it",
                "re-install this backend" if b.ours else "re-download this runtime in LM Studio",
                target=str(b.folder / lib),
            )
        )
    for pkg in b.vendor_packages:
        if not (h.backends_dir / VENDOR_DIR / pkg).is_dir():
            out.append(
                Finding(
                    "vendor-missing",
                    "warning",
                    label,
                    f"the vendor package {pkg} is missing from backends/vendor (GPU runtime libraries)",
                    "download the matching official runtime once in LM Studio; it brings the vendor package",
                )
            )
    server = b.folder / b.server_relpath if b.server_relpath else None
    if server is not None and server.is_file() and os.name != "nt" and not os.access(server, os.X_OK) and prov is None:
        out.append(
            Finding(
                "server-not-executable",
                "error",
                label,
                f"{b.server_relpath} is not executable, so LM Studio cannot start the engine",
                f"chmod +x {server} yourself (lms-unlocked never changes official folders)",
            )
        )
    if b.server_relpath and not (b.folder / b.server_relpath).exists():
        out.append(
            Finding(
                "server-missing",
                "error",
                label,
                f"engine_protocol_server names {b.server_relpath}, which is missing; LM Studio reports "
                "'exited before becoming healthy'",
                "re-install this backend" if b.ours else "re-download this runtime in LM Studio",
            )
        )
    if prov is not None:
        diff = verify_files(b.folder, prov)
        if diff.lost_exec:
            out.append(
                Finding(
                    "exec-bits-lost",
                    "error",
                    label,
                    f"{len(diff.lost_exec)} file(s) lost their executable bit: {', '.join(diff.lost_exec[:4])}",
                    "chmod +x them (as recorded at install)",
                    auto=True,
                    target=str(b.folder),
                    data={"files": list(diff.lost_exec)},
                )
            )
        json_rel = {MANIFEST_FILE, DISPLAY_DATA_FILE}
        changed = [r for r in (*diff.missing, *diff.changed) if r not in json_rel]
        if changed:
            out.append(
                Finding(
                    "files-changed",
                    "warning",
                    label,
                    f"{len(changed)} file(s) differ from what was installed: {', '.join(changed[:4])}",
                    "re-install this backend",
                )
            )
        art = b.folder / "engine-protocol-server-artifacts.json"
        server_ok = not b.server_relpath or (b.folder / b.server_relpath).exists()
        if art.exists() and server_ok:  # a missing server is its own finding, not an artifacts edit
            try:
                a = load_json(art).data
            except JsonFileError:
                a = None
            exe = a.get("executable_relative_path") if isinstance(a, dict) else None
            files = a.get("files") if isinstance(a, dict) else None
            gone = [
                f.get("relative_path")
                for f in (files if isinstance(files, list) else [])
                if isinstance(f, dict) and not (b.folder / str(f.get("relative_path"))).exists()
            ]
            if (b.server_relpath and exe != b.server_relpath) or gone:
                out.append(
                    Finding(
                        "artifacts-mismatch",
                        "warning",
                        label,
                        "engine-protocol-server-artifacts.json does not match the manifest and the files on disk",
                        "rewrite it from the manifest and the files present",
                        auto=True,
                        target=str(art),
                    )
                )
    return out


def _listed_files(b: BackendInfo) -> list[str]:
    """Every file the backend lists: target_libraries, the engine server and the server artifacts' files."""
    listed = [lib for lib in b.target_libraries if lib]
    if b.server_relpath:
        listed.append(b.server_relpath)
    files = (b.artifacts or {}).get("files")
    for f in files if isinstance(files, list) else []:
        if isinstance(f, dict) and isinstance(f.get("relative_path"), str) and f["relative_path"]:
            listed.append(f["relative_path"])
    return list(dict.fromkeys(listed))


def _library_problems(b: BackendInfo) -> list[tuple[str, str]]:
    """(listed file, what is wrong) for each listed file that is not a regular file in the folder (#14: a cut
    download left a dangling link where the main library should be)."""
    out: list[tuple[str, str]] = []
    for rel in _listed_files(b):
        p = b.folder / rel
        if rel == b.server_relpath and not p.exists() and not p.is_symlink():
            continue  # its own finding (server-missing)
        if p.is_symlink() and not p.exists():
            out.append((rel, f"is a link to {os.readlink(p)}, which does not exist"))
        elif not p.exists():
            out.append((rel, "is missing"))
        elif not p.is_file():
            out.append((rel, "is not a regular file"))
        elif p.stat().st_size == 0 and not rel.endswith(".json"):
            out.append((rel, "is empty"))
    listed = {rel for rel, _ in out}
    for dirpath, dirnames, filenames in os.walk(b.folder):  # a link the listed libraries load through
        for n in sorted(dirnames + filenames):
            p = Path(dirpath) / n
            rel = p.relative_to(b.folder).as_posix()
            if rel not in listed and p.is_symlink() and not p.exists():
                out.append((rel, f"is a link to {os.readlink(p)}, which does not exist"))
    return out


def _check_duplicates(backends: list[BackendInfo]) -> list[Finding]:
    out: list[Finding] = []
    groups: dict[str, list[BackendInfo]] = defaultdict(list)
    for b in backends:
        if b.valid:
            groups[b.ident].append(b)
    for ident, group in sorted(groups.items()):
        if len(group) < 2:
            continue
        keeper = next((b for b in group if b.folder.name == b.expected_folder_name), group[0])
        for extra in group:
            if extra is keeper:
                continue
            auto = extra.folder.name != extra.expected_folder_name
            out.append(
                Finding(
                    "duplicate-backend",
                    "error",
                    ident,
                    f"{extra.folder.name} carries the same name@version as {keeper.folder.name}; LM Studio cannot "
                    "tell them apart and may run the wrong one",
                    "move the extra copy out of extensions/backends (into lms-unlocked's backups, not deleted)"
                    if auto
                    else "move one of them out of extensions/backends by hand",
                    auto=auto,
                    target=str(extra.folder),
                )
            )
    return out


def _check_lmstudio_verdicts(h: LmsHome, backends: list[BackendInfo]) -> list[Finding]:
    """What LM Studio itself last said about our engines (its survey may crash where ours passes, §15 #9)."""
    said = last_status(h)
    out: list[Finding] = []
    for b in backends:
        e = said.get(b.ident) if b.valid and b.ours else None
        if e is None or e.status in ("compatible", "unknown"):
            continue
        survey = e.status in ("errorSurveyingHardware", "invalidCpuArchitecture", "cpuSurveyUnsuccessful")
        out.append(
            Finding(
                "lmstudio-says-incompatible",
                "error",
                b.ident,
                f"LM Studio's own check last reported {e.status} for {b.ident}"
                + (
                    " - its survey child probably crashed loading the bindings (AVX2 code in LM Studio's files?)"
                    if survey
                    else ""
                ),
                "rebuild without AVX2 / use a template whose bindings load on this CPU, then restart LM Studio "
                "and rerun its compatibility check (Runtime page -> Manage versions)"
                if survey
                else "compare with `lms-unlocked list`, restart LM Studio fully and rerun its compatibility check",
            )
        )
    return out


def _check_engine_index(h: LmsHome) -> list[Finding]:
    p = h.engine_index_file
    if not p.exists():
        return []
    try:
        data = read_json(p)
    except UserFileError:
        return [
            Finding(
                "stale-engine-index",
                "warning",
                "",
                f"{p.name} (LM Studio's engine cache) is unreadable",
                "with LM Studio closed, move it to a backup so LM Studio rebuilds it",
                auto=True,
                needs_closed=True,
                target=str(p),
            )
        ]
    del data
    stale: list[str] = []
    bdir = Path(os.path.realpath(h.backends_dir))
    for e in read_engine_index(h):
        d = e.dir_path
        # missing, or left over from where the home used to be (a copied home keeps the old paths valid)
        if d and (not Path(d).is_dir() or not Path(os.path.realpath(d)).is_relative_to(bdir)):
            stale.append(d)
    if not stale:
        return []
    return [
        Finding(
            "stale-engine-index",
            "warning",
            "",
            f"LM Studio's engine cache lists {len(stale)} folder(s) that do not exist (moved home or deleted "
            f"folders), e.g. {stale[0]}",
            "with LM Studio closed, move internal-engine-index.json to a backup so LM Studio rebuilds it",
            auto=True,
            needs_closed=True,
            target=str(p),
        )
    ]


def _check_settings(h: LmsHome, have_ours: bool) -> list[Finding]:
    s = read_settings(h)
    out: list[Finding] = []
    sev = "warning" if have_ours else "info"
    if s.problem:
        out.append(
            Finding("settings-unreadable", "warning", "", f"settings.json: {s.problem}", "let LM Studio rewrite it")
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
            "auto-delete removes least recently used runtime packs, ours included",
        ),
    ):
        if val:
            out.append(
                Finding(
                    "auto-update-on" if key == AUTO_UPDATE_KEY else "auto-delete-on",
                    sev,
                    "",
                    f"{key} is on in settings.json: {what}",
                    f"set {key} to false (settings.json backed up first)",
                    auto=True,
                    needs_closed=True,
                    target=str(h.settings_file),
                    data={"key": key},
                )
            )
    return out


def _check_selection(h: LmsHome, backends: list[BackendInfo], report: HardwareReport | None) -> list[Finding]:
    try:
        load_preferences(h)
    except PreferencesError as exc:
        return [
            Finding(
                "preferences-invalid",
                "error",
                "",
                f"{h.preferences_file.name} is unusable: {exc.message}",
                "select the engine once in LM Studio (Ctrl+Shift+R) so it rewrites the file",
            )
        ]
    sel = selected_for(h, "gguf")
    idents = {b.ident for b in backends if b.valid}
    out: list[Finding] = []
    ours = [
        b
        for b in backends
        if b.valid
        and b.ours
        and "gguf" in [f.lower() for f in b.model_formats]
        and (report is None or judge_backend(b, report).compatible)
    ]
    if sel is not None and sel.ident not in idents:
        out.append(
            Finding(
                "selection-missing",
                "warning",
                sel.ident,
                f"the selected gguf engine {sel.ident} is not installed (auto-delete or auto-update removed it?)",
                f"select {ours[-1].ident}" if len(ours) == 1 else "select an installed engine in LM Studio",
                auto=len(ours) == 1,
                needs_closed=True,
                target=str(h.preferences_file),
                data={"ident": ours[-1].ident} if len(ours) == 1 else {},
            )
        )
    elif ours and (sel is None or sel.ident not in {b.ident for b in ours}):
        one = len(ours) == 1
        out.append(
            Finding(
                "ours-not-selected",
                "warning",
                ours[0].ident if one else "",
                f"our backend {'is' if one else 'are'} installed but gguf models run on "
                f"{sel.ident if sel else 'LM Studio default'}",
                f"select {ours[0].ident} for gguf (preferences backed up first)"
                if one
                else "choose one with `lms-unlocked select NAME@VERSION`",
                auto=one,
                needs_closed=True,
                target=str(h.preferences_file),
                data={"ident": ours[0].ident} if one else {},
            )
        )
    return out


def _judge_findings(b: BackendInfo, report: HardwareReport | None, app_version: str | None) -> list[Finding]:
    if report is None and b.valid and "" in b.ise:
        return [
            Finding(
                "ise-empty",
                "error" if b.ours else "warning",
                b.ident,
                'instruction_set_extensions contains "", which never matches LM Studio\'s CPU survey '
                "(shown incompatible)",
                "install the variant built for this CPU (lms-unlocked recommend)",
                target=str(b.folder / MANIFEST_FILE),
            )
        ]
    if report is None or not b.valid:
        return []
    j = judge_backend(b, report, app_version=app_version)
    if j.compatible or j.status == "missingLibraries":  # missing libraries are reported on their own
        return []
    code = {
        "invalidCpuInstructionSetExtensions": "ise-empty" if "" in b.ise else "ise-unsupported",
        "incompatiblePlatform": "platform-mismatch",
        "invalidCpuArchitecture": "arch-mismatch",
        "incompatibleAppVersion": "app-too-old",
    }.get(j.status, "gpu-incompatible" if j.status.startswith(("gpu", "noSupported")) else "incompatible")
    prov = read_provenance(b.folder) if b.ours else None
    variant = str(prov.get("variant", "")) if prov else ""
    host_avx = report.cpu is not None and report.cpu.has("AVX")
    auto = code == "ise-empty" and b.ours and "avx1" in variant and host_avx
    fixes = {
        "ise-empty": 'set instruction_set_extensions to ["AVX"] (an AVX1 build)'
        if auto
        else "install the variant built for this CPU (lms-unlocked recommend)",
        "ise-unsupported": "install the variant built for this CPU (lms-unlocked recommend)",
        "platform-mismatch": "install a backend made from a template of this operating system",
        "arch-mismatch": "install a backend made for this CPU architecture",
        "app-too-old": "update LM Studio, or use a template of the generation the installed app runs",
    }
    return [
        Finding(
            code,
            ("error" if code != "gpu-incompatible" else "warning") if b.ours else "info",
            b.ident,
            f"LM Studio will report {j.status} ({j.label}): {j.message}",
            fixes.get(code, "pick a backend for this hardware (lms-unlocked recommend)"),
            auto=auto,
            target=str(b.folder / MANIFEST_FILE),
        )
    ]


def diagnose(
    home: LmsHome | Path | str,
    *,
    report: HardwareReport | None = None,
    app_version: str | None = None,
    user_home: Path | None = None,
    processes: ProcessLister = _default_procs,
) -> list[Finding]:
    """Every finding of the §15 checklist for ``home``, most severe first. Reads only."""
    h = as_home(home)
    findings = _check_home(h, user_home)
    if not h.backends_dir.is_dir():
        return findings
    findings += _check_state(h)
    findings += _check_running(processes(h))
    findings += _misplaced(h)
    backends = list_backends(h)
    for b in backends:
        findings += _check_folder(b, h)
        findings += _judge_findings(b, report, app_version)
    findings += _check_duplicates(backends)
    findings += _check_engine_index(h)
    findings += _check_lmstudio_verdicts(h, backends)
    findings += _check_settings(h, any(b.ours for b in backends))
    findings += _check_selection(h, backends, report)
    findings.sort(key=lambda f: SEVERITY_ORDER.get(f.severity, 9))
    return findings


# ------------------------------------------------------------------------------------------------ repair


@dataclass(frozen=True)
class RepairOutcome:
    before: tuple[Finding, ...]
    after: tuple[Finding, ...]
    applied: tuple[str, ...] = ()  # sentences
    skipped: tuple[str, ...] = ()
    backup_dir: Path | None = None

    @property
    def fixed(self) -> tuple[Finding, ...]:
        keys = {f.key() for f in self.after}
        return tuple(f for f in self.before if f.key() not in keys)


def repair_plan(findings: list[Finding]) -> list[str]:
    """The lines ``repair --dry-run`` prints: what would be done, and what needs the user."""
    lines = []
    for f in findings:
        what = f"[{f.code}] {f.backend + ': ' if f.backend else ''}{f.fix}"
        if f.auto:
            lines.append(("fix     " if not f.needs_closed else "fix (LM Studio closed) ") + what)
        else:
            lines.append("manual  " + what)
    return lines


class _Repairer:
    def __init__(self, h: LmsHome) -> None:
        self.h = h
        self.txid = new_txid("repair")
        self.backups = state_dir(h.path) / "backups" / self.txid

    def backup_file(self, p: Path) -> None:
        rel = p.relative_to(self.h.path) if p.is_relative_to(self.h.path) else Path(p.name)
        dst = self.backups / rel
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(p, dst, follow_symlinks=False)

    def move_out(self, p: Path) -> Path:
        dst = self.backups / "moved-out" / p.name
        dst.parent.mkdir(parents=True, exist_ok=True)
        os.rename(p, dst)
        return dst

    def apply(self, f: Finding) -> str:
        t = Path(f.target) if f.target else None
        if f.code == "interrupted-change":
            return "; ".join(recover_holding_lock(self.h)) or "nothing left to recover"
        if f.code == "stale-staging" and t is not None:
            shutil.rmtree(t, ignore_errors=True)
            return f"deleted {t}"
        if f.code in ("misplaced-backend", "folder-name-mismatch") and t is not None:
            dest = Path(f.data["dest"])
            os.rename(t, dest)  # one rename: it is either still misplaced or in place
            return f"moved {t} to {dest}"
        if f.code == "nested-folder" and t is not None:
            # inner out of backends/, the empty outer folder away, inner in under its own name - journaled,
            # so a crash never leaves a half-moved folder inside backends/
            dest, outer = Path(f.data["dest"]), Path(f.data["outer"])
            txdir = state_dir(self.h.path) / "tx" / self.txid
            parked = txdir / t.name
            ops = (Op("rename", str(t), str(parked)), Op("rmdir", dst=str(outer)), Op("rename", str(parked), str(dest)))
            Journal(self.h.path).run(
                Transaction(self.txid, "repair", ops, 1, cleanup=(str(txdir),), summary=f"move {t.name} up")
            )
            return f"moved {t} up to {dest}"
        if f.code == "json-bom" and t is not None:
            self.backup_file(t)
            atomic_write_bytes(t, t.read_bytes()[len(UTF8_BOM) :])
            return f"removed the BOM from {t}"
        if f.code in ("json-invalid", "json-encoding", "manifest-fields") and t is not None:
            prov = read_provenance(t.parent) or {}
            data = stored_copy(t.parent, t.name, prov)
            if data is None:
                raise RuntimeError(f"no stored copy of {t}")
            self.backup_file(t)
            atomic_write_bytes(t, data)
            return f"restored {t} from the copy stored at install"
        if f.code == "exec-bits-lost" and t is not None:
            for rel in f.data.get("files", []):
                p = t / str(rel)
                os.chmod(p, p.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
            return f"made {len(f.data.get('files', []))} file(s) executable in {t.name}"
        if f.code == "artifacts-mismatch" and t is not None:
            self.backup_file(t)
            m = load_json(t.parent / MANIFEST_FILE).data
            sync_artifacts(t.parent, m if isinstance(m, dict) else {})
            return f"rewrote {t.name} of {t.parent.name}"
        if f.code == "duplicate-backend" and t is not None:
            dst = self.move_out(t)
            return f"moved the extra copy {t.name} out of backends/ to {dst}"
        if f.code == "ise-empty" and t is not None:
            self.backup_file(t)
            doc = load_json(t)
            doc.data["cpu"]["instruction_set_extensions"] = ["AVX"]
            save(doc)
            return f'set instruction_set_extensions to ["AVX"] in {t}'
        if f.code == "stale-engine-index" and t is not None:
            dst = self.move_out(t)
            return f"moved {t.name} to {dst}; LM Studio rebuilds it at its next start"
        if f.code in ("auto-update-on", "auto-delete-on") and t is not None:
            self.backup_file(t)
            doc = load_json(t)
            doc.data[str(f.data["key"])] = False
            save(doc)
            return f"set {f.data['key']} to false in settings.json"
        if f.code in ("ours-not-selected", "selection-missing") and t is not None:
            name, _, version = str(f.data["ident"]).partition("@")
            pdoc, _e = load_preferences(self.h)
            if pdoc is not None:
                self.backup_file(self.h.preferences_file)
            self.h.preferences_file.parent.mkdir(parents=True, exist_ok=True)
            new = with_selection(pdoc.data if pdoc else [], "gguf", name, version)
            atomic_write_bytes(self.h.preferences_file, pdoc.dumps(new) if pdoc else json.dumps(new).encode())
            return f"selected {f.data['ident']} for gguf"
        raise RuntimeError(f"no automatic fix for {f.code}")


def repair(
    home: LmsHome | Path | str,
    chosen: Iterable[Finding] | None = None,
    *,
    report: HardwareReport | None = None,
    app_version: str | None = None,
    user_home: Path | None = None,
    processes: ProcessLister = _default_procs,
    only: set[str] | None = None,
) -> RepairOutcome:
    """Apply every safe fix (``auto`` findings; those needing LM Studio closed only when it is), then diagnose again.

    ``chosen`` (findings from an earlier :func:`diagnose`) or ``only`` (codes) limit what is fixed.
    """
    h = as_home(home)
    kw: dict[str, Any] = {"report": report, "app_version": app_version, "user_home": user_home, "processes": processes}
    before = diagnose(h, **kw)
    applied: list[str] = []
    skipped: list[str] = []
    r = _Repairer(h)
    with home_lock(h.path):
        running = processes(h)
        keys = {c.key() for c in chosen} if chosen is not None else None
        for f in before:
            if not f.auto or (only is not None and f.code not in only) or (keys is not None and f.key() not in keys):
                continue
            if f.needs_closed and running:
                skipped.append(f"[{f.code}] skipped: {running_message(running)}; {CLOSE_HINT}")
                continue
            try:
                applied.append(f"[{f.code}] " + r.apply(f))
            except (OSError, RuntimeError, KeyError, TypeError, JsonFileError, PreferencesError) as exc:
                skipped.append(f"[{f.code}] failed: {exc}")
    after = diagnose(h, **kw)
    return RepairOutcome(
        tuple(before), tuple(after), tuple(applied), tuple(skipped), r.backups if r.backups.exists() else None
    )

