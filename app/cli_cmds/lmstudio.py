"""`list`, `uninstall`, `select`, `doctor` and `repair`: what lms-unlocked does inside LM Studio's home.

Every command except `doctor` first finishes or undoes a change a killed process left behind
(`recover`); `doctor` reports such a journal instead and `repair` resolves it.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from app.cli_cmds.common import add_home_flag, add_json_flag, add_report_source_flags, emit_json, out
from app.core.errors import UsageError
from app.core.hardware.report import HardwareReport
from app.core.lmstudio.backends import find_backend, list_backends
from app.core.lmstudio.backups import clean_backups, list_backups
from app.core.lmstudio.doctor import Finding, diagnose, repair, repair_plan
from app.core.lmstudio.engine_index import last_status
from app.core.lmstudio.errors import HomeNotFound
from app.core.lmstudio.home import LmsHome, resolve_home
from app.core.lmstudio.install import (
    execute_select,
    execute_uninstall,
    plan_select,
    plan_uninstall,
    recover,
)
from app.core.lmstudio.journal import JournalError
from app.core.lmstudio.judge import STATUS_MEANING, judge_backend
from app.core.lmstudio.kinds import KIND_WORDS, classify_backend
from app.core.lmstudio.prefs import read_settings, selections


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "list",
        help="list LM Studio's backends: requirements, status, selection, kind (official, ours, third-party)",
        description="One row per backend folder in <home>/extensions/backends, judged like LM Studio does.",
    )
    _common(p, hardware=True)
    p.set_defaults(handler=run_list)

    u = sub.add_parser(
        "uninstall",
        help="remove a backend we installed, restoring what it replaced",
        description="Remove one of our backends (never an official one) and restore the folder and "
        "selection it replaced.",
    )
    u.add_argument("ident", metavar="NAME@VERSION")
    u.add_argument("--dry-run", action="store_true", help="print the plan, change nothing")
    _common(u)
    u.set_defaults(handler=run_uninstall)

    s = sub.add_parser(
        "select",
        help="select a backend for a model format (LM Studio must be closed)",
        description="Edit .internal/backend-preferences-v1.json (backed up first, other formats kept).",
    )
    s.add_argument("ident", metavar="NAME@VERSION")
    s.add_argument("--format", default="gguf", dest="model_format", help="model format (default: gguf)")
    s.add_argument("--dry-run", action="store_true", help="print the plan, change nothing")
    _common(s)
    s.set_defaults(handler=run_select)

    d = sub.add_parser(
        "doctor",
        help="explain why a backend does not show up or run",
        description="Check the LM Studio home against the repair checklist; exit 1 if there are errors.",
    )
    _common(d, hardware=True)
    d.add_argument(
        "--log",
        nargs="?",
        const="",
        metavar="FILE",
        help="explain a model that failed to load from what LM Studio printed (a saved log or pasted error); "
        "without FILE, read LM Studio's own log files",
    )
    d.add_argument("--backend", metavar="NAME@VERSION", help="with --log: the backend that crashed")
    d.set_defaults(handler=run_doctor)

    c = sub.add_parser(
        "clean-backups",
        help="list the backups kept in <LM Studio home>/.lms-unlocked/backups and remove those no uninstall needs",
        description="Every change keeps what it replaced under <home>/.lms-unlocked/backups/. Without --yes this "
        "lists them with their sizes; with --yes it removes those that no install record still needs to restore.",
    )
    c.add_argument("--yes", action="store_true", help="remove them (default: only list)")
    _common(c)
    c.set_defaults(handler=run_clean_backups)

    r = sub.add_parser(
        "repair",
        help="apply doctor's safe fixes (backups first), then check again",
        description="Apply the fixes doctor marks automatic; official folders are never changed.",
    )
    r.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    r.add_argument("--dry-run", action="store_true", help="print what would be done, change nothing")
    r.add_argument(
        "--keep",
        action="append",
        default=[],
        metavar="FOLDER",
        help="among copies with one name@version, keep this folder (a path or a folder name in extensions/backends; "
        "repeatable); the other copies are moved out of extensions/backends, never deleted",
    )
    _common(r, hardware=True)
    r.set_defaults(handler=run_repair)


def _common(p: argparse.ArgumentParser, *, hardware: bool = False) -> None:
    add_json_flag(p)
    add_home_flag(p)
    if hardware:
        add_report_source_flags(p)
        p.add_argument("--no-probe", action="store_true", help="do not probe the hardware (status 'unknown')")
        p.add_argument("--app-version", metavar="X.Y.Z", help="installed LM Studio version, to check minimums")


def _home(args: argparse.Namespace) -> LmsHome:
    h = resolve_home(args.home)
    if not h.path.is_dir():
        raise HomeNotFound(
            f"no LM Studio home at {h.path}",
            context=h.describe(),
            hint=h.problem or "start LM Studio once, or pass --home DIR",
        )
    return h


def _recover(h: LmsHome, args: argparse.Namespace, *, read_only: bool = False) -> list[str]:
    try:
        msgs = recover(h)
    except JournalError as exc:
        if not read_only:
            raise  # no change on top of a journal we cannot read
        msgs = [f"{exc.message}; changes are refused until `lms-unlocked repair` or you resolve it ({exc.hint})"]
    if not args.json:
        for m in msgs:
            out(f"note: {m}")
    return msgs


def _report(args: argparse.Namespace) -> HardwareReport | None:
    if getattr(args, "no_probe", False):
        return None
    from app.core.hardware.probe import report_from_sources  # lazy: probing imports vulkan/nvml

    return report_from_sources(args.report, args.cpuinfo)


def _home_dict(h: LmsHome) -> dict[str, Any]:
    return {"path": str(h.path), "how_found": h.how_found, "exists": h.exists, "problem": h.problem}


# ------------------------------------------------------------------------------------------------------ list


def run_list(args: argparse.Namespace) -> int:
    h = _home(args)
    recovered = _recover(h, args, read_only=True)
    report = _report(args)
    sel = {s.ident: s.model_format for s in selections(h)}
    said = last_status(h)
    rows: list[dict[str, Any]] = []
    for b in list_backends(h):
        j = judge_backend(b, report, app_version=args.app_version)
        k = classify_backend(b)
        gpu = b.gpu_framework + (f" {','.join(b.gpu_targets)}" if b.gpu_targets else "")
        rows.append(
            {
                "ident": b.ident,
                "folder": str(b.folder),
                "generation": b.generation,
                "display_name": b.display_name,
                "llama_cpp": b.llama_tag or b.llama_commit or "",
                "platform": b.platform,
                "arch": b.arch,
                "ise": list(b.ise),
                "gpu": gpu,
                "status": j.status,
                "status_label": j.label,
                "status_message": j.message,
                "caveats": list(j.caveats),
                "selected_for": sel.get(b.ident, ""),
                "lmstudio_last_status": said[b.ident].status if b.ident in said else "",
                "lmstudio_last_status_meaning": STATUS_MEANING.get(said[b.ident].status, "") if b.ident in said else "",
                "kind": k.kind,
                "kind_words": k.words,
                "kind_reasons": list(k.reasons),
                "name_clash": k.name_clash,
                "problems": [p.message for p in b.problems],
            }
        )
    settings = read_settings(h)
    if args.json:
        emit_json(
            {
                "ok": True,
                "home": _home_dict(h),
                "recovered": recovered,
                "backends": rows,
                "settings": {
                    "autoUpdateExtensionPacks": settings.auto_update_extension_packs,
                    "autoDeleteExtensionPacks": settings.auto_delete_extension_packs,
                },
            }
        )
        return 0
    out(f"LM Studio home: {h.describe()}")
    if h.problem:
        out(f"  problem: {h.problem}")
    if not rows:
        out("no backends installed")
        return 0
    for r in rows:
        needs = " ".join(x or '""' for x in r["ise"]) + (f" + {r['gpu']}" if r["gpu"] else "")
        mark = f"  [selected: {r['selected_for']}]" if r["selected_for"] else ""
        out(f"{r['ident'] or '(unreadable)'}  {r['kind_words']}  {r['generation']}  needs {needs or '-'}{mark}")
        out(f"    folder: {r['folder']}")
        if r["name_clash"]:
            out("    name clash: it uses the name of an official LM Studio pack without being one")
        for why in r["kind_reasons"] if r["kind"] == "third-party" else ():
            out(f"    not LM Studio's own: {why}")
        if r["display_name"] or r["llama_cpp"]:
            out(f"    shown as: {r['display_name'] or '-'}; llama.cpp {r['llama_cpp'] or 'build unknown'}")
        out(f"    status: {r['status']} - {r['status_message']}")
        if r["lmstudio_last_status"]:
            said_ok = r["lmstudio_last_status"] == "compatible"
            out(f"    LM Studio last said: {r['lmstudio_last_status']} ({r['lmstudio_last_status_meaning']})")
            if r["status"] != "unknown" and said_ok != (r["status"] == "compatible"):
                out("    LM Studio's verdict and ours differ: `lms-unlocked doctor` says what to do")
        for c in r["caveats"]:
            out(f"    note: {c}")
        for pr in r["problems"]:
            out(f"    problem: {pr}")
    for key, val in (
        ("autoUpdateExtensionPacks", settings.auto_update_extension_packs),
        ("autoDeleteExtensionPacks", settings.auto_delete_extension_packs),
    ):
        if val:
            out(f"warning: {key} is on; it can remove or deselect custom backends (see `lms-unlocked doctor`)")
    return 0


# ------------------------------------------------------------------------------------- uninstall / select


def run_uninstall(args: argparse.Namespace) -> int:
    h = _home(args)
    recovered = _recover(h, args)
    plan = plan_uninstall(h, args.ident)
    if args.dry_run:
        return _print_plan(args, plan.describe(), recovered)
    res = execute_uninstall(plan)
    if args.json:
        emit_json(
            {
                "ok": True,
                "uninstalled": res.ident,
                "removed": str(res.removed),
                "restored": [str(p) for p in res.restored],
                "recovered": recovered,
            }
        )
    else:
        out(f"uninstalled {res.ident} ({res.removed})")
        for p in res.restored:
            out(f"restored {p}")
        out("restart LM Studio fully (tray -> Quit) so it rescans its backends")
    return 0


def run_select(args: argparse.Namespace) -> int:
    h = _home(args)
    recovered = _recover(h, args)
    plan = plan_select(h, args.ident, args.model_format)
    if args.dry_run:
        return _print_plan(args, plan.describe(), recovered)
    sel = execute_select(plan)
    if args.json:
        emit_json({"ok": True, "selected": sel.ident, "model_format": sel.model_format, "recovered": recovered})
    else:
        out(f"selected {sel.ident} for {sel.model_format} models")
    return 0


def run_clean_backups(args: argparse.Namespace) -> int:
    h = _home(args)
    recovered = _recover(h, args)
    backups = list_backups(h)
    removed = {b.txid for b in clean_backups(h)} if args.yes else set()
    if args.json:
        emit_json({"ok": True, "recovered": recovered, "removed": sorted(removed), "backups": [
            {"txid": b.txid, "path": str(b.path), "bytes": b.size, "needed_for": b.needed_for,
             "removed": b.txid in removed} for b in backups]})
        return 0
    out(f"backups in {h.path / '.lms-unlocked' / 'backups'}:" if backups else "no backups kept")
    for b in backups:
        state = "removed" if b.txid in removed else ("kept: " + b.needed_for if b.needed else "not needed")
        out(f"  {b.txid}  {b.size / 1e6:8.1f} MB  {state}")
    spare = sum(b.size for b in backups if not b.needed)
    if not args.yes and spare:
        out(f"{spare / 1e6:.1f} MB can be freed: run `lms-unlocked clean-backups --yes`")
    return 0


def _print_plan(args: argparse.Namespace, lines: list[str], recovered: list[str]) -> int:
    if args.json:
        emit_json({"ok": True, "dry_run": True, "plan": lines, "recovered": recovered})
    else:
        out("dry run, nothing changed:")
        for line in lines:
            out(f"  {line}")
    return 0


# ------------------------------------------------------------------------------------------ doctor / repair


def _finding_dict(f: Finding) -> dict[str, Any]:
    return {
        "code": f.code,
        "title": f.heading,
        "kind": f.kind,
        "severity": f.severity,
        "backend": f.backend,
        "explanation": f.explanation,
        "fix": f.fix,
        "automatic": f.auto,
        "needs_lmstudio_closed": f.needs_closed,
    }


def _print_findings(fs: list[Finding] | tuple[Finding, ...]) -> None:
    if not fs:
        out("  no problems found")
    for f in fs:
        kind = f", {KIND_WORDS[f.kind]}" if f.kind in KIND_WORDS else ""
        out(f"  [{f.severity}] {f.heading}" + (f"  ({f.backend}{kind})" if f.backend else "") + f"  [{f.code}]")
        out(f"      {f.explanation}")
        out(f"      fix{' (automatic)' if f.auto else ''}: {f.fix}")


def run_doctor(args: argparse.Namespace) -> int:
    h = resolve_home(args.home)
    report = _report(args)
    if args.log is not None:
        return _run_crash_doctor(args, h, report)
    fs = diagnose(h, report=report, app_version=args.app_version)
    errors = sum(1 for f in fs if f.severity == "error")
    if args.json:
        emit_json({"ok": True, "home": _home_dict(h), "findings": [_finding_dict(f) for f in fs], "errors": errors})
    else:
        out(f"LM Studio home: {h.describe()}")
        _print_findings(fs)
        if any(f.auto for f in fs):
            out("run `lms-unlocked repair` to apply the automatic fixes")
    return 1 if errors else 0


def _keep(h: LmsHome, args: argparse.Namespace) -> list[Path]:
    """``--keep`` values as folders: a path, or a folder name inside extensions/backends."""
    out_: list[Path] = []
    for k in args.keep:
        p = Path(k) if ("/" in k or "\\" in k) else h.backends_dir / k
        if not p.is_dir():
            hint = f"name a folder in {h.backends_dir} (see `lms-unlocked list`)"
            raise UsageError(f"--keep {k}: no such backend folder", hint=hint)
        out_.append(p.absolute())
    return out_


def _run_crash_doctor(args: argparse.Namespace, h: LmsHome, report: HardwareReport | None) -> int:
    from app.core.lmstudio import crashlog

    looked: list[crashlog.LogLocation] = []
    if args.log:
        text, files = crashlog.read_log_text(args.log), [Path(args.log)]
    else:
        text, files, looked = crashlog.collect_lmstudio_logs(h if h.exists else None)
    backend = find_backend(h, args.backend) if args.backend else None
    diag = crashlog.diagnose_crash(text, home=h, report=report, backend=backend)
    if args.json:
        emit_json({"ok": True, "home": _home_dict(h), "files": [str(f) for f in files], "crash": diag.to_json()})
        return 0
    for loc in looked:
        state = "found" if loc.path.exists() else "absent"
        out(f"LM Studio log ({loc.what}, {loc.confidence} confidence): {loc.path} [{state}]")
    out(f"read: {', '.join(str(f) for f in files) or 'no log file found'}")
    for line in diag.describe():
        out(line)
    return 0


def run_repair(args: argparse.Namespace) -> int:
    h = _home(args)
    report = _report(args)
    keep = _keep(h, args)
    before = diagnose(h, report=report, app_version=args.app_version, keep=keep)
    plan = repair_plan(before)
    if args.dry_run:
        if args.json:
            emit_json({"ok": True, "dry_run": True, "findings": [_finding_dict(f) for f in before], "plan": plan})
        else:
            out("dry run, nothing changed:")
            for line in plan or ["nothing to do"]:
                out(f"  {line}")
        return 0
    if not any(f.auto for f in before):
        if args.json:
            emit_json(
                {
                    "ok": True,
                    "applied": [],
                    "before": [_finding_dict(f) for f in before],
                    "after": [_finding_dict(f) for f in before],
                }
            )
        else:
            out("nothing to repair automatically")
            _print_findings(before)
        return 1 if any(f.severity == "error" for f in before) else 0
    if not args.yes:
        if not sys.stdin.isatty():
            raise UsageError(
                "repair changes files; confirm with --yes (or preview with --dry-run)",
                hint="lms-unlocked repair --dry-run shows what would be done",
            )
        out("about to:")
        for line in plan:
            out(f"  {line}")
        sys.stdout.write("apply the automatic fixes? [y/N] ")
        sys.stdout.flush()
        if sys.stdin.readline().strip().lower() not in ("y", "yes"):
            out("nothing changed")
            return 1
    outcome = repair(h, report=report, app_version=args.app_version, keep=keep)
    if args.json:
        emit_json(
            {
                "ok": True,
                "applied": list(outcome.applied),
                "skipped": list(outcome.skipped),
                "backup_dir": str(outcome.backup_dir) if outcome.backup_dir else "",
                "before": [_finding_dict(f) for f in outcome.before],
                "after": [_finding_dict(f) for f in outcome.after],
            }
        )
    else:
        out("before:")
        _print_findings(outcome.before)
        out("applied:")
        for a in outcome.applied or ("nothing",):
            out(f"  {a}")
        for s in outcome.skipped:
            out(f"  {s}")
        if outcome.backup_dir:
            out(f"backups: {outcome.backup_dir}")
        out("after:")
        _print_findings(outcome.after)
        out("restart LM Studio fully (tray -> Quit) so it rescans its backends")
    return 1 if any(f.severity == "error" for f in outcome.after) else 0
