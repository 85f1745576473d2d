"""The wizard's page flow as one pure function: every page's nextId() asks `next_page(state)`."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum, IntEnum


class PageId(IntEnum):
    """Wizard page ids (QWizard.setPage keys). END (-1) is what QWizard expects after the last page."""

    END = -1
    WELCOME = 0
    HARDWARE = 1
    RECOMMENDATION = 2
    METHOD = 3
    WORK = 4
    VERIFY = 5
    FINISH = 6
    REPAIR = 7
    UNINSTALL = 8


class Branch(Enum):
    INSTALL = "install"
    REPAIR = "repair"
    UNINSTALL = "uninstall"


class Method(Enum):
    """How a backend is obtained, cheapest first."""

    PATCH = "patch"  # edit a copy of an official pack's manifest (seconds, no download)
    DOWNLOAD = "download"  # a prebuilt pack from the catalog
    BUILD = "build"  # llama.cpp from source


# The stages the Work page lists, per method, in the order the core does them. The labels are the
# `Progress.label` values the GUI's job emits, so the stage list and the progress bar speak the same
# words. (The source stage includes applying patches; a download is audited and smoke-tested once
# installed, because the core's obtain step installs right after extracting.)
STAGES: dict[Method, tuple[str, ...]] = {
    Method.PATCH: ("audit", "clone and install"),
    Method.DOWNLOAD: ("download", "verify, extract and install", "audit", "smoke test"),
    Method.BUILD: ("source", "configure", "build", "package", "audit", "smoke test", "install"),
}


@dataclass(frozen=True)
class FlowState:
    """What the flow depends on, and nothing else.

    Args:
        page: the page being left.
        branch: the choice made on the Welcome page.
        official_works: the recommendation says LM Studio's official backend already runs here.
        expert_continue: the user chose to go on although the official backend works.
        has_candidate: the recommendation produced at least one installable variant.
        work_succeeded: the Work page's job finished without error.
        has_lmstudio: LM Studio's folder was found (without it the wizard still probes, recommends and exports a
            report, then ends on how to get LM Studio).
    """

    page: PageId
    branch: Branch = Branch.INSTALL
    official_works: bool = False
    expert_continue: bool = False
    has_candidate: bool = True
    work_succeeded: bool = False
    has_lmstudio: bool = True


def next_page(state: FlowState) -> PageId:
    """The page after `state.page`; PageId.END when the wizard should finish.

    Install: Welcome → Hardware → Recommendation → Method → Work → Install & verify → Finish.
    "You don't need this" (official backend works, user doesn't insist), nothing installable, or no LM Studio
    to install into: Recommendation → Finish. A failed job stays on Work (its page is not complete, so Next is
    disabled); asked anyway, the answer is Work. Repair and Uninstall each have one page, then Finish.
    """
    page = state.page
    if page is PageId.WELCOME:
        return {
            Branch.INSTALL: PageId.HARDWARE,
            Branch.REPAIR: PageId.REPAIR,
            Branch.UNINSTALL: PageId.UNINSTALL,
        }[state.branch]
    if page is PageId.HARDWARE:
        return PageId.RECOMMENDATION
    if page is PageId.RECOMMENDATION:
        if not state.has_lmstudio or not state.has_candidate or (state.official_works and not state.expert_continue):
            return PageId.FINISH
        return PageId.METHOD
    if page is PageId.METHOD:
        return PageId.WORK
    if page is PageId.WORK:
        return PageId.VERIFY if state.work_succeeded else PageId.WORK
    if page in (PageId.VERIFY, PageId.REPAIR, PageId.UNINSTALL):
        return PageId.FINISH
    return PageId.END
