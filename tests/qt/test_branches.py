"""Every branch of the wizard end to end: recorded hardware reports, a temp LM Studio home, a signed
catalog served over loopback HTTP, and the real core underneath (nothing in the core is faked)."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QWizard

from app.core.fetch.publish import publish
from app.core.flow import Method, PageId
from app.core.lmstudio.backends import list_backends
from app.core.lmstudio.install import execute_install, plan_install
from app.qt.state import WizardConfig
from app.qt.wizard import UnlockedWizard
from app.qt.worker import JobState
from tests.conftest import FIXTURES
from tests.core.fetch.backend_folder import make_backend_folder
from tests.httpserver import LocalHTTPServer
from tests.lmstudio_homes import make_home
from tests.qt.conftest import answer_box, close_error_dialogs

REPORTS = FIXTURES / "reports"
TEST_KEY = FIXTURES / "TEST-ONLY-catalog-signing.key"
TEST_PUB = FIXTURES / "TEST-ONLY-catalog-signing.pub"
OURS = "llama.cpp-linux-x86_64-vulkan-avx1-unlocked"


def next_enabled(w: UnlockedWizard) -> bool:
    b = w.button(QWizard.WizardButton.CommitButton if w.currentPage().isCommitPage()
                 else QWizard.WizardButton.NextButton)
    return b.isEnabled()


def go_next(qtbot, w: UnlockedWizard, expect: PageId) -> None:
    qtbot.waitUntil(lambda: next_enabled(w), timeout=30000)
    w.next()
    assert w.current_page_id() is expect, (w.current_page_id(), expect)


def start(make_wizard, tmp_path: Path, report: str, **cfg) -> tuple[UnlockedWizard, Path]:
    home = cfg.pop("home", None) or make_home(tmp_path)
    w = make_wizard(WizardConfig(home=home, report_file=REPORTS / f"{report}.json", log_dir=tmp_path / "logs", **cfg))
    w.show()
    assert w.current_page_id() is PageId.WELCOME
    return w, home


def to_recommendation(qtbot, w: UnlockedWizard) -> None:
    go_next(qtbot, w, PageId.HARDWARE)
    qtbot.waitUntil(lambda: w.state.report is not None, timeout=20000)
    go_next(qtbot, w, PageId.RECOMMENDATION)


def test_kepler_gpu_download_from_signed_catalog_select_and_finish(qtbot, make_wizard, tmp_path: Path) -> None:
    folder = make_backend_folder(tmp_path / "src", name=OURS)
    publish(folder, tmp_path / "catalog", key_path=TEST_KEY)
    with LocalHTTPServer() as srv:
        srv.add_dir(tmp_path / "catalog", "/c")
        w, home = start(make_wizard, tmp_path, "ivybridge-gtx770", catalog_url=srv.url("/c/catalog.json"),
                        catalog_public_key=TEST_PUB)
        welcome = w.page_of(PageId.WELCOME)
        assert str(home) in welcome.home_label.text()
        to_recommendation(qtbot, w)
        hw = w.page_of(PageId.HARDWARE)
        assert "Ivy Bridge, 2012 — AVX yes, AVX2 no" in hw.cpu_label.text()
        assert "GTX 770" in hw.gpu_label.text()
        rec = w.page_of(PageId.RECOMMENDATION)
        assert w.state.candidate.variant == "vulkan-avx1"  # the recommended card is preselected
        assert rec.radios[0].isChecked() and "(recommended)" in rec.radios[0].text()
        assert not rec.official_box.isVisible()
        rec.why_not_button.click()
        why_not = rec.why_not_text.text()
        assert "CPU backend for CPUs without AVX" in why_not and "noavx" not in why_not  # words, not codes
        go_next(qtbot, w, PageId.METHOD)
        method = w.page_of(PageId.METHOD)
        qtbot.waitUntil(lambda: bool(method.options), timeout=60000)
        by = {o.method: o for o in method.options}
        assert by[Method.DOWNLOAD].available and by[Method.DOWNLOAD].download_bytes
        method.choose(Method.DOWNLOAD)
        go_next(qtbot, w, PageId.WORK)
        work = w.page_of(PageId.WORK)
        qtbot.waitUntil(lambda: work.controller.state in (JobState.SUCCEEDED, JobState.FAILED), timeout=60000)
        assert close_error_dialogs() == [], work.diagnostics()
        assert srv.requests, "the pack came over loopback HTTP"
    assert f"{OURS}@2.14.0" in {b.ident for b in list_backends(home)}
    go_next(qtbot, w, PageId.VERIFY)
    verify = w.page_of(PageId.VERIFY)
    assert OURS in verify.where.text()
    assert "ISA audit" in verify.checks.text() and "Smoke test" in verify.checks.text()
    # this stand-in pack has no binaries: the audit did not look at anything, so it is not shown as passed
    assert "– ISA audit: not run" in verify.checks.text() and "✓ ISA audit" not in verify.checks.text()
    # LM Studio is not running: the box is ticked, and Next really writes the selection.
    assert verify.select_check.isChecked() and verify.select_check.isEnabled()
    assert not (home / ".internal" / "backend-preferences-v1.json").exists()
    go_next(qtbot, w, PageId.FINISH)
    assert close_error_dialogs() == []
    prefs = json.loads((home / ".internal" / "backend-preferences-v1.json").read_text())
    assert {"model_format": "gguf", "name": OURS, "version": "2.14.0"} in prefs
    text = w.page_of(PageId.FINISH).body.text()
    assert "Fully quit LM Studio" in text and "Evaluation batch size" in text and "selected for GGUF" in text
    # built for the saved report's computer: where its folder is (a link) and how to take it there
    assert "computer of the saved report" in text and f'href="file://{home}/extensions/backends/{OURS}' in text
    assert w.page_of(PageId.FINISH).nextId() == int(PageId.END)


def test_cpu_download_of_an_overlay_on_the_users_official_pack(qtbot, make_wizard, tmp_path: Path) -> None:
    """The download branch with an overlay (#17): the catalog (served over loopback) holds only our rebuilt files;
    the wizard offers it because this home has the official pack it was made from, applies it on that pack and
    installs it; its verify page shows the install check, ISA audit and a smoke test of our server sub-folder."""
    from tests.core.fetch.overlay_packs import OURS, SERVER_DIR, built_backend, install_official, official_pack

    pack = official_pack(tmp_path / "templates", tmp_path / "libs")
    publish(built_backend(tmp_path / "built", pack, tmp_path / "libs"), tmp_path / "catalog", template=pack,
            key_path=TEST_KEY, variant="cpu-avx1")
    home = make_home(tmp_path, backends=["linux-vulkan-2.14.0"])
    official = install_official(home, pack)
    with LocalHTTPServer() as srv:
        srv.add_dir(tmp_path / "catalog", "/c")
        w, home = start(make_wizard, tmp_path, "ivybridge", home=home, catalog_url=srv.url("/c/catalog.json"),
                        catalog_public_key=TEST_PUB)
        to_recommendation(qtbot, w)
        assert w.state.candidate.variant == "cpu-avx1"
        go_next(qtbot, w, PageId.METHOD)
        method = w.page_of(PageId.METHOD)
        qtbot.waitUntil(lambda: bool(method.options), timeout=60000)
        by = {o.method: o for o in method.options}
        assert by[Method.DOWNLOAD].available and OURS in by[Method.DOWNLOAD].note
        method.choose(Method.DOWNLOAD)
        go_next(qtbot, w, PageId.WORK)
        work = w.page_of(PageId.WORK)
        qtbot.waitUntil(lambda: work.controller.state in (JobState.SUCCEEDED, JobState.FAILED), timeout=120000)
        assert close_error_dialogs() == [], work.diagnostics()
        assert any(r.path.endswith(".overlay.7z") for r in srv.requests), "the overlay came over loopback HTTP"
    assert OURS in {b.ident for b in list_backends(home)}
    assert (official / "backend-manifest.json").exists()  # LM Studio's pack stays where it was
    go_next(qtbot, w, PageId.VERIFY)
    checks = w.page_of(PageId.VERIFY).checks.text()
    assert "Install check" in checks and "ISA audit" in checks and "16 tokens in" in checks, checks
    ours = home / "extensions" / "backends" / OURS.replace("@", "-")
    assert (ours / SERVER_DIR / "llama-server").is_file()


def test_selecting_is_blocked_while_lm_studio_runs(qtbot, make_wizard, tmp_path: Path) -> None:
    """A real process named like LM Studio's daemon blocks selecting, until it is gone and the user checks again."""
    home = make_home(tmp_path)
    ip = plan_install(home, make_backend_folder(tmp_path / "src", name=OURS))
    ir = execute_install(ip, provenance={})
    fake = tmp_path / "llmster"
    shutil.copy(shutil.which("sleep") or "/bin/sleep", fake)
    proc = subprocess.Popen([str(fake), "60"])
    try:
        w = make_wizard(WizardConfig(home=home))
        w.state.home = None
        w.setStartId(int(PageId.VERIFY))
        from app.core.lmstudio.home import resolve_home
        from app.qt.jobs import InstallOutcome

        w.state.home = resolve_home(home)
        w.state.outcome = InstallOutcome(ir.ident, ir.dest)
        w.show()
        verify = w.page_of(PageId.VERIFY)
        assert "LM Studio is running" in verify.select_status.text()
        # not offered ticked: Next could not write it now
        assert not verify.select_check.isChecked() and verify.check_again_button.isVisible()
        verify.select_check.setChecked(True)
        w.next()  # ticked anyway while LM Studio runs: the page stays and says why
        assert w.current_page_id() is PageId.VERIFY
        assert len(close_error_dialogs()) == 1
    finally:
        proc.kill()
        proc.wait()
    qtbot.mouseClick(verify.check_again_button, Qt.MouseButton.LeftButton)
    assert verify.select_check.isChecked() and "LM Studio is closed" in verify.select_status.text()
    w.next()
    assert w.current_page_id() is PageId.FINISH and w.state.selected_in_lmstudio


def test_haswell_official_backend_works_goes_to_finish(qtbot, make_wizard, tmp_path: Path) -> None:
    w, _home = start(make_wizard, tmp_path, "haswell")
    to_recommendation(qtbot, w)
    rec = w.page_of(PageId.RECOMMENDATION)
    assert rec.official_box.isVisible()
    assert "You don't need this" in rec.official_label.text()
    go_next(qtbot, w, PageId.FINISH)
    assert "You're all set" in w.page_of(PageId.FINISH).body.text()


def test_westmere_no_avx_is_experimental_and_build_is_the_way(qtbot, make_wizard, tmp_path: Path) -> None:
    w, _home = start(make_wizard, tmp_path, "westmere")
    to_recommendation(qtbot, w)
    assert w.state.candidate.variant == "noavx"
    assert "experimental" in w.page_of(PageId.RECOMMENDATION).radios[0].text().lower()
    go_next(qtbot, w, PageId.METHOD)
    method = w.page_of(PageId.METHOD)
    qtbot.waitUntil(lambda: bool(method.options), timeout=60000)
    by = {o.method: o for o in method.options}
    # No catalog entry and no official pack without AVX: neither download nor patch can be offered.
    assert not by[Method.DOWNLOAD].available and by[Method.DOWNLOAD].note
    assert not by[Method.PATCH].available
    assert by[Method.BUILD].time_seconds and by[Method.BUILD].prereqs
    # with no patch and no download left, the page says what a build needs: the internet, disk space, tools
    build = by[Method.BUILD]
    assert "internet" in build.needs and "free disk space" in build.needs and " to " in build.time_range
    method_page = w.page_of(PageId.METHOD)
    texts = " ".join(lab.text() for lab in method_page.content.findChildren(type(method_page.intro)))
    assert "free disk space" in texts
    if by[Method.BUILD].available:
        assert w.state.method is Method.BUILD
    close_error_dialogs()


@pytest.mark.parametrize("report", ["ivybridge", "ivybridge-kepler"])
def test_ivybridge_recommendations(qtbot, make_wizard, tmp_path: Path, report: str) -> None:
    w, _home = start(make_wizard, tmp_path, report)
    to_recommendation(qtbot, w)
    want = {"ivybridge": "cpu-avx1", "ivybridge-kepler": "vulkan-avx1"}[report]
    assert w.state.candidate.variant == want
    if report == "ivybridge-kepler":
        cards = w.page_of(PageId.RECOMMENDATION).cards_widget
        texts = " ".join(lab.text() for lab in cards.findChildren(type(w.page_of(PageId.FINISH).body)))
        assert "384" in texts  # the Kepler evaluation-batch-size warning


def test_uninstall_branch_removes_and_restores(qtbot, make_wizard, tmp_path: Path) -> None:
    home = make_home(tmp_path)
    execute_install(plan_install(home, make_backend_folder(tmp_path / "src", name=OURS)), provenance={})
    w = make_wizard(WizardConfig(home=home))
    w.show()
    w.page_of(PageId.WELCOME).uninstall_radio.click()
    go_next(qtbot, w, PageId.UNINSTALL)
    page = w.page_of(PageId.UNINSTALL)
    assert page.tree.topLevelItemCount() == 1  # only ours; the official packs are not listed
    item = page.tree.topLevelItem(0)
    assert OURS in item.text(0) and item.text(1).endswith("KB")
    item.setCheckState(0, Qt.CheckState.Checked)
    asked = answer_box(qtbot, "Remove")
    page.remove_button.click()
    assert asked and OURS in asked[0]
    assert close_error_dialogs() == []
    assert OURS not in {b.name for b in list_backends(home)}
    assert page.restore_button.isVisible()
    page.restore_button.click()
    assert OURS in {b.name for b in list_backends(home)}
    go_next(qtbot, w, PageId.FINISH)
    assert "restored" in w.page_of(PageId.FINISH).body.text()


def open_repair(qtbot, make_wizard, home: Path, report: str):  # -> (wizard, repair page)
    """The wizard on `home` with a saved report, Repair chosen, the doctor's first run finished."""
    w = make_wizard(WizardConfig(home=home, report_file=REPORTS / f"{report}.json"))
    w.show()
    w.page_of(PageId.WELCOME).repair_radio.click()
    go_next(qtbot, w, PageId.REPAIR)
    page = w.page_of(PageId.REPAIR)
    qtbot.waitUntil(lambda: not page.busy() and w.state.report is not None, timeout=30000)
    return w, page


def repair_with_a_bom(qtbot, make_wizard, tmp_path: Path):  # -> (wizard, repair page, manifest path)
    """Our backend installed, its manifest given a UTF-8 BOM; the wizard on the Repair page with the findings."""
    home = make_home(tmp_path)
    ir = execute_install(plan_install(home, make_backend_folder(tmp_path / "src", name=OURS)), provenance={})
    manifest = ir.dest / "backend-manifest.json"
    manifest.write_bytes(b"\xef\xbb\xbf" + manifest.read_bytes())
    w, page = open_repair(qtbot, make_wizard, home, "ivybridge-gtx770")
    qtbot.waitUntil(lambda: bool(page.findings), timeout=30000)
    return w, page, manifest


def test_repair_branch_fixes_a_bom_manifest(qtbot, make_wizard, tmp_path: Path) -> None:
    w, page, manifest = repair_with_a_bom(qtbot, make_wizard, tmp_path)
    assert any("BOM" in f.explanation or "bom" in f.code for f in page.findings), [str(f) for f in page.findings]
    assert w.state.report is not None  # Repair probed (here: read the saved report) before the doctor ran
    assert page.fix_button.isEnabled()
    assert "BOM" in page.to_apply.text()  # the fix is listed before it is applied
    asked = answer_box(qtbot, "Apply fixes")
    page.fix_button.click()
    assert asked and "BOM" in asked[0]
    qtbot.waitUntil(lambda: "Before:" in page.before_after.text(), timeout=30000)
    assert not manifest.read_bytes().startswith(b"\xef\xbb\xbf")
    assert close_error_dialogs() == []
    go_next(qtbot, w, PageId.FINISH)
    summary = w.page_of(PageId.FINISH).body.text()
    assert "Before:" in summary and "removed the BOM" in summary and "[json-bom]" not in summary  # words, no codes


def test_haswell_with_kepler_k80_expert_may_continue(qtbot, make_wizard, tmp_path: Path) -> None:
    """The official CPU backend works, yet a CUDA build for the K80 exists: Next finishes unless the expert insists."""
    w, _home = start(make_wizard, tmp_path, "haswell-k80")
    to_recommendation(qtbot, w)
    rec = w.page_of(PageId.RECOMMENDATION)
    assert rec.official_box.isVisible() and rec.expert_check.isVisible()
    assert w.state.candidate.variant == "cuda"
    assert rec.nextId() == int(PageId.FINISH)
    rec.expert_check.click()
    assert rec.nextId() == int(PageId.METHOD)
    go_next(qtbot, w, PageId.METHOD)
    method = w.page_of(PageId.METHOD)
    qtbot.waitUntil(lambda: bool(method.options), timeout=60000)
    close_error_dialogs()


def test_patch_only_preselected_when_the_audit_proves_it_safe(qtbot, make_wizard, tmp_path: Path) -> None:
    """A real AVX-only ELF (gcc -mavx) in the official Vulkan pack: patch-only is the cheapest safe way."""
    from tests.core.test_patchonly import AVX_SRC, build_lib, put_lib

    home = make_home(tmp_path)
    put_lib(home, build_lib(tmp_path, AVX_SRC, ["-mavx"], "avx"))
    w, _ = start(make_wizard, tmp_path, "ivybridge-gtx770", home=home)
    to_recommendation(qtbot, w)
    go_next(qtbot, w, PageId.METHOD)
    method = w.page_of(PageId.METHOD)
    qtbot.waitUntil(lambda: bool(method.options), timeout=60000)
    assert w.state.method is Method.PATCH, [(o.method, o.note) for o in method.options]
    go_next(qtbot, w, PageId.WORK)
    work = w.page_of(PageId.WORK)
    qtbot.waitUntil(lambda: work.controller.state in (JobState.SUCCEEDED, JobState.FAILED), timeout=60000)
    assert close_error_dialogs() == [], work.diagnostics()
    assert [work.stage_list.item(i).text() for i in range(work.stage_list.count())] == ["audit", "clone and install"]
    go_next(qtbot, w, PageId.VERIFY)
    assert f"{OURS}@2.14.0" in w.page_of(PageId.VERIFY).where.text()
    assert f"{OURS}@2.14.0" in {b.ident for b in list_backends(home)}


def test_live_probe_of_this_machine(qtbot, make_wizard, tmp_path: Path) -> None:
    """No saved report: the Hardware page probes this machine for real (off the GUI thread)."""
    w = make_wizard(WizardConfig(home=make_home(tmp_path)))
    w.show()
    go_next(qtbot, w, PageId.HARDWARE)
    qtbot.waitUntil(lambda: w.state.report is not None, timeout=60000)
    hw = w.page_of(PageId.HARDWARE)
    assert w.state.report.source == "live"
    assert "AVX" in hw.cpu_label.text() and hw.gpu_label.text().startswith("Graphics:")
    assert close_error_dialogs() == []


def test_without_lm_studio_probe_recommend_export_and_how_to_get_it(qtbot, make_wizard, tmp_path: Path) -> None:
    """No LM Studio: Install still probes, recommends and exports a report, then ends on how to get LM Studio;
    Repair and Uninstall are not offered until a folder is chosen."""
    w = make_wizard(WizardConfig(home=tmp_path / "no-such-home", report_file=REPORTS / "ivybridge-gtx770.json"))
    w.show()
    page = w.page_of(PageId.WELCOME)
    assert "⚠" in page.home_label.text() and "lmstudio.ai" in page.home_label.text()
    assert not page.repair_radio.isEnabled() and not page.uninstall_radio.isEnabled()
    to_recommendation(qtbot, w)
    w.page_of(PageId.HARDWARE)  # export works without LM Studio
    out = tmp_path / "report.json"
    w.page_of(PageId.HARDWARE).export_to(out)
    assert out.is_file()
    rec = w.page_of(PageId.RECOMMENDATION)
    assert rec.no_lmstudio.isVisible() and w.state.candidate.variant == "vulkan-avx1"
    go_next(qtbot, w, PageId.FINISH)
    assert "LM Studio is not installed" in w.page_of(PageId.FINISH).body.text()
    assert close_error_dialogs() == []
    w.restart()
    home = make_home(tmp_path)
    page.set_home(home)  # what "Choose LM Studio folder…" does with the picked folder
    assert page.repair_radio.isEnabled() and str(home) in page.home_label.text()


def test_welcome_recovers_an_install_killed_midway(qtbot, make_wizard, tmp_path: Path) -> None:
    """A real install process killed by the core's fault injection (SIGKILL after the move-in was recorded):
    opening the wizard on that home rolls the change forward, as every CLI command start does."""
    import os
    import sys

    home = make_home(tmp_path)
    folder = make_backend_folder(tmp_path / "src", name=OURS)
    driver = (
        "import sys\nfrom pathlib import Path\nfrom app.core.lmstudio.install import execute_install, plan_install\n"
        "none = lambda _h: []\n"
        "execute_install(plan_install(sys.argv[1], Path(sys.argv[2]), processes=none), provenance={}, processes=none)\n"
    )
    env = dict(os.environ, LMS_UNLOCKED_FAULT="install:op1:recorded")
    repo = Path(__file__).resolve().parents[2]
    argv = [sys.executable, "-c", driver, str(home), str(folder)]
    rc = subprocess.run(argv, env=env, timeout=60, cwd=repo).returncode
    assert rc == -9, "the install was not killed midway"
    w = make_wizard(WizardConfig(home=home))
    w.show()
    page = w.page_of(PageId.WELCOME)
    assert page.recovered, "nothing was recovered"
    assert "Recovered an interrupted change" in page.home_label.text()
    assert f"{OURS}@2.14.0" in {b.ident for b in list_backends(home)}
