"""The wizard flow, tested without Qt: every branch, skipped pages, and the dead ends."""

from __future__ import annotations

import pytest

from app.core.flow import STAGES, Branch, FlowState, Method, PageId, next_page


def walk(**kw: object) -> list[PageId]:
    """Follow next_page from Welcome to END with fixed answers; returns the pages visited."""
    pages = [PageId.WELCOME]
    while pages[-1] is not PageId.END:
        nxt = next_page(FlowState(page=pages[-1], **kw))  # type: ignore[arg-type]
        assert nxt not in pages, f"loop at {pages}"
        pages.append(nxt)
    return pages[:-1]


def test_install_branch_full() -> None:
    assert walk(branch=Branch.INSTALL, work_succeeded=True) == [
        PageId.WELCOME,
        PageId.HARDWARE,
        PageId.RECOMMENDATION,
        PageId.METHOD,
        PageId.WORK,
        PageId.VERIFY,
        PageId.FINISH,
    ]


def test_official_works_skips_to_finish_unless_expert_continues() -> None:
    assert walk(branch=Branch.INSTALL, official_works=True) == [
        PageId.WELCOME,
        PageId.HARDWARE,
        PageId.RECOMMENDATION,
        PageId.FINISH,
    ]
    assert PageId.METHOD in walk(branch=Branch.INSTALL, official_works=True, expert_continue=True, work_succeeded=True)


def test_no_candidate_goes_to_finish() -> None:
    state = FlowState(page=PageId.RECOMMENDATION, has_candidate=False, expert_continue=True)
    assert next_page(state) is PageId.FINISH


def test_failed_work_does_not_advance() -> None:
    assert next_page(FlowState(page=PageId.WORK, work_succeeded=False)) is PageId.WORK
    assert next_page(FlowState(page=PageId.WORK, work_succeeded=True)) is PageId.VERIFY


@pytest.mark.parametrize(
    ("branch", "page"), [(Branch.REPAIR, PageId.REPAIR), (Branch.UNINSTALL, PageId.UNINSTALL)]
)
def test_repair_and_uninstall_are_one_page_then_finish(branch: Branch, page: PageId) -> None:
    assert walk(branch=branch) == [PageId.WELCOME, page, PageId.FINISH]


def test_every_page_has_an_answer_and_finish_ends() -> None:
    for page in PageId:
        for branch in Branch:
            assert isinstance(next_page(FlowState(page=page, branch=branch)), PageId)
    assert next_page(FlowState(page=PageId.FINISH)) is PageId.END


def test_every_method_audits_and_build_installs_last() -> None:
    for method in Method:
        assert "audit" in STAGES[method]
        assert len(set(STAGES[method])) == len(STAGES[method])
    assert STAGES[Method.BUILD] == ("source", "configure", "build", "package", "audit", "smoke test", "install")
