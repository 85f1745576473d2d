"""The keyboard, with real key events on the shown wizard: the exact Tab order of each page, where the focus lands
(never on a hidden widget), one mnemonic per letter per page, Alt+N on every page, Enter on Welcome."""

from __future__ import annotations

import re
from pathlib import Path

from PySide6.QtCore import Qt
from PySide6.QtTest import QTest
from PySide6.QtWidgets import QAbstractButton, QApplication, QWidget, QWizard

from app.core.flow import Branch, PageId
from app.core.lmstudio.home import resolve_home
from app.core.lmstudio.install import execute_install, plan_install
from app.qt.jobs import Check, InstallOutcome
from app.qt.state import WizardConfig
from app.qt.wizard import UnlockedWizard
from tests.conftest import FIXTURES
from tests.core.fetch.backend_folder import make_backend_folder
from tests.lmstudio_homes import make_home

REPORT = FIXTURES / "reports" / "ivybridge-gtx770.json"
OURS = "llama.cpp-linux-x86_64-vulkan-avx1-unlocked"
WB = QWizard.WizardButton


def shown(qtbot, w: UnlockedWizard) -> None:
    w.show()
    qtbot.waitExposed(w)
    w.activateWindow()
    qtbot.waitUntil(lambda: QApplication.activeWindow() is w, timeout=5000)


def settle(qtbot) -> QWidget:
    """Let the wizard place the focus (it does so right after a page change); returns the focused widget."""
    qtbot.wait(50)
    f = QApplication.focusWidget()
    assert f is not None, "nothing has the keyboard focus"
    return f


def tab_cycle(qtbot) -> list[QWidget]:
    """Press Tab from the current focus until it comes back; the widgets in the order they got the focus."""
    first = settle(qtbot)
    stops = [first]
    for _ in range(20):
        QTest.keyClick(QApplication.focusWidget(), Qt.Key.Key_Tab)
        qtbot.wait(5)
        now = QApplication.focusWidget()
        assert now is not None and now.isVisible(), f"Tab landed on {now!r}, which is not visible"
        if now is first:
            return stops
        if now is not stops[-1]:  # a label with a link keeps the focus for one more Tab (onto its link)
            stops.append(now)
    raise AssertionError("Tab never came back to where it started")


def mnemonics(w: UnlockedWizard) -> list[str]:
    """The Alt+letter of every visible, enabled button of the current page and of the wizard."""
    page = w.currentPage()
    buttons = [b for b in page.findChildren(QAbstractButton) if b.isVisible() and b.isEnabled()]
    buttons += [x for x in (w.button(b) for b in WB if b.value < 10) if x is not None and x.isVisible()]
    letters = []
    for b in buttons:
        m = re.search(r"&([^&])", b.text())
        if m:
            letters.append(m.group(1).lower())
    return letters


def alt(qtbot, w: UnlockedWizard, letter: str) -> None:
    key = getattr(Qt.Key, f"Key_{letter.upper()}")
    QTest.keyClick(QApplication.focusWidget() or w, key, Qt.KeyboardModifier.AltModifier)
    qtbot.wait(20)  # a mnemonic "animates" the click (~100 ms) before it fires: callers wait for the effect


def test_exact_focus_order_mnemonics_and_alt_n_through_the_install_pages(qtbot, make_wizard, tmp_path: Path) -> None:
    w = make_wizard(WizardConfig(home=make_home(tmp_path), report_file=REPORT, log_dir=tmp_path / "logs"))
    shown(qtbot, w)
    back, nxt, cancel = w.button(WB.BackButton), w.button(WB.NextButton), w.button(WB.CancelButton)

    welcome = w.page_of(PageId.WELCOME)
    assert settle(qtbot) is welcome.install_radio  # the choice, not the folder button
    assert tab_cycle(qtbot) == [welcome.install_radio, welcome.choose_button, welcome.load_button, nxt, cancel]
    letters = mnemonics(w)
    assert len(letters) == len(set(letters)), letters
    # Enter means Next (the folder button is never an auto-default button): no file dialog opens
    QTest.keyClick(welcome.install_radio, Qt.Key.Key_Return)
    qtbot.waitUntil(lambda: w.current_page_id() is PageId.HARDWARE, timeout=5000)
    assert QApplication.activeModalWidget() is None

    hw = w.page_of(PageId.HARDWARE)
    qtbot.waitUntil(lambda: w.state.report is not None and nxt.isEnabled(), timeout=20000)
    assert settle(qtbot) is nxt
    assert tab_cycle(qtbot) == [nxt, cancel, hw.avx2_button, hw.details_button, hw.export_button, hw.load_button,
                                back]
    letters = mnemonics(w)
    assert len(letters) == len(set(letters)), letters
    alt(qtbot, w, "n")
    qtbot.waitUntil(lambda: w.current_page_id() is PageId.RECOMMENDATION, timeout=5000)

    rec = w.page_of(PageId.RECOMMENDATION)
    assert settle(qtbot) is rec.radios[0] and rec.radios[0].isChecked()
    # the hidden "continue anyway" box (the official backend does not run here) is never a stop
    assert tab_cycle(qtbot) == [rec.radios[0], rec.why_not_button, back, nxt, cancel]
    letters = mnemonics(w)
    assert len(letters) == len(set(letters)), letters
    alt(qtbot, w, "w")  # "Why not the others?" has its own letter now
    qtbot.waitUntil(rec.why_not_text.isVisible, timeout=5000)
    alt(qtbot, w, "n")
    qtbot.waitUntil(lambda: w.current_page_id() is PageId.METHOD, timeout=5000)

    method = w.page_of(PageId.METHOD)
    qtbot.waitUntil(lambda: bool(method.options), timeout=60000)
    f = settle(qtbot)
    assert f.isVisible() and (f is method.group.checkedButton() or f in (back, cancel))
    letters = mnemonics(w)
    assert len(letters) == len(set(letters)), letters


