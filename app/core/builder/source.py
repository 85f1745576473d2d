"""llama.cpp source for a tag: GitHub tag archive (cached, sha256 indexed) or a local dir/archive, patched.

Layout under ``<cache>/llama-src/``:
- ``index.json``: ``{"archives": {<tag>: {"url", "sha256", "size", "file"}}}`` — the sha256 seen on the first
  download of a tag archive; a later build re-verifies the file against it and never downloads it again.
- ``archives/<tag>.tar.gz``
- ``trees/<key>/``: an extracted (or copied) source tree with ``.lms-unlocked-source.json`` recording where it
  came from and which patches were applied; reused when the same source and patch set is asked for again.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tarfile
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from app.core.builder.patches import AppliedPatch, apply_patches, read_series, select_patches
from app.core.errors import InputFileError, UnlockedError
from app.core.fetch.download import DownloadProgress, download_file, hash_file
from app.core.fetch.errors import ChecksumMismatch, DownloadError
from app.core.runner import CancelToken
from app.core.version import Version

GITHUB_ARCHIVE_URL = "https://github.com/ggml-org/llama.cpp/archive/refs/tags/{tag}.tar.gz"
# A mirror (or a local test server): a URL template with {tag}.
ARCHIVE_URL_ENV = "LMS_UNLOCKED_LLAMA_ARCHIVE_URL"


def archive_url(tag: str) -> str:
    return os.environ.get(ARCHIVE_URL_ENV, GITHUB_ARCHIVE_URL).format(tag=tag)


MARKER = ".lms-unlocked-source.json"
# Never copied/extracted: VCS metadata, docs and the 75 MB of vocab-only models (not needed to build).
_SKIP_PARTS = frozenset({".git", ".github", "docs", "models", "media", "benches"})


class SourceError(UnlockedError):
    code = "source-failed"


@dataclass(frozen=True)
class SourceTree:
    root: Path  # directory holding llama.cpp's top CMakeLists.txt and ggml/
    tag: str | None
    commit: str | None
    origin: str  # URL, archive path or directory it came from
    archive_sha256: str | None = None
    patches: tuple[AppliedPatch, ...] = field(default_factory=tuple)

    @property
    def build_number(self) -> int | None:
        tag = Version.parse_or_none(self.tag)
        return tag.build_number if tag is not None else None


def source_cache(cache_root: Path) -> Path:
    return cache_root / "llama-src"


def _read_index(base: Path) -> dict[str, Any]:
    try:
        data = json.loads((base / "index.json").read_text(encoding="utf-8"))
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def _write_index(base: Path, data: dict[str, Any]) -> None:
    base.mkdir(parents=True, exist_ok=True)
    tmp = base / "index.json.tmp"
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True), encoding="utf-8")
    os.replace(tmp, base / "index.json")


def obtain_archive(
    tag: str,
    *,
    cache_root: Path,
    url: str | None = None,
    progress: Callable[[DownloadProgress], None] | None = None,
    cancel: CancelToken | None = None,
) -> tuple[Path, str]:
    """The tag's source archive, downloaded once (streamed, resumable) and re-verified on reuse.

    Returns (path, sha256). The sha256 of the first download is recorded in the index; a later download of the
    same tag must match it (a changed upstream archive is refused, not silently used).
    """
    base = source_cache(cache_root)
    index = _read_index(base)
    archives: dict[str, Any] = index.setdefault("archives", {})
    entry = archives.get(tag)
    dest = base / "archives" / f"{tag}.tar.gz"
    the_url = url or archive_url(tag)
    if isinstance(entry, dict) and entry.get("sha256") and dest.is_file():
        actual, _n = hash_file(dest, cancel=cancel)
        if actual == entry["sha256"]:
            return dest, actual
        dest.unlink()
    expected = entry.get("sha256") if isinstance(entry, dict) else None
    try:
        result = download_file([the_url], dest, sha256=expected, progress=progress, cancel=cancel)
    except ChecksumMismatch:
        raise
    except DownloadError as exc:
        host = urlsplit(the_url).hostname or the_url
        raise SourceError(
            f"Could not download the llama.cpp source for {tag}: this computer cannot reach {host} "
            "(it is offline, or a firewall or proxy blocks it).",
            context=the_url,
            hint=f"Get {the_url} (or the llama.cpp source folder of {tag}) another way and build with "
            "--source <archive or folder>; in the wizard, choose a local source archive or folder.",
            details="\n".join(x for x in (exc.message, exc.details) if x),
        ) from exc
    archives[tag] = {"url": the_url, "sha256": result.sha256, "size": result.size, "file": dest.name}
    _write_index(base, index)
    return result.path, result.sha256


def find_llama_root(top: Path) -> Path:
    """The directory with llama.cpp's CMakeLists.txt and ggml/ (top, one level down, or vendor/llama.cpp)."""
    candidates = [top, *sorted(p for p in top.iterdir() if p.is_dir())] if top.is_dir() else []
    for c in list(candidates):
        candidates.append(c / "vendor" / "llama.cpp")
    for c in candidates:
        if (c / "CMakeLists.txt").is_file() and (c / "ggml" / "CMakeLists.txt").is_file() and (c / "src").is_dir():
            return c
    raise InputFileError(
        f"{top} does not contain llama.cpp source (CMakeLists.txt and ggml/).",
        context=str(top),
        hint="Give the llama.cpp source folder or a release source archive (.tar.gz/.zip).",
    )


