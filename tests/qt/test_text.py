"""User-facing text from recorded hardware reports (pure functions, no widgets)."""

from __future__ import annotations

import dataclasses

from app.core.flow import Branch
from app.core.hardware.probe import load_report_file
from app.qt.pages.finish import finish_paragraphs, needs_batch_tip
from app.qt.state import WizardState
from app.qt.text import cpu_summary, format_duration, format_size, gpu_lines, nvidia_usefulness, report_details
from tests.conftest import FIXTURES

REPORTS = FIXTURES / "reports"


def test_cpu_summary_in_plain_language() -> None:
    assert cpu_summary(load_report_file(REPORTS / "ivybridge.json").cpu) == (
        "Intel Core i5-3570K — Ivy Bridge, 2012 — AVX yes, AVX2 no"
    )
    assert cpu_summary(load_report_file(REPORTS / "westmere.json").cpu).endswith("AVX no, AVX2 no")
    assert cpu_summary(load_report_file(REPORTS / "haswell.json").cpu).endswith("Haswell, 2013 — AVX yes, AVX2 yes")
    assert cpu_summary(None) == "Processor: could not be identified"


def test_kepler_gpu_usefulness_and_details() -> None:
    r = load_report_file(REPORTS / "ivybridge-kepler.json")
    lines = gpu_lines(r)
    kepler = [g for g in r.nvidia_gpus if (g.cc_tuple() or (9, 9)) < (5, 0)]
    assert kepler, "the Kepler fixture has a Kepler card"
    assert "Kepler" in nvidia_usefulness(kepler[0])
    assert any(kepler[0].name in line for line in lines)
    details = report_details(r)
    assert f"CC {kepler[0].compute_capability}" in details and "usable instruction sets:" in details


def test_no_gpu_sentence() -> None:
    r = dataclasses.replace(load_report_file(REPORTS / "ivybridge.json"), vulkan_devices=(), nvidia_gpus=())
    assert gpu_lines(r) == ["No graphics card usable for running models was found; the processor will do the work."]


def test_formats() -> None:
    assert format_size(97_300) == "95.0 KB"
    assert format_size(512) == "512 bytes"
    assert format_size(3 * 2**30) == "3.0 GB"
    assert format_duration(None) == "estimating…"
    assert format_duration(42) == "about 42 s"
    assert format_duration(600) == "about 10 min"
    assert format_duration(3660) == "about 1 h 01 min"


def test_finish_text_per_branch() -> None:
    st = WizardState(branch=Branch.UNINSTALL, uninstall_summary="Removed x@1.")
    paras = finish_paragraphs(st)
    assert paras[0] == "Removed x@1." and "Fully quit LM Studio" in paras[1]
    st = WizardState(branch=Branch.INSTALL, report=load_report_file(REPORTS / "ivybridge-kepler.json"))
    assert needs_batch_tip(st)  # a Kepler card: the evaluation-batch-size tip applies
    st = WizardState(branch=Branch.INSTALL, report=load_report_file(REPORTS / "ivybridge.json"))
    assert not needs_batch_tip(st)


def test_finish_warns_about_lm_studio_auto_update(tmp_path) -> None:
    from app.core.lmstudio.home import resolve_home
    from app.qt.jobs import InstallOutcome
    from app.qt.pages.finish import auto_update_warnings
    from tests.lmstudio_homes import make_home

    home = resolve_home(make_home(tmp_path, settings={"autoUpdateExtensionPacks": True}))
    from app.core.recommend import recommend

    report = load_report_file(REPORTS / "ivybridge.json")
    st = WizardState(branch=Branch.INSTALL, home=home, work_succeeded=True, outcome=InstallOutcome("x@1", tmp_path),
                     report=report, recommendation=recommend(report))
    text = "\n".join(finish_paragraphs(st))
    assert "Auto-update selected Runtime Extension Packs" in text and "x@1 is installed" in text
    quiet = resolve_home(make_home(tmp_path, settings={"autoUpdateExtensionPacks": False}, dirname="h2"))
    assert auto_update_warnings(WizardState(home=quiet)) == []
