"""What a backend folder must contain (docs/lmstudio-contract.md §15 #8, #10, #11, #14, §9.4)."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterable
from pathlib import Path

from app.core.lmstudio.backends import ARTIFACTS_FILE, DISPLAY_DATA_FILE, MANIFEST_FILE, VENDOR_DIR, BackendInfo
from app.core.lmstudio.clone import sync_artifacts
from app.core.lmstudio.doctor.registry import Check, Context, Finding, Repairer, label, refetch_advice
from app.core.lmstudio.errors import JsonFileError
from app.core.lmstudio.jsondoc import load_json
from app.core.lmstudio.naming import looks_official
from app.core.lmstudio.provenance import read_provenance, verify_files


class OfficialNameUsedByOurs(Check):
    codes = (("official-name", "Our backend carries an official name"),)
    about = "LM Studio's unpacker or auto-update may overwrite a folder with one of its own names (§4.4)."

    def detect_backend(self, ctx: Context, b: BackendInfo) -> Iterable[Finding]:
        if b.valid and b.ours and looks_official(b.name):
            yield Finding(
                "official-name",
                "error",
                label(b),
                f"{label(b)} uses the name of an official backend; LM Studio's own unpacker or auto-update may "
                "overwrite it",
                "re-install it under a name of its own (…-unlocked)",
                kind="ours",
            )


def listed_files(b: BackendInfo) -> list[str]:
    """Every file the backend lists: target_libraries, the engine server and the server artifacts' files."""
    listed = [lib for lib in b.target_libraries if lib]
    if b.server_relpath:
        listed.append(b.server_relpath)
    files = (b.artifacts or {}).get("files")
    for f in files if isinstance(files, list) else []:
        if isinstance(f, dict) and isinstance(f.get("relative_path"), str) and f["relative_path"]:
            listed.append(f["relative_path"])
    return list(dict.fromkeys(listed))


def library_problems(b: BackendInfo) -> list[tuple[str, str]]:
    """(listed file, what is wrong) for each listed file that is not a regular file in the folder (a cut
    download left a dangling link where the main library should be), and every dangling link in the folder."""
    out: list[tuple[str, str]] = []
    for rel in listed_files(b):
        p = b.folder / rel
        if rel == b.server_relpath and not p.exists() and not p.is_symlink():
            continue  # its own finding (server-missing)
        if p.is_symlink() and not p.exists():
            out.append((rel, f"is a link to {os.readlink(p)}, which does not exist"))
        elif not p.exists():
            out.append((rel, "is missing"))
        elif not p.is_file():
            out.append((rel, "is not a regular file"))
        elif p.stat().st_size == 0 and not rel.endswith(".json"):
            out.append((rel, "is empty"))
    listed = {rel for rel, _ in out}
    for dirpath, dirnames, filenames in os.walk(b.folder):  # a link the listed libraries load through
        for n in sorted(dirnames + filenames):
            p = Path(dirpath) / n
            rel = p.relative_to(b.folder).as_posix()
            if rel not in listed and p.is_symlink() and not p.exists():
                out.append((rel, f"is a link to {os.readlink(p)}, which does not exist"))
    return out


class MissingFiles(Check):
    codes = (
        ("missing-library", "A declared library is missing"),
        ("server-missing", "The engine protocol server is missing"),
        ("vendor-missing", "A vendor package is missing"),
    )
    about = (
        "target_libraries, engine_protocol_server (and its artifacts file) and vendor_lib_package_names name files "
        "LM Studio needs: each must be a regular, non-empty file (a dangling link from a cut download is reported); "
        "LM Studio reports missingLibraries or 'exited before becoming healthy' without them. The advice says "
        "where each kind's files come from (never 're-download in LM Studio' for a pack LM Studio never shipped)."
    )

    def detect_backend(self, ctx: Context, b: BackendInfo) -> Iterable[Finding]:
        if not b.valid:
            return
        kind = ctx.kind(b).kind
        for lib, problem in library_problems(b):
            yield Finding(
                "missing-library",
                "error",
                label(b),
                f"the library {lib} that the backend lists {problem}, so LM Studio cannot load it",
                refetch_advice(kind),
                target=str(b.folder / lib),
                kind=kind,
            )
        for pkg in b.vendor_packages:
            if not (ctx.home.backends_dir / VENDOR_DIR / pkg).is_dir():
                yield Finding(
                    "vendor-missing",
                    "warning",
                    label(b),
                    f"the vendor package {pkg} is missing from backends/vendor (GPU runtime libraries)",
                    "download the matching official runtime once in LM Studio; it brings the vendor package",
                    kind=kind,
                )
        if b.server_relpath and not (b.folder / b.server_relpath).exists():
            yield Finding(
                "server-missing",
                "error",
                label(b),
                f"engine_protocol_server names {b.server_relpath}, which is missing; LM Studio reports "
                "'exited before becoming healthy'",
                refetch_advice(kind),
                kind=kind,
            )


