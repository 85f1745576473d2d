"""One version type for every version the app compares (docs/lmstudio-contract.md §5.1, §6.2, §17).

Forms it reads, all seen in real LM Studio data or the community:

* engine versions: ``1.48.0``, ``2.14.0``; suffixed community ones ``2.10.0-qades``, ``0.16.0-rc3``,
  ``2.16.0-patched`` (a pre-release in semver terms: before ``2.16.0``);
* LM Studio app versions: ``0.3.21-b4`` (beta 4, before ``0.3.21``), ``0.4.0+15`` (build 15 of 0.4.0: after
  ``0.4.0+14`` and after a plain ``0.4.0``, which is how ``minimum_lmstudio_version`` is compared);
* NVIDIA driver and toolkit versions: ``470.82.01``, ``12.4``;
* llama.cpp release tags: ``b6275`` (the build number; tags compare only with tags).

A llama.cpp commit (``e288693``, a full hash) is not a version: :func:`is_commit` tells one apart, and nothing
orders commits.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import total_ordering

from app.core.errors import UnlockedError

_VERSION_RE = re.compile(
    r"v?(?P<release>\d+(?:\.\d+)*)"
    r"(?:-(?P<pre>[0-9A-Za-z]+(?:[.-][0-9A-Za-z]+)*))?"
    r"(?:\+(?P<build>[0-9A-Za-z]+(?:\.[0-9A-Za-z]+)*))?"
)
_TAG_RE = re.compile(r"b(?P<n>\d{1,6})")
_COMMIT_RE = re.compile(r"[0-9a-f]{7,40}")
_PART_RE = re.compile(r"\d+|[A-Za-z]+")


class BadVersion(UnlockedError):
    """A text that is not a version in any form this app knows."""

    code = "bad-version"


def _ident_key(ident: str) -> tuple[tuple[int, int | str], ...]:
    """'rc3' -> ((1, 'rc'), (0, 3)); numbers sort before words, as semver orders pre-release identifiers."""
    return tuple((0, int(p)) if p.isdigit() else (1, p.lower()) for p in _PART_RE.findall(ident))


@total_ordering
@dataclass(frozen=True, eq=False)
class Version:
    """A parsed version; compare and sort these, never strings or ad-hoc tuples.

    Order: the release numbers (missing ones count as 0: ``1.2 == 1.2.0``), then a pre-release sorts before the
    release itself (``2.14.0-b4 < 2.14.0``), then a build suffix sorts after it (``0.4.0 < 0.4.0+15 < 0.4.0+16``).
    A llama.cpp tag (``b6275``) only compares with another tag.
    """

    text: str
    release: tuple[int, ...]
    pre: str = ""
    build: str = ""
    llama_tag: bool = False
    _key: tuple[object, ...] = field(default=(), repr=False)

    @classmethod
    def parse(cls, text: str) -> Version:
        """Parse any form above; raises BadVersion for anything else (never guesses)."""
        s = str(text).strip()
        m = _TAG_RE.fullmatch(s)
        if m:
            n = int(m.group("n"))
            return cls(s, (n,), llama_tag=True, _key=(1, (n,), (), ()))
        m = _VERSION_RE.fullmatch(s)
        if not m:
            raise BadVersion(f"{text!r} is not a version.",
                             hint="Expected numbers with dots (2.14.0), optionally -suffix or +build, or a "
                                  "llama.cpp tag (b6275).")
        release = tuple(int(x) for x in m.group("release").split("."))
        pre, build = m.group("pre") or "", m.group("build") or ""
        trimmed = list(release)
        while len(trimmed) > 1 and trimmed[-1] == 0:
            trimmed.pop()
        pre_key = (0, _ident_key(pre)) if pre else (1, ())
        build_key = (1, _ident_key(build)) if build else (0, ())
        return cls(s, release, pre, build, False, (0, tuple(trimmed), pre_key, build_key))

    @classmethod
    def parse_or_none(cls, text: str | None) -> Version | None:
        if not text:
            return None
        try:
            return cls.parse(text)
        except BadVersion:
            return None

    @property
    def major(self) -> int:
        return self.release[0]

    @property
    def build_number(self) -> int | None:
        """The llama.cpp tag's number (6275 for b6275); None for other versions."""
        return self.release[0] if self.llama_tag else None

    def _check(self, other: object) -> Version:
        if not isinstance(other, Version):
            raise TypeError(f"cannot compare a Version with {type(other).__name__}")
        if other.llama_tag != self.llama_tag:
            raise TypeError(f"cannot order a llama.cpp tag and a version ({self.text!r}, {other.text!r})")
        return other

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Version):
            return NotImplemented
        return self._key == other._key

    def __hash__(self) -> int:
        return hash(self._key)

    def __lt__(self, other: object) -> bool:
        o = self._check(other)
        return self._key < o._key

    def __str__(self) -> str:
        return self.text


def older(text: str | None, than: str | None) -> bool | None:
    """Whether version `text` is older than `than`; None when either is missing, unreadable or a llama.cpp tag
    compared with a version (the caller then says "unknown" instead of guessing)."""
    a, b = Version.parse_or_none(text), Version.parse_or_none(than)
    if a is None or b is None or a.llama_tag != b.llama_tag:
        return None
    return a < b


def version_key(text: str) -> tuple[int, int, Version | str]:
    """A sort key for version strings that may be broken: unreadable ones first (by text), then versions, then
    llama.cpp tags (b6275 < b10662), so a tag is never compared with a version.

    For sorting data read from disk, where one bad manifest must not stop the listing.
    """
    v = Version.parse_or_none(text)
    if v is None:
        return (0, 0, str(text))
    return (1, 1 if v.llama_tag else 0, v)


def is_llama_tag(text: str) -> bool:
    """'b6275' (a llama.cpp release tag)."""
    return _TAG_RE.fullmatch(text.strip()) is not None


def is_commit(text: str) -> bool:
    """'e288693', '1466621' or a full hash: a llama.cpp commit (lower-case hex, 7 to 40 digits), not a version."""
    return _COMMIT_RE.fullmatch(text.strip()) is not None