def _extract(archive: Path, dest: Path) -> None:
    name = archive.name.lower()
    if name.endswith((".tar.gz", ".tgz", ".tar", ".tar.xz", ".tar.bz2")):
        with tarfile.open(archive) as tf:
            members = [m for m in tf.getmembers() if not _skip_member(m.name)]
            tf.extractall(dest, members=members, filter="data")
    elif name.endswith(".zip"):
        with zipfile.ZipFile(archive) as zf:
            for info in zf.infolist():
                if _skip_member(info.filename):
                    continue
                target = (dest / info.filename).resolve()
                if not str(target).startswith(str(dest.resolve())):
                    raise SourceError(f"{archive.name} contains an unsafe path: {info.filename}")
                zf.extract(info, dest)
    else:
        raise InputFileError(
            f"{archive.name} is not a supported archive.",
            context=str(archive),
            hint="Use a .tar.gz, .tar.xz or .zip source archive, or a source folder.",
        )


def _skip_member(name: str) -> bool:
    parts = tuple(p for p in name.split("/") if p)
    # Archive members: <top>/docs/..., <top>/vendor/llama.cpp/models/..., <top>/.git/...
    return any(p == ".git" for p in parts) or any(
        parts[i] in ("docs", "models", "media") and (i == 1 or (i >= 2 and parts[i - 1] == "llama.cpp"))
        for i in range(len(parts) - 1)
    )


def _copy_tree(src: Path, dest: Path) -> None:
    def ignore(d: str, names: list[str]) -> set[str]:
        rel = Path(d).relative_to(src).parts
        skip = {n for n in names if n == ".git"}
        if not rel:  # only the tree's own top level
            skip |= {n for n in names if n in ("docs", "models", "media")}
        return skip

    shutil.copytree(src, dest, symlinks=True, ignore=ignore)


def _fingerprint(path: Path) -> str:
    st = path.stat()
    return hashlib.sha256(f"{path.resolve()}|{st.st_size}|{st.st_mtime_ns}".encode()).hexdigest()[:16]


def _load_marker(tree_dir: Path) -> dict[str, Any]:
    try:
        data = json.loads((tree_dir / MARKER).read_text(encoding="utf-8"))
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def _source_key(tag: str | None, commit: str | None, src_path: Path) -> str:
    return f"{tag or commit or 'src'}-{'dir' if src_path.is_dir() else 'arc'}-{_fingerprint(src_path)}"


