"""Overlays: prebuilt backends shipped as only the files we rebuilt, applied on the user's own official pack.

LM Studio's own binaries (`.node` bindings, `llm_engine*`, `lmstudiocore`, its llama-server) may not be
redistributed, and they are most of a pack's size. An overlay archive holds one folder `<name>-<version>/` with:

* our `backend-manifest.json`, `display-data.json` (and `engine-protocol-server-artifacts.json` where the pack has
  one): the manifest/display-data changes (docs/lmstudio-contract.md §5-§7);
* the files the build replaced (the ggml libraries, docs/lmstudio-contract.md §9.1) and the files it added (a 2.x
  server replacement in its own sub-folder), at their paths in the finished backend;
* `unlocked-overlay.json` (`OverlaySpec`): the official pack it applies to (`base`: `name@version`, platform, arch
  and the sha256 of each of its files), what is replaced/added/removed, the sha256 of every file of the finished
  folder (`result`) and the build's provenance.

`make_overlay` (maintainers, `publish`) derives it from a built folder and its template. `apply_overlay` (users)
rebuilds the backend in a new folder from the kept files of the user's installed pack, checking each copied file
against the recorded hash (a different build of the same version is refused), adds the overlay's files and checks
the finished folder file by file against `result`; `prove_overlay` then runs the ABI guard, the ISA audit for this
CPU and the smoke test before anything is installed.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from app.core.errors import UnlockedError
from app.core.fetch.catalog import CatalogEntry
from app.core.fetch.errors import CatalogError
from app.core.hardware.report import HardwareReport
from app.core.lmstudio.backends import (
    ARTIFACTS_FILE,
    DISPLAY_DATA_FILE,
    MANIFEST_FILE,
    BackendInfo,
    list_backends,
    read_backend,
)
from app.core.lmstudio.home import LmsHome, as_home
from app.core.lmstudio.jsondoc import atomic_write_bytes
from app.core.lmstudio.provenance import file_digests, read_provenance, sha256_file

OVERLAY_FILE = "unlocked-overlay.json"
OVERLAY_SCHEMA = 1
META_FILES = (MANIFEST_FILE, DISPLAY_DATA_FILE, ARTIFACTS_FILE)  # ours in every overlay that changes them
RUNTIME_PAGE = "Mission Control → Runtime (Ctrl/⌘+Shift+R)"  # docs/lmstudio-contract.md §12


class OverlayError(UnlockedError):
    """An overlay that cannot be made, or cannot be applied on this computer's official pack."""

    code = "overlay-refused"


class BaseMismatch(OverlayError):
    """The user's official pack is missing, or is another build than the one the overlay was made from."""

    code = "overlay-base-mismatch"


@dataclass(frozen=True)
class OverlaySpec:
    name: str
    version: str
    base: Mapping[str, Any]  # name, version, platform, arch, display_name, files, replaced, removed
    added: tuple[str, ...]  # files and symlinks new in the finished folder
    result: Mapping[str, str]  # relpath -> sha256 / "symlink:<target>" of the finished folder (marker excluded)
    provenance: Mapping[str, Any] = field(default_factory=dict)

    @property
    def ident(self) -> str:
        return f"{self.name}@{self.version}"

    @property
    def base_ident(self) -> str:
        return f"{self.base['name']}@{self.base['version']}"

    @property
    def kept(self) -> dict[str, str]:
        """Files of the official pack taken as they are (verified against the recorded hash)."""
        drop = set(self.base.get("replaced", ())) | set(self.base.get("removed", ()))
        return {r: d for r, d in self.base["files"].items() if r not in drop}

    @property
    def payload(self) -> tuple[str, ...]:
        """Paths the overlay archive carries: the replaced and the added ones."""
        return tuple(sorted({*self.base.get("replaced", ()), *self.added} - {*self.base.get("removed", ())}))

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema": OVERLAY_SCHEMA,
            "kind": "overlay",
            "name": self.name,
            "version": self.version,
            "base": dict(self.base),
            "added": list(self.added),
            "result": dict(self.result),
            "provenance": dict(self.provenance),
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], *, source: str) -> OverlaySpec:
        try:
            if d.get("schema") != OVERLAY_SCHEMA or d.get("kind") != "overlay":
                raise ValueError(f"schema {d.get('schema')!r}, kind {d.get('kind')!r}")
            spec = cls(
                str(d["name"]),
                str(d["version"]),
                dict(d["base"]),
                tuple(str(x) for x in d.get("added", ())),
                {str(k): str(v) for k, v in dict(d["result"]).items()},
                dict(d.get("provenance", {})),
            )
            base = spec.base
            for rel in [*base["files"], *base.get("replaced", ()), *base.get("removed", ()), *spec.result, *spec.added]:
                _safe_rel(str(rel))
            str(spec.base["name"]), str(spec.base["version"])
        except (KeyError, TypeError, ValueError) as exc:
            raise OverlayError(f"{source} is not a valid overlay description: {exc}", context=source) from exc
        return spec


