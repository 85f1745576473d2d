"""WizardState's typed accessors: a page reached without what an earlier page sets gets a clear error."""

from __future__ import annotations

import pytest

from app.core.errors import UnlockedError
from app.core.flow import Method
from app.qt.jobs import method_options
from app.qt.state import WizardConfig, WizardState


@pytest.mark.parametrize(("accessor", "page"), [
    ("require_home", "first page"), ("require_report", "Hardware page"), ("require_candidate", "Recommendation"),
])
def test_missing_state_is_a_clear_error(accessor: str, page: str) -> None:
    with pytest.raises(UnlockedError) as info:
        getattr(WizardState(), accessor)()
    assert "is not known yet" in info.value.message and page in info.value.hint


def test_method_options_without_a_home_are_unavailable_not_a_crash() -> None:
    """Every method is answered (unavailable, with the reason), none raises an AttributeError on None."""
    options = method_options(WizardState(), WizardConfig())
    assert [o.method for o in options] == [Method.PATCH, Method.DOWNLOAD, Method.BUILD]
    assert not any(o.available for o in options)
    assert all("is not known yet" in o.note for o in options), [o.note for o in options]
