"""Benchmark: llama-bench tokens/s of the tailored avx1 build vs an AVX-only build with F16C/FMA off vs noavx.

    .venv/bin/python bench/llama_bench.py [--reps 3] [--threads 2]

Builds (cached, through the product's plan/build code, from the llama-cpp-python 0.3.36 sdist):
  * tailored cpu-avx1 for an Ivy Bridge i5-3570K (SSE4.2 + AVX + F16C; FMA/AVX2/BMI2 off),
  * cpu-avx1 for a Sandy Bridge i5-2400 = AVX only, F16C/FMA/AVX2/BMI2 off — what hand-made AVX backends ship
    (they leave BMI2 on by accident; that does not change speed on this host but SIGILLs on Ivy Bridge),
  * noavx for a Nehalem i7-920 (SSE4.2 only).
One llama-bench binary (it gets no -m flags; only libggml-cpu does) runs against each build's libraries, swapped
in exactly as the packager swaps them. Same tiny models (q8_0 and f16 from app.core.builder.tinymodel), same run,
native on this host (qemu speeds are pass/fail evidence only). Prints a table; asserts nothing.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from app.core.builder.execute import run_build  # noqa: E402
from app.core.builder.tinymodel import write_tiny_gguf  # noqa: E402
from tests.core.builder import realbuild as rb  # noqa: E402

BUILDS = {
    "tailored avx1 (Ivy Bridge: AVX+F16C)": ("ivybridge", "cpu-avx1"),
    "AVX only, F16C/FMA off (Sandy Bridge / hand-made)": ("sandybridge", "cpu-avx1"),
    "noavx (Nehalem: SSE4.2)": ("nehalem", "noavx"),
}


def bench_binary() -> Path:
    """llama-bench (and llama-server, for tests/core/builder/test_server_smoke.py) from a cached build (tools on)."""
    plan = rb.server_plan()
    argv = list(plan.build.argv)
    argv = [*argv[: argv.index("--target")], "--target", "llama-bench", "llama-server"]
    plan = dataclasses.replace(
        plan, build=dataclasses.replace(plan.build, argv=tuple(argv)), targets=("llama-bench", "llama-server")
    )
    print("building llama-bench + llama-server (cached after the first run) ...", flush=True)
    return run_build(plan).bin_dir


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    bench_bin = bench_binary()
    # samples[(label, model)] = [(pp, tg) per round]; rounds rotate the build order so that machine noise
    # (a shared 2-core VM) spreads over all builds; the table shows the median of the rounds.
    samples: dict[tuple[str, str], list[tuple[float, float]]] = {}
    with tempfile.TemporaryDirectory(prefix="llama-bench-") as tmp:
        models = {q: write_tiny_gguf(Path(tmp) / f"tiny-{q}.gguf", quant=q) for q in ("q8_0", "f16")}
        folders: dict[str, Path] = {}
        for label, (cpu, variant) in BUILDS.items():
            libs = rb.build(rb.plan_for(cpu, variant)).bin_dir
            folder = Path(tmp) / cpu
            rb.copy_bin(bench_bin, folder)
            for name in ("libggml-cpu.so.0.25.3", "libggml-base.so.0.25.3"):
                os.unlink(folder / name)
                shutil.copy2(libs / name, folder / name)
            folders[label] = folder
        labels = list(BUILDS)
        for rnd in range(args.rounds):
            order = labels[rnd % len(labels) :] + labels[: rnd % len(labels)]
            for label in order:
                for q, model in models.items():
                    argv = [
                        str(folders[label] / "llama-bench"),
                        "-m",
                        str(model),
                        "-t",
                        str(args.threads),
                        "-p",
                        "128",
                        "-n",
                        "32",
                        "-r",
                        str(args.reps),
                        "-o",
                        "json",
                    ]
                    rows = json.loads(subprocess.run(argv, capture_output=True, text=True, check=True).stdout)
                    pp = next(r for r in rows if r["n_prompt"] > 0)["avg_ts"]
                    tg = next(r for r in rows if r["n_gen"] > 0)["avg_ts"]
                    samples.setdefault((label, q), []).append((pp, tg))
                    print(f"round {rnd + 1} {label} {q}: pp128 {pp:.0f} t/s, tg32 {tg:.0f} t/s", flush=True)
    print()
    print(
        f"llama-bench -t {args.threads} -p 128 -n 32 -r {args.reps}, median of {args.rounds} rotated rounds, "
        f"{os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}"
    )
    print("| build | model | pp128 t/s | tg32 t/s | pp vs tailored | tg vs tailored |")
    print("|---|---|---|---|---|---|")
    med = {k: (statistics.median(x[0] for x in v), statistics.median(x[1] for x in v)) for k, v in samples.items()}
    for (label, q), (pp, tg) in med.items():
        bpp, btg = med[(labels[0], q)]
        lo_pp, hi_pp = min(x[0] for x in samples[(label, q)]), max(x[0] for x in samples[(label, q)])
        lo_tg, hi_tg = min(x[1] for x in samples[(label, q)]), max(x[1] for x in samples[(label, q)])
        print(
            f"| {label} | {q} | {pp:.0f} ({lo_pp:.0f}–{hi_pp:.0f}) | {tg:.0f} ({lo_tg:.0f}–{hi_tg:.0f}) | "
            f"{pp / bpp:.2f}x | {tg / btg:.2f}x |"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