def _safe_rel(rel: str) -> PurePosixPath:
    p = PurePosixPath(rel)
    if p.is_absolute() or ".." in p.parts or not p.parts or "\\" in rel:
        raise ValueError(f"{rel!r} is not a relative path inside the backend folder")
    return p


def read_overlay(root: Path) -> OverlaySpec | None:
    """The overlay description in an extracted folder, or None when the folder is a whole backend."""
    p = root / OVERLAY_FILE
    if not p.is_file():
        return None
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise OverlayError(f"Cannot read {p}: {exc}", context=str(p)) from exc
    if not isinstance(data, dict):
        raise OverlayError(f"{p} is not a JSON object.", context=str(p))
    return OverlaySpec.from_dict(data, source=str(p))


# --- maintainers: make an overlay --------------------------------------------------------------------------------


def _digest(folder: Path, rel: str) -> str:
    p = folder / rel
    return "symlink:" + os.readlink(p) if p.is_symlink() else sha256_file(p)


def pack_digests(folder: Path) -> tuple[dict[str, str], dict[str, str]]:
    """(relpath -> sha256 / "symlink:<target>", relpath -> why it could not be hashed) of every file of a pack."""
    bad: dict[str, str] = {}
    return file_digests(folder, errors=bad), bad


def _display_name(folder: Path) -> str:
    try:
        data = json.loads((folder / DISPLAY_DATA_FILE).read_text(encoding="utf-8"))
        for item in data if isinstance(data, list) else []:
            if isinstance(item, list) and len(item) == 2 and isinstance(item[1], dict) and item[0] == "en":
                return str(item[1].get("displayName", ""))
    except (OSError, ValueError):
        pass
    return ""


def plan_overlay(built: Path, template: Path) -> OverlaySpec:
    """What the overlay of `built` on its official `template` holds (nothing written).

    Raises:
        OverlayError: the template is not the official pack the folder was built from, a kept file of it cannot be
            hashed, or a file other than our rebuilt ones / our manifest files differs from LM Studio's.
    """
    info = read_backend(built)
    tmpl = read_backend(template)
    if not info.valid or not tmpl.valid:
        bad = built if not info.valid else template
        raise OverlayError(f"{bad} is not a valid backend folder.", context=str(bad))
    if tmpl.ours:
        raise OverlayError(
            f"The template {tmpl.ident} ({template}) is a folder of ours, not LM Studio's official pack.",
            context=str(template),
            hint="Give the untouched official pack the backend was built from (as LM Studio unpacks it).",
        )
    prov = read_provenance(built) or {}
    made_from = str(prov.get("template", ""))
    if made_from != tmpl.ident:
        raise OverlayError(
            f"{info.ident} was built from {made_from or 'an unknown template'}, not from {tmpl.ident}.",
            context=str(built),
            hint="Give the official pack named in the folder's unlocked-install.json (`template`).",
        )
    tmpl_files, unhashable = pack_digests(template)
    built_files, built_bad = pack_digests(built)
    if built_bad:
        raise OverlayError(
            f"Cannot hash {len(built_bad)} file(s) of {built}.",
            context=str(built),
            details="\n".join(f"{k}: {v}" for k, v in built_bad.items()),
        )
    replaced = sorted(r for r in tmpl_files if r in built_files and built_files[r] != tmpl_files[r])
    removed = sorted(r for r in [*tmpl_files, *unhashable] if r not in built_files)
    added = sorted(r for r in built_files if r not in tmpl_files and r not in unhashable)
    kept_unhashable = sorted(r for r in unhashable if r in built_files)
    if kept_unhashable:
        raise OverlayError(
            f"Cannot hash {len(kept_unhashable)} file(s) of the official pack that the overlay keeps, so users' "
            "packs could not be checked against it.",
            context=str(template),
            hint="Re-extract the official pack (readable regular files and links only) and publish again.",
            details="\n".join(f"{r}: {unhashable[r]}" for r in kept_unhashable),
        )
    ours = {*(str(x) for x in prov.get("replaced", ()) or ()), *(str(x) for x in prov.get("added", ()) or ())}
    server = str(prov.get("server") or "")
    if server and "/" in server:
        sub = server.rsplit("/", 1)[0] + "/"
        ours |= {r for r in added if r.startswith(sub)}
    foreign = [r for r in [*replaced, *added] if r not in ours and r not in META_FILES]
    if foreign:
        raise OverlayError(
            f"{len(foreign)} file(s) of {info.ident} differ from LM Studio's pack but are not files the build made: "
            + ", ".join(foreign[:5]),
            context=str(built),
            hint="An overlay carries only the libraries we rebuilt and our manifest files. Rebuild the folder with "
            "`lms-unlocked build` from the untouched template.",
        )
    base = {
        "name": tmpl.name,
        "version": tmpl.version,
        "platform": tmpl.platform,
        "arch": tmpl.arch,
        "display_name": _display_name(template),
        "files": tmpl_files,
        "replaced": replaced,
        "removed": removed,
    }
    keep_prov = {k: v for k, v in prov.items() if k not in ("files", "executables", "json_copies")}
    return OverlaySpec(info.name, info.version, base, tuple(added), built_files, keep_prov)


