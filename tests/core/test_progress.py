"""Overall progress weighted by stage cost, and a time-left estimate that keeps moving when a stage stalls."""

from __future__ import annotations

import pytest

from app.core.flow import STAGES, Method
from app.core.progress import TYPICAL_SECONDS, ProgressTracker, stage_weights


def test_weights_follow_the_real_cost_and_the_method_pages_estimate() -> None:
    w = stage_weights(Method.BUILD)
    assert list(w) == list(STAGES[Method.BUILD])
    assert w["build"] == max(w.values())  # the compile is most of a build, not 1/7 of it
    scaled = stage_weights(Method.DOWNLOAD, estimate_s=100.0)
    assert sum(scaled.values()) == pytest.approx(100.0)
    assert scaled["download"] == pytest.approx(100.0 - 18.0)


def test_overall_fraction_is_weighted() -> None:
    t = ProgressTracker.for_method(Method.DOWNLOAD, now=0.0, estimate_s=100.0)
    t.update(1.0, "download", 50, 100)
    s = t.snapshot(2.0)
    # half of an 82-second download out of 100 seconds in all (the old bar said 1/8 here)
    assert s.overall_fraction == pytest.approx(41 / 100)
    assert s.in_bytes and s.stage_index == 0 and s.stage_count == 4
    t.update(3.0, "audit", 0, 0)  # "verify, extract and install" was jumped over: counted as done
    assert t.snapshot(3.0).overall_fraction == pytest.approx(87 / 100)


def test_rate_and_time_left_for_a_download() -> None:
    t = ProgressTracker.for_method(Method.DOWNLOAD, now=0.0)
    t.update(0.0, "download", 0, 10 * 2**20)
    t.update(2.0, "download", 4 * 2**20, 10 * 2**20)
    s = t.snapshot(2.0)
    assert s.stage_rate == pytest.approx(2 * 2**20)  # 2 MB/s
    assert s.stage_eta_s == pytest.approx(3.0)
    later = sum(TYPICAL_SECONDS[Method.DOWNLOAD][x] for x in STAGES[Method.DOWNLOAD][1:])
    assert s.overall_eta_s == pytest.approx(3.0 + later)


def test_a_stalled_build_grows_its_estimate_and_says_so() -> None:
    t = ProgressTracker.for_method(Method.BUILD, now=0.0)
    t.update(0.0, "build", 0, 200)
    t.update(100.0, "build", 100, 200)
    at_100 = t.snapshot(100.0)
    assert at_100.stage_eta_s == pytest.approx(100.0) and at_100.stalled_s == 0
    stalled = t.snapshot(400.0)  # nothing moved for 300 s
    assert stalled.stage_eta_s is not None and stalled.stage_eta_s > at_100.stage_eta_s  # not frozen
    assert stalled.stage_eta_s == pytest.approx(400.0)
    assert stalled.stalled_s == pytest.approx(300.0)
    t.update(401.0, "build", 101, 200)
    assert t.snapshot(401.0).stalled_s == 0


def test_a_stage_without_steps_counts_down_its_typical_time_and_never_goes_negative() -> None:
    t = ProgressTracker.for_method(Method.BUILD, now=0.0)
    t.update(0.0, "configure", 0, 0)
    assert t.snapshot(2.0).stage_eta_s == pytest.approx(TYPICAL_SECONDS[Method.BUILD]["configure"] - 2.0)
    assert t.snapshot(60.0).stage_eta_s == 0.0