def verify_wizard(make_wizard, tmp_path: Path) -> UnlockedWizard:
    home = make_home(tmp_path)
    ir = execute_install(plan_install(home, make_backend_folder(tmp_path / "src", name=OURS)), provenance={})
    w = make_wizard(WizardConfig(home=home, log_dir=tmp_path / "logs"))
    w.state.home = resolve_home(home)
    w.state.outcome = InstallOutcome(ir.ident, ir.dest, (Check("ISA audit", True, "fine"),
                                                         Check("Smoke test", None, "not run: no program")))
    w.setStartId(int(PageId.VERIFY))
    return w


def test_verify_and_finish_focus_order_and_alt_n(qtbot, make_wizard, tmp_path: Path) -> None:
    w = verify_wizard(make_wizard, tmp_path)
    shown(qtbot, w)
    verify = w.page_of(PageId.VERIFY)
    nxt, cancel = w.button(WB.NextButton), w.button(WB.CancelButton)
    assert settle(qtbot) is verify.select_check and verify.select_check.isChecked()
    # the folder link of the installed backend is a stop (Enter opens it); the hidden "Check again" is not
    assert tab_cycle(qtbot) == [verify.select_check, nxt, cancel, verify.where]
    letters = mnemonics(w)
    assert len(letters) == len(set(letters)), letters
    alt(qtbot, w, "n")
    qtbot.waitUntil(lambda: w.current_page_id() is PageId.FINISH, timeout=5000)
    assert w.state.selected_in_lmstudio  # Next selected it

    finish = w.page_of(PageId.FINISH)
    finish_button = w.button(WB.FinishButton)
    assert settle(qtbot) is finish_button
    stops = tab_cycle(qtbot)
    assert stops[0] is finish_button and finish.logs_button in stops and finish.body_label in stops
    assert all(s.isVisible() for s in stops)
    letters = mnemonics(w)
    assert len(letters) == len(set(letters)), letters


def test_arrows_choose_the_branch_and_alt_letters_pick_it(qtbot, make_wizard, tmp_path: Path) -> None:
    w = make_wizard(WizardConfig(home=make_home(tmp_path)))
    shown(qtbot, w)
    page = w.page_of(PageId.WELCOME)
    assert settle(qtbot) is page.install_radio
    QTest.keyClick(page.install_radio, Qt.Key.Key_Down)
    qtbot.wait(10)
    assert QApplication.focusWidget() is page.repair_radio
    assert page.repair_radio.isChecked() and w.state.branch is Branch.REPAIR
    alt(qtbot, w, "u")
    qtbot.waitUntil(lambda: w.state.branch is Branch.UNINSTALL, timeout=5000)
    assert page.uninstall_radio.isChecked()
    alt(qtbot, w, "n")
    qtbot.waitUntil(lambda: w.current_page_id() is PageId.UNINSTALL, timeout=5000)
    assert settle(qtbot).isVisible()
    letters = mnemonics(w)
    assert len(letters) == len(set(letters)), letters


def test_no_page_gives_one_letter_to_two_buttons_even_those_shown_later(make_wizard, tmp_path: Path) -> None:
    """Every button a page can show (Try again, Check again, Start LM Studio again…) and the wizard's own."""
    w = make_wizard(WizardConfig(home=make_home(tmp_path)))
    for pid, page in w.pages.items():
        wizard_letters = {"b", "n"} | ({"f"} if pid is PageId.FINISH else set())  # < &Back, &Next >, &Finish
        letters = []
        for b in page.findChildren(QAbstractButton):
            m = re.search(r"&([^&])", b.text())
            if m:
                letters.append(m.group(1).lower())
        if page.isCommitPage():
            letters.append("s")  # &Start
        clash = {x for x in letters if letters.count(x) > 1} | (set(letters) & wizard_letters)
        assert not clash, f"{pid.name}: {sorted(clash)} in {letters}"


def test_alt_n_leaves_the_uninstall_page(qtbot, make_wizard, tmp_path: Path) -> None:
    w = make_wizard(WizardConfig(home=make_home(tmp_path)))
    shown(qtbot, w)
    w.page_of(PageId.WELCOME).uninstall_radio.setChecked(True)
    alt(qtbot, w, "n")
    qtbot.waitUntil(lambda: w.current_page_id() is PageId.UNINSTALL, timeout=5000)
    alt(qtbot, w, "n")
    qtbot.waitUntil(lambda: w.current_page_id() is PageId.FINISH, timeout=5000)
    alt(qtbot, w, "f")
    qtbot.waitUntil(lambda: not w.isVisible(), timeout=5000)
