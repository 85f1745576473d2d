"""Overall progress and time left for a multi-stage job, each stage weighted by what it really costs.

The Work page feeds every `Progress` event of the job into a :class:`ProgressTracker` and asks it for a
:class:`Snapshot` once a second. The estimate is rate-based (done / time spent in the stage), so it keeps moving
while a stage stalls (time spent grows, the rate falls, the time left grows) instead of freezing on the last
value, and the tracker says for how long nothing has moved.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from app.core.flow import STAGES, Method

# Typical seconds per stage on the 2-core test machine (docs/BENCHMARKS.md: build times; docs/developers.md for
# the download rate): the weights of the overall bar. The big stages (download, build) are replaced by the
# Method page's own estimate for this job (size / rate, the build estimate) when it has one.
TYPICAL_SECONDS: dict[Method, dict[str, float]] = {
    Method.PATCH: {"audit": 1.0, "clone and install": 4.0},
    Method.DOWNLOAD: {"download": 30.0, "verify, extract and install": 5.0, "audit": 3.0, "smoke test": 10.0},
    Method.BUILD: {"source": 20.0, "configure": 5.0, "build": 360.0, "package": 5.0, "audit": 5.0,
                   "smoke test": 15.0, "install": 2.0},
}
# The stage whose weight is the Method page's estimate for the whole job (minus the other stages).
MAIN_STAGE = {Method.PATCH: "clone and install", Method.DOWNLOAD: "download", Method.BUILD: "build"}
# Stages whose `Progress.done/total` count bytes (the page shows MB and MB/s); the others count steps.
BYTE_STAGES = frozenset({"download", "source"})
STALLED_AFTER_S = 60.0


def stage_weights(method: Method, estimate_s: float | None = None) -> dict[str, float]:
    """Seconds each stage of `method` is expected to take; `estimate_s` (the Method page's figure for the whole
    job) rescales the main stage so the weights add up to it."""
    w = dict(TYPICAL_SECONDS[method])
    main = MAIN_STAGE[method]
    if estimate_s is not None and estimate_s > 0:
        rest = sum(v for k, v in w.items() if k != main)
        w[main] = max(estimate_s - rest, w[main] * 0.1)
    return {s: w.get(s, 1.0) for s in STAGES[method]}


@dataclass(frozen=True)
class Snapshot:
    """Where a job stands. Rates are units per second of the stage's unit (bytes for BYTE_STAGES)."""

    stage: str
    stage_index: int  # 0-based; -1 before the first stage started
    stage_count: int
    stage_done: int
    stage_total: int
    stage_fraction: float
    stage_rate: float | None
    stage_eta_s: float | None
    overall_fraction: float
    overall_eta_s: float | None
    stalled_s: float  # seconds since the last step forward
    in_bytes: bool

    @property
    def percent(self) -> int:
        return int(self.overall_fraction * 100)


@dataclass
class ProgressTracker:
    """Fold a job's progress events into overall fraction and time left (pure: the caller passes `now`)."""

    stages: Sequence[str]
    weights: Mapping[str, float]
    started_at: float
    stage: str = ""
    done: int = 0
    total: int = 0
    stage_started: float = 0.0
    last_change: float = 0.0
    finished_stages: set[str] = field(default_factory=set)
    stage_seconds: dict[str, float] = field(default_factory=dict)

    @classmethod
    def for_method(cls, method: Method, now: float, estimate_s: float | None = None) -> ProgressTracker:
        return cls(STAGES[method], stage_weights(method, estimate_s), started_at=now, last_change=now)

    def update(self, now: float, label: str, done: int, total: int) -> None:
        """One progress event (`label` a stage name; unknown labels only count as activity)."""
        if label in self.stages and label != self.stage:
            if self.stage:
                self.finished_stages.add(self.stage)
                self.stage_seconds[self.stage] = now - self.stage_started
            # stages jumped over had nothing to do
            for s in self.stages[: self.stages.index(label)]:
                self.finished_stages.add(s)
            self.stage, self.stage_started = label, now
            self.done, self.total = 0, 0
            self.last_change = now
        if label == self.stage and (done, total) != (self.done, self.total):
            self.done, self.total = done, total
            self.last_change = now

    def snapshot(self, now: float) -> Snapshot:
        idx = self.stages.index(self.stage) if self.stage in self.stages else -1
        frac = min(self.done / self.total, 1.0) if self.total > 0 else 0.0
        spent = max(now - self.stage_started, 1e-6) if idx >= 0 else 0.0
        rate = self.done / spent if idx >= 0 and self.done > 0 else None
        stage_eta = (self.total - self.done) / rate if rate and self.total > self.done else None
        if self.total > 0 and self.done >= self.total:
            stage_eta = 0.0
        total_w = sum(self.weights.values()) or 1.0
        done_w = sum(self.weights[s] for s in self.finished_stages if s in self.weights and s != self.stage)
        cur_w = self.weights.get(self.stage, 0.0)
        overall = min((done_w + cur_w * frac) / total_w, 1.0)
        later = sum(self.weights[s] for s in self.stages[idx + 1:]) if idx >= 0 else total_w
        # how much faster or slower than typical this machine has been so far (finished stages), within reason
        typ = sum(self.weights[s] for s in self.stage_seconds if s in self.weights)
        real = sum(self.stage_seconds.values())
        speed = min(max(real / typ, 0.25), 4.0) if typ > 0 and real > 0 else 1.0
        if stage_eta is None and idx >= 0:
            # no rate yet: the typical time of this stage minus the time already spent, never below zero
            stage_eta = max(cur_w * speed - spent, 0.0) if self.total == 0 else None
        overall_eta = stage_eta + later * speed if stage_eta is not None else None
        return Snapshot(
            stage=self.stage, stage_index=idx, stage_count=len(self.stages), stage_done=self.done,
            stage_total=self.total, stage_fraction=frac, stage_rate=rate, stage_eta_s=stage_eta,
            overall_fraction=overall, overall_eta_s=overall_eta, stalled_s=now - self.last_change,
            in_bytes=self.stage in BYTE_STAGES,
        )
