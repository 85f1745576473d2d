"""`install` (folder, archive, URL, catalog), `patch` (manifest-only clone proven safe) and `publish`."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

from app.cli_cmds.common import add_home_flag, add_json_flag, add_report_source_flags, emit_json, out
from app.core.errors import UsageError
from app.core.fetch.download import DownloadProgress


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "install",
        help="install a prebuilt backend (folder, archive, URL or catalog entry)",
        description="Install a backend into LM Studio transactionally. From a folder or archive "
        "(--from), a URL with an optional --sha256, or a signed catalog (--catalog) where the best entry for "
        "this machine is picked unless --entry names one. Before anything is written the backend is judged "
        "against the target (this computer, or --report/--cpuinfo): platform and architecture, the manifest's "
        "CPU extensions, the ISA audit of its binaries, the LM Studio engine version it was made from and its "
        "own smoke test. A backend that does not fit is refused (exit 2) unless --force.",
    )
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--from", dest="source", metavar="FOLDER|ARCHIVE|URL", help="backend folder, archive or URL")
    src.add_argument(
        "--catalog",
        nargs="?",
        const="",
        metavar="URL|FILE|FOLDER",
        help="a signed catalog (default: $LMS_UNLOCKED_CATALOG, else the latest 'backends' release's catalog)",
    )
    p.add_argument("--sha256", metavar="HEX", help="expected sha256 of the archive (--from ARCHIVE|URL)")
    p.add_argument("--entry", metavar="NAME@VERSION", help="catalog entry to install (default: best match)")
    p.add_argument("--select", action="store_true", help="also select it in LM Studio for GGUF models")
    p.add_argument(
        "--force",
        action="store_true",
        help="install even when the install check refuses it (the reasons are kept in its provenance; a refused "
        "backend is never selected)",
    )
    p.add_argument("--app-version", metavar="X.Y.Z", help="installed LM Studio version, to check its minimum")
    p.add_argument("--dry-run", action="store_true", help="show what would happen; download and install nothing")
    p.add_argument("--list", action="store_true", help="with --catalog: list every entry, offered or why not; exit")
    p.add_argument(
        "--allow-unsigned",
        action="store_true",
        help="accept a catalog whose signature is missing or wrong (DANGEROUS; only for catalogs you built)",
    )
    p.add_argument("--public-key", metavar="FILE", help="trust this ed25519 public key instead of the app's key ring")
    add_report_source_flags(p)
    add_json_flag(p)
    add_home_flag(p)
    p.set_defaults(handler=run_install)

    pa = sub.add_parser(
        "patch",
        help="clone an installed official backend with an honest AVX manifest, if its binaries allow it",
        description="Patch-only: when the ISA audit proves that an installed official backend's binaries need "
        "nothing this CPU lacks, install a clone of it under a new name with the manifest ISE [\"AVX\"]. "
        "Refused (with the evidence) otherwise.",
    )
    pa.add_argument("--from", dest="source", required=True, metavar="NAME@VERSION", help="installed backend")
    pa.add_argument("--select", action="store_true", help="also select the clone in LM Studio for GGUF models")
    pa.add_argument("--dry-run", action="store_true", help="audit and show the plan; install nothing")
    add_report_source_flags(pa)
    add_json_flag(pa)
    add_home_flag(pa)
    pa.set_defaults(handler=run_patch)

    pu = sub.add_parser(
        "publish",
        help="(maintainers) publish a built backend as an overlay (or whole) in a signed catalog",
        description="Publish FOLDER into DIR as an overlay on the official pack it was built from (--template: only "
        "the files we rebuilt and our manifest files), or whole with --full (only for packs that are ours alone), "
        "add or update its entry in DIR/catalog.json and sign the catalog with the private key from --key-env VAR "
        "(CI secret) or --key FILE (outside any git work tree). Entry URLs are relative to the catalog unless "
        "--base-url is given. --merge adds the entries of an unsigned catalog made by a build job.",
    )
    pu.add_argument("folder", nargs="?", metavar="FOLDER", help="built backend folder")
    pu.add_argument("--out", metavar="DIR", help="catalog folder to write into")
    shape = pu.add_mutually_exclusive_group()
    shape.add_argument("--template", metavar="DIR", help="the official pack FOLDER was built from (overlay)")
    shape.add_argument("--full", action="store_true", help="publish the whole folder (packs that are ours alone)")
    shape.add_argument("--merge", metavar="CATALOG", help="add the entries (and archives) of this unsigned catalog")
    keys = pu.add_mutually_exclusive_group()
    keys.add_argument("--key", metavar="FILE", help="ed25519 private key (PEM) file, outside any git work tree")
    keys.add_argument("--key-env", metavar="VAR", help="environment variable holding the private key (CI secret)")
    pu.add_argument("--format", choices=("7z", "tar.xz"), default="7z", help="archive format (default 7z)")
    pu.add_argument("--variant", help="variant id (default: from the build's provenance or the manifest)")
    pu.add_argument("--base-url", default="", help="absolute URL prefix for the archive (default: relative)")
    pu.add_argument("--mirror", action="append", default=[], metavar="URL", help="mirror URL (repeatable)")
    pu.add_argument("--no-audit", action="store_true", help="skip the ISA audit gate (not recommended)")
    pu.add_argument("--new-key", metavar="FILE", help="create a new signing key FILE (+ FILE.pub) and exit")
    add_json_flag(pu)
    pu.set_defaults(handler=run_publish)


# --- progress ---------------------------------------------------------------------------------------------------------


class _Progress:
    """One status line on stderr, redrawn in place on a terminal, every few seconds otherwise."""

    def __init__(self) -> None:
        self._tty = sys.stderr.isatty()
        self._last = 0.0

    def __call__(self, p: DownloadProgress) -> None:
        now = time.monotonic()
        done = p.total is not None and p.done >= p.total
        if not self._tty and now - self._last < 5 and not done:
            return
        self._last = now
        mib = p.done / 2**20
        if p.total:
            eta = f", {p.eta:.0f} s left" if p.eta is not None else ""
            text = f"downloading {mib:.1f}/{p.total / 2**20:.1f} MiB ({100 * p.done / p.total:.0f}%)"
            text += f" at {p.rate / 2**20:.1f} MiB/s{eta}"
        else:
            text = f"downloading {mib:.1f} MiB at {p.rate / 2**20:.1f} MiB/s"
        sys.stderr.write(("\r" + text + "\033[K") if self._tty else text + "\n")
        if done and self._tty:
            sys.stderr.write("\n")
        sys.stderr.flush()


def _warn_loudly(lines: list[str] | tuple[str, ...]) -> None:
    for w in lines:
        sys.stderr.write(f"!!! {w}\n")


def _report(args: argparse.Namespace) -> Any:
    from app.core.hardware.probe import report_from_sources

    return report_from_sources(getattr(args, "report", None), getattr(args, "cpuinfo", None))


# --- install ------------------------------------------------------------------------------------------------------


def run_install(args: argparse.Namespace) -> int:
    from app.core.fetch.obtain import execute_obtain, plan_from, plan_from_catalog
    from app.core.install_check import InstallRefused
    from app.core.lmstudio.home import resolve_home

    home = resolve_home(args.home)
    if args.source is not None and (args.entry or args.allow_unsigned or args.public_key or args.list):
        raise UsageError("--entry, --list, --allow-unsigned and --public-key go with --catalog, not --from.")
    if args.source is None and args.sha256:
        raise UsageError("--sha256 goes with --from; a catalog entry carries its own sha256.")
    report = _report(args)  # the target every source is judged against before anything is written
    judge = {"report": report, "force": args.force, "app_version": args.app_version}
    if args.source is not None:
        plan = plan_from(args.source, home=home, sha256=args.sha256, select=args.select, dry_run=args.dry_run,
                         **judge)
    else:
        if args.list:
            return _list_catalog(args, home, report)
        plan = plan_from_catalog(
            args.catalog or None,
            home=home,
            entry_ident=args.entry,
            select=args.select,
            allow_unsigned=args.allow_unsigned,
            public_key_path=Path(args.public_key) if args.public_key else None,
            **judge,
        )
    _warn_loudly(plan.warnings)
    if plan.kind in ("url", "archive") and not plan.sha256:
        _warn_loudly(["no --sha256 given: the archive's integrity is NOT verified"])
    if args.dry_run:
        refused = plan.check is not None and plan.check.refused and not args.force
        if args.json:
            emit_json({"ok": not refused, "dry_run": True, "plan": plan.describe(), **_plan_json(plan)})
        else:
            out("Dry run, nothing will be downloaded or changed:")
            for line in plan.describe():
                out("  " + line)
        return 2 if refused else 0
    if not args.json:
        for line in plan.describe():
            out(line)
    try:
        result = execute_obtain(plan, progress=None if args.json else _Progress())
    except InstallRefused as exc:
        if not args.json:  # the findings on stdout; the error (message, context, hint) follows on stderr
            for line in exc.check.describe():
                out(line)
        raise
    if result.check is not None and result.check.refused:
        _warn_loudly([f"installed although the install check refused it (--force): {f.message}"
                      for f in result.check.refusals])
    _warn_loudly(result.warnings)
    if args.json:
        emit_json(
            {
                "ok": True,
                "installed": result.install.ident,
                "forced": bool(result.check and result.check.refused),
                "check": result.check.to_dict() if result.check else None,
                "folder": str(result.install.dest),
                "selected": result.install.selected,
                "transaction": result.install.txid,
                "from_cache": bool(result.download and result.download.from_cache),
                "nested_folder_normalised": result.nested,
                "proof": result.proof.to_dict() if result.proof is not None else None,
                **_plan_json(plan),
            }
        )
    else:
        if result.check is not None:
            for line in result.check.describe():
                out(line)
        out(f"Installed {result.install.ident} into {result.install.dest}")
        for line in result.proof.lines() if result.proof is not None else []:
            out("  " + line)
        if result.install.selected:
            out("Selected it for GGUF models.")
        out("Restart LM Studio completely (also quit it from the tray) so it lists the new backend.")
    return 0


def _list_catalog(args: argparse.Namespace, home: Any, report: Any) -> int:
    from app.core.fetch.obtain import catalog_offers

    offers = catalog_offers(
        args.catalog or None,
        home=home,
        report=report,
        public_key_path=Path(args.public_key) if args.public_key else None,
        allow_unsigned=args.allow_unsigned,
    )
    _warn_loudly(offers.catalog.warnings)
    if args.json:
        emit_json({
            "ok": True,
            "catalog": {"source": offers.catalog.source, "signed_by": offers.catalog.signed_by},
            "offered": [m.entry.to_dict() for m in offers.offered],
            "not_offered": [{"entry": m.entry.ident, "reasons": list(m.reasons)} for m in offers.others],
        })
        return 0
    out(f"catalog {offers.catalog.source}: {len(offers.catalog.entries)} entries")
    for m in (*offers.offered, *offers.others):
        out("  " + m.one_line())
    return 0


def _plan_json(plan: Any) -> dict[str, Any]:
    d: dict[str, Any] = {"kind": plan.kind, "source": plan.source, "sha256": plan.sha256, "urls": list(plan.urls)}
    if plan.entry is not None:
        d["entry"] = plan.entry.to_dict()
    if plan.catalog is not None:
        d["catalog"] = {"source": plan.catalog.source, "signed_by": plan.catalog.signed_by}
        d["matches"] = [
            {"entry": m.entry.ident, "offered": m.offered, "reasons": list(m.reasons)} for m in plan.matches
        ]
    d["warnings"] = list(plan.warnings)
    if plan.check is not None:
        d["check"] = plan.check.to_dict()
    return d


# --- patch ----------------------------------------------------------------------------------------------------------


def run_patch(args: argparse.Namespace) -> int:
    from app.core.lmstudio.home import resolve_home
    from app.core.patchonly import execute_patch, plan_patch

    home = resolve_home(args.home)
    plan = plan_patch(home, args.source, _report(args), select=args.select)
    if args.json and args.dry_run:
        emit_json({"ok": True, "dry_run": True, **plan.to_json()})
        return 0
    if not args.json:
        for line in plan.describe():
            out(line)
    if args.dry_run:
        return 0
    result = execute_patch(plan)
    if args.json:
        emit_json({"ok": True, "installed": result.ident, "folder": str(result.dest), **plan.to_json()})
    else:
        out(f"Installed {result.ident} into {result.dest}")
        out("Restart LM Studio completely (also quit it from the tray) so it lists the new backend.")
    return 0


# --- publish --------------------------------------------------------------------------------------------------------


def _new_key(path: Path) -> int:
    import base64
    import json
    import os

    from app.core.fetch.signing import generate_keypair, key_id, public_key_from_bytes, refuse_key_in_repository

    refuse_key_in_repository(path)
    if path.exists():
        raise UsageError(f"{path} already exists; refusing to overwrite a signing key.")
    priv, pub = generate_keypair()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(priv)
    path.with_name(path.name + ".pub").write_bytes(pub)
    pubkey = public_key_from_bytes(pub)
    kid = key_id(pubkey)
    entry = {
        "key_id": kid,
        "public_key": base64.b64encode(bytes(pubkey.export_key(format="raw"))).decode("ascii"),
        "status": "active",
        "added": time.strftime("%Y-%m-%d", time.gmtime()),
        "note": "EDIT: where the private half lives (e.g. CI secret CATALOG_SIGNING_KEY) and until when it is used",
    }
    out(f"Wrote the private key {path} (keep it secret: the CI secret store, never a repository) and {path}.pub "
        f"(key id {kid}). Add this entry to app/data/catalog-keys.json (docs/publishing.md, Keys):")
    out(json.dumps(entry, indent=2))
    return 0


def run_publish(args: argparse.Namespace) -> int:
    from app.core.fetch.publish import merge_catalog, publish
    from app.core.fetch.signing import load_private_key, load_private_key_env

    if args.new_key:
        return _new_key(Path(args.new_key))
    if not args.out or not (args.folder or args.merge) or (args.folder and args.merge):
        raise UsageError("publish needs FOLDER (or --merge CATALOG) and --out DIR, or --new-key FILE.")
    key = load_private_key_env(args.key_env) if args.key_env else load_private_key(Path(args.key)) if args.key else None
    if args.merge:
        m = merge_catalog(Path(args.merge), Path(args.out), key=key)
        if m.signature is None:
            _warn_loudly([f"{m.catalog} was written UNSIGNED (no key); the app refuses it without --allow-unsigned"])
        if args.json:
            emit_json({"ok": True, "catalog": str(m.catalog), "signature": str(m.signature) if m.signature else None,
                       "key_id": m.key_id, "added": [e.to_dict() for e in m.added]})
        else:
            out(f"Merged {len(m.added)} entr{'y' if len(m.added) == 1 else 'ies'} into {m.catalog}"
                + (f", signed with key {m.key_id}" if m.signature else " (UNSIGNED)"))
        return 0
    if not args.template and not args.full:
        raise UsageError(
            "publish makes an overlay by default: give --template DIR, the official pack FOLDER was built from "
            "(or --full for a pack that is ours alone)."
        )
    res = publish(
        Path(args.folder),
        Path(args.out),
        template=Path(args.template) if args.template else None,
        key=key,
        fmt=args.format,
        variant=args.variant,
        base_url=args.base_url,
        mirrors=args.mirror,
        audit=not args.no_audit,
    )
    if res.signature is None:
        _warn_loudly([f"{res.catalog} was written UNSIGNED (no key); the app refuses it without --allow-unsigned"])
    if args.json:
        emit_json(
            {
                "ok": True,
                "archive": str(res.archive),
                "catalog": str(res.catalog),
                "signature": str(res.signature) if res.signature else None,
                "key_id": res.key_id,
                "replaced": res.replaced,
                "entry": res.entry.to_dict(),
                "audit": res.audit_summary,
            }
        )
    else:
        shape = f"overlay on {res.entry.base_ident}" if res.entry.kind == "overlay" else "whole folder"
        out(f"{'Updated' if res.replaced else 'Added'} {res.entry.ident} ({res.entry.variant}, {shape})")
        out(f"  archive {res.archive} ({res.entry.size} bytes, sha256 {res.entry.sha256})")
        if res.audit_summary:
            out(f"  {res.audit_summary}")
        out(f"  catalog {res.catalog}" + (f", signed with key {res.key_id}" if res.signature else " (UNSIGNED)"))
    return 0
