"""Benchmark: a full hardware probe vs py-cpuinfo's `cpuinfo.get_cpu_info()` alone (issue #2).

    .venv/bin/python bench/probe.py [--runs 7]

Both are measured in the same run, alternating, as the median of several runs, in two ways:
* warm: the call itself, in this process, after a first untimed call (imports done);
* cold: a fresh `python -c` that imports and calls it once (what `lms-unlocked probe` pays).
Goal: full probe <= 0.5x py-cpuinfo and <= 0.3 s. Prints a table and the ratios; asserts nothing.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

# as `lms-unlocked probe` does it: free disk space measured at LM Studio's home, which the caller resolves
COLD_PROBE = ("from app.core.hardware.probe import probe_hardware; from app.core.lmstudio.home import resolve_home; "
              "probe_hardware(disk_path=lambda: resolve_home().path)")
COLD_PYCPUINFO = "import cpuinfo; cpuinfo.get_cpu_info()"


def timed(fn: Callable[[], object]) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def cold(code: str, env: dict[str, str]) -> float:
    t = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO, env=env, capture_output=True)
    return time.perf_counter() - t


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=7)
    args = ap.parse_args()
    xdg = tempfile.mkdtemp(prefix="xdg-")
    os.environ["XDG_RUNTIME_DIR"] = xdg  # silences the Vulkan loader's XDG warning; any writable dir works
    env = {**os.environ}

    import cpuinfo

    from app.core.hardware.probe import probe_hardware as probe_only
    from app.core.lmstudio.home import resolve_home

    def probe_hardware() -> object:
        return probe_only(disk_path=lambda: resolve_home().path)

    probe_hardware()  # warm-up (imports, data files)
    cpuinfo.get_cpu_info()
    warm_probe, warm_cpuinfo, cold_probe, cold_cpuinfo, bare = [], [], [], [], []
    for _ in range(args.runs):
        bare.append(cold("pass", env))
        warm_probe.append(timed(probe_hardware))
        warm_cpuinfo.append(timed(cpuinfo.get_cpu_info))
        cold_probe.append(cold(COLD_PROBE, env))
        cold_cpuinfo.append(cold(COLD_PYCPUINFO, env))
    report = probe_only()
    rows = [
        ("warm", statistics.median(warm_probe), statistics.median(warm_cpuinfo)),
        ("cold (new process)", statistics.median(cold_probe), statistics.median(cold_cpuinfo)),
    ]
    cpu = report.cpu
    print(f"machine: {cpu.brand if cpu else '?'} ({cpu.microarchitecture if cpu else '?'}), "
          f"{os.cpu_count()} CPUs; Python {sys.version.split()[0]}; runs: {args.runs} (median)")
    print(f"full probe = CPU ({cpu.source if cpu else '?'}) + OS + RAM + disk + Vulkan "
          f"({len(report.vulkan_devices)} device(s)) + NVIDIA ({'absent' if report.errors_for('nvidia') else 'found'})")
    print(f"{'mode':<20} {'full probe':>12} {'get_cpu_info':>13} {'ratio':>7}  goal <= 0.5x and <= 0.3 s")
    for mode, probe_s, cpuinfo_s in rows:
        ratio = probe_s / cpuinfo_s
        ok = "met" if ratio <= 0.5 and probe_s <= 0.3 else "NOT met"
        print(f"{mode:<20} {probe_s:>10.3f} s {cpuinfo_s:>11.3f} s {ratio:>6.2f}x  {ok}")
    print(f"(cold includes the interpreter start: `python -c pass` = {statistics.median(bare):.3f} s; "
          f"load average now {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
