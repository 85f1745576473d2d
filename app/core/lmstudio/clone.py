"""Clone an official backend folder into a new one of ours (docs/lmstudio-contract.md §5, §7, §9).

LM Studio's files are copied byte-identical with their modes (exec bits); relative symlinks are
recreated as they are (absolute ones that point inside the template become relative, others are
refused). Only these are rewritten: the manifest's ``name``, ``cpu.instruction_set_extensions`` and
(when given) ``gpu.targets`` / ``engine_protocol_server.executable_relative_path``, every
``displayName`` of display-data.json, and engine-protocol-server-artifacts.json where it has to
follow the manifest and the files on disk. Every other key, the key order and each file's line
endings stay; writes are UTF-8 without BOM.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Mapping
from pathlib import Path, PurePosixPath
from typing import Any

from app.core.errors import UsageError
from app.core.lmstudio.backends import (
    ARTIFACTS_FILE,
    DISPLAY_DATA_FILE,
    MANIFEST_FILE,
    PROVENANCE_FILE,
)
from app.core.lmstudio.displaydata import entries
from app.core.lmstudio.jsondoc import load_json, save
from app.core.lmstudio.naming import validate_name


class CloneError(UsageError):
    code = "clone-failed"


def _safe_rel(rel: str) -> PurePosixPath:
    p = PurePosixPath(rel.replace("\\", "/"))
    if p.is_absolute() or ".." in p.parts or not p.parts:
        raise CloneError(f"{rel!r} is not a relative path inside the backend folder")
    return p


def copy_tree_exact(src: Path, dst: Path, *, skip: frozenset[str] = frozenset()) -> None:
    """Copy ``src`` to a new ``dst``: bytes, modes and relative symlinks exactly as they are."""
    src_real = Path(os.path.realpath(src))
    dst.mkdir(parents=True)
    shutil.copystat(src, dst)
    for dirpath, dirnames, filenames in os.walk(src):
        d = Path(dirpath)
        rel_dir = d.relative_to(src)
        for name in sorted(dirnames + filenames):
            s = d / name
            rel = rel_dir / name
            if rel.as_posix() in skip:
                if name in dirnames:
                    dirnames.remove(name)
                continue
            t = dst / rel
            if s.is_symlink():
                target = os.readlink(s)
                if os.path.isabs(target):
                    real = Path(os.path.realpath(s))
                    if not real.is_relative_to(src_real):
                        raise CloneError(
                            f"{rel} is a symlink to {target}, outside the template folder",
                            hint="use an untouched official backend folder as the template",
                        )
                    target = os.path.relpath(real, Path(os.path.realpath(s.parent)))
                os.symlink(target, t)
                if name in dirnames:
                    dirnames.remove(name)  # do not walk into a linked directory
            elif s.is_dir():
                t.mkdir()
                shutil.copystat(s, t)
            else:
                shutil.copy2(s, t)


def _replace_file(dest: Path, rel: str, source: Path) -> tuple[str, bool]:
    """Put ``source``'s bytes at ``dest/rel`` (through a symlink to its final file). Returns (relpath, new)."""
    prel = _safe_rel(rel)
    dest_real = Path(os.path.realpath(dest))
    target = dest_real / prel
    if target.is_symlink():
        real = Path(os.path.realpath(target))
        if not real.is_relative_to(dest_real):
            raise CloneError(f"{rel} links outside the backend folder")
        target = real
    if not source.is_file():
        raise CloneError(f"replacement file {source} for {rel} does not exist")
    existed = target.exists()
    mode = target.stat().st_mode & 0o7777 if existed else source.stat().st_mode & 0o7777
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(target.name + ".clone-tmp")
    shutil.copyfile(source, tmp)
    os.chmod(tmp, mode)
    os.replace(tmp, target)
    return target.relative_to(dest_real).as_posix(), not existed


def _rewrite_manifest(
    dest: Path, *, new_name: str, ise: list[str], gpu_targets: list[str] | None, server_relpath: str | None
) -> dict[str, Any]:
    doc = load_json(dest / MANIFEST_FILE)
    m = doc.data
    if not isinstance(m, dict):
        raise CloneError(f"{MANIFEST_FILE} of the template is not a JSON object")
    m["name"] = new_name
    cpu = m.get("cpu")
    if not isinstance(cpu, dict):
        raise CloneError(f"the template's {MANIFEST_FILE} has no cpu section")
    cpu["instruction_set_extensions"] = list(ise)
    if gpu_targets is not None:
        gpu = m.get("gpu")
        if not isinstance(gpu, dict):
            raise CloneError("gpu targets given but the template has no gpu section (a CPU backend?)")
        gpu["targets"] = list(gpu_targets)
    if server_relpath is not None:
        eps = m.get("engine_protocol_server")
        if not isinstance(eps, dict):
            raise CloneError("a server path was given but the template has no engine_protocol_server")
        eps["executable_relative_path"] = _safe_rel(server_relpath).as_posix()
    save(doc.with_data(m))
    return m