def find_prepared_source(
    *, tag: str | None, commit: str | None, cache_root: Path, source: Path | None = None
) -> SourceTree | None:
    """The tree `prepare_source` would return, if it is already in the cache (nothing is fetched or changed)."""
    base = source_cache(cache_root)
    if source is not None:
        if not Path(source).exists():
            return None
        key = _source_key(tag, commit, Path(source))
    else:
        entry = _read_index(base).get("archives", {}).get(tag or "")
        if not isinstance(entry, dict) or not entry.get("sha256"):
            return None
        key = f"{tag}-{entry['sha256'][:12]}"
    info = _load_marker(base / "trees" / key)
    if not info:
        return None
    recorded = tuple(AppliedPatch(p["file"], p["sha256"], p["when"]) for p in info.get("patches", []))
    return SourceTree(
        base / "trees" / key / str(info.get("root", ".")),
        tag,
        commit,
        str(info.get("origin", "")),
        info.get("archive_sha256"),
        recorded,
    )


def prepare_source(
    *,
    tag: str | None,
    commit: str | None,
    cache_root: Path,
    source: Path | None = None,
    features: frozenset[str] = frozenset(),
    url: str | None = None,
    patches_root: Path | None = None,
    progress: Callable[[DownloadProgress], None] | None = None,
    cancel: CancelToken | None = None,
) -> SourceTree:
    """A patched llama.cpp tree for `tag` in the cache: from `source` (dir or archive) or the tag's archive.

    The tree lives in ``<cache>/llama-src/trees/<key>`` and is reused (no re-extract, no re-patch) when the
    same source and patch set is asked for again, so build directories that point at it stay valid.
    """
    base = source_cache(cache_root)
    sha: str | None = None
    if source is None:
        if not tag:
            raise SourceError(
                "No llama.cpp tag to download.",
                hint="Give --tag bNNNN, or --source DIR|ARCHIVE for offline builds.",
            )
        archive, sha = obtain_archive(tag, cache_root=cache_root, url=url, progress=progress, cancel=cancel)
        origin, key = url or archive_url(tag), f"{tag}-{sha[:12]}"
        src_path: Path = archive
    else:
        src_path = Path(source).expanduser()
        if not src_path.exists():
            raise InputFileError(f"{src_path} does not exist.", hint="Give a llama.cpp source folder or archive.")
        origin = str(src_path.resolve())
        key = _source_key(tag, commit, src_path)
    entries = read_series(patches_root)
    wanted = select_patches(entries, tag=tag, commit=commit, features=features)
    tree_dir = base / "trees" / key
    marker = tree_dir / MARKER
    info = _load_marker(tree_dir)
    if not info:
        if tree_dir.exists():
            shutil.rmtree(tree_dir)
        tmp = base / "trees" / f".{key}.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        try:
            if src_path.is_dir():
                _copy_tree(find_llama_root(src_path), tmp / "llama.cpp")
            else:
                _extract(src_path, tmp)
            root_rel = find_llama_root(tmp).relative_to(tmp).as_posix()
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        os.replace(tmp, tree_dir)
        info = {"origin": origin, "tag": tag, "commit": commit, "archive_sha256": sha, "root": root_rel, "patches": []}
        marker.write_text(json.dumps(info, indent=2), encoding="utf-8")
    root = tree_dir / str(info.get("root", "."))
    have = {p["file"] for p in info.get("patches", [])}
    # Patches are only ever added to a tree (a CPU build ignores the Vulkan patch's file, so sharing is safe).
    new = [e for e in wanted if e.file not in have]
    applied = apply_patches(root, new, root=patches_root) if new else []
    if applied:
        info["patches"] = [
            *info.get("patches", []),
            *({"file": a.file, "sha256": a.sha256, "when": a.when} for a in applied),
        ]
        marker.write_text(json.dumps(info, indent=2), encoding="utf-8")
    recorded = tuple(AppliedPatch(p["file"], p["sha256"], p["when"]) for p in info.get("patches", []))
    return SourceTree(root, tag, commit, origin, sha or info.get("archive_sha256"), recorded)
