"""Render every page of every branch of the wizard to PNG (offscreen) into docs/screenshots/.

Uses the same inputs as the GUI tests: recorded hardware reports, a temp LM Studio home, a signed
catalog served over loopback HTTP, and the real core. The Work page is shown with a real child
process that talks like Ninja (a real llama.cpp build takes ~20 minutes here).

Usage: QT_QPA_PLATFORM=offscreen .venv/bin/python scripts/screenshots.py [OUT_DIR]
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from PySide6.QtCore import Qt  # noqa: E402
from PySide6.QtWidgets import QApplication, QWizard  # noqa: E402

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
        if not widget.grab().save(str(path)):
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
    w.page_of(PageId.VERIFY).select_button.click()
    s.shot(w, "06b-verify-selected")
    next_page(app, w)
    s.shot(w, "07-finish")
    w.close()

    # Haswell: the official backend works.
    w = wizard(WizardConfig(home=make_home(tmp / "b"), report_file=reports / "haswell.json", log_dir=tmp / "logs"))
    next_page(app, w)
    wait(app, lambda: w.state.report is not None)
    next_page(app, w)
    s.shot(w, "03c-recommendation-not-needed")
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
            wait(app, lambda work=work: "97/226" in work.status.text())
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
    up.remove_button.click()
    s.shot(w, "09b-uninstall-removed")
    next_page(app, w)
    s.shot(w, "09c-finish-uninstall")
    w.close()

    # The names README.md shows.
    for alias, src in README_SHOTS.items():
        shutil.copyfile(out / f"{src}.png", out / f"{alias}.png")
        print(out / f"{alias}.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
