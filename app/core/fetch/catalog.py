"""The catalog of prebuilt backends: load (URL, file or folder), verify its signature, validate, match.

Matching uses the same `app.core.matcher.why_not` as the recommendation: an entry's `requires` plus its
platform and architecture must fit the hardware report, and its engine version must be one the user's
LM Studio has (the backend is a clone of that official engine). Entries that do not fit come back with
the sentences that say why.

An entry is either a *full* backend folder (packs that are ours alone) or an *overlay* (`kind: "overlay"`): only the
files we rebuilt plus our manifest/display-data, applied on the user's own official pack named by `base`
(`name@version`, platform, and the sha256 of each of its files). Whether an overlay fits also depends on that pack
being installed and being the very build the overlay was made from; `match_catalog` asks a `base_check` for that
(`app.core.fetch.overlay.BaseIndex` knows LM Studio's folders, this module does not).
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import urljoin

import jsonschema
import requests
from referencing import Registry, Resource

from app.core.fetch.download import RetryPolicy, fetch_small, is_url
from app.core.fetch.errors import CatalogError, SignatureError
from app.core.fetch.signing import SIGNATURE_SUFFIX, trusted_keys, verify_bytes
from app.core.hardware.report import HardwareReport
from app.core.matcher import RequirementsError, why_not
from app.core.paths import data_path
from app.core.userfile import JSON_LIMIT, read_bounded
from app.core.version import version_key

log = logging.getLogger(__name__)

CATALOG_FILE = "catalog.json"
CATALOG_ENV = "LMS_UNLOCKED_CATALOG"
# The GitHub repository whose `backends` release the backends workflow (.github/workflows/backends.yml) refreshes on
# every run: the release always holds the latest catalog, its signature and the archives it names. It must name the
# repository the workflow runs in (the project's public home; set it when the repository is published).
RELEASE_REPOSITORY = "lms-unlocked/lms-unlocked"
RELEASE_TAG = "backends"
DEFAULT_CATALOG_URL = f"https://github.com/{RELEASE_REPOSITORY}/releases/download/{RELEASE_TAG}/{CATALOG_FILE}"
KINDS = ("full", "overlay")
MAX_CATALOG_BYTES = 4 << 20
UNSIGNED_WARNING = (
    "WARNING: the catalog's signature was NOT verified (--allow-unsigned). Anyone who can change the catalog "
    "or its server can make you install any code. Use this only with a catalog you built yourself."
)


@dataclass(frozen=True)
class CatalogEntry:
    name: str
    version: str
    variant: str
    platform: str
    arch: str
    engine_version: str
    url: str
    size: int
    sha256: str
    requires: Mapping[str, Any] = field(default_factory=dict)
    mirrors: tuple[str, ...] = ()
    manifest_version: str = ""
    llama_tag: str = ""
    format: str = ""
    display_name: str = ""
    min_lmstudio_version: str = ""
    notes: tuple[str, ...] = ()
    kind: str = "full"  # "full": a whole backend folder; "overlay": applied on the official pack `base`
    base: Mapping[str, Any] = field(default_factory=dict)  # overlay: name, version, platform, arch, files

    @property
    def ident(self) -> str:
        return f"{self.name}@{self.version}"

    @property
    def base_ident(self) -> str:
        return f"{self.base.get('name')}@{self.base.get('version')}" if self.base else ""

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "name": self.name,
            "version": self.version,
            "variant": self.variant,
            "platform": self.platform,
            "arch": self.arch,
            "engine_version": self.engine_version,
        }
        if self.kind != "full":
            d["kind"] = self.kind
        for key in ("manifest_version", "llama_tag", "format", "display_name", "min_lmstudio_version"):
            if getattr(self, key):
                d[key] = getattr(self, key)
        d["url"] = self.url
        if self.mirrors:
            d["mirrors"] = list(self.mirrors)
        d["size"] = self.size
        d["sha256"] = self.sha256
        d["requires"] = dict(self.requires)
        if self.notes:
            d["notes"] = list(self.notes)
        if self.base:
            d["base"] = dict(self.base)
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> CatalogEntry:
        return cls(
            name=d["name"],
            version=d["version"],
            variant=d["variant"],
            platform=d["platform"],
            arch=d["arch"],
            engine_version=d["engine_version"],
            url=d["url"],
            size=int(d["size"]),
            sha256=d["sha256"],
            requires=dict(d.get("requires", {})),
            mirrors=tuple(d.get("mirrors", ())),
            manifest_version=d.get("manifest_version", ""),
            llama_tag=d.get("llama_tag", ""),
            format=d.get("format", ""),
            display_name=d.get("display_name", ""),
            min_lmstudio_version=d.get("min_lmstudio_version", ""),
            notes=tuple(d.get("notes", ())),
            kind=d.get("kind", "full"),
            base=dict(d.get("base", {})),
        )


@dataclass(frozen=True)
class Catalog:
    entries: tuple[CatalogEntry, ...]
    source: str  # where catalog.json came from (URL or path)
    base: str  # what relative entry URLs are resolved against (URL of the folder, or a local folder path)
    signed_by: str = ""  # key id that verified it; "" when unsigned was allowed
    warnings: tuple[str, ...] = ()
    data: Mapping[str, Any] = field(default_factory=dict, compare=False)

    def find(self, ident: str) -> CatalogEntry:
        """The entry `NAME@VERSION` (or the newest `NAME` when no version is given)."""
        name, _, version = ident.partition("@")
        hits = [e for e in self.entries if e.name == name and (not version or e.version == version)]
        if not hits:
            known = ", ".join(sorted(e.ident for e in self.entries)) or "none"
            raise CatalogError(
                f"The catalog has no entry {ident}.",
                context=self.source,
                hint=f"Entries in this catalog: {known}.",
            )
        return max(hits, key=lambda e: version_key(e.version))


@dataclass(frozen=True)
class ResolvedSource:
    """Where an entry's archive is: local file, or URLs (main first, then mirrors)."""

    local: Path | None
    urls: tuple[str, ...] = ()


