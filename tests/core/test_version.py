"""app.core.version: every version form seen in docs/lmstudio-contract.md, parsed and ordered by one type."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from app.core.version import BadVersion, Version, is_commit, is_llama_tag, version_key

CONTRACT = Path(__file__).resolve().parents[2] / "docs" / "lmstudio-contract.md"

# Every form the contract shows (engine versions, suffixed community versions, app versions with a beta or a
# build number, NVIDIA driver versions, llama.cpp tags).
FORMS = {
    "1.48.0": ((1, 48, 0), "", ""),
    "2.14.0": ((2, 14, 0), "", ""),
    "1.103.2": ((1, 103, 2), "", ""),
    "2.10.0-qades": ((2, 10, 0), "qades", ""),
    "0.16.0-rc3": ((0, 16, 0), "rc3", ""),
    "2.16.0-patched": ((2, 16, 0), "patched", ""),
    "0.3.21-b4": ((0, 3, 21), "b4", ""),
    "2.14.0-b4": ((2, 14, 0), "b4", ""),
    "0.4.0+15": ((0, 4, 0), "", "15"),
    "0.0.1+9": ((0, 0, 1), "", "9"),
    "470.82.01": ((470, 82, 1), "", ""),
    "12.4": ((12, 4), "", ""),
}


@pytest.mark.parametrize("text", sorted(FORMS))
def test_parses_every_form(text: str) -> None:
    v = Version.parse(text)
    assert (v.release, v.pre, v.build) == FORMS[text]
    assert str(v) == text and not v.llama_tag


def test_llama_tags_and_commits() -> None:
    for tag, n in (("b6275", 6275), ("b8861", 8861), ("b5757", 5757), ("b4397", 4397), ("b10662", 10662)):
        v = Version.parse(tag)
        assert v.llama_tag and v.build_number == n and is_llama_tag(tag)
    assert Version.parse("b6275") < Version.parse("b8861") < Version.parse("b10662")
    for commit in ("e288693", "bf5bcd0", "1466621", "eb5c3dc6", "1e7b9299c6cc", "549b9d8"):
        assert is_commit(commit) and not is_llama_tag(commit)
    assert not is_commit("b6275") and not is_commit("E288693") and not is_commit("e28869")
    with pytest.raises(TypeError):
        _ = Version.parse("b6275") < Version.parse("2.14.0")


def test_order() -> None:
    ordered = ["0.3.21-b4", "0.3.21", "0.4.0", "0.4.0+14", "0.4.0+15", "0.4.0+16", "0.16.0-rc3", "0.16.0",
               "1.9.0", "1.48.0", "1.103.0", "2.10.0-qades", "2.10.0", "2.14.0-b4", "2.14.0", "2.16.0-patched",
               "2.16.0"]
    vs = [Version.parse(t) for t in ordered]
    assert sorted(reversed(vs)) == vs
    assert [str(v) for v in sorted(vs[::-1])] == ordered
    # beta numbers compare as numbers, missing release parts as zero
    assert Version.parse("2.14.0-b4") < Version.parse("2.14.0-b10") < Version.parse("2.14.0")
    assert Version.parse("1.2") == Version.parse("1.2.0") and hash(Version.parse("1.2")) == hash(Version.parse("1.2.0"))
    assert Version.parse("470.82.01") < Version.parse("525.60.13") and Version.parse("470.82.01").major == 470


@pytest.mark.parametrize("bad", ["", "abc", "1..2", "1.2.", "-1.2", "1.2.0-", "1.2.0+", "e288693", "2.14.0 beta"])
def test_rejects_what_is_not_a_version(bad: str) -> None:
    with pytest.raises(BadVersion):
        Version.parse(bad)
    assert Version.parse_or_none(bad) is None


def test_version_key_sorts_broken_versions_first_without_raising() -> None:
    got = sorted(["2.14.0", "b10662", "not-a-version", "1.48.0", "b6275", "2.14.0-b4"], key=version_key)
    assert got == ["not-a-version", "1.48.0", "2.14.0-b4", "2.14.0", "b6275", "b10662"]


def test_every_version_in_the_contract_parses() -> None:
    """Each dotted version and each bNNNN tag written in the contract document is read by this one type."""
    text = CONTRACT.read_text(encoding="utf-8")
    found = set(re.findall(r"(?<![\w.])\d+\.\d+\.\d+(?:-[0-9A-Za-z]+)?(?:\+\d+)?(?![\w.])", text))
    found |= set(re.findall(r"(?<![\w-])b\d{4,5}(?![\w])", text))
    assert {"1.48.0", "2.14.0", "0.4.0+15", "2.10.0-qades", "0.16.0-rc3", "b6275"} <= found
    for t in found:
        Version.parse(t)


def test_the_app_version_check_uses_it(tmp_path: Path) -> None:
    """judge: a beta before the minimum release, and build numbers after the plain release (the old digit-tuple
    parser read "0.4.0-b4" as newer than "0.4.0")."""
    from app.core.lmstudio.backends import BackendInfo
    from app.core.lmstudio.judge import judge_backend

    info = BackendInfo(folder=tmp_path, name="llama.cpp-linux-x86_64-avx2", version="2.14.0",
                       minimum_lmstudio_version="0.4.0+15")
    for app_version, too_old in (("0.4.0-b4", True), ("0.4.0", True), ("0.4.0+14", True), ("0.4.0+15", False),
                                 ("0.4.1-b1", False), ("0.3.31", True), ("not a version", False)):
        status = judge_backend(info, None, app_version=app_version).status
        assert (status == "incompatibleAppVersion") == too_old, app_version


def test_release_notes_fallback_uses_it() -> None:
    """display-data: the fallback entry is the newest one older than the version (a pre-release is older)."""
    from app.core.lmstudio.displaydata import llama_cpp_build

    notes = [["en", {"releaseNotes": [
        {"version": "2.14.0-b4", "releaseNotes": "- llama.cpp release b8800 (commit aaaaaaa)"},
        {"version": "2.9.0", "releaseNotes": "- llama.cpp release b8000 (commit bbbbbbb)"},
        {"version": "2.14.0", "releaseNotes": "- nothing about the build"},
    ]}]]
    got = llama_cpp_build(notes, "2.14.0")
    assert (got.tag, got.exact) == ("b8800", False) and "2.14.0-b4" in got.warning
    assert llama_cpp_build(notes, "2.10.0").tag == "b8000"  # 2.9.0 < 2.10.0 (not a string compare)
