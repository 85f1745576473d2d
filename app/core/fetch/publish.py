"""Maintainer flow: archive a built backend folder, add/update its catalog entry, sign the catalog.

`publish(folder, out_dir, key_path=...)` writes `<out>/<name>-<version>.7z` (or .tar.xz), then
`<out>/catalog.json` with an entry whose URL is relative to the catalog (so the folder can be served
from any host, or used offline), then `<out>/catalog.json.sig`. An existing signed catalog is only
updated when its current signature verifies with the same key: a catalog changed behind the
maintainer's back is never re-signed.
"""

from __future__ import annotations

import contextlib
import json
import os
import tarfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import py7zr

from app.core.fetch.archives import find_backend_root
from app.core.fetch.catalog import CATALOG_FILE, CatalogEntry, parse_catalog
from app.core.fetch.download import hash_file
from app.core.fetch.errors import CatalogError, PatchRefused
from app.core.fetch.signing import SIGNATURE_SUFFIX, key_id, load_private_key, sign_bytes, verify_bytes
from app.core.lmstudio.backends import BackendInfo, read_backend
from app.core.lmstudio.jsondoc import atomic_write_bytes
from app.core.lmstudio.provenance import read_provenance
from app.core.paths import data_path
from app.core.version import version_key

FORMATS = ("7z", "tar.xz")


@dataclass(frozen=True)
class PublishResult:
    archive: Path
    entry: CatalogEntry
    catalog: Path
    signature: Path | None  # None: written unsigned (no key given)
    replaced: bool  # an entry with the same name@version was updated
    key_id: str = ""
    audit_summary: str = ""


def _variants() -> dict[str, dict[str, Any]]:
    data = json.loads(data_path("variants.json").read_text(encoding="utf-8"))
    return {str(v["id"]): v for v in data.get("variants", [])}


def guess_variant(info: BackendInfo, provenance: Mapping[str, Any] | None) -> str:
    """The variant id recorded by the build (provenance), else inferred from the manifest."""
    if provenance and isinstance(provenance.get("variant"), str) and provenance["variant"]:
        return str(provenance["variant"])
    fw = info.gpu_framework.lower()
    if fw == "cuda":
        return "cuda"
    if fw == "vulkan":
        return "vulkan-avx1"
    if not [x for x in info.ise if x]:
        return "noavx"
    return "cpu-avx1"


def derive_requires(info: BackendInfo, variant: str) -> dict[str, Any]:
    """What a host needs for this backend: the variant's requirements, pinned to the pack's OS/arch/GPU targets."""
    base = dict(_variants().get(variant, {}).get("requires", {}))
    if info.platform:
        base["platforms"] = [info.platform]
    if info.arch:
        base["architectures"] = [info.arch]
    if info.gpu_framework.lower() == "cuda" and info.gpu_targets:
        try:
            lo = min(info.gpu_targets, key=lambda t: tuple(int(x) for x in t.split(".")))
            base["nvidia_cc_min"] = lo
        except ValueError:
            pass
    return base


def _write_archive(folder: Path, dest: Path, fmt: str) -> None:
    tmp = dest.with_name(dest.name + ".tmp")
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()
    try:
        if fmt == "7z":
            with py7zr.SevenZipFile(tmp, "w") as z:
                z.writeall(folder, folder.name)
        else:
            with tarfile.open(tmp, "w:xz") as tf:
                tf.add(folder, folder.name)
        os.replace(tmp, dest)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


def _audit(folder: Path, requires: Mapping[str, Any]) -> str:
    """Refuse to publish binaries that need more than the entry's `requires.cpu_isa` promises."""
    from app.core.builder.audit import audit_folder, audit_violations

    cpu_isa = list(requires.get("cpu_isa", []))
    fa = audit_folder(folder)
    bad = audit_violations(fa, cpu_isa)
    if bad:
        raise PatchRefused(
            f"{folder.name} needs instructions its catalog entry does not require ({len(bad)} finding(s)).",
            context=str(folder),
            hint="Build it with the variant's flags, or pass a `requires` that tells the truth.",
            details="\n".join(v.describe() for v in bad),
        )
    counted = [b for b in fa.binaries if b.counted]
    return f"ISA audit: {len(counted)} binar{'y' if len(counted) == 1 else 'ies'} need nothing beyond {cpu_isa}"


