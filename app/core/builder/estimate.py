"""An honest build-time estimate: compile steps of the planned targets × measured seconds per step, over cores.

Calibration (docs/BENCHMARKS.md, "Build time"): Ninja's own log (``.ninja_log``: start and end of every step) of
cold builds of llama.cpp 0c1e57098 on the reference 2-core machine (Zen 3 class, gcc 12 and zig 0.17 clang 22)
gives the steps each target needs; their CPU-seconds are those of an idle machine (docs/llama-build-notes.md
§2.5: ggml-base + ggml-cpu in 47.5 s wall at -j2; the same steps took 3–4× longer while ~7 other jobs shared the
2 cores). A machine of
another speed is scaled by its core count; its per-core speed is unknown before a build ran, so the estimate is
a range: the point estimate from 0.6× (a faster core) to 2.5× (an older core, e.g. a 2012 Ivy Bridge). A busy
machine takes longer still; the progress bar's ETA (from Ninja's step counter) corrects it once the build runs.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from app.core.builder.plan import BuildPlan

# Steps and CPU-seconds of each target's own compile + link steps (cold, Release, -j2, measured: see module doc).
# (steps, cpu_seconds) per toolchain family; targets not listed fall back to DEFAULT_STEP_SECONDS per step.
TARGET_COST: dict[str, dict[str, tuple[int, float]]] = {
    "gcc": {
        "ggml-base": (12, 22.0),
        "ggml-cpu": (20, 70.0),
        "ggml": (5, 4.0),
        "llama": (45, 255.0),
        "llama-simple": (2, 3.0),
        "llama-server": (120, 420.0),
        "ggml-vulkan": (200, 520.0),
        "ggml-cuda": (150, 2400.0),
    },
    "zig": {  # measured side by side with gcc under the same load: within 10 % of gcc's step times
        "ggml-base": (10, 24.0),
        "ggml-cpu": (18, 70.0),
        "ggml": (3, 5.0),
        "llama": (44, 255.0),
    },
}
DEFAULT_STEP_SECONDS = 3.0
CONFIGURE_SECONDS = (2.0, 8.0)
# zig compiles its Windows C runtime and libc++ on first use (once per cache): measured 339 s on 2 busy cores.
ZIG_FIRST_USE_SECONDS = 340.0
FAST, SLOW = 0.6, 2.5


@dataclass(frozen=True)
class Estimate:
    low_seconds: float
    high_seconds: float
    steps: int
    cores: int
    basis: str  # one sentence: what the range is made of

    def words(self) -> str:
        return f"{_fmt(self.low_seconds)} to {_fmt(self.high_seconds)}"

    def to_dict(self) -> dict[str, object]:
        return {
            "low_seconds": round(self.low_seconds),
            "high_seconds": round(self.high_seconds),
            "steps": self.steps,
            "cores": self.cores,
            "basis": self.basis,
        }


def _fmt(seconds: float) -> str:
    if seconds < 90:
        return f"{max(1, round(seconds / 10) * 10):.0f} s"
    return f"{round(seconds / 60):.0f} min"


def estimate_build(
    plan: BuildPlan,
    *,
    cores: int | None = None,
    zig_cache_ready: bool | None = None,
) -> Estimate:
    """The time range of `plan`'s build on a machine with `cores` cores (default: this one).

    Args:
        zig_cache_ready: whether zig's C runtimes are already compiled (default: look in the plan's zig cache).
    """
    n = max(1, cores or os.cpu_count() or 1)
    jobs = min(n, int(plan.build.argv[plan.build.argv.index("-j") + 1])) if "-j" in plan.build.argv else n
    family = "zig" if plan.toolchain is not None and plan.toolchain.zig else "gcc"
    costs = TARGET_COST[family]
    steps = 0
    cpu = 0.0
    for t in plan.targets:
        s, c = costs.get(t) or TARGET_COST["gcc"].get(t) or (20, 20 * DEFAULT_STEP_SECONDS)
        steps += s
        cpu += c
    wall = cpu / jobs
    extra = 0.0
    parts = [
        f"{steps} compile steps of {', '.join(plan.targets)} ≈ {cpu:.0f} CPU-seconds measured on a 2-core "
        f"Zen 3 machine, over {jobs} parallel jobs"
    ]
    if family == "zig":
        ready = zig_cache_ready
        if ready is None:
            zc = plan.build.env.get("ZIG_GLOBAL_CACHE_DIR")
            ready = zc is not None and (Path(zc) / "o").is_dir()
        if not ready:
            extra += ZIG_FIRST_USE_SECONDS * 2 / n
            parts.append("plus zig compiling its Windows C runtime once")
    low = (wall + extra) * FAST + CONFIGURE_SECONDS[0]
    high = (wall + extra) * SLOW + CONFIGURE_SECONDS[1]
    parts.append(f"× {FAST}–{SLOW} for a faster or slower core")
    return Estimate(low, high, steps, n, "; ".join(parts) + ".")