class ServerNotExecutable(Check):
    codes = (("server-not-executable", "The engine protocol server is not executable"),)
    about = "Linux/macOS: an archive that lost its exec bits (§15 #14). Ours are covered by exec-bits-lost."

    def detect_backend(self, ctx: Context, b: BackendInfo) -> Iterable[Finding]:
        server = b.folder / b.server_relpath if b.valid and b.server_relpath else None
        if server is None or b.ours or os.name == "nt" or not server.is_file() or os.access(server, os.X_OK):
            return
        kind = ctx.kind(b).kind
        yield Finding(
            "server-not-executable",
            "error",
            label(b),
            f"{b.server_relpath} is not executable, so LM Studio cannot start the engine",
            f"chmod +x {server} yourself (lms-unlocked never changes official folders)"
            if kind == "official"
            else f"chmod +x {server} (the archive lost its permissions)",
            kind=kind,
        )


class OursChanged(Check):
    codes = (
        ("exec-bits-lost", "Files of our backend lost their executable bit"),
        ("files-changed", "Files of our backend differ from what was installed"),
        ("artifacts-mismatch", "engine-protocol-server-artifacts.json does not match"),
    )
    about = (
        "Our provenance file records the hash and exec bit of every file (§9.4): exec bits are restored, the "
        "artifacts file is rewritten from the manifest and the files present (backed up first), changed files "
        "need a re-install."
    )

    def detect_backend(self, ctx: Context, b: BackendInfo) -> Iterable[Finding]:
        prov = read_provenance(b.folder) if b.valid and b.ours else None
        if prov is None:
            return
        diff = verify_files(b.folder, prov)
        if diff.lost_exec:
            yield Finding(
                "exec-bits-lost",
                "error",
                label(b),
                f"{len(diff.lost_exec)} file(s) lost their executable bit: {', '.join(diff.lost_exec[:4])}",
                "chmod +x them (as recorded at install)",
                auto=True,
                target=str(b.folder),
                data={"files": list(diff.lost_exec)},
                kind="ours",
            )
        changed = [r for r in (*diff.missing, *diff.changed) if r not in {MANIFEST_FILE, DISPLAY_DATA_FILE}]
        if changed:
            yield Finding(
                "files-changed",
                "warning",
                label(b),
                f"{len(changed)} file(s) differ from what was installed: {', '.join(changed[:4])}",
                "re-install this backend",
                kind="ours",
            )
        art = b.folder / ARTIFACTS_FILE
        server_ok = not b.server_relpath or (b.folder / b.server_relpath).exists()
        if not (art.exists() and server_ok):  # a missing server is its own finding, not an artifacts edit
            return
        try:
            a = load_json(art).data
        except JsonFileError:
            a = None
        exe = a.get("executable_relative_path") if isinstance(a, dict) else None
        files = a.get("files") if isinstance(a, dict) else None
        gone = [
            f.get("relative_path")
            for f in (files if isinstance(files, list) else [])
            if isinstance(f, dict) and not (b.folder / str(f.get("relative_path"))).exists()
        ]
        if (b.server_relpath and exe != b.server_relpath) or gone:
            yield Finding(
                "artifacts-mismatch",
                "warning",
                label(b),
                f"{ARTIFACTS_FILE} does not match the manifest and the files on disk",
                "rewrite it from the manifest and the files present",
                auto=True,
                target=str(art),
                kind="ours",
            )

    def fix(self, r: Repairer, f: Finding) -> str:
        t = Path(f.target)
        if f.code == "exec-bits-lost":
            for rel in f.data.get("files", []):
                p = t / str(rel)
                os.chmod(p, p.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
            return f"made {len(f.data.get('files', []))} file(s) executable in {t.name}"
        r.backup_file(t)
        m = load_json(t.parent / MANIFEST_FILE).data
        sync_artifacts(t.parent, m if isinstance(m, dict) else {})
        return f"rewrote {t.name} of {t.parent.name}"