def publish(
    folder: Path,
    out_dir: Path,
    *,
    key_path: Path | None = None,
    fmt: str = "7z",
    variant: str | None = None,
    requires: Mapping[str, Any] | None = None,
    base_url: str = "",
    mirrors: Sequence[str] = (),
    notes: Sequence[str] = (),
    audit: bool = True,
) -> PublishResult:
    """Archive `folder` into `out_dir` and add/update its entry in `out_dir/catalog.json` (signed with `key_path`).

    Raises:
        CatalogError: bad folder, existing catalog malformed.
        SignatureError: the existing catalog's signature does not verify with this key.
        PatchRefused: the ISA audit found instructions beyond the entry's requirements.
    """
    if fmt not in FORMATS:
        raise CatalogError(f"Unknown archive format {fmt!r}; use one of {', '.join(FORMATS)}.")
    root, _nested = find_backend_root(Path(folder))
    info = read_backend(root)
    if not info.valid:
        problems = "; ".join(str(p) for p in info.problems) or "no name/version"
        raise CatalogError(f"{root} is not a valid backend folder: {problems}", context=str(root))
    key = load_private_key(key_path) if key_path is not None else None
    prov = read_provenance(root)
    var = variant or guess_variant(info, prov)
    req = dict(requires) if requires is not None else derive_requires(info, var)
    audit_summary = _audit(root, req) if audit else ""
    out_dir.mkdir(parents=True, exist_ok=True)
    archive = out_dir / f"{info.name}-{info.version}.{fmt}"
    _write_archive(root, archive, fmt)
    sha, size = hash_file(archive)
    url = (base_url.rstrip("/") + "/" + archive.name) if base_url else archive.name
    tag = info.llama_tag or info.llama_commit or ""
    template = str((prov or {}).get("template", ""))
    engine_version = template.rpartition("@")[2] if "@" in template else info.version
    entry = CatalogEntry(
        name=info.name,
        version=info.version,
        variant=var,
        platform=info.platform,
        arch=info.arch,
        engine_version=engine_version,
        url=url,
        size=size,
        sha256=sha,
        requires=req,
        mirrors=tuple(mirrors),
        manifest_version=info.manifest_version if info.manifest_version in ("3", "4") else "",
        llama_tag=tag,
        format=fmt,
        display_name=info.display_name,
        min_lmstudio_version=info.minimum_lmstudio_version,
        notes=tuple(notes),
    )
    catalog_path = out_dir / CATALOG_FILE
    sig_path = catalog_path.with_name(catalog_path.name + SIGNATURE_SUFFIX)
    data: dict[str, Any] = {"schema_version": 1, "entries": []}
    if catalog_path.exists():
        raw = catalog_path.read_bytes()
        if key is not None and sig_path.exists():
            verify_bytes(
                raw, sig_path.read_text(encoding="utf-8"), key.public_key(), what=f"the existing {catalog_path}"
            )
        data = parse_catalog(raw, source=str(catalog_path))
    entries = [CatalogEntry.from_dict(e) for e in data["entries"]]
    replaced = any(e.ident == entry.ident for e in entries)
    entries = [e for e in entries if e.ident != entry.ident] + [entry]
    entries.sort(key=lambda e: (e.name, version_key(e.version)))
    data["entries"] = [e.to_dict() for e in entries]
    data["generated_at"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    raw_new = (json.dumps(data, indent=2, ensure_ascii=False) + "\n").encode("utf-8")
    parse_catalog(raw_new, source=str(catalog_path))  # never write a catalog the app would refuse
    atomic_write_bytes(catalog_path, raw_new)
    if key is not None:
        atomic_write_bytes(sig_path, sign_bytes(raw_new, key).encode("ascii"))
        return PublishResult(archive, entry, catalog_path, sig_path, replaced, key_id(key.public_key()), audit_summary)
    with contextlib.suppress(FileNotFoundError):
        sig_path.unlink()  # an old signature would not match the new bytes
    return PublishResult(archive, entry, catalog_path, None, replaced, "", audit_summary)