@dataclass(frozen=True)
class EntryMatch:
    entry: CatalogEntry
    reasons: tuple[str, ...]  # empty: offered

    @property
    def offered(self) -> bool:
        return not self.reasons

    def one_line(self) -> str:
        """`NAME@VERSION (variant): offered` or `...: not offered: <why>` in one line (CLI list, wizard)."""
        what = f"{self.entry.ident} ({self.entry.variant}" + (
            f", overlay on {self.entry.base_ident})" if self.entry.kind == "overlay" else ")"
        )
        return f"{what}: " + ("offered" if self.offered else "not offered: " + "; ".join(self.reasons))


# An overlay entry -> "" when its official pack is installed and is the very build it was made from, else why not.
BaseCheck = Callable[[CatalogEntry], str]


# --- schema -------------------------------------------------------------------------------------------------------


@cache
def _validator() -> jsonschema.protocols.Validator:
    schema = json.loads(data_path("catalog.schema.json").read_text(encoding="utf-8"))
    req = json.loads(data_path("requirements.schema.json").read_text(encoding="utf-8"))
    req_uri = urljoin(schema["$id"], "requirements.schema.json")
    registry: Registry[Any] = Registry().with_resource(req_uri, Resource.from_contents(req))
    cls = jsonschema.validators.validator_for(schema)
    validator: jsonschema.protocols.Validator = cls(schema, registry=registry)
    return validator


def validate_catalog_data(data: Any, *, source: str) -> None:
    """Raises CatalogError listing the first schema violations."""
    errors = sorted(_validator().iter_errors(data), key=lambda e: list(e.absolute_path))
    if errors:
        lines = [f"{'/'.join(str(p) for p in e.absolute_path) or '(top)'}: {e.message}" for e in errors[:10]]
        raise CatalogError(
            f"The catalog does not match its schema ({len(errors)} problem(s)): {lines[0]}",
            context=source,
            hint="Regenerate it with `lms-unlocked publish`.",
            details="\n".join(lines),
        )
    for e in data.get("entries", []):
        try:
            why_not(HardwareReport(), e.get("requires", {}))
        except RequirementsError as exc:
            raise CatalogError(f"Entry {e.get('name')}@{e.get('version')}: {exc}", context=source) from exc