def write_overlay_folder(built: Path, spec: OverlaySpec, dest: Path) -> Path:
    """Write the overlay folder `dest` (new): the payload files/links of `built` and unlocked-overlay.json."""
    dest.mkdir(parents=True)
    try:
        for rel in spec.payload:
            src, t = built / rel, dest / rel
            t.parent.mkdir(parents=True, exist_ok=True)
            if src.is_symlink():
                os.symlink(os.readlink(src), t)
            else:
                shutil.copy2(src, t)
        atomic_write_bytes(dest / OVERLAY_FILE, (json.dumps(spec.to_dict(), indent=2) + "\n").encode("utf-8"))
    except BaseException:
        shutil.rmtree(dest, ignore_errors=True)
        raise
    return dest


def base_entry(spec: OverlaySpec) -> dict[str, Any]:
    """The catalog entry's `base` (the same as the description's, so the app can compare both)."""
    return dict(spec.base)


# --- users: find and check the official pack -----------------------------------------------------------------------


def download_hint(base: Mapping[str, Any]) -> str:
    """How to get the official pack an overlay needs: LM Studio downloads its runtimes itself."""
    label = f"“{base['display_name']}” ({base['name']})" if base.get("display_name") else str(base["name"])
    return (
        f"in LM Studio open {RUNTIME_PAGE}, download the runtime {label} version {base['version']}, "
        "quit LM Studio and try again"
    )


def _kept_differences(folder: Path, kept: Mapping[str, str]) -> list[str]:
    """Kept files of the installed pack that are missing or differ from the recorded hash."""
    diffs: list[str] = []
    for rel, want in kept.items():
        p = folder / rel
        if not (p.is_symlink() or p.exists()):
            diffs.append(f"{rel} (missing)")
            continue
        try:
            have = _digest(folder, rel)
        except OSError as exc:
            diffs.append(f"{rel} ({exc.strerror or exc})")
            continue
        if have != want:
            diffs.append(rel)
    return diffs


def _kept_of(base: Mapping[str, Any]) -> dict[str, str]:
    drop = set(base.get("replaced", ())) | set(base.get("removed", ()))
    return {r: d for r, d in dict(base.get("files", {})).items() if r not in drop}


def different_build_reason(ident: str, diffs: Sequence[str], total: int) -> str:
    return (
        f"your {ident} is a different build than the one this overlay was made for ({len(diffs)} of {total} "
        f"kept file(s) differ: {', '.join(diffs[:3])}{', …' if len(diffs) > 3 else ''})"
    )


