"""A small backend folder built from a real LM Studio manifest, with stand-in binaries (tests only).

The manifest is the real Linux Vulkan 2.14.0 one from ../shared; the .so/.node files are stand-ins
(random bytes): archive and download tests only care that bytes and links survive intact.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from tests.conftest import BACKEND_EXAMPLES

REAL_MANIFEST = BACKEND_EXAMPLES / "linux-x86_64-vulkan-k40k80-2.14.0.backend-manifest.json"


def make_backend_folder(parent: Path, name: str = "llama.cpp-linux-x86_64-vulkan-avx1-unlocked",
                        version: str = "2.14.0", *, payload: int = 64 * 1024) -> Path:
    manifest = json.loads(REAL_MANIFEST.read_text(encoding="utf-8"))
    manifest["name"] = name
    manifest["version"] = version
    folder = parent / f"{name}-{version}"
    folder.mkdir(parents=True)
    (folder / "backend-manifest.json").write_text(json.dumps(manifest, indent=2), encoding="utf-8")
    (folder / "display-data.json").write_text(
        json.dumps([["en", {"langKey": "en", "displayName": "Vulkan (test)", "releaseNotes": []}]]), encoding="utf-8"
    )
    lib = folder / "libggml-cpu.so.0.0.1"
    lib.write_bytes(os.urandom(payload))
    lib.chmod(0o755)
    os.symlink("libggml-cpu.so.0.0.1", folder / "libggml-cpu.so.0")
    for lib in manifest.get("target_libraries", []):  # the .node files LM Studio loads must exist
        (folder / lib["name"]).write_bytes(os.urandom(payload // 4))
    (folder / "sub").mkdir()
    (folder / "sub" / "README").write_text("stand-in\n")
    return folder


def tree(folder: Path) -> dict[str, object]:
    """Relative path -> bytes (files), ('link', target) (symlinks), 'dir'; for equality checks."""
    out: dict[str, object] = {}
    for p in sorted(folder.rglob("*")):
        rel = p.relative_to(folder).as_posix()
        if p.is_symlink():
            out[rel] = ("link", os.readlink(p))
        elif p.is_dir():
            out[rel] = "dir"
        else:
            out[rel] = (p.read_bytes(), bool(p.stat().st_mode & 0o100))
    return out


def staging_empty(home: Path) -> bool:
    """Nothing left in either staging root: our data dir's (dry runs) and the home's (archive installs)."""
    from app.core.fetch.obtain import staging_root

    roots = (staging_root(), home / ".lms-unlocked" / "staging")
    return all(not r.exists() or not any(r.iterdir()) for r in roots)
