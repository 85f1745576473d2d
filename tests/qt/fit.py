"""Does every page fit a small screen? Walks the wizard's pages at a given window size and lists every button
that is outside the window (or, inside a page, cannot be scrolled into view).

Used in-process by tests/qt/test_fit.py (logical pixels) and, as a script, in a child process on Qt's offscreen
platform configured as a 1366x768 screen at 150 % (device pixel ratio 1.5):

    python -m tests.qt.fit OUT_JSON WIDTH HEIGHT
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from PySide6.QtCore import QRect
from PySide6.QtWidgets import QAbstractButton, QApplication, QWidget, QWizard

from app.core.flow import Method, PageId
from app.core.lmstudio.home import resolve_home
from app.core.lmstudio.install import execute_install, plan_install
from app.qt.jobs import Check, InstallOutcome, plans_job
from app.qt.state import WizardConfig
from app.qt.wizard import UnlockedWizard
from tests.conftest import FIXTURES
from tests.core.fetch.backend_folder import make_backend_folder
from tests.lmstudio_homes import make_home

OURS = "llama.cpp-linux-x86_64-vulkan-avx1-unlocked"
# 1366x768 at 150 % is 911x512 logical pixels; a 48-pixel taskbar takes 32 of them and the title bar ~30.
SCREEN_150 = (911, 512)
WINDOW_150 = (911, 512 - 32 - 30)


def _rect_in(w: QWidget, top: QWidget) -> QRect:
    return QRect(w.mapTo(top, w.rect().topLeft()), w.size())


def outside(wiz: UnlockedWizard) -> list[str]:
    """Buttons of the current page and of the wizard that the user cannot see or reach, as readable lines."""
    bad = []
    frame = wiz.rect()
    for which in QWizard.WizardButton:
        b = wiz.button(which) if which.value < 10 else None
        if b is not None and b.isVisible() and not frame.contains(_rect_in(b, wiz)):
            bad.append(f"{wiz.current_page_id().name}: wizard button {b.text()!r} at {_rect_in(b, wiz)} not in {frame}")
    page = wiz.pages[wiz.current_page_id()]
    viewport = page.scroller.viewport()
    for _ in range(5):  # let the layouts settle (cards added by a background call)
        QApplication.processEvents()
    for b in page.findChildren(QAbstractButton):
        if not b.isVisible():
            continue
        page.scroller.ensureWidgetVisible(b, 0, 0)
        QApplication.processEvents()
        r, view = _rect_in(b, wiz), _rect_in(viewport, wiz)
        if not (view.contains(r) and frame.contains(r)):
            bad.append(f"{page.page_id.name}: {b.text()!r} at {r}, visible area {view}")
    return bad


def _wait(cond: Callable[[], bool], timeout: float = 60) -> None:
    t = time.monotonic()
    while not cond():
        if time.monotonic() - t > timeout:
            raise TimeoutError("condition not met")
        QApplication.processEvents()
        time.sleep(0.01)


def walk(make: Callable[[WizardConfig], UnlockedWizard], tmp: Path, size: tuple[int, int]) -> Iterator[str]:
    """Show every page (most of them in their tallest state) at `size`; yields a line per unreachable button."""
    reports = FIXTURES / "reports"

    def show(w: UnlockedWizard) -> UnlockedWizard:
        w.resize(*size)
        w.show()
        QApplication.processEvents()
        return w

    # Install branch on Westmere (no AVX): every method card with its needs, the hardware details open.
    home = make_home(tmp / "a")
    w = show(make(WizardConfig(home=home, report_file=reports / "westmere.json", log_dir=tmp / "logs")))
    yield from outside(w)
    w.next()
    _wait(lambda: w.state.report is not None)
    hw = w.pages[PageId.HARDWARE]
    hw.details_button.setChecked(True)
    hw.avx2_button.setChecked(True)
    yield from outside(w)
    w.next()
    w.pages[PageId.RECOMMENDATION].why_not_button.setChecked(True)
    yield from outside(w)
    w.next()
    _wait(lambda: bool(w.pages[PageId.METHOD].options))
    yield from outside(w)
    w.close()

    # Work: a real child process talking like Ninja, failed (Try again, Open log, ... all shown).
    from tests.qt.conftest import ninja_plan

    plans = [ninja_plan(20, "--fail-at", "3", label="build")]
    w = make(WizardConfig(home=home, log_dir=tmp / "logs", job_factory=lambda _st: plans_job(plans)))
    w.state.method = Method.BUILD
    w.setStartId(int(PageId.WORK))
    show(w)
    _wait(lambda: not w.pages[PageId.WORK].is_running())
    for d in QApplication.topLevelWidgets():
        if d is not w and d.isVisible():
            d.close()
    yield from outside(w)
    w.close()

    # Verify and Finish after an install.
    ir = execute_install(plan_install(home, make_backend_folder(tmp / "src", name=OURS)), provenance={})
    w = make(WizardConfig(home=home, log_dir=tmp / "logs"))
    w.state.home = resolve_home(home)
    w.state.outcome = InstallOutcome(ir.ident, ir.dest, (Check("ISA audit", True, "fine"),
                                                         Check("Smoke test", None, "not run")))
    w.state.work_succeeded = True
    w.setStartId(int(PageId.VERIFY))
    show(w)
    yield from outside(w)
    w.pages[PageId.VERIFY].select_check.setChecked(False)
    w.next()
    yield from outside(w)
    w.close()

    # Repair with findings (a BOM in our manifest), and Uninstall.
    m = ir.dest / "backend-manifest.json"
    m.write_bytes(b"\xef\xbb\xbf" + m.read_bytes())
    w = show(make(WizardConfig(home=home, report_file=reports / "ivybridge-gtx770.json", log_dir=tmp / "logs")))
    w.pages[PageId.WELCOME].repair_radio.setChecked(True)
    w.next()
    rp = w.pages[PageId.REPAIR]
    _wait(lambda: not rp.busy() and bool(rp.findings))
    yield from outside(w)
    w.close()
    w = show(make(WizardConfig(home=home, log_dir=tmp / "logs")))
    w.pages[PageId.WELCOME].uninstall_radio.setChecked(True)
    w.next()
    yield from outside(w)
    w.close()


def main(argv: list[str]) -> int:
    out, width, height = Path(argv[0]), int(argv[1]), int(argv[2])
    app = QApplication.instance() or QApplication(["fit"])
    screen = app.primaryScreen()
    made: list[UnlockedWizard] = []

    def make(cfg: WizardConfig) -> UnlockedWizard:
        made.append(UnlockedWizard(cfg))
        return made[-1]

    with tempfile.TemporaryDirectory() as tmp:
        bad = list(walk(make, Path(tmp), (width, height)))
        first = made[0]
        result = {
            "screen": [screen.geometry().width(), screen.geometry().height()],
            "dpr": screen.devicePixelRatio(),
            "minimum": [first.minimumSizeHint().width(), first.minimumSizeHint().height(),
                        first.minimumWidth(), first.minimumHeight()],
            "outside": bad,
        }
        for w in made:
            w.closing = True
            w.cancel_and_wait()
    out.write_text(json.dumps(result), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
