"""Errors of the download, archive, catalog and publishing paths (all shown to users)."""

from __future__ import annotations

from typing import Any

from app.core.errors import UnlockedError, UsageError


class DownloadError(UnlockedError):
    """Every URL (and mirror) failed after the bounded retries."""

    code = "download-failed"


class ChecksumMismatch(DownloadError):
    """The bytes we got are not the bytes we were promised (size or sha256)."""

    code = "checksum-mismatch"

    def __init__(
        self,
        message: str,
        *,
        expected: str,
        actual: str,
        resumed: bool = False,
        context: str = "",
        hint: str = "",
    ) -> None:
        super().__init__(message, context=context, hint=hint)
        self.expected = expected
        self.actual = actual
        self.resumed = resumed  # some bytes came from an earlier attempt (worth one fresh try)

    def to_dict(self) -> dict[str, Any]:
        d = super().to_dict()
        d["expected"] = self.expected
        d["actual"] = self.actual
        return d


class InsecureURLError(UsageError):
    """A URL that is not HTTPS (plain http is only allowed to loopback addresses)."""

    code = "insecure-url"


class UnsafeArchiveError(UnlockedError):
    """An archive tries to write outside its folder, holds links/devices, or is a bomb."""

    code = "unsafe-archive"


class ArchiveError(UnlockedError):
    """An archive we cannot read, or that does not hold a backend folder."""

    code = "bad-archive"


class CatalogError(UnlockedError):
    """A catalog that is malformed, does not match its schema, or has no such entry."""

    code = "bad-catalog"


class SignatureError(UnlockedError):
    """A catalog whose detached signature is missing, malformed or does not verify."""

    code = "bad-signature"


class PatchRefused(UnlockedError):
    """Patch-only is not safe: the audit found instructions the host lacks (or could not audit)."""

    code = "patch-refused"
