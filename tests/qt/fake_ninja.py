"""A real child process that talks like Ninja (stands in for a 20-minute llama.cpp build).

Usage: fake_ninja.py TOTAL [--fail-at N] [--hang-at N] [--grandchild] [--delay S] [--pidfile FILE]
--grandchild starts a sleeping grandchild first (its pid and ours go to --pidfile) so tests can check
that cancel kills the whole process tree, not only the direct child.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("total", type=int)
    ap.add_argument("--fail-at", type=int, default=0)
    ap.add_argument("--hang-at", type=int, default=0)
    ap.add_argument("--grandchild", action="store_true")
    ap.add_argument("--pidfile", default="")
    ap.add_argument("--delay", type=float, default=0.01)
    a = ap.parse_args()
    if a.grandchild:
        child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
        if a.pidfile:
            with open(a.pidfile, "w") as f:
                f.write(f"{os.getpid()}\n{child.pid}\n")
    for i in range(1, a.total + 1):
        print(f"[{i}/{a.total}] Building CXX object ggml/src/CMakeFiles/ggml-cpu.dir/op{i}.cpp.o", flush=True)
        if i == a.fail_at:
            print(f"FAILED: ggml/src/CMakeFiles/ggml-cpu.dir/op{i}.cpp.o", flush=True)
            print("error: 'vpdpbusd' is not supported on this target", flush=True)
            print("ninja: build stopped: subcommand failed.", flush=True)
            return 1
        if i == a.hang_at:
            print("waiting for the compiler…", flush=True)
            time.sleep(600)
        time.sleep(a.delay)
    return 0


if __name__ == "__main__":
    sys.exit(main())
