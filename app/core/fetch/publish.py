"""Maintainer flow: archive a built backend folder as an overlay (or whole), add/update its catalog entry, sign.

`publish(folder, out_dir, template=..., key=...)` writes `<out>/<name>-<version>.overlay.7z` (only the files we
rebuilt, our manifest files and the overlay description: app.core.fetch.overlay) or, without a template, the whole
folder as `<out>/<name>-<version>.7z` (only for packs that are ours alone), then `<out>/catalog.json` with an entry
whose URL is relative to the catalog (so the folder can be served from any host, or used offline), then
`<out>/catalog.json.sig`. An existing signed catalog is only updated when its current signature verifies with the
signing key or a key the app trusts: a catalog changed behind the maintainer's back is never re-signed.
`merge_catalog` adds the entries of an unsigned catalog made by a CI build job (and their archives) to the signed one.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tarfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import py7zr

from app.core.errors import UnlockedError
from app.core.fetch.archives import find_backend_root
from app.core.fetch.catalog import CATALOG_FILE, CatalogEntry, parse_catalog
from app.core.fetch.download import hash_file
from app.core.fetch.errors import CatalogError, PatchRefused, SignatureError
from app.core.fetch.overlay import audit_or_refuse, plan_overlay, write_overlay_folder
from app.core.fetch.signing import (
    SIGNATURE_SUFFIX,
    Ed25519PrivateKey,
    TrustedKey,
    key_id,
    load_keyring,
    load_private_key,
    sign_bytes,
    verify_bytes,
)
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
    cpu_isa = list(requires.get("cpu_isa", []))
    n = audit_or_refuse(
        folder,
        cpu_isa,
        PatchRefused,
        f"{folder.name} needs instructions its catalog entry does not require",
        "Build it with the variant's flags, or pass a `requires` that tells the truth.",
    )
    return f"ISA audit: {n} binar{'y' if n == 1 else 'ies'} need nothing beyond {cpu_isa}"


def publish(
    folder: Path,
    out_dir: Path,
    *,
    template: Path | None = None,
    key_path: Path | None = None,
    key: Ed25519PrivateKey | None = None,
    fmt: str = "7z",
    variant: str | None = None,
    requires: Mapping[str, Any] | None = None,
    base_url: str = "",
    mirrors: Sequence[str] = (),
    notes: Sequence[str] = (),
    audit: bool = True,
) -> PublishResult:
    """Archive `folder` into `out_dir` and add/update its entry in `out_dir/catalog.json`, signed with `key` (or the
    key file `key_path`, never inside a git work tree).

    Args:
        template: the official pack `folder` was built from: publish an overlay (only our files). None: publish the
            whole folder, which is right only for packs that are ours alone (refused for a folder cloned from an
            official template: LM Studio's binaries may not be redistributed).

    Raises:
        CatalogError: bad folder, existing catalog malformed, whole folder of a cloned official pack.
        OverlayError: the overlay cannot be made (wrong template, unhashable kept files, foreign changed files).
        SignatureError: the existing catalog's signature does not verify with this key or a trusted one.
        PatchRefused: the ISA audit found instructions beyond the entry's requirements.
    """
    if fmt not in FORMATS:
        raise CatalogError(f"Unknown archive format {fmt!r}; use one of {', '.join(FORMATS)}.")
    root, _nested = find_backend_root(Path(folder))
    info = read_backend(root)
    if not info.valid:
        problems = "; ".join(str(p) for p in info.problems) or "no name/version"
        raise CatalogError(f"{root} is not a valid backend folder: {problems}", context=str(root))
    if key is None and key_path is not None:
        key = load_private_key(key_path)
    prov = read_provenance(root)
    made_from = str((prov or {}).get("template", ""))
    if template is None and made_from:
        raise CatalogError(
            f"{info.ident} is a clone of LM Studio's {made_from}: publishing the whole folder would redistribute "
            "LM Studio's own binaries.",
            context=str(root),
            hint="Publish it as an overlay: pass the official pack it was built from with --template DIR.",
        )
    var = variant or guess_variant(info, prov)
    req = dict(requires) if requires is not None else derive_requires(info, var)
    audit_summary = _audit(root, req) if audit else ""
    spec = plan_overlay(root, Path(template)) if template is not None else None
    out_dir.mkdir(parents=True, exist_ok=True)
    if spec is not None:
        archive = out_dir / f"{info.name}-{info.version}.overlay.{fmt}"
        tmp_root = out_dir / f".overlay-{os.getpid()}"
        shutil.rmtree(tmp_root, ignore_errors=True)
        try:
            _write_archive(write_overlay_folder(root, spec, tmp_root / root.name), archive, fmt)
        finally:
            shutil.rmtree(tmp_root, ignore_errors=True)
    else:
        archive = out_dir / f"{info.name}-{info.version}.{fmt}"
        _write_archive(root, archive, fmt)
    sha, size = hash_file(archive)
    url = (base_url.rstrip("/") + "/" + archive.name) if base_url else archive.name
    tag = info.llama_tag or info.llama_commit or ""
    engine_version = made_from.rpartition("@")[2] if "@" in made_from else info.version
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
        kind="overlay" if spec is not None else "full",
        base=dict(spec.base) if spec is not None else {},
    )
    catalog_path, data = _read_existing(out_dir, key)
    replaced = any(e["name"] == entry.name and e["version"] == entry.version for e in data["entries"])
    sig_path = _write_catalog(catalog_path, data, [entry], key)
    kid = key_id(key.public_key()) if key is not None else ""
    return PublishResult(archive, entry, catalog_path, sig_path, replaced, kid, audit_summary)


def _existing_trust(key: Ed25519PrivateKey) -> list[TrustedKey]:
    """Keys an existing catalog may be signed with to be extended: the signing key, and the app's active keys (the
    catalog of the key being rotated out)."""
    own = TrustedKey(key_id(key.public_key()), key.public_key(), "active")
    try:
        ring = [k for k in load_keyring() if k.active]
    except UnlockedError:
        ring = []
    return [own, *ring]


def _read_existing(out_dir: Path, key: Ed25519PrivateKey | None) -> tuple[Path, dict[str, Any]]:
    catalog_path = out_dir / CATALOG_FILE
    sig_path = catalog_path.with_name(catalog_path.name + SIGNATURE_SUFFIX)
    data: dict[str, Any] = {"schema_version": 1, "entries": []}
    if catalog_path.exists():
        raw = catalog_path.read_bytes()
        if key is not None and sig_path.exists():
            verify_bytes(raw, sig_path.read_text(encoding="utf-8"), _existing_trust(key),
                         what=f"the existing {catalog_path}")
        elif key is not None:
            raise SignatureError(
                f"The existing {catalog_path} has no signature, so it is not extended and signed.",
                context=str(catalog_path),
                hint="Start from the published (signed) catalog, or remove the unsigned one.",
            )
        data = parse_catalog(raw, source=str(catalog_path))
    return catalog_path, data


def _write_catalog(
    catalog_path: Path, data: dict[str, Any], new: Sequence[CatalogEntry], key: Ed25519PrivateKey | None
) -> Path | None:
    """Add/replace `new` entries, validate, write, sign (or remove a stale signature). Returns the signature path."""
    sig_path = catalog_path.with_name(catalog_path.name + SIGNATURE_SUFFIX)
    idents = {e.ident for e in new}
    entries = [CatalogEntry.from_dict(e) for e in data["entries"]]
    entries = [e for e in entries if e.ident not in idents] + list(new)
    entries.sort(key=lambda e: (e.name, version_key(e.version)))
    data["entries"] = [e.to_dict() for e in entries]
    data["generated_at"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    raw_new = (json.dumps(data, indent=2, ensure_ascii=False) + "\n").encode("utf-8")
    parse_catalog(raw_new, source=str(catalog_path))  # never write a catalog the app would refuse
    atomic_write_bytes(catalog_path, raw_new)
    if key is not None:
        atomic_write_bytes(sig_path, sign_bytes(raw_new, key).encode("ascii"))
        return sig_path
    with contextlib.suppress(FileNotFoundError):
        sig_path.unlink()  # an old signature would not match the new bytes
    return None


@dataclass(frozen=True)
class MergeResult:
    catalog: Path
    signature: Path | None
    added: tuple[CatalogEntry, ...]
    key_id: str = ""


def merge_catalog(fragment: Path, out_dir: Path, *, key: Ed25519PrivateKey | None) -> MergeResult:
    """Add every entry of the catalog `fragment` (unsigned, written by `publish` in a CI build job of the same run)
    with its archive to `out_dir/catalog.json`, and sign that.

    Raises:
        CatalogError: the fragment is malformed, or an archive it names is missing or not what the entry says.
    """
    frag = fragment / CATALOG_FILE if fragment.is_dir() else fragment
    try:
        raw = frag.read_bytes()
    except OSError as exc:
        raise CatalogError(f"Cannot read {frag}: {exc.strerror or exc}.", context=str(frag)) from exc
    entries = [CatalogEntry.from_dict(e) for e in parse_catalog(raw, source=str(frag))["entries"]]
    out_dir.mkdir(parents=True, exist_ok=True)
    for e in entries:
        src = frag.parent / e.url
        if "/" in e.url or not src.is_file() or hash_file(src) != (e.sha256, e.size):
            raise CatalogError(
                f"{frag} names {e.url} for {e.ident}, which is not a file of that size and sha256 beside it.",
                context=str(frag),
            )
        if src.resolve() != (out_dir / e.url).resolve():
            shutil.copyfile(src, out_dir / e.url)
    catalog_path, data = _read_existing(out_dir, key)
    sig = _write_catalog(catalog_path, data, entries, key)
    return MergeResult(catalog_path, sig, tuple(entries), key_id(key.public_key()) if key is not None else "")
