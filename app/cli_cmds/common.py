"""Helpers shared by the CLI sub-commands: output, --json, --home and report-source flags."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from app.core.serial import to_jsonable


def out(text: str = "") -> None:
    """Write one line of human output to stdout."""
    sys.stdout.write(text + "\n")


def emit_json(obj: Any) -> None:
    sys.stdout.write(json.dumps(to_jsonable(obj), indent=2, ensure_ascii=False) + "\n")


def add_json_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="machine-readable JSON on stdout")


def add_home_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument("--home", metavar="DIR", help="LM Studio home folder (default: resolved like LM Studio does)")


def add_report_source_flags(p: argparse.ArgumentParser) -> None:
    g = p.add_mutually_exclusive_group()
    g.add_argument("--report", metavar="FILE", help="use a saved hardware report (probe --json) instead of probing")
    g.add_argument("--cpuinfo", metavar="FILE", help="use a saved Linux /proc/cpuinfo instead of this CPU")