def parse_catalog(raw: bytes, *, source: str) -> dict[str, Any]:
    try:
        data = json.loads(raw.decode("utf-8-sig"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise CatalogError(f"The catalog is not valid JSON: {exc}", context=source) from exc
    validate_catalog_data(data, source=source)
    assert isinstance(data, dict)
    return data


# --- loading ------------------------------------------------------------------------------------------------------


def default_catalog_source() -> str:
    """$LMS_UNLOCKED_CATALOG (URL, file or folder) or the latest release's catalog (DEFAULT_CATALOG_URL)."""
    return os.environ.get(CATALOG_ENV) or DEFAULT_CATALOG_URL


def _read_local(source: str) -> tuple[bytes, bytes | None, str, str]:
    p = Path(source).expanduser()
    if p.is_dir():
        p = p / CATALOG_FILE
    raw = read_bounded(p, limit=JSON_LIMIT, what=f"the catalog {p}", regular_only=False,
                       hint="Give a catalog.json file, a folder that holds one, or an https:// URL.")
    sig_path = p.with_name(p.name + SIGNATURE_SUFFIX)
    sig = None
    if sig_path.exists():
        sig = read_bounded(sig_path, limit=64 * 1024, what=f"the catalog's signature {sig_path}")
    return raw, sig, str(p), str(p.parent)


def _read_remote(
    url: str, policy: RetryPolicy | None, session: requests.Session | None
) -> tuple[bytes, bytes | None, str, str]:
    if url.endswith("/"):
        url = url + CATALOG_FILE
    raw = fetch_small(url, max_bytes=MAX_CATALOG_BYTES, policy=policy, session=session)
    if raw is None:
        raise CatalogError(f"The catalog {url} does not exist (HTTP 404).", context=url)
    sig = fetch_small(url + SIGNATURE_SUFFIX, max_bytes=64 * 1024, policy=policy, session=session)
    return raw, sig, url, urljoin(url, ".")


def load_catalog(
    source: str | Path | None = None,
    *,
    public_key_path: Path | None = None,
    allow_unsigned: bool = False,
    policy: RetryPolicy | None = None,
    session: requests.Session | None = None,
) -> Catalog:
    """Read, verify and validate a catalog.

    Args:
        source: https URL (or http to loopback), a catalog.json path or a folder holding one; None: the default.
        public_key_path: trust this key instead of the app's key ring (tests, private catalogs).
        allow_unsigned: accept a missing/invalid signature, with a loud warning in `Catalog.warnings`.

    Raises:
        SignatureError: missing, wrong-key or tampered signature (unless allow_unsigned).
        CatalogError: not JSON, or not matching the schema.
    """
    src = str(source) if source is not None else default_catalog_source()
    raw, sig, where, base = _read_remote(src, policy, session) if is_url(src) else _read_local(src)
    warnings: list[str] = []
    signed_by = ""
    try:
        signed_by = verify_bytes(raw, sig, trusted_keys(public_key_path), what=where)
    except SignatureError as exc:
        if not allow_unsigned:
            raise
        warnings.append(UNSIGNED_WARNING + f" ({exc.message})")
        log.warning("%s", warnings[-1])
    data = parse_catalog(raw, source=where)
    entries = tuple(CatalogEntry.from_dict(e) for e in data["entries"])
    return Catalog(entries, where, base, signed_by, tuple(warnings), data)


def resolve_entry_source(catalog: Catalog, entry: CatalogEntry) -> ResolvedSource:
    """The archive of `entry`: a local file (catalog in a folder, relative URL) or URLs to download."""
    urls: list[str] = []
    local: Path | None = None
    for u in (entry.url, *entry.mirrors):
        if is_url(u):
            urls.append(u)
        elif is_url(catalog.base):
            urls.append(urljoin(catalog.base, u))
        elif local is None:
            candidate = Path(catalog.base) / u
            if candidate.is_file():
                local = candidate
    return ResolvedSource(local, tuple(urls))


# --- matching -----------------------------------------------------------------------------------------------------


@cache
def _variant_ranks() -> dict[str, int]:
    try:
        data = json.loads(data_path("variants.json").read_text(encoding="utf-8"))
        return {str(v["id"]): int(v.get("rank", 100)) for v in data.get("variants", [])}
    except (OSError, ValueError, KeyError, TypeError):
        return {}


def match_entry(
    entry: CatalogEntry,
    report: HardwareReport,
    *,
    engine_versions: Collection[str] | None = None,
    base_check: BaseCheck | None = None,
) -> EntryMatch:
    requires = dict(entry.requires)
    requires.setdefault("platforms", [entry.platform])
    requires.setdefault("architectures", [entry.arch])
    reasons = list(why_not(report, requires))
    if entry.kind == "overlay" and base_check is not None:
        why = base_check(entry) if not reasons else ""  # hashing the user's pack only for entries that fit otherwise
        if why:
            reasons.append(why)
    elif engine_versions is not None:
        if not engine_versions:
            reasons.append(
                "no official LM Studio llama.cpp engine is installed to check the version against; "
                "start LM Studio once so it unpacks its engines"
            )
        elif entry.engine_version not in engine_versions:
            have = ", ".join(sorted(engine_versions, key=version_key))
            reasons.append(
                f"is made for LM Studio engine {entry.engine_version}; this LM Studio has engine version(s) {have}"
            )
    return EntryMatch(entry, tuple(reasons))


def match_catalog(
    catalog: Catalog | Sequence[CatalogEntry],
    report: HardwareReport,
    *,
    engine_versions: Collection[str] | None = None,
    base_check: BaseCheck | None = None,
) -> list[EntryMatch]:
    """Every entry with why it is not offered (empty reasons = offered), best offers first.

    `base_check` judges overlay entries against the user's installed official packs (None: not judged, e.g. when
    there is no LM Studio home to look in)."""
    entries = catalog.entries if isinstance(catalog, Catalog) else tuple(catalog)
    matches = [match_entry(e, report, engine_versions=engine_versions, base_check=base_check) for e in entries]
    ranks = _variant_ranks()

    newest = sorted({m.entry.engine_version for m in matches}, key=version_key, reverse=True)
    age = {v: i for i, v in enumerate(newest)}  # 0 = the newest engine version

    def order(m: EntryMatch) -> tuple[int, int, int, str]:
        return (0 if m.offered else 1, ranks.get(m.entry.variant, 100), age[m.entry.engine_version], m.entry.ident)

    return sorted(matches, key=order)


def best_entry(matches: Sequence[EntryMatch]) -> CatalogEntry | None:
    offered = [m for m in matches if m.offered]
    return offered[0].entry if offered else None


def official_engine_versions(backends: Sequence[Any]) -> set[str]:
    """Engine versions of the official llama.cpp backends installed (BackendInfo list, ours excluded)."""
    return {
        b.version
        for b in backends
        if getattr(b, "valid", False) and not getattr(b, "ours", False) and str(b.name).startswith("llama.cpp-")
    }
