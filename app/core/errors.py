"""Typed errors with a message, context and a hint a user can act on, shown in one place."""

from __future__ import annotations

import errno
import shutil
from typing import Any


class UnlockedError(Exception):
    """Base of every error we expect to show to a user.

    Args:
        message: one sentence saying what went wrong.
        context: what we were doing / which file or backend it concerns.
        hint: what the user can do about it.
        details: long technical text (log tail, command line) for a details section.
    """

    code: str = "error"
    exit_code: int = 1

    def __init__(self, message: str, *, context: str = "", hint: str = "", details: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.context = context
        self.hint = hint
        self.details = details

    def __str__(self) -> str:
        parts = [self.message]
        if self.context:
            parts.append(f"({self.context})")
        return " ".join(parts)

    def to_dict(self) -> dict[str, Any]:
        return {
            "error": self.code,
            "message": self.message,
            "context": self.context,
            "hint": self.hint,
            "details": self.details,
        }

    def render(self) -> str:
        """Plain text for a terminal: message, context and hint on separate lines."""
        lines = [f"error: {self.message}"]
        if self.context:
            lines.append(f"  context: {self.context}")
        if self.hint:
            lines.append(f"  hint: {self.hint}")
        return "\n".join(lines)


class UsageError(UnlockedError):
    """The user asked for something that cannot work as asked (bad flag combination, bad input file)."""

    code = "usage-error"
    exit_code = 2


class InputFileError(UsageError):
    """A file given by the user is missing, unreadable or malformed."""

    code = "bad-input-file"


class CancelledError(UnlockedError):
    """A long job was cancelled by the user."""

    code = "cancelled"
    exit_code = 130


class SubprocessFailed(UnlockedError):
    """An external program (cmake, ninja, llama-server, qemu) exited with an error."""

    code = "subprocess-exited-with-error"

    def __init__(
        self,
        message: str,
        *,
        returncode: int | None,
        log_tail: str = "",
        log_path: str = "",
        context: str = "",
        hint: str = "",
    ) -> None:
        details = log_tail
        if log_path:
            details = f"{log_tail}\n\nFull log: {log_path}" if log_tail else f"Full log: {log_path}"
        super().__init__(message, context=context, hint=hint, details=details)
        self.returncode = returncode
        self.log_tail = log_tail
        self.log_path = log_path

    def to_dict(self) -> dict[str, Any]:
        d = super().to_dict()
        d["returncode"] = self.returncode
        d["log_path"] = self.log_path
        return d


class DiskError(UnlockedError):
    """The disk said no: full, read-only, permission denied or an I/O error (see :func:`disk_error`)."""

    code = "disk-error"


def disk_error(exc: OSError, *, doing: str, where: str, outcome: str = "") -> DiskError:
    """A typed error that says what the disk refused and where, instead of an internal error.

    ``doing``: what we were doing ("installing X"); ``where``: the folder concerned; ``outcome``: what state
    things were left in ("nothing was changed"), put first in the hint.
    """
    path = str(exc.filename or where)
    first = f"{outcome}; " if outcome else ""
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        try:
            free = f" ({shutil.disk_usage(where).free / 1e6:.0f} MB free now)"
        except OSError:
            free = ""
        return DiskError(f"{doing} failed: the disk that holds {where} is full", context=path,
                         hint=f"{first}free some space on it{free} and try again")
    if exc.errno == errno.EROFS:
        return DiskError(f"{doing} failed: {where} is on a read-only file system", context=path,
                         hint=f"{first}remount it read-write (or use a writable LM Studio home) and try again")
    if exc.errno in (errno.EACCES, errno.EPERM):
        return DiskError(f"{doing} failed: permission denied for {path}", context=path,
                         hint=f"{first}fix the permissions of {where} (or run as the user who owns it)")
    return DiskError(f"{doing} failed: {exc.strerror or exc} ({path})", context=path,
                     hint=f"{first}check the disk that holds {where} and try again")
