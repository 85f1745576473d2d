"""Fault-injection trials for docs/reliability.md (issue #14). Asserts nothing; prints markdown table rows.

    .venv/bin/python bench/fault_trials.py [--rounds 3] [--races 20] [--racers 6]

1. Every journal fault point of install / uninstall / select (tests/cli/test_fault_points_cli.py), through the
   real CLI, ``--rounds`` times as a SIGKILL and as an injected I/O error. A trial "held" when the home LM
   Studio sees is exactly the old or the new state after the next start (``recover``), no journal or staging
   is left, and an I/O error exited 0, 1 or 2 (never 70).
2. ``--races`` trials of ``--racers`` real processes installing into one home at the same instant, with the lock
   refusing at once and with it waiting: "held" when installed.json has exactly one record per successful
   install (none lost, none invented).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from app.core.lmstudio.install import execute_install, plan_install, recover  # noqa: E402
from app.core.lmstudio.journal import STATE_DIR_NAME  # noqa: E402
from tests.cli.test_fault_points_cli import FAULT_POINTS, PREFS, _cli, _visible  # noqa: E402
from tests.core.lmstudio.test_lms_reliability import _race  # noqa: E402
from tests.lmstudio_homes import make_home, prepare_our_backend  # noqa: E402

NONE = {"processes": lambda _h: []}


def fault_matrix(root: Path, rounds: int) -> None:
    home = make_home(root / "base", prefs=PREFS)
    execute_install(plan_install(home, prepare_our_backend(root / "a", payload=b"one"), select=True, **NONE),
                    provenance={}, **NONE)
    src = prepare_our_backend(root / "b", payload=b"two")
    after: dict[str, Path] = {}
    for cmd in FAULT_POINTS:
        after[cmd] = root / f"after-{cmd}"
        shutil.copytree(home, after[cmd], symlinks=True)
        assert _cli(cmd, after[cmd], src, "").returncode == 0
    print("| command | fault points | SIGKILL trials (held) | I/O-error trials (held) | exit codes of I/O errors |")
    print("| --- | --- | --- | --- | --- |")
    for cmd, points in FAULT_POINTS.items():
        held = {"kill": 0, "io": 0}
        runs = {"kill": 0, "io": 0}
        codes: Counter[int] = Counter()
        for _ in range(rounds):
            for point in points:
                for how in ("kill", "io"):
                    h = root / "trial"
                    shutil.rmtree(h, ignore_errors=True)
                    shutil.copytree(home, h, symlinks=True)
                    old, new = _visible(h), _visible(after[cmd])
                    r = _cli(cmd, h, src, point if how == "kill" else f"raise:{point}")
                    ok = r.returncode == -9 if how == "kill" else r.returncode in (0, 1, 2)
                    if how == "io":
                        codes[r.returncode] += 1
                    recover(h)
                    state = _visible(h)
                    sd = h / STATE_DIR_NAME
                    ok = ok and state in (old, new) and not (sd / "journal.json").exists()
                    ok = ok and not list((sd / "tx").iterdir())
                    runs[how] += 1
                    held[how] += ok
        shown = ", ".join(f"{c}: {n}" for c, n in sorted(codes.items()))
        print(f"| {cmd} | {len(points)} | {runs['kill']} ({held['kill']}) | {runs['io']} ({held['io']}) | {shown} |")


def races(root: Path, trials: int, racers: int) -> None:
    print("| lock | trials x processes | installs that succeeded | refused (HomeBusy) | trials with a record lost |")
    print("| --- | --- | --- | --- | --- |")
    for label, wait in (("refuse at once", "0"), ("wait up to 120 s", "120")):
        lost = 0
        installed = refused = 0
        for t in range(trials):
            d = root / f"race-{wait}-{t}"
            d.mkdir(parents=True)
            try:
                i, r = _race(d, n=racers, trials=1, wait=wait)
            except AssertionError:
                lost += 1
                continue
            installed += i
            refused += r
        print(f"| {label} | {trials} x {racers} | {installed} | {refused} | {lost} |")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--races", type=int, default=20)
    ap.add_argument("--only-races", action="store_true")
    ap.add_argument("--racers", type=int, default=6)
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as td:
        os.environ.setdefault("LMS_UNLOCKED_LOG_DIR", str(Path(td) / "log"))
        if not a.only_races:
            fault_matrix(Path(td) / "faults", a.rounds)
            print()
        races(Path(td) / "races", a.races, a.racers)


if __name__ == "__main__":
    main()
