"""The crash log: an unexpected exception's full traceback, written where the user's logs go.

The CLI (exit 70, "unexpected internal error") and the wizard's exception hook both write it, so a bug report
gets the same file from either front end.
"""

from __future__ import annotations

import traceback
from datetime import UTC, datetime

from app.core.paths import user_log_dir


def write_crash_log(exc: BaseException) -> str:
    """Write `exc` with its traceback to a new crash-<UTC time>.log in the log dir; return its path, '' on failure.

    Never raises an OSError: it runs while another error is already being reported.
    """
    try:
        d = user_log_dir()
        d.mkdir(parents=True, exist_ok=True)
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        text = "".join(traceback.format_exception(exc))
        for n in range(100):  # two crashes in one second each keep their own file
            path = d / (f"crash-{stamp}.log" if n == 0 else f"crash-{stamp}-{n}.log")
            try:
                with path.open("x", encoding="utf-8") as f:
                    f.write(text)
            except FileExistsError:
                continue
            return str(path)
    except OSError:
        pass
    return ""