def _rewrite_display_data(dest: Path, display_suffix: str) -> None:
    path = dest / DISPLAY_DATA_FILE
    if not path.exists() or not display_suffix:
        return
    doc = load_json(path)
    for entry in entries(doc.data):
        old = entry.get("displayName")
        if isinstance(old, str):
            entry["displayName"] = f"{old} {display_suffix}".strip()
    save(doc)


def _is_executable(path: Path) -> bool:
    if path.suffix.lower() in (".exe",):
        return True
    return os.name != "nt" and os.access(path, os.X_OK) and path.is_file()


def sync_artifacts(dest: Path, manifest: Mapping[str, Any], *, added: list[str] | None = None) -> bool:
    """Keep engine-protocol-server-artifacts.json consistent with the manifest and the files on disk.

    Sets ``executable_relative_path``/``runtime_kind`` from the manifest, drops entries whose file is
    gone, and lists ``added`` files that sit in the server's own sub-folder. Returns True if written.
    """
    path = dest / ARTIFACTS_FILE
    if not path.exists():
        return False
    doc = load_json(path)
    art = doc.data
    if not isinstance(art, dict):
        return False
    before = repr(art)
    eps = manifest.get("engine_protocol_server")
    exe = ""
    if isinstance(eps, dict):
        exe = str(eps.get("executable_relative_path", ""))
        if exe:
            art["executable_relative_path"] = exe
        if "runtime_kind" in eps:
            art["runtime_kind"] = eps["runtime_kind"]
    files = art.get("files")
    if isinstance(files, list):
        kept = [f for f in files if not isinstance(f, dict) or (dest / str(f.get("relative_path", ""))).exists()]
        listed = {str(f.get("relative_path")) for f in kept if isinstance(f, dict)}
        exe_dir = PurePosixPath(exe).parent if exe else None
        extra = [a for a in (added or []) if exe_dir is not None and str(exe_dir) != "."]
        if exe and exe not in listed and (dest / exe).exists():
            extra.append(exe)
        for rel in extra:
            prel = PurePosixPath(rel)
            if rel in listed or (exe_dir is not None and not prel.is_relative_to(exe_dir)):
                continue
            kept.append({"relative_path": rel, "executable": _is_executable(dest / rel)})
            listed.add(rel)
        art["files"] = kept
    if repr(art) == before:
        return False
    save(doc.with_data(art))
    return True


def clone_template(
    template_dir: Path,
    dest_dir: Path,
    *,
    new_name: str,
    ise: list[str],
    display_suffix: str,
    gpu_targets: list[str] | None = None,
    replace_files: Mapping[str, Path] | None = None,
    server_relpath: str | None = None,
) -> Path:
    """Clone ``template_dir`` into the new folder ``dest_dir`` as backend ``new_name``; returns ``dest_dir``.

    ``replace_files`` maps relative paths (posix) to files whose bytes replace (or add) them; a
    path that is a symlink in the template replaces the file the link finally points to. On any
    error ``dest_dir`` is removed again. Our own marker file is never copied from a template.
    """
    validate_name(new_name)
    template_dir = Path(template_dir)
    dest_dir = Path(dest_dir)
    if not (template_dir / MANIFEST_FILE).is_file():
        raise CloneError(f"{template_dir} has no {MANIFEST_FILE}", hint="pick an installed official backend")
    if dest_dir.exists() or dest_dir.is_symlink():
        raise CloneError(f"{dest_dir} already exists", hint="clone into a new, empty location")
    try:
        copy_tree_exact(template_dir, dest_dir, skip=frozenset({PROVENANCE_FILE}))
        added: list[str] = []
        for rel, src in (replace_files or {}).items():
            relpath, new = _replace_file(dest_dir, rel, Path(src))
            if new:
                added.append(relpath)
        manifest = _rewrite_manifest(
            dest_dir, new_name=new_name, ise=ise, gpu_targets=gpu_targets, server_relpath=server_relpath
        )
        _rewrite_display_data(dest_dir, display_suffix)
        sync_artifacts(dest_dir, manifest, added=added)
    except BaseException:
        shutil.rmtree(dest_dir, ignore_errors=True)
        raise
    return dest_dir
