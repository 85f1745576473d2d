"""The wizard's build-from-source branch end to end, on the real core: a real llama.cpp build (the llama-cpp-python
0.3.36 sdist, offline via WizardConfig.source), packaging into a template-like official folder, ISA audit, ABI guard,
smoke test and the transactional install — driven through the pages like a user would.

Stand-in: the "official" LM Studio CPU backend in the temp home is our own AVX2 build of the same commit
(tests/core/builder/realbuild.make_template_folder), because LM Studio's closed binaries cannot be had here.
The build directories are cached in persistent_test_cache()/gui-build, so only the first run pays for the compile.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from app.core.flow import Method, PageId
from app.core.lmstudio.backends import list_backends, read_backend
from app.qt.worker import JobState
from tests.conftest import persistent_test_cache
from tests.core.builder import realbuild
from tests.lmstudio_homes import make_home
from tests.qt.conftest import close_error_dialogs
from tests.qt.test_branches import go_next, start, to_recommendation

pytestmark = pytest.mark.slow


def test_build_branch_builds_packages_smokes_and_installs(qtbot, make_wizard, tmp_path: Path, monkeypatch) -> None:
    template_build = realbuild.build(realbuild.template_plan())
    home = make_home(tmp_path, backends=())  # only the real-binary template below, no text stand-ins
    official = home / "extensions" / "backends" / f"{realbuild.TEMPLATE_NAME}-{realbuild.TEMPLATE_VERSION}"
    realbuild.make_template_folder(official, Path(template_build.bin_dir))
    monkeypatch.setenv("LMS_UNLOCKED_CACHE_DIR", str(persistent_test_cache() / "gui-build"))

    w, _ = start(make_wizard, tmp_path, "ivybridge", home=home, source=realbuild.sdist_path())
    to_recommendation(qtbot, w)
    assert w.state.candidate.variant == "cpu-avx1"
    go_next(qtbot, w, PageId.METHOD)
    method = w.page_of(PageId.METHOD)
    qtbot.waitUntil(lambda: bool(method.options), timeout=120000)
    by = {o.method: o for o in method.options}
    assert by[Method.BUILD].available, by[Method.BUILD]
    # The stand-in official folder is an AVX2 build: patch-only must not be offered as safe for Ivy Bridge.
    assert not (by.get(Method.PATCH) and by[Method.PATCH].available and by[Method.PATCH].safe)
    method.choose(Method.BUILD)
    go_next(qtbot, w, PageId.WORK)
    work = w.page_of(PageId.WORK)
    qtbot.waitUntil(lambda: work.controller.state in (JobState.SUCCEEDED, JobState.FAILED), timeout=1500000)
    assert close_error_dialogs() == [], work.diagnostics()
    assert work.controller.state is JobState.SUCCEEDED, work.diagnostics()

    ours = [b for b in list_backends(home) if b.ours]
    assert [b.ident for b in ours] == [f"llama.cpp-linux-x86_64-avx1-unlocked@{realbuild.TEMPLATE_VERSION}"]
    info = read_backend(ours[0].folder)
    assert tuple(info.ise) == ("AVX",)
    assert read_backend(official).name == realbuild.TEMPLATE_NAME  # the official folder is still there
    go_next(qtbot, w, PageId.VERIFY)
    checks = w.page_of(PageId.VERIFY).checks.text()
    for name in ("ISA audit", "ABI guard", "Smoke test"):
        assert name in checks
    assert "16 tokens" in checks
