"""Typed errors of the LM Studio integration, each with a message, context and an actionable hint."""

from __future__ import annotations

from app.core.errors import UnlockedError, UsageError
from app.core.userfile import UserFileError


class LmStudioError(UnlockedError):
    """Something in the LM Studio home is not as we need it."""

    code = "lmstudio-error"


class HomeNotFound(LmStudioError):
    code = "lmstudio-home-not-found"
    exit_code = 2


class JsonFileError(UserFileError):
    """A JSON file of LM Studio's or ours is unreadable, not a regular file, too large, wrongly encoded,
    nested too deeply or not valid JSON (``kind``, see :class:`UserFileError`)."""

    code = "bad-json-file"


class BackendNotFound(UsageError):
    code = "backend-not-found"


class AmbiguousBackend(UsageError):
    code = "backend-ambiguous"


class InvalidBackendFolder(UsageError):
    """A folder offered for install does not pass validation (see ``problems``)."""

    code = "invalid-backend-folder"

    def __init__(self, message: str, *, problems: tuple[str, ...] = (), context: str = "", hint: str = "") -> None:
        details = "\n".join(f"- {p}" for p in problems)
        super().__init__(message, context=context, hint=hint, details=details)
        self.problems = problems


class RefusedChange(LmStudioError):
    """A change we refuse to make (official folder, LM Studio running, name collision)."""

    code = "refused"
    exit_code = 2


class LmStudioRunning(RefusedChange):
    code = "lmstudio-running"


class InstallFailed(LmStudioError):
    """Installing could not finish; the home was left as it was (the message says so)."""

    code = "install-failed"
