"""Round two of the wizard (#15): no false ticks, no dead ends, a saved report, Repair with the hardware, a
question before a destructive step. Real core, real files, real processes; only the Work page's job is a real
child process that talks like Ninja where a 20-minute build would be."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from PySide6.QtCore import QDir
from PySide6.QtWidgets import QFileSystemModel, QLabel, QWizard

from app.core.flow import Method, PageId
from app.core.lmstudio import doctor
from app.core.lmstudio.backends import list_backends
from app.core.lmstudio.home import resolve_home
from app.core.lmstudio.install import execute_install, execute_select, plan_install, plan_select
from app.qt.jobs import Check, InstallOutcome, plans_job
from app.qt.pages.verify import checks_html
from app.qt.pages.welcome import folder_dialog
from app.qt.state import WizardConfig
from app.qt.worker import JobState
from tests.conftest import FIXTURES
from tests.core.fetch.backend_folder import make_backend_folder
from tests.lmstudio_homes import make_home
from tests.qt.conftest import answer_box, close_error_dialogs, ninja_plan
from tests.qt.test_branches import go_next, open_repair, repair_with_a_bom, to_recommendation

REPORTS = FIXTURES / "reports"
OURS = "llama.cpp-linux-x86_64-vulkan-avx1-unlocked"


def test_a_check_that_did_not_run_is_never_shown_as_passed() -> None:
    html = checks_html(InstallOutcome("x@1", Path("/x"), (Check("ISA audit", True, "fine"),
                                                           Check("Smoke test", None, "not run: no program"))))
    assert "✓ ISA audit" in html
    assert "✓ Smoke test" not in html and "– Smoke test" in html


def test_back_after_a_failed_job_leads_to_the_method_page_and_start_runs_again(qtbot, make_wizard,
                                                                                tmp_path: Path) -> None:
    runs: list[str] = []

    def factory(_state):  # the first run fails at step 5 of 20, the second succeeds
        runs.append("run")
        args = ("--fail-at", "5") if len(runs) == 1 else ()
        return plans_job([ninja_plan(20, *args, label="build")])

    w = make_wizard(WizardConfig(home=make_home(tmp_path), report_file=REPORTS / "westmere.json",
                                 log_dir=tmp_path / "logs", job_factory=factory))
    w.show()
    to_recommendation(qtbot, w)
    go_next(qtbot, w, PageId.METHOD)
    method = w.page_of(PageId.METHOD)
    qtbot.waitUntil(lambda: bool(method.options), timeout=60000)
    close_error_dialogs()
    w.state.method = Method.BUILD  # whatever the tools here say: the job is the fake-Ninja child process
    method.completeChanged.emit()
    back = w.button(QWizard.WizardButton.BackButton)
    go_next(qtbot, w, PageId.WORK)
    work = w.page_of(PageId.WORK)
    assert not back.isEnabled()  # no way back into a running job
    qtbot.waitUntil(lambda: work.controller.state is JobState.FAILED, timeout=30000)
    assert len(close_error_dialogs()) == 1
    assert work.title() == "It did not work" and back.isEnabled()
    w.back()
    assert w.current_page_id() is PageId.METHOD
    assert w.button(QWizard.WizardButton.NextButton).text() == "&Start"
    go_next(qtbot, w, PageId.WORK)
    assert len(runs) == 2 and work.title() == "Working"
    qtbot.waitUntil(lambda: work.controller.state is JobState.SUCCEEDED, timeout=30000)
    assert not back.isEnabled()  # done: the install is not undone by going back


def test_repair_probes_and_never_selects_a_vulkan_backend_without_a_usable_vulkan_gpu(qtbot, make_wizard,
                                                                                      tmp_path: Path) -> None:
    """Our Vulkan backend installed but not selected, on a computer whose only Vulkan device is lavapipe (a
    software renderer): without the hardware the doctor would offer to select it; the wizard's Repair reads
    the report first and does not."""
    home = make_home(tmp_path)
    execute_install(plan_install(home, make_backend_folder(tmp_path / "src", name=OURS)), provenance={})
    blind = doctor.diagnose(resolve_home(home), report=None)
    assert any(f.code == "ours-not-selected" and f.auto for f in blind)  # what happened before #15
    w, page = open_repair(qtbot, make_wizard, home, "ivybridge-lavapipe")
    assert w.state.report.source != "live"
    codes = {f.code for f in page.findings}
    assert "ours-not-selected" not in codes and "gpu-incompatible" in codes, codes
    assert "Checked with the hardware of" in page.status.text()
    # words for the findings; the code only in a tooltip
    texts = " ".join(lab.text() for lab in page.content.findChildren(type(page.status)))
    assert "No GPU this backend can use" in texts and "gpu-incompatible" not in texts
    assert close_error_dialogs() == []


def test_every_automatic_fix_is_listed_and_confirmed_before_it_is_applied(qtbot, make_wizard, tmp_path: Path) -> None:
    _w, page, manifest = repair_with_a_bom(qtbot, make_wizard, tmp_path)
    autos = [f for f in page.findings if f.auto]
    assert autos and len(page.fix_boxes) == len(autos)
    for f in autos:  # every one of them is in the list next to the Fix button
        assert f.fix in page.to_apply.text()
    asked = answer_box(qtbot, "Keep it as it is")  # "no": nothing changes
    page.fix_button.click()
    assert asked and all(f.fix in asked[0] for f in autos)
    assert manifest.read_bytes().startswith(b"\xef\xbb\xbf")
    for box in page.fix_boxes.values():  # untick all but the BOM fix: only that one is asked about and applied
        box.setChecked(False)
    bom = next(i for i, f in enumerate(page.findings) if f.code == "json-bom")
    page.fix_boxes[bom].setChecked(True)
    asked = answer_box(qtbot, "Apply fixes")
    page.fix_button.click()
    assert "1 fix(es)" in asked[0]
    qtbot.waitUntil(lambda: "Before:" in page.before_after.text(), timeout=30000)
    assert not manifest.read_bytes().startswith(b"\xef\xbb\xbf")


def test_uninstall_asks_first_and_says_when_lm_studio_uses_that_backend(qtbot, make_wizard, tmp_path: Path) -> None:
    home = make_home(tmp_path)
    ir = execute_install(plan_install(home, make_backend_folder(tmp_path / "src", name=OURS)), provenance={})
    execute_select(plan_select(resolve_home(home), ir.ident))
    w = make_wizard(WizardConfig(home=home))
    w.show()
    w.page_of(PageId.WELCOME).uninstall_radio.click()
    go_next(qtbot, w, PageId.UNINSTALL)
    page = w.page_of(PageId.UNINSTALL)
    from PySide6.QtCore import Qt

    page.tree.topLevelItem(0).setCheckState(0, Qt.CheckState.Checked)
    asked = answer_box(qtbot, "Keep it as it is")
    page.remove_button.click()
    assert f"LM Studio uses {ir.ident} for GGUF models" in asked[0]
    assert ir.ident in {b.ident for b in list_backends(home)}  # "no" removed nothing
    asked = answer_box(qtbot, "Remove")
    page.remove_button.click()
    assert ir.ident not in {b.ident for b in list_backends(home)}


def test_qts_folder_picker_shows_the_hidden_lmstudio_folder(qtbot, make_wizard, tmp_path: Path) -> None:
    (tmp_path / ".lmstudio").mkdir()
    (tmp_path / "visible").mkdir()
    w = make_wizard(WizardConfig(home=make_home(tmp_path / "h")))
    dlg = folder_dialog(w.page_of(PageId.WELCOME), "LM Studio's home folder", str(tmp_path))
    qtbot.addWidget(dlg)
    assert dlg.filter() & QDir.Filter.Hidden
    model = dlg.findChild(QFileSystemModel)
    assert model is not None, "not Qt's own dialog"
    root = model.index(str(tmp_path))
    qtbot.waitUntil(lambda: model.rowCount(root) >= 2, timeout=10000)
    names = {model.fileName(model.index(i, 0, root)) for i in range(model.rowCount(root))}
    assert {".lmstudio", "visible"} <= names


def test_a_saved_report_from_the_welcome_page_is_what_the_wizard_builds_for(qtbot, make_wizard,
                                                                             tmp_path: Path) -> None:
    w = make_wizard(WizardConfig(home=make_home(tmp_path)))
    w.show()
    welcome = w.page_of(PageId.WELCOME)
    welcome.load_report(REPORTS / "westmere.json")  # what "Load a saved report…" does with the chosen file
    assert "westmere.json" in welcome.report_label.text() and welcome.report_label.isVisible()
    to_recommendation(qtbot, w)
    assert "saved report" in w.page_of(PageId.HARDWARE).status.text()
    assert w.state.candidate.variant == "noavx"  # for that computer, not this one
    assert "(saved report)" in w.page_of(PageId.RECOMMENDATION).choice_label.text()
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    welcome.load_report(bad)
    assert len(close_error_dialogs()) == 1


def test_report_option_on_the_command_line(tmp_path: Path) -> None:
    """`lms-unlocked --report FILE` opens the wizard (first window shown, on Qt's offscreen platform); a bad file
    is a clear error before any window."""
    import os

    env = dict(os.environ, QT_QPA_PLATFORM="offscreen", LMS_UNLOCKED_SMOKE_EXIT_MS="50",
               LMS_UNLOCKED_LOG_DIR=str(tmp_path / "logs"))
    argv = [sys.executable, "-m", "app", "--report", str(REPORTS / "westmere.json")]
    r = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "smoke: first window shown" in r.stderr
    bad = tmp_path / "bad.json"
    bad.write_text("[]")
    r = subprocess.run([sys.executable, "-m", "app", "--report", str(bad)], env=env, capture_output=True, text=True,
                       timeout=120)
    assert r.returncode != 0 and "Traceback" not in r.stderr and "first window" not in r.stderr
    assert "report" in r.stderr.lower()


def test_finish_links_its_paths_and_says_youre_all_set_on_a_modern_pc(qtbot, make_wizard, tmp_path: Path) -> None:
    w = make_wizard(WizardConfig(home=make_home(tmp_path), report_file=REPORTS / "haswell.json",
                                 log_dir=tmp_path / "logs"))
    w.show()
    to_recommendation(qtbot, w)
    labels = w.page_of(PageId.RECOMMENDATION).content.findChildren(QLabel)
    assert "You're all set" in " ".join(lab.text() for lab in labels)
    go_next(qtbot, w, PageId.FINISH)
    html = w.page_of(PageId.FINISH).body.text()
    assert "You're all set" in html
    assert f'href="file://{tmp_path / "logs"}"' in html  # the logs folder is a link
    assert w.page_of(PageId.FINISH).logs_button.isVisible()


def test_when_in_doubt_the_wizard_asks_which_copy_stays(qtbot, make_wizard, tmp_path: Path) -> None:
    """Two different copies of one name@version, equally new, neither working here: the doctor cannot tell which
    to keep, so the Repair page asks; the chosen copy stays and the other is moved out (backed up)."""
    import os

    from tests.lmstudio_homes import template, write_backend

    home = make_home(tmp_path, backends=[], vendor=())
    copies = []
    for name, payload in (("copy-a", b"a"), ("copy-b", b"bb")):
        d = write_backend(home / "extensions" / "backends" / name, template("linux-cpu-2.14.0"))
        (d / "notes.txt").write_bytes(payload)
        copies.append(d)
    for d in copies:
        for p in [d, *d.rglob("*")]:
            os.utime(p, (1_700_000_000, 1_700_000_000))
    a, b = copies
    _w, page = open_repair(qtbot, make_wizard, home, "westmere")
    (ident,) = page.choice_radios
    assert {f for _r, f in page.choice_radios[ident]} == {a, b}
    dup = next(f for f in page.findings if f.code == "duplicate-backend")
    assert not dup.auto  # nothing moves before the user chose
    page.choose_keep(ident, b)
    qtbot.waitUntil(lambda: not page.busy() and any(f.code == "duplicate-backend" and f.auto
                                                     for f in page.findings), timeout=30000)
    assert "copy-a" in page.to_apply.text()
    for i, f in enumerate(page.findings):  # only the duplicate fix
        if i in page.fix_boxes:
            page.fix_boxes[i].setChecked(f.code == "duplicate-backend")
    answer_box(qtbot, "Apply fixes")
    page.fix_button.click()
    qtbot.waitUntil(lambda: "Before:" in page.before_after.text(), timeout=30000)
    assert b.is_dir() and not a.exists()
    assert close_error_dialogs() == []


def test_a_pasted_crash_is_explained(qtbot, make_wizard, tmp_path: Path) -> None:
    _w, page = open_repair(qtbot, make_wizard, make_home(tmp_path), "ivybridge")
    page.crash_text.setPlainText("Error loading model. (Exit code: 18446744072635812000). Unknown error.")
    page.explain_button.click()
    qtbot.waitUntil(lambda: page.crash_result.text() not in ("", "Reading…"), timeout=60000)
    # the rounded 64-bit exit code LM Studio shows, decoded by the core (docs/lmstudio-contract.md §16.1)
    assert "0xC0000401" in page.crash_result.text() and "aborted" in page.crash_result.text()
    assert close_error_dialogs() == []


def test_repair_without_a_saved_report_probes_this_computer_off_the_gui_thread(qtbot, make_wizard,
                                                                              tmp_path: Path) -> None:
    import threading

    from app.core.hardware import probe

    threads: list[str] = []
    real = probe.probe_hardware

    def recording(*args, **kwargs):  # the real probe; only where it ran is recorded
        threads.append(threading.current_thread().name)
        return real(*args, **kwargs)

    w = make_wizard(WizardConfig(home=make_home(tmp_path)))
    probe.probe_hardware = recording
    try:
        w.show()
        w.page_of(PageId.WELCOME).repair_radio.click()
        go_next(qtbot, w, PageId.REPAIR)
        page = w.page_of(PageId.REPAIR)
        qtbot.waitUntil(lambda: not page.busy() and w.state.report is not None, timeout=60000)
    finally:
        probe.probe_hardware = real
    assert w.state.report.source == "live"
    assert threads and threads[0] != threading.main_thread().name
    assert "Checked with the hardware of" in page.status.text()
    close_error_dialogs()