class BaseIndex:
    """The official packs installed in one LM Studio home, for judging overlay entries (hashes computed once)."""

    def __init__(self, home: LmsHome | Path | str, backends: Sequence[BackendInfo] | None = None) -> None:
        self.home = as_home(home)
        found = backends if backends is not None else list_backends(self.home)
        self.official = [b for b in found if b.valid and not b.ours]
        self._diffs: dict[tuple[str, str], list[str]] = {}

    def find(self, base: Mapping[str, Any]) -> BackendInfo | None:
        return next(
            (b for b in self.official if b.name == base.get("name") and b.version == base.get("version")), None
        )

    def differences(self, base: Mapping[str, Any]) -> tuple[BackendInfo | None, list[str]]:
        info = self.find(base)
        if info is None:
            return None, []
        kept = _kept_of(base)
        key = (str(info.folder), hashlib.sha256(json.dumps(kept, sort_keys=True).encode()).hexdigest())
        if key not in self._diffs:
            self._diffs[key] = _kept_differences(info.folder, kept)
        return info, self._diffs[key]

    def reason(self, base: Mapping[str, Any]) -> str:
        """"" when the pack is installed and is the very build, else one sentence why not (with what to do)."""
        info, diffs = self.differences(base)
        ident = f"{base.get('name')}@{base.get('version')}"
        if info is None:
            others = sorted(b.version for b in self.official if b.name == base.get("name"))
            have = f" (this LM Studio has {', '.join(others)})" if others else ""
            return f"needs LM Studio's official runtime {ident}, which is not installed{have}: {download_hint(base)}"
        if diffs:
            return different_build_reason(ident, diffs, len(_kept_of(base)))
        return ""

    def check_entry(self, entry: CatalogEntry) -> str:
        """A `catalog.BaseCheck`."""
        return self.reason(entry.base)


def require_base(home: LmsHome | Path | str, spec: OverlaySpec) -> BackendInfo:
    """The installed official pack `spec` applies to, or BaseMismatch saying what to do."""
    index = BaseIndex(home)
    why = index.reason(spec.base)
    if why:
        raise BaseMismatch(
            f"Cannot apply the overlay {spec.ident}: {why}.",
            context=str(as_home(home).backends_dir),
            hint="Nothing was installed. Install that exact runtime in LM Studio, pick the catalog entry made for "
            "the runtime you have, or build the backend from source (`lms-unlocked build`).",
        )
    info = index.find(spec.base)
    assert info is not None
    return info


# --- users: apply and prove ------------------------------------------------------------------------------------------


def apply_overlay(base_folder: Path, overlay_root: Path, spec: OverlaySpec, dest: Path) -> Path:
    """Build the finished backend in the new folder `dest` from the kept files of `base_folder` and the overlay.

    Every copied kept file is hashed after the copy (what gets installed is what was checked), the overlay's files
    are added, and the finished folder must equal `spec.result` file for file. `dest` is removed on any error.

    Raises:
        BaseMismatch: a kept file differs from the recorded hash (another build of the same version).
        OverlayError: the overlay archive lacks a file, or the result differs from what was published.
    """
    dest.mkdir(parents=True)
    try:
        kept = spec.kept
        diffs: list[str] = []
        for rel, want in kept.items():
            src, t = base_folder / rel, dest / rel
            t.parent.mkdir(parents=True, exist_ok=True)
            if want.startswith("symlink:"):
                if not src.is_symlink() or os.readlink(src) != want.removeprefix("symlink:"):
                    diffs.append(rel)
                    continue
                os.symlink(want.removeprefix("symlink:"), t)
            elif src.is_file() and not src.is_symlink():
                shutil.copy2(src, t)
                if _digest(dest, rel) != want:
                    diffs.append(rel)
            else:
                diffs.append(f"{rel} (missing)")
        if diffs:
            raise BaseMismatch(
                f"Cannot apply the overlay {spec.ident}: "
                + different_build_reason(spec.base_ident, diffs, len(kept)) + ".",
                context=str(base_folder),
                hint="Nothing was installed. Use the catalog entry made for your build of the runtime, or build "
                "the backend from source (`lms-unlocked build`).",
            )
        for rel in spec.payload:
            src, t = overlay_root / rel, dest / rel
            if not (src.is_symlink() or src.is_file()):
                raise OverlayError(f"The overlay {spec.ident} lacks {rel}.", context=str(overlay_root))
            t.parent.mkdir(parents=True, exist_ok=True)
            if t.is_symlink() or t.exists():
                t.unlink()
            if src.is_symlink():
                os.symlink(os.readlink(src), t)
            else:
                shutil.copy2(src, t)
        got = file_digests(dest)
        if got != dict(spec.result):
            wrong = sorted(r for r in {*got, *spec.result} if got.get(r) != spec.result.get(r))
            raise OverlayError(
                f"The backend rebuilt from the overlay {spec.ident} differs from the published one in "
                f"{len(wrong)} file(s): {', '.join(wrong[:5])}.",
                context=str(dest),
                hint="Nothing was installed. The overlay archive is damaged or does not belong to this catalog entry.",
            )
    except BaseException:
        shutil.rmtree(dest, ignore_errors=True)
        raise
    return dest


