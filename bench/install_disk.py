"""Benchmark: peak disk use while installing a backend archive (issue #14: "disk use doubles during install").

    .venv/bin/python bench/install_disk.py [--mb 64] [--runs 3]

A backend folder with MB of incompressible payload is packed as .tar.gz and installed from the archive into a
temporary LM Studio home, twice per round in the same run: unpacked under our data dir and copied into the home
(``staging_in_home=False``, what earlier versions did: the baseline) and unpacked next to the home and moved in
(the default). A thread sums the sizes of every file under the temporary root every 2 ms; the peak above the
starting size (the archive and the home) is reported in MB and as a multiple of the unpacked size, with the
ratio new / baseline. Asserts nothing.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tarfile
import tempfile
import threading
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from app.core.fetch.obtain import execute_obtain, plan_from  # noqa: E402
from app.core.lmstudio.backups import tree_size  # noqa: E402
from app.core.lmstudio.install import execute_uninstall, plan_uninstall  # noqa: E402
from tests.lmstudio_homes import make_home, prepare_our_backend  # noqa: E402


def peak_while(root: Path, fn: object) -> int:
    stop = threading.Event()
    peak = [0]

    def poll() -> None:
        while not stop.is_set():
            peak[0] = max(peak[0], tree_size(root))
            stop.wait(0.002)

    t = threading.Thread(target=poll)
    t.start()
    try:
        fn()  # type: ignore[operator]
    finally:
        stop.set()
        t.join()
    return peak[0]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--mb", type=int, default=64)
    ap.add_argument("--runs", type=int, default=3)
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as td:
        root = Path(td)
        os.environ["LMS_UNLOCKED_DATA_DIR"] = str(root / "data")
        home = make_home(root / "h")
        src = prepare_our_backend(root / "src", payload=os.urandom(a.mb << 20))
        unpacked = tree_size(src)
        archive = root / "pack.tar.gz"
        with tarfile.open(archive, "w:gz", compresslevel=1) as tf:
            tf.add(src, src.name)
        shutil.rmtree(src.parent)
        noprobe = {"processes": lambda _h: []}
        results: dict[str, list[int]] = {"copy (baseline)": [], "move (now)": []}
        for _ in range(a.runs):
            for label, in_home in (("copy (baseline)", False), ("move (now)", True)):
                base = tree_size(root)
                plan = plan_from(str(archive), home=home)
                run = lambda in_home=in_home, plan=plan: execute_obtain(plan, staging_in_home=in_home)  # noqa: E731
                peak = peak_while(root, run)
                results[label].append(peak - base)
                execute_uninstall(plan_uninstall(home, "llama.cpp-linux-x86_64-avx1-unlocked@2.14.0", **noprobe),
                                  **noprobe)
                shutil.rmtree(home / ".lms-unlocked" / "backups")
        print(f"unpacked backend: {unpacked / 1e6:.1f} MB, archive {archive.stat().st_size / 1e6:.1f} MB")
        best = {k: min(v) for k, v in results.items()}
        for label, v in best.items():
            print(f"{label:16s} peak extra disk use {v / 1e6:8.1f} MB = {v / unpacked:.2f} x unpacked")
        print(f"ratio move/copy: {best['move (now)'] / best['copy (baseline)']:.2f}")


if __name__ == "__main__":
    main()
