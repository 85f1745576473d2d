"""llama.cpp source patches: a `series` file says which patch applies to which tags and builds.

Series line: ``<file> <applies-to> <when>`` (see patches/series). A patch is first checked
(``patch --dry-run`` / ``git apply --check``), then applied; what was applied is returned so the caller
can record it (source marker, provenance).
"""

from __future__ import annotations

import hashlib
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from app.core.errors import UnlockedError
from app.core.paths import patches_dir
from app.core.runner import popen_platform_kwargs
from app.core.version import Version, is_commit

WHEN_VALUES = ("always", "vulkan", "cuda", "cuda-kepler")
_RANGE_RE = re.compile(r"^b(\d+)-b(\d+)$")


class PatchError(UnlockedError):
    code = "patch-failed"


@dataclass(frozen=True)
class PatchEntry:
    file: str
    applies_to: tuple[str, ...]
    when: str

    def matches_source(self, tag: str | None, commit: str | None) -> bool:
        for spec in self.applies_to:
            if spec == "*":
                return True
            if tag:
                if spec == tag:
                    return True
                t, r = Version.parse_or_none(tag), _RANGE_RE.match(spec)
                n = t.build_number if t is not None else None
                if n is not None and r and int(r.group(1)) <= n <= int(r.group(2)):
                    return True
            if commit and is_commit(spec):
                n = min(len(spec), len(commit))
                if n >= 7 and spec[:n] == commit.lower()[:n]:
                    return True
        return False

    def wanted_for(self, features: frozenset[str]) -> bool:
        return self.when == "always" or self.when in features


@dataclass(frozen=True)
class AppliedPatch:
    file: str
    sha256: str
    when: str


def read_series(root: Path | None = None) -> list[PatchEntry]:
    root = root or patches_dir()
    series = root / "series"
    if not series.is_file():
        return []
    out: list[PatchEntry] = []
    for n, raw in enumerate(series.read_text(encoding="utf-8").splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        parts = line.split()
        if len(parts) != 3 or parts[2] not in WHEN_VALUES:
            raise PatchError(
                f"patches/series line {n} is malformed: {raw!r}",
                context=str(series),
                hint=f"Use '<file> <tags|commits|*> <{'|'.join(WHEN_VALUES)}>'.",
            )
        if not (root / parts[0]).is_file():
            raise PatchError(f"patches/series line {n} names a missing file {parts[0]}", context=str(series))
        out.append(PatchEntry(parts[0], tuple(s for s in parts[1].split(",") if s), parts[2]))
    return out


def select_patches(
    entries: list[PatchEntry], *, tag: str | None, commit: str | None, features: frozenset[str]
) -> list[PatchEntry]:
    """The patches for this source (tag/commit) and build features ({"vulkan"}, {"cuda", "cuda-kepler"})."""
    return [e for e in entries if e.wanted_for(features) and e.matches_source(tag, commit)]


def _patch_argv(patch_file: Path, tree: Path, *, dry_run: bool, reverse: bool = False) -> list[str]:
    tool = shutil.which("patch")
    if tool:
        argv = [tool, "-p1", "-N", "-s", "--fuzz=0", "--no-backup-if-mismatch", "-d", str(tree), "-i", str(patch_file)]
        if reverse:
            argv.insert(2, "-R")
        if dry_run:
            argv.append("--dry-run")
        return argv
    git = shutil.which("git")
    if git is None:
        raise PatchError(
            "Neither 'patch' nor 'git' is installed; cannot apply llama.cpp patches.",
            hint="Install git (Windows: winget install Git.Git; Debian: apt-get install patch).",
        )
    argv = [git, "apply", "-p1", "--directory=.", str(patch_file)]
    if reverse:
        argv.insert(2, "-R")
    if dry_run:
        argv.insert(2, "--check")
    return argv


def _run(argv: list[str], cwd: Path) -> tuple[int, str]:
    p = subprocess.run(
        argv, cwd=cwd, capture_output=True, text=True, errors="replace", check=False, stdin=subprocess.DEVNULL,
        **popen_platform_kwargs(),
    )
    return p.returncode, (p.stdout + p.stderr).strip()


def is_applied(patch_file: Path, tree: Path) -> bool:
    """True when the patch is already in `tree` (its reverse applies cleanly)."""
    rc, _ = _run(_patch_argv(patch_file, tree, dry_run=True, reverse=True), tree)
    return rc == 0


def check_patch(patch_file: Path, tree: Path) -> None:
    """Raise PatchError (with the tool's output) when the patch does not apply cleanly."""
    rc, text = _run(_patch_argv(patch_file, tree, dry_run=True), tree)
    if rc != 0:
        raise PatchError(
            f"Patch {patch_file.name} does not apply to this llama.cpp source.",
            context=str(tree),
            hint="The source is not the tag this patch was made for; use the template's tag, or update patches/series.",
            details=text,
        )


def apply_patches(tree: Path, entries: list[PatchEntry], *, root: Path | None = None) -> list[AppliedPatch]:
    """Check every patch first, then apply them in order. Already-applied patches are recorded, not re-applied."""
    root = root or patches_dir()
    todo: list[tuple[PatchEntry, Path, bool]] = []
    for e in entries:
        pf = root / e.file
        already = is_applied(pf, tree)
        if not already:
            check_patch(pf, tree)
        todo.append((e, pf, already))
    applied: list[AppliedPatch] = []
    for e, pf, already in todo:
        if not already:
            rc, text = _run(_patch_argv(pf, tree, dry_run=False), tree)
            if rc != 0:
                raise PatchError(f"Applying {e.file} failed.", context=str(tree), details=text)
        applied.append(AppliedPatch(e.file, hashlib.sha256(pf.read_bytes()).hexdigest(), e.when))
    return applied
