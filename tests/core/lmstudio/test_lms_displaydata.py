"""llama_cpp_build on the real 1.48.0 display-data and every release-note wording of docs/lmstudio-contract.md §6.2."""

from __future__ import annotations

import json
from typing import Any

import pytest

from app.core.lmstudio.displaydata import display_name, llama_cpp_build
from tests.lmstudio_homes import WIN_DISPLAY_DATA


@pytest.fixture(scope="module")
def real() -> Any:
    return json.loads(WIN_DISPLAY_DATA.read_text(encoding="utf-8"))


@pytest.mark.parametrize(
    ("version", "tag", "commit"),
    [
        ("1.48.0", "b6275", "e288693"),  # llama.cpp release b6275 (commit e288693)
        ("1.37.1", "b5757", "bf5bcd0"),  # updated to b5757 (commit bf5bcd0)
        ("1.7.0", "b4397", "eb5c3dc6"),  # updated to b4397 (eb5c3dc6)
        ("1.25.1", None, "1466621"),  # updated to commit 1466621
        ("1.1.10", None, "1e7b9299c6ccb5bbc55d3db7cfa9b51f3ab09b59"),  # backticked full hash
        ("1.1.8", None, "b69a480af4db8ffd6cbb2efe7ed8132bc7d39073"),  # hash starting with "b69" is no tag
        ("1.6.0", None, "eb5c3dc6"),  # updated to eb5c3dc6
        ("1.9.0", None, "e6e7c75d"),  # llama.cpp commit e6e7c75d
        ("1.10.0", None, "90d987b"),  # Update llama.cpp to commit 90d987b
    ],
)
def test_real_wordings(real: Any, version: str, tag: str | None, commit: str | None) -> None:
    b = llama_cpp_build(real, version)
    assert (b.tag, b.commit, b.exact, b.warning) == (tag, commit, True, "")


def test_no_llama_line_is_not_guessed_without_fallback(real: Any) -> None:
    # 1.44.0 says "Requires LM Studio version >= 0.3.21-b4": that "b4" is not a build
    b = llama_cpp_build(real, "1.44.0", fallback=False)
    assert (b.tag, b.commit, b.exact) == (None, None, False)
    assert "unknown" in b.warning


def test_fallback_uses_nearest_older_entry_with_warning(real: Any) -> None:
    b = llama_cpp_build(real, "1.44.0")
    assert (b.tag, b.commit, b.exact) == ("b6052", "daf2dd78", False)
    assert "1.43.1" in b.warning
    b = llama_cpp_build(real, "1.9.2")
    assert (b.tag, b.commit, b.exact) == (None, "e6e7c75d", False)


def test_missing_version_entry(real: Any) -> None:
    b = llama_cpp_build(real, "9.9.9", fallback=False)
    assert not b.known and "no release notes for 9.9.9" in b.warning


def test_display_name_prefers_english() -> None:
    dd = [["de", {"displayName": "Deutsch"}], ["en", {"displayName": "English"}]]
    assert display_name(dd) == "English"
    assert display_name("garbage") == ""
    assert llama_cpp_build({"bad": 1}, "1.0.0").tag is None
