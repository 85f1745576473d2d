"""Render every page of every branch of the wizard to PNG (offscreen) into docs/screenshots/.

Uses the same inputs as the GUI tests: recorded hardware reports, a temp LM Studio home, a signed
catalog served over loopback HTTP, and the real core. The Work page is shown with a real child
process that talks like Ninja (a real llama.cpp build takes ~20 minutes here).

Also one page at 150 % (a child process on an offscreen 1366x768 screen with device pixel ratio 1.5, at the size
that screen leaves the window) and pages in the dark colour scheme.

Usage: QT_QPA_PLATFORM=offscreen .venv/bin/python scripts/screenshots.py [OUT_DIR]
       (internal: scripts/screenshots.py OUT_DIR --scaled, run by the above on the 150 % screen)
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from PySide6.QtCore import Qt, QTimer  # noqa: E402
from PySide6.QtGui import QColor, QPalette, QPixmap  # noqa: E402
from PySide6.QtWidgets import QApplication, QMessageBox, QWizard  # noqa: E402

from app.core.flow import Method, PageId  # noqa: E402
from app.qt.errors import ErrorDialog  # noqa: E402
from app.qt.state import WizardConfig  # noqa: E402
from app.qt.wizard import UnlockedWizard  # noqa: E402
from app.qt.worker import JobState  # noqa: E402

SIZE = (860, 640)
README_SHOTS = {
    "welcome": "01-welcome",
    "hardware": "02-hardware",
    "recommend": "03-recommendation",
    "work": "05b-work-build-running",
    "repair": "08-repair-findings",
}


def wait(app: QApplication, cond: Callable[[], bool], timeout: float = 60) -> None:
    t = time.monotonic()
    while not cond():
        if time.monotonic() - t > timeout:
            raise TimeoutError("condition not met")
        app.processEvents()
        time.sleep(0.01)
    for _ in range(5):
        app.processEvents()


class Shooter:
    def __init__(self, app: QApplication, out: Path) -> None:
        self.app, self.out = app, out
        out.mkdir(parents=True, exist_ok=True)

    def shot(self, widget, name: str) -> None:  # type: ignore[no-untyped-def]
        for _ in range(5):
            self.app.processEvents()
        path = self.out / f"{name}.png"
        # Render at the screen's device pixel ratio (150 %: 1.5 physical pixels per logical one).
        dpr = self.app.primaryScreen().devicePixelRatio()
        pm = QPixmap(widget.size() * dpr)
        pm.setDevicePixelRatio(dpr)
        widget.render(pm)
        if not pm.save(str(path)):
            raise OSError(f"could not write {path}")
        print(path)

    def dialogs(self, name: str) -> None:
        for d in QApplication.topLevelWidgets():
            if isinstance(d, ErrorDialog) and d.isVisible():
                d.details_button.setChecked(True)
                d.resize(640, 480)
                self.shot(d, name)
                d.close()


def wizard(cfg: WizardConfig) -> UnlockedWizard:
    w = UnlockedWizard(cfg)
    w.resize(*SIZE)
    w.show()
    return w


def dark_palette() -> QPalette:
    p = QPalette()
    role, c = QPalette.ColorRole, QColor
    for r, col in ((role.Window, c(45, 45, 48)), (role.WindowText, c(230, 230, 230)), (role.Base, c(30, 30, 32)),
                   (role.AlternateBase, c(50, 50, 54)), (role.Text, c(230, 230, 230)), (role.Button, c(60, 60, 64)),
                   (role.ButtonText, c(230, 230, 230)), (role.Highlight, c(53, 132, 228)),
                   (role.HighlightedText, c(255, 255, 255)), (role.Link, c(120, 170, 255)),
                   (role.ToolTipBase, c(60, 60, 64)), (role.ToolTipText, c(230, 230, 230)),
                   (role.PlaceholderText, c(150, 150, 150))):
        p.setColor(r, col)
    p.setColor(QPalette.ColorGroup.Disabled, role.Text, c(130, 130, 130))
    p.setColor(QPalette.ColorGroup.Disabled, role.ButtonText, c(130, 130, 130))
    p.setColor(QPalette.ColorGroup.Disabled, role.WindowText, c(130, 130, 130))
    return p


def answer(text: str) -> None:
    """Click the button `text` of the next question box (confirmations before fixing or removing)."""

    def click() -> None:
        box = QApplication.activeModalWidget()
        if not isinstance(box, QMessageBox):
            QTimer.singleShot(20, click)
            return
        next(b for b in box.buttons() if b.text().replace("&", "") == text).click()

    QTimer.singleShot(0, click)


def next_page(app: QApplication, w: UnlockedWizard) -> None:
    def enabled() -> bool:
        which = QWizard.WizardButton.CommitButton if w.currentPage().isCommitPage() else QWizard.WizardButton.NextButton
        return w.button(which).isEnabled()

    wait(app, enabled)
    w.next()


def main() -> int:
    from app.core.fetch.publish import publish
    from app.core.lmstudio.install import execute_install, plan_install
    from app.qt.jobs import plans_job
    from tests.conftest import FIXTURES
    from tests.core.fetch.backend_folder import make_backend_folder
    from tests.httpserver import LocalHTTPServer
    from tests.lmstudio_homes import make_home
    from tests.qt.conftest import ninja_plan

    out = Path(sys.argv[1]) if len(sys.argv) > 1 else REPO / "docs" / "screenshots"
    app = QApplication.instance() or QApplication(sys.argv[:1])
    s = Shooter(app, out)
    reports = FIXTURES / "reports"
    tmp = Path(tempfile.mkdtemp(prefix="lms-shots-"))
    os.environ["LMS_UNLOCKED_DATA_DIR"] = str(tmp / "data")
    os.environ["LMS_UNLOCKED_LOG_DIR"] = str(tmp / "logs")
    os.environ["LMS_UNLOCKED_CACHE_DIR"] = str(tmp / "cache")
    ours = "llama.cpp-linux-x86_64-vulkan-avx1-unlocked"

    # Install branch: Ivy Bridge + GTX 770 (Kepler), prebuilt pack from a signed catalog over loopback HTTP.
    home = make_home(tmp / "a")
    key = FIXTURES / "TEST-ONLY-catalog-signing.key"
    publish(make_backend_folder(tmp / "src", name=ours), tmp / "catalog", key_path=key)
    with LocalHTTPServer() as srv:
        srv.add_dir(tmp / "catalog", "/c")
        w = wizard(WizardConfig(home=home, report_file=reports / "ivybridge-gtx770.json", log_dir=tmp / "logs",
                                catalog_url=srv.url("/c/catalog.json"),
                                catalog_public_key=FIXTURES / "TEST-ONLY-catalog-signing.pub"))
        s.shot(w, "01-welcome")
        next_page(app, w)
        wait(app, lambda: w.state.report is not None)
        s.shot(w, "02-hardware")
        hw = w.page_of(PageId.HARDWARE)
        hw.avx2_button.setChecked(True)
        hw.details_button.setChecked(True)
        s.shot(w, "02b-hardware-details")
        hw.avx2_button.setChecked(False)
        hw.details_button.setChecked(False)
        next_page(app, w)
        s.shot(w, "03-recommendation")
        rec = w.page_of(PageId.RECOMMENDATION)
        rec.why_not_button.setChecked(True)
        s.shot(w, "03b-recommendation-why-not")
        rec.why_not_button.setChecked(False)
        next_page(app, w)
        method = w.page_of(PageId.METHOD)
        wait(app, lambda: bool(method.options))
        s.shot(w, "04-method")
        method.choose(Method.DOWNLOAD)
        next_page(app, w)
        work = w.page_of(PageId.WORK)
        wait(app, lambda: work.controller.state in (JobState.SUCCEEDED, JobState.FAILED))
        s.shot(w, "05-work-download-done")
        s.dialogs("05x-unexpected-error")
    next_page(app, w)
    s.shot(w, "06-verify")
    next_page(app, w)  # the ticked box selects the backend on Next
    s.shot(w, "07-finish")
    w.close()

    # Haswell: the official backend works.
    w = wizard(WizardConfig(home=make_home(tmp / "b"), report_file=reports / "haswell.json", log_dir=tmp / "logs"))
    next_page(app, w)
    wait(app, lambda: w.state.report is not None)
    next_page(app, w)
    s.shot(w, "03c-recommendation-not-needed")
    next_page(app, w)
    s.shot(w, "07b-finish-all-set")
    w.close()

    # No LM Studio on this computer: probe, recommend, export a report, and how to get LM Studio.
    w = wizard(WizardConfig(home=tmp / "no-lmstudio", report_file=reports / "ivybridge-gtx770.json",
                            log_dir=tmp / "logs"))
    s.shot(w, "01b-welcome-no-lmstudio")
    w.close()

    # Westmere: no AVX at all; the method page with a build's prerequisites.
    w = wizard(WizardConfig(home=make_home(tmp / "c"), report_file=reports / "westmere.json", log_dir=tmp / "logs"))
    next_page(app, w)
    wait(app, lambda: w.state.report is not None)
    s.shot(w, "02c-hardware-westmere")
    next_page(app, w)
    s.shot(w, "03d-recommendation-westmere")
    next_page(app, w)
    wait(app, lambda: bool(w.page_of(PageId.METHOD).options))
    s.shot(w, "04b-method-westmere")
    for d in QApplication.topLevelWidgets():
        if isinstance(d, ErrorDialog):
            d.close()
    w.close()

    # Work page during a build and after a failed one (a real child process talking like Ninja).
    for name, plans in (
        ("05b-work-build-running", [ninja_plan(3, label="source"), ninja_plan(2, label="configure"),
                                    ninja_plan(226, "--hang-at", "97", "--delay", "0.01", label="build")]),
        ("05c-work-build-failed", [ninja_plan(3, label="source"), ninja_plan(226, "--fail-at", "131", label="build")]),
    ):
        w = wizard(WizardConfig(home=home, log_dir=tmp / "logs", job_factory=lambda _st, p=plans: plans_job(p)))
        w.state.method = Method.BUILD
        w.setStartId(int(PageId.WORK))
        w.restart()
        work = w.page_of(PageId.WORK)
        if "running" in name:
            wait(app, lambda work=work: "97 of 226 steps" in work.status.text())
            time.sleep(0.3)
            s.shot(w, name)
            w.closing = True
            w.cancel_and_wait()
        else:
            wait(app, lambda work=work: work.controller.state is JobState.FAILED)
            s.shot(w, name)
            s.dialogs("05d-error-dialog")
        w.close()

    # Repair: a manifest with a BOM in one of our backends.
    home = make_home(tmp / "d")
    ir = execute_install(plan_install(home, make_backend_folder(tmp / "src2", name=ours)), provenance={})
    m = ir.dest / "backend-manifest.json"
    m.write_bytes(b"\xef\xbb\xbf" + m.read_bytes())
    w = wizard(WizardConfig(home=home, report_file=reports / "ivybridge-gtx770.json", log_dir=tmp / "logs"))
    w.page_of(PageId.WELCOME).repair_radio.setChecked(True)
    next_page(app, w)
    rp = w.page_of(PageId.REPAIR)
    wait(app, lambda: not rp.busy() and bool(rp.findings))
    s.shot(w, "08-repair-findings")
    answer("Apply fixes")
    rp.fix_button.click()
    wait(app, lambda: "Before:" in rp.before_after.text())
    s.shot(w, "08b-repair-after")
    w.close()

    # Uninstall.
    w = wizard(WizardConfig(home=home, log_dir=tmp / "logs"))
    w.page_of(PageId.WELCOME).uninstall_radio.setChecked(True)
    next_page(app, w)
    up = w.page_of(PageId.UNINSTALL)
    if up.tree.topLevelItemCount():
        up.tree.topLevelItem(0).setCheckState(0, Qt.CheckState.Checked)
    s.shot(w, "09-uninstall")
    answer("Remove")
    up.remove_button.click()
    s.shot(w, "09b-uninstall-removed")
    next_page(app, w)
    s.shot(w, "09c-finish-uninstall")
    w.close()

    # A dark desktop: the palette a dark theme hands Qt (the offscreen platform has no theme of its own).
    app.setStyle("Fusion")
    app.setPalette(dark_palette())
    w = wizard(WizardConfig(home=make_home(tmp / "e"), report_file=reports / "ivybridge-gtx770.json",
                            log_dir=tmp / "logs"))
    next_page(app, w)
    wait(app, lambda: w.state.report is not None)
    next_page(app, w)
    s.shot(w, "10-recommendation-dark")
    w.close()

    scaled(out)

    # The names README.md shows.
    for alias, src in README_SHOTS.items():
        shutil.copyfile(out / f"{src}.png", out / f"{alias}.png")
        print(out / f"{alias}.png")
    return 0


def scaled(out: Path) -> None:
    """The Method page at 150 % on 1366x768, rendered by a child process on such a screen."""
    from tests.qt.fit import SCREEN_150

    cfg = Path(tempfile.mkdtemp(prefix="lms-shots-screen-")) / "screen.json"
    cfg.write_text(json.dumps({"screens": [{"name": "laptop", "x": 0, "y": 0, "width": SCREEN_150[0],
                                            "height": SCREEN_150[1], "logicalDpi": 96, "logicalBaseDpi": 96,
                                            "dpr": 1.5}]}))
    env = dict(os.environ, QT_QPA_PLATFORM=f"offscreen:configfile={cfg}")
    subprocess.run([sys.executable, __file__, str(out), "--scaled"], env=env, check=True)


def main_scaled(out: Path) -> int:
    """Runs on the 150 % screen: the window at the size it opens with there (fit_to_screen), Westmere's Method page
    (the tallest: three ways, each with what it needs)."""
    from tests.conftest import FIXTURES
    from tests.lmstudio_homes import make_home

    app = QApplication.instance() or QApplication(sys.argv[:1])
    s = Shooter(app, out)
    tmp = Path(tempfile.mkdtemp(prefix="lms-shots-150-"))
    os.environ["LMS_UNLOCKED_CACHE_DIR"] = str(tmp / "cache")
    w = UnlockedWizard(WizardConfig(home=make_home(tmp), report_file=FIXTURES / "reports" / "westmere.json",
                                    log_dir=tmp / "logs"))
    w.show()  # sized by the wizard itself for this screen
    next_page(app, w)
    wait(app, lambda: w.state.report is not None)
    next_page(app, w)
    next_page(app, w)
    wait(app, lambda: bool(w.page_of(PageId.METHOD).options))
    for d in QApplication.topLevelWidgets():
        if isinstance(d, ErrorDialog):
            d.close()
    s.shot(w, "11-method-150-percent")
    return 0


if __name__ == "__main__":
    if "--scaled" in sys.argv:
        sys.exit(main_scaled(Path(sys.argv[1])))
    sys.exit(main())
