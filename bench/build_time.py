"""Benchmark: cold time to a working backend vs a full `cmake --build` of the same tag and flags (issues #4, #13).

    .venv/bin/python bench/build_time.py [--cases A,P,W,C] [--jobs 2] [--cpuinfo FILE]

Same llama.cpp source (the llama-cpp-python 0.3.36 sdist, commit 0c1e57098), same ISA flags (cpu-avx1 tailored to
the given CPU, Ivy Bridge by default), each case from an empty cache (fresh build directory, ccache disabled), all in
one run, each through the product's own pipeline (`prepare_job` + `run_job`: configure, build, package, ABI guard,
ISA audit, smoke test through the folder's own llama library):
  A. system toolchain (gcc, cmake, ninja of this machine), Linux backend;
  P. portable toolchain from PyPI (cmake, ninja and zig cc wheels, pinned): the one-time download and unpack is
     timed on its own, then the cold build (including zig compiling its C runtime on first use);
  W. Windows backend cross-compiled here with the portable zig (smoke test under Wine);
  C. a full `cmake --build` (target all: llama.cpp's examples, tools and server; tests off), system toolchain.
Templates are the tests' stand-ins built from the same tag (tests/core/builder/realbuild.py, winbuild.py), built
before the clock starts. Goal: A <= 0.2 x C. Prints a table and the ratios; asserts nothing.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from app.core.builder.pipeline import prepare_job, run_job  # noqa: E402
from app.core.builder.plan import plan_build  # noqa: E402
from app.core.builder.prereq import find_tools  # noqa: E402
from app.core.builder.toolchain import PORTABLE, fetch_portable  # noqa: E402
from app.core.hardware.cpu import parse_proc_cpuinfo  # noqa: E402
from app.core.hardware.report import HardwareReport  # noqa: E402
from app.core.lmstudio.backends import read_backend  # noqa: E402
from app.core.runner import ProcessPlan, run_process  # noqa: E402
from tests.conftest import HWDATA  # noqa: E402
from tests.core.builder import realbuild as rb  # noqa: E402
from tests.core.builder import winbuild as wb  # noqa: E402


def pipeline_case(template: Path, report: HardwareReport, cache: Path, jobs: int, portable: str) -> dict[str, object]:
    job = prepare_job(
        template=read_backend(template),
        variant="cpu-avx1",
        report=report,
        source=rb.sdist_path(),
        jobs=jobs,
        out_dir=cache / "out",
        cache_root=cache,
        portable=portable,
    )
    steps = 0

    def count(line: str) -> None:
        nonlocal steps
        if line.startswith("["):
            steps += 1

    t0 = time.monotonic()
    res = run_job(job, on_line=count)
    total = time.monotonic() - t0
    assert res.smoke is not None and res.smoke.ok, res.smoke
    return {
        "targets": " ".join(job.plan.targets),
        "toolchain": job.toolchain.kind if job.toolchain else "?",
        "configure": res.build.configure_seconds,
        "build": res.build.build_seconds,
        "total": total,
        "steps": steps,
        "smoke": f"{res.smoke.runner}, {res.smoke.seconds:.1f} s",
    }


def full_build(report: HardwareReport, build_root: Path, jobs: int) -> dict[str, object]:
    tools = find_tools()
    plan = plan_build(
        report,
        "cpu-avx1",
        rb.source_tree(),
        build_root=build_root,
        jobs=jobs,
        smoke_program=True,
        replace_server=True,  # llama.cpp's default full build: examples, tools, server (tests off)
        ninja=tools.ninja,
        ccache=None,
        cmake=tools.cmake or "cmake",
    )
    t0 = time.monotonic()
    run_process(plan.configure, check=True, log_path=Path(plan.log_path))
    t1 = time.monotonic()
    argv = list(plan.build.argv)
    argv = argv[: argv.index("--target")]
    steps = 0

    def count(line: str) -> None:
        nonlocal steps
        if line.startswith("["):
            steps += 1

    run_process(ProcessPlan(tuple(argv), label="build"), on_line=count, check=True, log_path=Path(plan.log_path))
    t2 = time.monotonic()
    return {
        "targets": "all",
        "toolchain": "system",
        "configure": t1 - t0,
        "build": t2 - t1,
        "total": t2 - t0,
        "steps": steps,
        "smoke": "-",
    }


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--cases", default="A,P,W,C")
    ap.add_argument("--cpuinfo", default=str(HWDATA / "cpuinfo" / "ivybridge-i5-3570k.txt"))
    ap.add_argument("--jobs", type=int, default=2)
    args = ap.parse_args()
    cases = set(args.cases.split(","))
    os.environ["CCACHE_DISABLE"] = "1"  # cold means cold: no compiler cache hits
    report = HardwareReport(cpu=parse_proc_cpuinfo(Path(args.cpuinfo).read_text()))
    rows: dict[str, dict[str, object]] = {}
    with tempfile.TemporaryDirectory(prefix="bench-build-") as tmp:
        base = Path(tmp)
        # Templates (not timed): the tests' stand-ins of LM Studio's official packs, from the same tag.
        linux_tmpl = (
            rb.make_template_folder(base / "tmpl-linux" / "t", rb.build(rb.template_plan()).bin_dir)
            if (cases & {"A", "P"})
            else None
        )
        win_tmpl = wb.build_win_template(base / "tmpl-win" / "t") if "W" in cases else None
        if "A" in cases and linux_tmpl:
            rows["A system toolchain, Linux"] = pipeline_case(linux_tmpl, report, base / "A", args.jobs, "never")
            print("A", rows["A system toolchain, Linux"], flush=True)
        if "P" in cases and linux_tmpl:
            t0 = time.monotonic()
            fetched = fetch_portable(PORTABLE, base / "P")  # from PyPI itself
            dl = sum(r.download_seconds for r in fetched)
            up = sum(r.unpack_seconds for r in fetched)
            print(
                f"portable toolchain: download {dl:.1f} s, unpack {up:.1f} s, total {time.monotonic() - t0:.1f} s",
                flush=True,
            )
            rows["P portable toolchain, Linux"] = pipeline_case(linux_tmpl, report, base / "P", args.jobs, "always")
            rows["P portable toolchain, Linux"]["fetch"] = f"download {dl:.1f} s + unpack {up:.1f} s"
            print("P", rows["P portable toolchain, Linux"], flush=True)
        if "W" in cases and win_tmpl:
            cache = base / "W"
            cache.mkdir()
            # The zig wheel is the same: reuse the tests' unpacked copy, but zig's compiled C runtime starts empty.
            (cache / "toolchain").symlink_to(rb.cache_root() / "toolchain")
            rows["W portable zig, Windows (Wine smoke)"] = pipeline_case(win_tmpl, report, cache, args.jobs, "auto")
            print("W", rows["W portable zig, Windows (Wine smoke)"], flush=True)
        if "C" in cases:
            rows["C full cmake --build"] = full_build(report, base / "C", args.jobs)
            print("C", rows["C full cmake --build"], flush=True)
    print()
    print(
        f"CPU {report.cpu.brand if report.cpu else '?'}, -j{args.jobs}, ccache off, {os.cpu_count()} CPUs, "
        f"load {os.getloadavg()[0]:.1f}"
    )
    print(
        "| case | toolchain | targets | configure | build | cold total to a smoke-tested folder | steps | "
        "build vs full |"
    )
    print("|---|---|---|---|---|---|---|---|")
    full = rows.get("C full cmake --build")
    for label, r in rows.items():
        ratio = f"{float(r['build']) / float(full['build']):.2f}x" if full else "-"  # type: ignore[arg-type]
        print(
            f"| {label} | {r['toolchain']} | {r['targets']} | {float(r['configure']):.1f} s | "  # type: ignore[arg-type]
            f"{float(r['build']):.1f} s | {float(r['total']):.1f} s | {r['steps']} | {ratio} |"
        )  # type: ignore[arg-type]
    if full and "A system toolchain, Linux" in rows:
        a = rows["A system toolchain, Linux"]
        ratio = float(a["total"]) / float(full["build"])  # type: ignore[arg-type]
        print(
            f"goal: A (cold, to a smoke-tested folder) <= 0.2x full build -> {ratio:.2f}x, "
            f"{'met' if ratio <= 0.2 else 'NOT met'}"
        )
    return 0


if __name__ == "__main__":
    from app.core.errors import UnlockedError

    try:
        raise SystemExit(main())
    except UnlockedError as exc:
        print(exc.render(), "\n", exc.details, file=sys.stderr)
        raise SystemExit(1) from None