def audit_or_refuse(folder: Path, isa: Sequence[str], error: type[UnlockedError], message: str, hint: str) -> int:
    """ISA audit of every binary in `folder` against `isa`; raises `error` with the findings, else returns how many
    binaries were judged (publish: against the entry's `requires.cpu_isa`; install: against this CPU)."""
    from app.core.builder.audit import audit_folder, audit_violations

    fa = audit_folder(folder)
    bad = audit_violations(fa, list(isa))
    if bad:
        raise error(
            f"{message}: {', '.join(sorted({v.extension for v in bad}))} ({len(bad)} finding(s)).",
            context=str(folder),
            hint=hint,
            details="\n".join(v.describe() for v in bad),
        )
    return len([b for b in fa.binaries if b.counted])


@dataclass(frozen=True)
class OverlayProof:
    abi: str
    audit: str
    smoke: str

    def lines(self) -> list[str]:
        return [self.abi, self.audit, self.smoke]

    def to_dict(self) -> dict[str, str]:
        return {"abi": self.abi, "audit": self.audit, "smoke": self.smoke}


def _smoke_program(info: BackendInfo, folder: Path) -> str | None:
    rel = info.server_relpath
    if rel and (folder / rel).is_file() and os.access(folder / rel, os.X_OK):
        return rel
    return None


def prove_overlay(
    folder: Path,
    base_folder: Path,
    spec: OverlaySpec,
    report: HardwareReport,
    *,
    smoke: bool = True,
    audit: bool = True,
    smoke_timeout: float = 300,
) -> OverlayProof:
    """ABI guard (kept binaries vs our libraries), ISA audit for this CPU (`audit=False`: the caller's install check
    ran it), smoke test (the pack's own server).

    Raises:
        AbiError, IsaViolationError (app.core.builder.package), SmokeTestFailed: the backend would not work here.
    """
    from app.core.builder.abi import check_abi, require_abi
    from app.core.builder.package import IsaViolationError
    from app.core.builder.smoke import plan_smoke, require_smoke, run_smoke
    from app.core.builder.tinymodel import shipped_model

    ours = [r for r in spec.payload if r not in META_FILES and not (folder / r).is_symlink()]
    missing = check_abi(folder, ours, template_folder=base_folder)
    require_abi(missing, folder=folder)
    abi = f"ABI guard: every symbol LM Studio's kept binaries import from our {len(ours)} file(s) is exported"
    audit_line = "ISA audit: run by the install check"
    if audit:
        if report.cpu is None:
            raise OverlayError("The CPU could not be probed, so the ISA audit cannot be run.", hint="Run `probe`.")
        n = audit_or_refuse(
            folder,
            list(report.cpu.isa),
            IsaViolationError,
            "The backend uses instruction sets this CPU lacks",
            "Nothing was installed. Pick the entry for this CPU's variant, or build from source.",
        )
        audit_line = f"ISA audit: {n} binar{'y' if n == 1 else 'ies'} use nothing this CPU lacks"
    info = read_backend(folder)
    program = _smoke_program(info, folder)
    if not smoke:
        return OverlayProof(abi, audit_line, "smoke test: skipped as asked")
    if program is None:
        return OverlayProof(
            abi, audit_line, "smoke test: not possible here (the pack has no program of its own to run; 1.x packs are "
            "loaded by LM Studio's engine only)"
        )
    fw = info.gpu_framework.lower() or "cpu"
    plan = plan_smoke(folder, shipped_model(), framework=fw, kind="server", program=program, n_tokens=8)
    res = run_smoke(plan, timeout=smoke_timeout)
    require_smoke(res, folder=folder)
    return OverlayProof(abi, audit_line, f"smoke test: {program} generated {res.tokens} tokens in {res.seconds:.1f} s")


def check_entry_matches(entry: CatalogEntry, spec: OverlaySpec, source: str) -> None:
    """The signed entry and the description inside its archive must name the same backend and base."""
    if entry.kind != "overlay":
        raise CatalogError(
            f"The archive of {entry.ident} is an overlay, but its catalog entry is a whole backend.",
            context=source,
            hint="The catalog and its archive do not belong together; nothing was installed.",
        )
    if spec.ident != entry.ident or dict(spec.base) != dict(entry.base):
        raise CatalogError(
            f"The overlay in the archive ({spec.ident} on {spec.base_ident}) is not what the catalog entry "
            f"{entry.ident} on {entry.base_ident} describes.",
            context=source,
            hint="The catalog and its archive do not belong together; nothing was installed.",
        )
