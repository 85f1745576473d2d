"""Benchmark: build time of a backend (only the needed targets) vs a full `cmake --build` (issue #4).

    .venv/bin/python bench/build_time.py [--variant cpu-avx1] [--cpuinfo FILE] [--jobs 2] [--skip-full]

Same llama.cpp source (the llama-cpp-python 0.3.36 sdist, commit 0c1e57098), same flags (plan_build for the
variant/CPU), each from a fresh build directory, ccache disabled, in one run:
  A. the backend's needed targets (the libraries swapped into the template: ggml-base ggml-cpu),
  B. A + the smoke-test host program (llama-simple, what `build` adds for 1.x smoke tests),
  C. a full `cmake --build` (target all) with the same ISA flags and llama.cpp's default programs (examples,
     tools, server; tests off).
Goal: A <= 0.25 x C. Prints a table and the ratios; asserts nothing.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from app.core.builder.plan import BuildPlan, plan_build  # noqa: E402
from app.core.builder.prereq import find_tools  # noqa: E402
from app.core.hardware.cpu import parse_proc_cpuinfo  # noqa: E402
from app.core.hardware.report import HardwareReport  # noqa: E402
from app.core.runner import ProcessPlan, run_process  # noqa: E402
from tests.core.builder import realbuild as rb  # noqa: E402


def timed_build(plan: BuildPlan, targets: tuple[str, ...] | None) -> tuple[float, float, int]:
    env = {"CCACHE_DISABLE": "1"}
    cfg = dataclasses.replace(plan.configure, env=env)
    log = Path(plan.log_path)
    t0 = time.monotonic()
    run_process(cfg, check=True, log_path=log)
    t1 = time.monotonic()
    argv = list(plan.build.argv)
    i = argv.index("--target")
    argv = argv[:i] + (["--target", *targets] if targets else [])
    steps = 0

    def count(line: str) -> None:
        nonlocal steps
        if line.startswith("["):
            steps += 1

    run_process(ProcessPlan(tuple(argv), env=env, label="build"), on_line=count, check=True, log_path=log)
    return t1 - t0, time.monotonic() - t1, steps


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--variant", default="cpu-avx1")
    ap.add_argument("--cpuinfo", default=str(REPO / "tests/fixtures/hwdata/cpuinfo/ivybridge-i5-3570k.txt"))
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--skip-full", action="store_true")
    args = ap.parse_args()
    report = HardwareReport(cpu=parse_proc_cpuinfo(Path(args.cpuinfo).read_text()))
    tools = find_tools()
    src = rb.source_tree()
    rows: list[tuple[str, str, float, float, int]] = []
    with tempfile.TemporaryDirectory(prefix="bench-build-") as tmp:
        cases = [("A needed targets", False), ("B + llama-simple", True)]
        for label, smoke in cases:
            plan = plan_build(
                report,
                args.variant,
                src,
                build_root=Path(tmp) / label.split()[0],
                jobs=args.jobs,
                smoke_program=smoke,
                ninja=tools.ninja,
                ccache=None,
                cmake=tools.cmake or "cmake",
            )
            c, b, n = timed_build(plan, plan.targets)
            rows.append((label, " ".join(plan.targets), c, b, n))
            print(f"{label}: configure {c:.1f}s build {b:.1f}s ({n} steps)", flush=True)
            shutil.rmtree(plan.build_dir, ignore_errors=True)
        if not args.skip_full:
            plan = plan_build(
                report,
                args.variant,
                src,
                build_root=Path(tmp) / "C",
                jobs=args.jobs,
                smoke_program=True,
                replace_server=True,  # llama.cpp's default full build: examples, tools, server (tests off)
                ninja=tools.ninja,
                ccache=None,
                cmake=tools.cmake or "cmake",
            )
            c, b, n = timed_build(plan, None)
            rows.append(("C full cmake --build", "all", c, b, n))
            print(f"C full: configure {c:.1f}s build {b:.1f}s ({n} steps)", flush=True)
    print()
    print(
        f"variant {args.variant}, CPU {report.cpu.brand if report.cpu else '?'}, -j{args.jobs}, ccache off, "
        f"{os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}"
    )
    print("| build | targets | configure | build | steps | ratio (build) vs full |")
    print("|---|---|---|---|---|---|")
    full = rows[-1][3] if rows[-1][0].startswith("C") else None
    for label, targets, c, b, n in rows:
        ratio = f"{b / full:.2f}x" if full else "-"
        print(f"| {label} | {targets} | {c:.1f} s | {b:.1f} s | {n} | {ratio} |")
    if full:
        print(f"goal: A <= 0.25x full -> {'met' if rows[0][3] / full <= 0.25 else 'NOT met'}")
    return 0


if __name__ == "__main__":
    from app.core.errors import SubprocessFailed

    try:
        raise SystemExit(main())
    except SubprocessFailed as exc:
        print(exc.render(), "\n", exc.details, file=sys.stderr)
        raise SystemExit(1) from None
