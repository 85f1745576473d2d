"""Command line entry point: no sub-command opens the wizard, sub-commands run headless."""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import logging.handlers
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from app import APP_NAME, __version__
from app.core.crashlog import write_crash_log
from app.core.errors import UnlockedError

# One module per sub-command (or group of sub-commands) under app/cli_cmds/. Each defines
# `register(subparsers)` which adds its parser(s) and sets `handler=<callable(args) -> int>`.
COMMAND_MODULES: tuple[str, ...] = (
    "app.cli_cmds.probe",  # probe, recommend
    "app.cli_cmds.lmstudio",  # list, uninstall, select, doctor, repair
    "app.cli_cmds.install",  # install (folder, archive, URL, catalog), patch, publish
    "app.cli_cmds.build",  # build, audit, smoke
)

log = logging.getLogger("app")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lms-unlocked",
        description=f"{APP_NAME}: run LM Studio on CPUs and GPUs its official backends refuse. "
        "Without a sub-command the wizard opens.",
    )
    parser.add_argument("--version", action="version", version=f"lms-unlocked {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug output to stderr")
    parser.add_argument("--report", dest="gui_report", metavar="FILE", type=Path,
                        help="without a sub-command: open the wizard on this saved hardware report (probe --json) "
                             "and build for that computer")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name == name:  # a command group not written yet
                continue
            raise
        module.register(sub)
    return parser


LOG_FILE = "lms-unlocked.log"


def _file_log() -> logging.Handler | None:
    """Every command's log (INFO and up) in the log folder the README names (``user_log_dir``), rotated at 1 MB.
    A log folder that cannot be written (read-only or full disk) never stops a command."""
    from app.core.paths import user_log_dir

    try:
        d = user_log_dir()
        d.mkdir(parents=True, exist_ok=True)
        h = logging.handlers.RotatingFileHandler(d / LOG_FILE, maxBytes=1 << 20, backupCount=3, encoding="utf-8")
    except OSError:
        return None
    h.setLevel(logging.INFO)
    h.setFormatter(logging.Formatter("%(asctime)s %(process)d %(levelname)s %(name)s: %(message)s"))
    return h


def _stdout_gone() -> int:
    """The reader of our output went away (`lms-unlocked list | head`): stop quietly, like other tools."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())  # so the interpreter's final flush does not fail again
    except (OSError, ValueError):
        pass
    return 141  # 128 + SIGPIPE, what a shell reports for a command cut off by a closed pipe


def _without_option(argv: list[str], name: str) -> list[str]:
    """argv without `name VALUE` / `name=VALUE` (what is left goes to Qt)."""
    out, skip = [], False
    for a in argv:
        if skip:
            skip = False
        elif a == name:
            skip = True
        elif not a.startswith(name + "="):
            out.append(a)
    return out


def _wants_json(args: argparse.Namespace | None) -> bool:
    return bool(args is not None and getattr(args, "json", False))


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    args = parser.parse_args(argv)  # exits 2 with a usage message on bad flags
    console = logging.StreamHandler()
    console.setLevel(logging.DEBUG if args.verbose else logging.WARNING)
    console.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    handlers: list[logging.Handler] = [console]
    if args.command:
        file_log = _file_log()
        handlers += [file_log] if file_log is not None else []
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, handlers=handlers, force=True)
    if not args.command:
        from app.qt.app import run_gui
        from app.qt.state import WizardConfig

        rest = [a for a in argv if a not in ("-v", "--verbose")]
        if args.gui_report is not None:
            from app.core.hardware.probe import load_report_file

            try:  # a bad file is said here, before any window opens
                load_report_file(args.gui_report)
            except UnlockedError as exc:
                sys.stderr.write(exc.render() + "\n")
                return exc.exit_code
            rest = _without_option(rest, "--report")
        return run_gui(rest, WizardConfig(report_file=args.gui_report))
    log.info("lms-unlocked %s: %s", __version__, " ".join(argv))
    try:
        rc: int = args.handler(args)
        log.info("exit %d", rc)
        sys.stdout.flush()  # a closed pipe shows here, inside the handler below, not at interpreter exit
        return rc
    except BrokenPipeError:
        return _stdout_gone()
    except UnlockedError as exc:
        log.info("exit %d: %s: %s (%s) hint: %s", exc.exit_code, exc.code, exc.message, exc.context, exc.hint)
        try:
            if _wants_json(args):
                sys.stdout.write(json.dumps({"ok": False, **exc.to_dict()}, indent=2) + "\n")
            sys.stderr.write(exc.render() + "\n")
            sys.stdout.flush()
        except BrokenPipeError:
            return _stdout_gone()
        return exc.exit_code
    except KeyboardInterrupt:
        sys.stderr.write("cancelled\n")
        return 130
    except Exception as exc:  # never a traceback in the user's face
        path = write_crash_log(exc)
        log.error("exit 70: internal error %r (traceback in %s)", exc, path or "no crash log")
        msg = f"error: unexpected internal error: {exc!r}"
        if path:
            msg += f"\n  the full traceback was written to {path}; please attach it to a bug report"
        if _wants_json(args):
            sys.stdout.write(
                json.dumps({"ok": False, "error": "internal-error", "message": repr(exc), "log": path}) + "\n"
            )
        sys.stderr.write(msg + "\n")
        return 70
