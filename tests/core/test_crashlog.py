"""The crash log both front ends write (the CLI's exit 70 and the wizard's exception hook)."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.core.crashlog import write_crash_log


def _raised(msg: str) -> BaseException:
    try:
        raise RuntimeError(msg)
    except RuntimeError as exc:
        return exc


def test_writes_the_traceback_to_a_new_file_each_time(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LMS_UNLOCKED_LOG_DIR", str(tmp_path / "logs"))
    first, second = write_crash_log(_raised("first")), write_crash_log(_raised("second"))
    assert first != second  # two crashes in the same second keep both reports
    for path, msg in ((first, "first"), (second, "second")):
        text = Path(path).read_text(encoding="utf-8")
        assert Path(path).parent == tmp_path / "logs" and Path(path).name.startswith("crash-")
        assert "Traceback" in text and f"RuntimeError: {msg}" in text and "_raised" in text


def test_an_unwritable_log_dir_gives_an_empty_path_not_an_error(tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder", encoding="utf-8")
    monkeypatch.setenv("LMS_UNLOCKED_LOG_DIR", str(blocker / "logs"))
    assert write_crash_log(_raised("x")) == ""
