"""The wizard's rich state (one dataclass owned by the wizard) and its configuration."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from app.core.errors import UnlockedError
from app.core.flow import Branch, FlowState, Method, PageId
from app.core.hardware.report import HardwareReport
from app.core.lmstudio.home import LmsHome
from app.core.recommend import Candidate, Recommendation

T = TypeVar("T")


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


def _known(value: T | None, what: str, page: str) -> T:
    """`value`, or a clear error naming the wizard page that sets it (never an AttributeError on None)."""
    if value is None:
        raise UnlockedError(f"{what} is not known yet.", hint=f"Go back to {page}.")
    return value


@dataclass
class WizardState:
    branch: Branch = Branch.INSTALL
    home: LmsHome | None = None
    report: HardwareReport | None = None
    recommendation: Recommendation | None = None
    candidate: Candidate | None = None  # the chosen one of recommendation.candidates
    expert_continue: bool = False
    method: Method | None = None
    method_options: list[Any] = field(default_factory=list)
    work_succeeded: bool = False
    outcome: Any = None  # what the Work page's job returned
    log_path: Path | None = None
    selected_in_lmstudio: bool = False
    repair_summary: str = ""
    uninstall_summary: str = ""

    def require_home(self) -> LmsHome:
        """LM Studio's home; the Welcome page sets it before any page that needs it."""
        return _known(self.home, "LM Studio's home folder", "the first page, and choose LM Studio's home folder")

    def require_report(self) -> HardwareReport:
        """The hardware report; the Hardware page sets it."""
        return _known(self.report, "This computer's hardware", "the Hardware page")

    def require_candidate(self) -> Candidate:
        """The backend chosen on the Recommendation page."""
        return _known(self.candidate, "The backend to install", "the Recommendation page, and choose one")

    @property
    def official_works(self) -> bool:
        return self.recommendation is not None and self.recommendation.official_supported

    @property
    def has_lmstudio(self) -> bool:
        return bool(self.home is not None and getattr(self.home, "exists", False))

    @property
    def has_candidate(self) -> bool:
        return self.recommendation is not None and bool(self.recommendation.candidates)

    def flow(self, page: PageId) -> FlowState:
        return FlowState(
            page=page,
            branch=self.branch,
            official_works=self.official_works,
            expert_continue=self.expert_continue,
            has_candidate=self.has_candidate,
            work_succeeded=self.work_succeeded,
            has_lmstudio=self.has_lmstudio,
        )
