"""resolve_home: each branch of LM Studio's resolver, on real directories; never writes the pointer."""

from __future__ import annotations

from pathlib import Path

from app.core.lmstudio.home import POINTER_FILE_NAME, resolve_home


def _snapshot(root: Path) -> set[str]:
    return {p.relative_to(root).as_posix() for p in root.rglob("*")}


def test_default_when_nothing_exists_and_nothing_is_written(tmp_path: Path) -> None:
    before = _snapshot(tmp_path)
    h = resolve_home(user_home=tmp_path)
    assert h.how_found == "default"
    assert h.path == tmp_path.resolve() / ".lmstudio"
    assert not h.exists
    assert "never been started" in h.problem
    assert _snapshot(tmp_path) == before  # no pointer file created


def test_default_existing_home(tmp_path: Path) -> None:
    (tmp_path / ".lmstudio" / "extensions" / "backends").mkdir(parents=True)
    h = resolve_home(user_home=tmp_path)
    assert (h.how_found, h.exists, h.problem) == ("default", True, "")
    assert h.backends_dir == tmp_path.resolve() / ".lmstudio" / "extensions" / "backends"


def test_legacy_wins_over_default(tmp_path: Path) -> None:
    (tmp_path / ".lmstudio" / "extensions" / "backends").mkdir(parents=True)
    (tmp_path / ".cache" / "lm-studio" / "extensions" / "backends").mkdir(parents=True)
    h = resolve_home(user_home=tmp_path)
    assert h.how_found == "legacy"
    assert h.path == tmp_path.resolve() / ".cache" / "lm-studio"


def test_pointer_wins_and_is_stripped(tmp_path: Path) -> None:
    target = tmp_path / "other disk" / "LM Stüdio"
    (target / "extensions" / "backends").mkdir(parents=True)
    (tmp_path / ".cache" / "lm-studio").mkdir(parents=True)
    (tmp_path / POINTER_FILE_NAME).write_text(f"  {target}\n", encoding="utf-8")
    h = resolve_home(user_home=tmp_path)
    assert (h.how_found, h.path, h.exists, h.problem) == ("pointer", target, True, "")
    assert h.pointer_file == tmp_path.resolve() / POINTER_FILE_NAME


def test_pointer_to_nowhere_is_reported_not_skipped(tmp_path: Path) -> None:
    (tmp_path / ".lmstudio" / "extensions" / "backends").mkdir(parents=True)  # would be the fallback
    (tmp_path / POINTER_FILE_NAME).write_text("/mnt/gone/lmstudio", encoding="utf-8")
    before = (tmp_path / POINTER_FILE_NAME).read_bytes()
    h = resolve_home(user_home=tmp_path)
    assert h.how_found == "pointer"
    assert h.path == Path("/mnt/gone/lmstudio")
    assert not h.exists
    assert "does not exist" in h.problem and "/mnt/gone/lmstudio" in h.problem
    assert (tmp_path / POINTER_FILE_NAME).read_bytes() == before


def test_empty_pointer(tmp_path: Path) -> None:
    (tmp_path / POINTER_FILE_NAME).write_text("  \n", encoding="utf-8")
    h = resolve_home(user_home=tmp_path)
    assert h.how_found == "pointer" and not h.exists and "empty" in h.problem


def test_symlinked_user_home_is_resolved(tmp_path: Path) -> None:
    real = tmp_path / "real"
    (real / ".lmstudio" / "extensions" / "backends").mkdir(parents=True)
    (tmp_path / "link").symlink_to(real)
    h = resolve_home(user_home=tmp_path / "link")
    assert h.path == real.resolve() / ".lmstudio"


def test_override_wins_and_reports_missing_backends(tmp_path: Path) -> None:
    (tmp_path / POINTER_FILE_NAME).write_text(str(tmp_path), encoding="utf-8")
    home = tmp_path / "my home with spaces"
    home.mkdir()
    h = resolve_home(home, user_home=tmp_path)
    assert (h.how_found, h.path, h.exists) == ("override", home, True)
    assert "start LM Studio once" in h.problem


def test_override_missing(tmp_path: Path) -> None:
    h = resolve_home(str(tmp_path / "nope"))
    assert not h.exists and "does not exist" in h.problem


def test_pointer_with_bom_and_crlf_is_trimmed_like_javascript(tmp_path: Path) -> None:
    target = tmp_path / "elsewhere"
    (target / "extensions" / "backends").mkdir(parents=True)
    (tmp_path / POINTER_FILE_NAME).write_bytes(b"\xef\xbb\xbf" + str(target).encode() + b"\r\n")
    h = resolve_home(user_home=tmp_path)
    assert (h.path, h.problem) == (target, "")
