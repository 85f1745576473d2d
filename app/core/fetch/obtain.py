"""Get a prebuilt backend onto disk and into LM Studio: folder, archive, URL or catalog entry.

Every path ends the same way: a verified archive is extracted into a fresh staging folder under our
data dir (never inside LM Studio's `backends/`), the backend folder in it is found (one nested level is
normalised), and `app.core.lmstudio.install` installs it transactionally. Staging is removed afterwards,
whatever happens. An *overlay* (app.core.fetch.overlay) is first applied on the user's own official pack in
staging, then proven (ABI guard, ISA audit for this CPU, smoke test) before that install.

`plan_*` functions decide everything (sources, URLs, sha256, which catalog entry and why) without
downloading or writing; `execute_obtain` does the work. Before anything is written to LM Studio's home, the
staged folder is judged against the target (`app.core.install_check`: platform, CPU, ISA audit, engine
version, smoke result); a refused backend is not installed unless the plan is forced, and a forced one is
never selected.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import shutil
import time
import uuid
from collections.abc import Collection, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import filelock

from app.core.errors import InputFileError, UsageError
from app.core.fetch.archives import (
    ArchiveLimits,
    ExtractResult,
    archive_format,
    check_members,
    extract_archive,
    find_backend_root,
    list_members,
)
from app.core.fetch.catalog import (
    Catalog,
    CatalogEntry,
    EntryMatch,
    best_entry,
    load_catalog,
    match_catalog,
    official_engine_versions,
    resolve_entry_source,
)
from app.core.fetch.download import (
    DownloadResult,
    ProgressFn,
    RetryPolicy,
    cached_download,
    check_url,
    filename_from_url,
    hash_file,
    is_url,
    normalise_sha256,
)
from app.core.fetch.errors import ArchiveError, CatalogError, ChecksumMismatch
from app.core.fetch.overlay import (
    BaseIndex,
    OverlayProof,
    OverlaySpec,
    apply_overlay,
    check_entry_matches,
    prove_overlay,
    read_overlay,
    require_base,
)
from app.core.hardware.report import HardwareReport
from app.core.install_check import InstallCheck, check_install, enforce, install_target
from app.core.lmstudio.backends import list_backends, nested_backend_folders, read_backend
from app.core.lmstudio.home import LmsHome, as_home
from app.core.lmstudio.install import InstallPlan, InstallResult, execute_install, plan_install
from app.core.lmstudio.journal import STAGING_DIR_NAME, state_dir
from app.core.paths import user_cache_dir, user_data_dir
from app.core.runner import CancelToken

SourceKind = Literal["folder", "archive", "url", "catalog"]


@dataclass(frozen=True)
class ObtainPlan:
    kind: SourceKind
    source: str  # what the user gave
    home: LmsHome
    select: bool = False
    local: Path | None = None  # local folder or archive
    urls: tuple[str, ...] = ()
    sha256: str | None = None
    size: int | None = None
    entry: CatalogEntry | None = None
    catalog: Catalog | None = None
    matches: tuple[EntryMatch, ...] = ()
    install_plan: InstallPlan | None = None  # known up front for folders (and archives in a dry run)
    archive_summary: str = ""
    warnings: tuple[str, ...] = ()
    report: HardwareReport | None = None  # the target computer the backend is judged against (None: unknown)
    force: bool = False  # install even when the install check refuses (never selects it then)
    app_version: str | None = None  # LM Studio's version where known (minimum_lmstudio_version)
    check: InstallCheck | None = None  # the install check, known up front for folders (and archives in a dry run)
    overlay: OverlaySpec | None = None  # a local overlay folder
    smoke: bool = True  # overlays: run the smoke test before installing

    def describe(self) -> list[str]:
        lines: list[str] = []
        lines += [f"warning: {w}" for w in self.warnings]
        if self.catalog is not None:
            signed = f"signature OK (key {self.catalog.signed_by})" if self.catalog.signed_by else "UNSIGNED"
            lines.append(f"catalog {self.catalog.source}: {len(self.catalog.entries)} entries, {signed}")
            for m in self.matches:
                mark = "offered" if m.offered else "not offered: " + "; ".join(m.reasons)
                lines.append(f"  {m.entry.ident} ({m.entry.variant}, engine {m.entry.engine_version}): {mark}")
        if self.entry is not None:
            lines.append(f"chosen entry {self.entry.ident} ({self.entry.variant})")
        if self.entry is not None and self.entry.kind == "overlay":
            lines.append(f"overlay: only the rebuilt files; applied on your official {self.entry.base_ident}")
            lines.append("  (its kept files checked against the published sha256, then ABI guard, ISA audit for "
                         "this CPU and smoke test before the install)")
        if self.urls:
            size = f"{self.size / 2**20:.1f} MiB" if self.size else "size unknown"
            lines.append(f"download {self.urls[0]} ({size})" + (f", mirrors: {', '.join(self.urls[1:])}"
                                                                   if self.urls[1:] else ""))
            lines.append(f"  into the cache {user_cache_dir() / 'downloads'}, resumable")
        elif self.local is not None:
            lines.append(f"use {self.kind} {self.local}")
        if self.kind != "folder":
            lines.append(
                f"verify sha256 {self.sha256}" if self.sha256 else "sha256: NOT verified (no --sha256 given)"
            )
        if self.archive_summary:
            lines.append(self.archive_summary)
        if self.kind != "folder":
            lines.append(f"extract into a staging folder under {user_data_dir() / 'staging'}, checked for unsafe "
                         "entries, then install it:")
        if self.check is not None:
            lines += ["  " + x for x in self.check.describe()]
            if self.check.refused:
                lines.append("  the install is REFUSED" + (" but forced (--force): it will not be selected"
                                                          if self.force else ""))
        if self.overlay is not None:
            lines.append(f"  apply the overlay {self.overlay.ident} on your official {self.overlay.base_ident}, "
                         "prove it (ABI guard, install check, smoke test), install it (transactional)")
        elif self.install_plan is not None:
            lines += ["  " + x for x in self.install_plan.describe()]
        else:
            what = self.entry.ident if self.entry else "the backend in the archive"
            if self.check is None:
                lines.append("  judge it against the target first (platform, CPU, ISA audit, engine version, smoke "
                             "record)" + ("; install it even if refused (--force), never selected" if self.force
                                          else "; nothing is installed if it does not fit"))
            lines.append(f"  install {what} into {self.home.describe()} (transactional)")
        return lines


@dataclass(frozen=True)
class ObtainResult:
    install: InstallResult
    download: DownloadResult | None = None
    nested: bool = False
    provenance: dict[str, Any] = field(default_factory=dict)
    check: InstallCheck | None = None
    warnings: tuple[str, ...] = ()  # e.g. a forced install that was not selected
    proof: OverlayProof | None = None  # overlays: ABI guard, ISA audit, smoke test


def backend_root(folder: Path, *, archive: Path | None = None) -> tuple[Path, bool]:
    """The backend folder in ``folder``: itself, its single sub-folder, or the one backend one or two levels down
    (theIvanR's repository zip holds its packs in ``lmstudio-unlocked-backend-main/<pack>/``).

    Raises:
        UsageError: several backends inside (which one is the user's choice), naming each.
        ArchiveError: no backend at all.
    """
    try:
        return find_backend_root(folder)
    except ArchiveError:
        inners = nested_backend_folders(folder)
        if len(inners) == 1:
            return inners[0], True
        if not inners:
            raise
    where = archive.name if archive is not None else str(folder)
    names = ", ".join(f"{p.relative_to(folder).as_posix()} ({read_backend(p).ident or 'unreadable manifest'})"
                      for p in inners)
    how = (f"extract {archive.name} and install the one you want: `lms-unlocked install --from FOLDER`"
           if archive is not None else
           f"install the one you want: `lms-unlocked install --from {inners[0]}` (or another of them)")
    raise UsageError(f"{where} holds {len(inners)} backends, not one: {names}.", context=str(archive or folder),
                     hint=how)


def _extract(archive: Path, staging: Path, **kw: Any) -> ExtractResult:
    """extract_archive, then find the backend inside with :func:`backend_root` (also two levels down)."""
    res = extract_archive(archive, staging, require_manifest=False, **kw)
    root, nested = backend_root(res.staging, archive=archive)
    return dataclasses.replace(res, root=root, nested=nested)


def staging_root() -> Path:
    return user_data_dir() / "staging"


STALE_UNLOCKED_S = 3600  # a staging folder without a lock file (older versions) is stale after an hour


@contextlib.contextmanager
def staging_area(root: Path | None = None) -> Iterator[Path]:
    """A fresh staging path under our data dir (not created yet), removed afterwards whatever happens.

    While in use, ``<id>.lock`` next to it is held with an OS lock; on entry every staging folder whose lock
    nobody holds any more (its process was killed) is removed first, so a killed install leaves nothing for
    long, and a running one in another process is never touched.
    """
    root = root or staging_root()
    # folders made here are removed again when left empty: a refused install leaves no trace in the home
    made = [p for p in (root.parent, root) if not p.exists()]
    d = root / uuid.uuid4().hex[:12]
    lock = filelock.FileLock(str(d) + ".lock", timeout=0, is_singleton=False)
    for attempt in range(3):
        root.mkdir(parents=True, exist_ok=True)
        try:
            lock.acquire()
            break
        except FileNotFoundError:  # another process removed the empty root just now
            if attempt == 2:
                raise
    try:
        clean_stale_staging(root)
        yield d
    finally:
        with contextlib.suppress(OSError):
            shutil.rmtree(d)
        with contextlib.suppress(OSError):
            os.unlink(str(d) + ".lock")
        lock.release()
        for p in reversed(made):
            with contextlib.suppress(OSError):
                p.rmdir()  # only when empty


def home_staging_root(home: LmsHome) -> Path:
    """Where archives for ``home`` are unpacked: its ``.lms-unlocked/staging`` (same file system, not in backends/)."""
    return state_dir(home.path) / STAGING_DIR_NAME


def clean_stale_staging(root: Path | None = None) -> list[Path]:
    """Remove staging folders left by killed processes; returns what was removed."""
    root = root or staging_root()
    removed: list[Path] = []
    try:
        entries = list(root.iterdir())
    except OSError:
        return removed
    for p in entries:
        if p.suffix == ".lock" or not p.is_dir():
            continue
        lf = Path(str(p) + ".lock")
        if not lf.exists():
            with contextlib.suppress(OSError):
                if time.time() - p.stat().st_mtime > STALE_UNLOCKED_S:
                    shutil.rmtree(p)
                    removed.append(p)
            continue
        other = filelock.FileLock(str(lf), timeout=0, is_singleton=False)
        try:
            other.acquire()
        except (filelock.Timeout, OSError):
            continue  # in use by a live process
        try:
            shutil.rmtree(p, ignore_errors=True)
            with contextlib.suppress(OSError):
                os.unlink(lf)
            removed.append(p)
        finally:
            other.release()
    for lf in entries:  # lock files whose folder is gone (killed before it was created)
        if lf.suffix == ".lock" and not Path(str(lf)[: -len(".lock")]).exists():
            other = filelock.FileLock(str(lf), timeout=0, is_singleton=False)
            with contextlib.suppress(filelock.Timeout, OSError):
                other.acquire()
                with contextlib.suppress(OSError):
                    os.unlink(lf)
                other.release()
    return removed


# --- planning -----------------------------------------------------------------------------------------------------


def _blocked(plan: InstallPlan) -> None:
    if plan.blocked:
        raise UsageError(f"Cannot install and select now: {plan.blocked}", hint="Quit LM Studio and run it again.")


def plan_from(
    source: str,
    *,
    home: LmsHome | Path | str,
    sha256: str | None = None,
    select: bool = False,
    dry_run: bool = False,
    limits: ArchiveLimits | None = None,
    report: HardwareReport | None = None,
    force: bool = False,
    app_version: str | None = None,
) -> ObtainPlan:
    """Plan `install --from FOLDER|ARCHIVE|URL` for the target `report` describes (None: CPU unknown).

    For a local archive in a dry run the archive is checked and extracted into a throw-away staging folder,
    so the install plan (and the install check) shown is exact; nothing is written to LM Studio's home.
    """
    h = as_home(home)
    expected = normalise_sha256(sha256)
    if is_url(source):
        check_url(source)
        return ObtainPlan("url", source, h, select, urls=(source,), sha256=expected, report=report, force=force,
                          app_version=app_version)
    path = Path(source).expanduser()
    if path.is_dir():
        if expected:
            raise UsageError("--sha256 applies to archives and URLs, not to a folder.")
        root, nested = backend_root(path)
        warn = (f"the backend is one folder down, in {root.name}/",) if nested else ()
        spec = read_overlay(root)
        if spec is not None:
            require_base(h, spec)
            return ObtainPlan("folder", source, h, select, local=root, warnings=warn, report=report, overlay=spec,
                              force=force, app_version=app_version)
        fplan = plan_install(h, root, select=select)
        fchk = check_install(root, install_target(h, report, app_version=app_version)) if dry_run else None
        return ObtainPlan(
            "folder", source, h, select, local=root, install_plan=fplan, warnings=warn, check=fchk, report=report,
            force=force, app_version=app_version
        )
    if not path.is_file():
        raise InputFileError(
            f"{source} does not exist.",
            context=source,
            hint="Give a backend folder, a .7z/.zip/.tar.gz/.tar.xz archive, or an https:// URL.",
        )
    archive_format(path)  # refuses non-archives early with a clear message
    summary = _archive_summary(path, limits)
    ip: InstallPlan | None = None
    chk: InstallCheck | None = None
    overlay: OverlaySpec | None = None
    if dry_run:
        if expected:
            _verify_local(path, expected, None)
        with staging_area() as staging:
            res = _extract(path, staging, limits=limits)
            overlay = read_overlay(res.root)
            if overlay is not None:
                require_base(h, overlay)
            else:
                ip = plan_install(h, res.root, select=select)
                chk = check_install(res.root, install_target(h, report, app_version=app_version))
    return ObtainPlan(
        "archive",
        source,
        h,
        select,
        local=path,
        sha256=expected,
        install_plan=ip,
        archive_summary=summary,
        check=chk,
        report=report,
        force=force,
        app_version=app_version,
        overlay=overlay,  # shown by describe(); execution reads the archive again
    )


def _archive_summary(path: Path, limits: ArchiveLimits | None) -> str:
    members = list_members(path, limits)
    check_members(members, path, limits or ArchiveLimits())
    files = [m for m in members if m.kind == "file"]
    total = sum(m.size for m in files)
    links = sum(1 for m in members if m.kind == "symlink")
    return (
        f"archive {path.name}: {len(files)} files, {links} symlinks, {total / 2**20:.1f} MiB unpacked, "
        "no unsafe entries"
    )


def plan_from_catalog(
    catalog_source: str | Path | None,
    *,
    home: LmsHome | Path | str,
    report: HardwareReport | None,
    entry_ident: str | None = None,
    select: bool = False,
    allow_unsigned: bool = False,
    public_key_path: Path | None = None,
    engine_versions: Collection[str] | None = None,
    policy: RetryPolicy | None = None,
    force: bool = False,
    app_version: str | None = None,
) -> ObtainPlan:
    """Plan `install --catalog SRC [--entry NAME@VERSION]`: the named entry, or the best match for this machine.

    Raises:
        SignatureError / CatalogError: the catalog cannot be trusted or read, or no entry fits (with reasons).
    """
    h = as_home(home)
    cat = load_catalog(catalog_source, public_key_path=public_key_path, allow_unsigned=allow_unsigned, policy=policy)
    matches = tuple(match_home(cat, h, report, engine_versions=engine_versions)) if report is not None else ()
    warnings = list(cat.warnings)
    if entry_ident:
        entry = cat.find(entry_ident)
        m = next((x for x in matches if x.entry == entry), None)
        if m is not None and not m.offered:
            warnings.append(f"{entry.ident} does not fit this machine: " + "; ".join(m.reasons))
    else:
        if report is None:
            raise UsageError("Name an entry with --entry NAME@VERSION, or let the hardware be probed.")
        chosen = best_entry(matches)
        if chosen is None:
            reasons = [f"{m.entry.ident}: " + "; ".join(m.reasons) for m in matches]
            shown = "; ".join(reasons[:5]) + (f"; and {len(reasons) - 5} more" if len(reasons) > 5 else "")
            raise CatalogError(
                f"No entry of the catalog fits this machine: {shown}" if matches else "The catalog has no entries.",
                context=cat.source,
                hint="Build the backend from source instead (`lms-unlocked build`), or name an entry with --entry.",
                details="\n".join(reasons),
            )
        entry = chosen
    if entry.kind == "overlay" and h.path.is_dir():
        why = BaseIndex(h).check_entry(entry)
        if why:  # the overlay cannot be applied here whatever --entry says: stop before downloading
            raise CatalogError(
                f"Cannot install {entry.ident}: {why}.",
                context=cat.source,
                hint="Nothing was downloaded or installed.",
            )
    src = resolve_entry_source(cat, entry)
    return ObtainPlan(
        "catalog",
        str(catalog_source or cat.source),
        h,
        select,
        local=src.local,
        urls=src.urls if src.local is None else (),
        sha256=entry.sha256,
        size=entry.size,
        entry=entry,
        catalog=cat,
        matches=matches,
        warnings=tuple(warnings),
        report=report,
        force=force,
        app_version=app_version,
    )


def match_home(
    catalog: Catalog,
    home: LmsHome | Path | str,
    report: HardwareReport,
    *,
    engine_versions: Collection[str] | None = None,
) -> list[EntryMatch]:
    """Every catalog entry judged for this computer and the official packs of this LM Studio home, best first.

    Overlays fit only when their official pack is installed and is the very build they were made from (its kept
    files hashed once per pack); whole backends when their engine version is installed."""
    h = as_home(home)
    if not h.path.is_dir():
        return match_catalog(catalog, report, engine_versions=engine_versions)
    backends = list_backends(h)
    if engine_versions is None:
        engine_versions = official_engine_versions(backends)
    index = BaseIndex(h, backends)
    return match_catalog(catalog, report, engine_versions=engine_versions, base_check=index.check_entry)


@dataclass(frozen=True)
class CatalogOffers:
    """What the wizard's download branch shows: the entries that fit (best first) and one line for every other."""

    catalog: Catalog
    offered: tuple[EntryMatch, ...]
    others: tuple[EntryMatch, ...]

    def explanations(self) -> list[str]:
        return [m.one_line() for m in self.others]


def catalog_offers(
    catalog_source: str | Path | None,
    *,
    home: LmsHome | Path | str,
    report: HardwareReport,
    variant: str | None = None,
    public_key_path: Path | None = None,
    allow_unsigned: bool = False,
    policy: RetryPolicy | None = None,
) -> CatalogOffers:
    """Load and verify the catalog, and split its entries (optionally only those of `variant`) into offered ones
    (fitting this computer AND an official pack it has) and the others, each with its one-line reason.

    Raises:
        SignatureError / CatalogError / DownloadError: the catalog cannot be trusted or read.
    """
    cat = load_catalog(catalog_source, public_key_path=public_key_path, allow_unsigned=allow_unsigned, policy=policy)
    matches = [m for m in match_home(cat, home, report) if variant is None or m.entry.variant == variant]
    return CatalogOffers(cat, tuple(m for m in matches if m.offered), tuple(m for m in matches if not m.offered))


# --- execution ----------------------------------------------------------------------------------------------------


def _verify_local(path: Path, sha256: str, size: int | None, cancel: CancelToken | None = None) -> None:
    actual, n = hash_file(path, cancel=cancel)
    if actual != sha256 or (size is not None and n != size):
        raise ChecksumMismatch(
            f"{path.name} does not have the expected sha256.",
            expected=sha256,
            actual=actual,
            context=str(path),
            hint="The file is not the one the catalog/--sha256 describes. Nothing was installed.",
        )


def _judged_install_plan(
    plan: ObtainPlan, folder: Path, prov: dict[str, Any]
) -> tuple[InstallPlan, InstallCheck, tuple[str, ...]]:
    """Validate the staged `folder`, judge it against the target (nothing written yet), and plan its install.

    Raises InvalidBackendFolder (not a backend), InstallRefused (does not fit the target, not forced) or
    UsageError (LM Studio is running and a selection was asked for). A forced, refused backend is not selected.
    """
    chk = check_install(folder, install_target(plan.home, plan.report, app_version=plan.app_version))
    select = plan.select and not chk.refused
    ip = plan_install(plan.home, folder, select=select)
    enforce(chk, force=plan.force, source=plan.source)
    _blocked(ip)
    warnings: tuple[str, ...] = ()
    if chk.refused and plan.select:
        warnings = (f"{ip.ident} was installed because of --force but NOT selected: the install check refused it",)
    prov["install_check"] = chk.provenance_record(forced=chk.refused)
    return ip, chk, warnings


def execute_obtain(
    plan: ObtainPlan,
    *,
    progress: ProgressFn | None = None,
    cancel: CancelToken | None = None,
    policy: RetryPolicy | None = None,
    limits: ArchiveLimits | None = None,
    cache_root: Path | None = None,
    staging_in_home: bool = True,
) -> ObtainResult:
    """Download/verify/extract as planned, then install transactionally; staging is always removed.

    ``staging_in_home=False`` unpacks under our data dir and copies into the home (what earlier versions did;
    bench/install_disk.py measures both)."""
    prov: dict[str, Any] = {"obtained_by": plan.kind, "obtained_from": plan.source}
    if plan.kind == "folder" and plan.overlay is not None:
        assert plan.local is not None
        with staging_area() as staging:
            return _install_overlay(plan, plan.local, plan.overlay, staging, prov, None, False)
    if plan.kind == "folder":
        assert plan.local is not None
        ip, chk, warnings = _judged_install_plan(plan, plan.local, prov)
        return ObtainResult(execute_install(ip, provenance=prov), provenance=prov, check=chk, warnings=warnings)
    download: DownloadResult | None = None
    if plan.local is not None:
        archive = plan.local
        if plan.sha256:
            _verify_local(archive, plan.sha256, plan.size, cancel)
    else:
        name = filename_from_url(plan.urls[0], default="backend-archive")
        download = cached_download(
            plan.urls,
            sha256=plan.sha256,
            size=plan.size,
            filename=name,
            cache_root=cache_root or user_cache_dir(),
            progress=progress,
            cancel=cancel,
            policy=policy,
        )
        archive = download.path
        prov["download_url"] = download.url or "(cache)"
    prov["archive"] = archive.name
    prov["archive_sha256"] = download.sha256 if download else (plan.sha256 or hash_file(archive)[0])
    prov["archive_verified"] = bool(plan.sha256)
    if plan.entry is not None:
        prov["catalog_entry"] = plan.entry.ident
        prov["variant"] = plan.entry.variant
        if plan.entry.llama_tag:
            prov["llama_cpp_tag"] = plan.entry.llama_tag
    if plan.catalog is not None:
        prov["catalog"] = plan.catalog.source
        prov["catalog_signed_by"] = plan.catalog.signed_by or "UNSIGNED"
    # unpacked next to the LM Studio home (its state folder, outside backends/): the install then moves the
    # folder in with renames instead of copying it, so the unpacked backend is on disk once, not twice
    with staging_area(home_staging_root(plan.home) if staging_in_home else None) as staging:
        res = _extract(archive, staging / "archive", limits=limits, cancel=cancel)
        spec = read_overlay(res.root)
        if plan.entry is not None and spec is not None:
            check_entry_matches(plan.entry, spec, str(archive))
        elif plan.entry is not None and plan.entry.kind == "overlay":
            raise CatalogError(
                f"The catalog entry {plan.entry.ident} is an overlay, but its archive holds no overlay description.",
                context=str(archive),
                hint="The catalog and its archive do not belong together; nothing was installed.",
            )
        if spec is not None:
            return _install_overlay(plan, res.root, spec, staging, prov, download, res.nested)
        if plan.entry is not None:
            got = read_backend(res.root)
            if got.ident != plan.entry.ident:
                raise CatalogError(
                    f"The archive holds {got.ident or 'no valid backend'}, "
                    f"but the catalog entry is {plan.entry.ident}.",
                    context=str(archive),
                    hint="The catalog and its archive do not belong together; nothing was installed.",
                )
        ip, chk, warnings = _judged_install_plan(plan, res.root, prov)
        result = execute_install(ip, provenance=prov)
        return ObtainResult(
            result, download=download, nested=res.nested, provenance=prov, check=chk, warnings=warnings
        )


def _install_overlay(
    plan: ObtainPlan,
    root: Path,
    spec: OverlaySpec,
    staging: Path,
    prov: dict[str, Any],
    download: DownloadResult | None,
    nested: bool,
) -> ObtainResult:
    """Apply `spec` (extracted at `root`) on the user's official pack in `staging`, prove it, install it."""
    if plan.report is None:
        raise UsageError("Installing an overlay needs this computer's hardware report (for the ISA audit).")
    base = require_base(plan.home, spec)
    dest = apply_overlay(base.folder, root, spec, staging / "backend" / f"{spec.name}-{spec.version}")
    info = {k: v for k, v in spec.provenance.items() if k not in ("obtained_by", "obtained_from")}
    prov.update(info)
    # The install check judges the rebuilt folder for this computer first (platform, CPU, ISA audit, engine), so
    # nothing this CPU cannot run is started by the smoke test; then the ABI guard and the smoke test.
    ip, chk, warnings = _judged_install_plan(plan, dest, prov)
    isa = next((f for f in chk.findings if f.check == "isa-audit"), None)
    proof: OverlayProof = prove_overlay(dest, base.folder, spec, plan.report, smoke=plan.smoke, audit=False)
    proof = dataclasses.replace(proof, audit=f"ISA audit for this CPU: {isa.message}" if isa else proof.audit)
    prov["overlay"] = {"base": spec.base_ident, "base_folder": base.folder.name, "kept_files_verified": len(spec.kept),
                       "files_from_overlay": list(spec.payload), **proof.to_dict()}
    result = execute_install(ip, provenance=prov)
    return ObtainResult(result, download=download, nested=nested, provenance=prov, check=chk, warnings=warnings,
                        proof=proof)
