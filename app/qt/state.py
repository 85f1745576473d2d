"""The wizard's rich state (one dataclass owned by the wizard) and its configuration."""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

from app.core.errors import UnlockedError
from app.core.flow import Branch, FlowState, Method, PageId
from app.core.hardware.report import HardwareReport


class CoreMissing(UnlockedError):
    """A part of the core this page needs is not in this build."""

    code = "core-missing"


def core(module: str) -> ModuleType:
    """Import a core module, turning its absence into a clear error instead of a crash or a fake result."""
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as exc:
        if exc.name and module.startswith(exc.name):
            raise CoreMissing(
                f"This build does not include {module}.",
                context="The wizard step needs a part of the core that is not available.",
                hint="Use the command line (lms-unlocked --help) or a newer build.",
            ) from exc
        raise


@dataclass
class WizardConfig:
    """How the wizard is wired; tests and the screenshot script set these, a user gets the defaults.

    Args:
        home: LM Studio home to use instead of resolving it (like --home).
        report_file: a saved hardware report (probe --json) instead of probing this machine.
        catalog_url: where the backend catalog is (None: $LMS_UNLOCKED_CATALOG or the built-in catalog).
        catalog_public_key: trust this ed25519 key for the catalog instead of the shipped one.
        job_factory: builds the Work page's job from the state (None: the real install job).
        log_dir: where job logs go (None: the per-user log dir).
        source: an offline llama.cpp source folder or archive for the build method (like `build --source`;
            None: $LMS_UNLOCKED_LLAMA_SOURCE, else the tag archive is downloaded).
    """

    home: Path | None = None
    report_file: Path | None = None
    catalog_url: str | None = None
    catalog_public_key: Path | None = None
    job_factory: Callable[[WizardState], Callable[..., Any]] | None = None
    log_dir: Path | None = None
    source: Path | None = None

    def build_source(self) -> Path | None:
        if self.source is not None:
            return self.source
        env = os.environ.get("LMS_UNLOCKED_LLAMA_SOURCE")
        return Path(env) if env else None


@dataclass
class WizardState:
    branch: Branch = Branch.INSTALL
    home: Any = None  # app.core.lmstudio.home.LmsHome
    report: HardwareReport | None = None
    recommendation: Any = None  # app.core.recommend.Recommendation
    candidate: Any = None  # the chosen Recommendation candidate
    expert_continue: bool = False
    method: Method | None = None
    method_options: list[Any] = field(default_factory=list)
    work_succeeded: bool = False
    outcome: Any = None  # what the Work page's job returned
    log_path: Path | None = None
    selected_in_lmstudio: bool = False
    repair_summary: str = ""
    uninstall_summary: str = ""

    @property
    def official_works(self) -> bool:
        return bool(getattr(self.recommendation, "official_supported", False))

    @property
    def has_candidate(self) -> bool:
        return bool(getattr(self.recommendation, "candidates", ()))

    def flow(self, page: PageId) -> FlowState:
        return FlowState(
            page=page,
            branch=self.branch,
            official_works=self.official_works,
            expert_continue=self.expert_continue,
            has_candidate=self.has_candidate,
            work_succeeded=self.work_succeeded,
        )
