"""Detached ed25519 signatures of catalogs: the trusted public keys ship in the app, maintainers hold the private key.

A signature file (`catalog.json.sig`) is a small JSON object::

    {"algorithm": "ed25519", "key_id": "<16 hex>", "signature": "<base64 of 64 bytes>"}

over the exact bytes of the catalog file (RFC 8032 "pure" Ed25519; keys are PEM: SubjectPublicKeyInfo and
unencrypted PKCS#8, RFC 8410). `key_id` is the first 16 hex digits of the sha256 of the raw
32-byte public key; it picks the trusted key and names it in messages, the check is the signature itself.

The app trusts a *key ring*, `app/data/catalog-keys.json` (schema `catalog-keys.schema.json`): several public keys,
each with a status (`active`: catalogs it signs are accepted; `retired`: refused, kept only so the message can say
why) and a validity note. Rotation (docs/publishing.md) adds the new key as `active` in an app release before the
old one is retired, so every app in use trusts whichever key signs the catalog during the change. A maintainer's
private key comes only from an environment variable (the CI secret store) or from a file the maintainer names, and
never from inside a git work tree (`refuse_key_in_repository`).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from Cryptodome.PublicKey import ECC
from Cryptodome.Signature import eddsa

from app.core.errors import InputFileError
from app.core.fetch.errors import SignatureError
from app.core.paths import data_path
from app.core.userfile import read_bounded

# pycryptodomex does the ed25519 math: py7zr needs it anyway, so signatures add nothing to the bundle (the
# `cryptography` wheel's one Rust extension was 11.6 MB of it). Both private and public keys are ECC.EccKey.
Ed25519PublicKey = ECC.EccKey
Ed25519PrivateKey = ECC.EccKey

SIGNATURE_SUFFIX = ".sig"
KEYRING_FILE = "catalog-keys.json"
KEY_STATUSES = ("active", "retired")


@dataclass(frozen=True)
class TrustedKey:
    """One public key of the app's key ring."""

    key_id: str
    key: Ed25519PublicKey
    status: str  # "active" | "retired"
    note: str = ""
    added: str = ""
    retired: str = ""

    @property
    def active(self) -> bool:
        return self.status == "active"


def shipped_keyring_path() -> Path:
    return data_path(KEYRING_FILE)


def _raw_public(key: Ed25519PublicKey) -> bytes:
    return bytes(key.public_key().export_key(format="raw"))


# DER of the algorithm identifier id-Ed25519 (OID 1.3.101.112, RFC 8410). Both a SubjectPublicKeyInfo and a PKCS#8
# ed25519 key carry it within their first 16 bytes; checking it first means a key of another kind is refused the
# same way everywhere, without loading that curve's arithmetic (which the bundle leaves out).
_ED25519_OID_DER = bytes.fromhex("06032b6570")


def _import_pem(text: bytes) -> ECC.EccKey:
    body = b"".join(line.strip() for line in text.splitlines() if line.strip() and not line.startswith(b"-----"))
    try:
        der = base64.b64decode(body, validate=True)
    except binascii.Error as exc:
        raise ValueError(f"bad PEM body ({exc})") from exc
    if _ED25519_OID_DER not in der[:16]:
        raise ValueError("not an ed25519 key")
    return ECC.import_key(text.decode("ascii"))


def _ed25519(key: ECC.EccKey, *, private: bool) -> ECC.EccKey:
    """`key` (an ed25519 key: _import_pem checked its algorithm) if it is the private/public kind wanted."""
    if key.has_private() != private:
        raise ValueError("a private key where a public one was expected" if key.has_private() else "no private key")
    return key


def key_id(key: Ed25519PublicKey) -> str:
    return hashlib.sha256(_raw_public(key)).hexdigest()[:16]


def public_key_from_bytes(data: bytes, *, origin: str = "key") -> Ed25519PublicKey:
    """A public key from PEM (SubjectPublicKeyInfo) or a single base64 line of the raw 32 bytes."""
    text = data.strip()
    try:
        if text.startswith(b"-----BEGIN"):
            return _ed25519(_import_pem(text), private=False)
        return eddsa.import_public_key(base64.b64decode(text, validate=True))
    except (ValueError, TypeError, IndexError, UnicodeDecodeError, binascii.Error, OSError) as exc:
        raise InputFileError(
            f"{origin} is not an ed25519 public key: {exc}",
            context=origin,
            hint="Give the PEM file written by `lms-unlocked publish --new-key`.",
        ) from exc


def load_keyring(path: Path | None = None) -> tuple[TrustedKey, ...]:
    """The key ring shipped in the app (or `path`), validated against its schema; each key id checked."""
    p = path or shipped_keyring_path()
    return _load_keyring(p.resolve())


@cache
def _load_keyring(p: Path) -> tuple[TrustedKey, ...]:
    import jsonschema

    try:
        data = json.loads(p.read_text(encoding="utf-8"))
        schema = json.loads(data_path("catalog-keys.schema.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise InputFileError(f"Cannot read the trusted keys {p}: {exc}", context=str(p)) from exc
    errors = sorted(jsonschema.Draft202012Validator(schema).iter_errors(data), key=lambda e: list(e.absolute_path))
    if errors:
        raise InputFileError(f"The trusted keys {p} do not match their schema: {errors[0].message}", context=str(p))
    out: list[TrustedKey] = []
    for k in data["keys"]:
        pub = public_key_from_bytes(str(k["public_key"]).encode("ascii"), origin=f"{p}: key {k['key_id']}")
        if key_id(pub) != k["key_id"]:
            raise InputFileError(f"{p}: key {k['key_id']} has the id {key_id(pub)}.", context=str(p))
        out.append(TrustedKey(k["key_id"], pub, k["status"], k.get("note", ""), k.get("added", ""),
                              k.get("retired", "")))
    return tuple(out)


def trusted_keys(public_key_path: Path | None = None) -> tuple[TrustedKey, ...]:
    """What a catalog may be signed with: the one key in `public_key_path` (tests, private catalogs), else the app's
    key ring."""
    if public_key_path is not None:
        pub = load_public_key(public_key_path)
        return (TrustedKey(key_id(pub), pub, "active", f"given with --public-key {public_key_path}"),)
    return load_keyring()


def load_public_key(path: Path) -> Ed25519PublicKey:
    """A public key file (PEM, or one base64 line of the raw 32 bytes)."""
    p = path
    try:
        data = p.read_bytes()
    except OSError as exc:
        raise InputFileError(f"Cannot read the public key {p}: {exc.strerror or exc}.", context=str(p)) from exc
    return public_key_from_bytes(data, origin=str(p))


def git_work_tree(path: Path) -> Path | None:
    """The git work tree (a folder holding `.git`) that `path` lies in, if any."""
    p = Path(os.path.abspath(path.expanduser()))
    for d in (p, *p.parents):
        if (d / ".git").exists():
            return d
    return None


TEST_KEY_PREFIX = "TEST-ONLY-"  # tests/fixtures/TEST-ONLY-catalog-signing.key: public on purpose, trusted by no app


def refuse_key_in_repository(path: Path) -> None:
    """A private signing key is never read from or written into a git work tree (this project's or any other):
    one `git add -A` would publish it. The one exception is a file named TEST-ONLY-* (the tests' public key pair),
    and `load_private_key` refuses even that one if the app trusts its public half.

    Raises:
        InputFileError: the path lies inside a git work tree.
    """
    real = Path(os.path.realpath(path.expanduser()))  # a link outside that points in is read/written inside
    tree = git_work_tree(path) or git_work_tree(real)
    if tree is not None and not (path.name.startswith(TEST_KEY_PREFIX) and real.name.startswith(TEST_KEY_PREFIX)):
        raise InputFileError(
            f"Refusing a signing key inside the git work tree {tree} ({path}).",
            context=str(path),
            hint="Keep the private key outside every repository (e.g. ~/.config/lms-unlocked-maintainer/), or pass "
            "it from the CI secret store with --key-env VAR.",
        )


def load_private_key(path: Path) -> Ed25519PrivateKey:
    """An unencrypted PKCS#8 PEM ed25519 private key from a file the maintainer names (outside any repository)."""
    refuse_key_in_repository(path)
    data = read_bounded(path, limit=64 * 1024, what=f"the signing key {path}", regular_only=False,
                        hint="Pass --key with the catalog's private key (PEM), or --key-env VAR.")
    key = private_key_from_bytes(data, origin=str(path))
    inside = git_work_tree(path) or git_work_tree(Path(os.path.realpath(path)))
    if inside is not None and key_id(key.public_key()) in {k.key_id for k in load_keyring()}:
        raise InputFileError(
            f"{path} is a private key the app trusts, inside a git work tree: it must be treated as leaked.",
            context=str(path),
            hint="Rotate the key (docs/publishing.md) and never keep the new one in a repository.",
        )
    return key


def load_private_key_env(var: str) -> Ed25519PrivateKey:
    """The private key (PEM text) in the environment variable `var`: how CI passes its secret, without a file."""
    text = os.environ.get(var, "")
    if not text.strip():
        raise InputFileError(
            f"The environment variable {var} holds no signing key.",
            context=var,
            hint="In CI, map the secret to it (env: {VAR: ${{ secrets.CATALOG_SIGNING_KEY }}}).",
        )
    return private_key_from_bytes(text.encode("utf-8"), origin=f"${var}")


def private_key_from_bytes(data: bytes, *, origin: str) -> Ed25519PrivateKey:
    path = origin  # a file path or "$VAR"
    try:
        key = _import_pem(data.strip())
    except (ValueError, TypeError, IndexError, UnicodeDecodeError, OSError) as exc:
        raise InputFileError(
            f"{path} is not an unencrypted PEM private key: {exc}",
            context=str(path),
            hint="Create one with `lms-unlocked publish --new-key FILE`.",
        ) from exc
    try:
        return _ed25519(key, private=True)
    except ValueError as exc:
        raise InputFileError(f"{path} is not an ed25519 private key: {exc}.", context=str(path)) from exc


def generate_keypair() -> tuple[bytes, bytes]:
    """(private PEM, public PEM) of a new key."""
    key = ECC.generate(curve="Ed25519")
    return (key.export_key(format="PEM") + "\n").encode("ascii"), public_pem(key)


def public_pem(key: Ed25519PrivateKey) -> bytes:
    return (key.public_key().export_key(format="PEM") + "\n").encode("ascii")


def sign_bytes(data: bytes, key: Ed25519PrivateKey) -> str:
    """The signature file's text for `data`."""
    sig = eddsa.new(key, "rfc8032").sign(data)
    doc = {
        "algorithm": "ed25519",
        "key_id": key_id(key.public_key()),
        "signature": base64.b64encode(sig).decode("ascii"),
    }
    return json.dumps(doc, indent=2) + "\n"


def verify_bytes(
    data: bytes,
    signature_text: str | bytes | None,
    key: Ed25519PublicKey | Sequence[TrustedKey],
    *,
    what: str,
) -> str:
    """Check a detached signature against one key or a key ring; return the id of the key that verified it.

    Raises:
        SignatureError: missing, malformed, made with a key not trusted (or retired), or not matching the bytes.
    """
    ring: Sequence[TrustedKey] = (TrustedKey(key_id(key), key, "active"),) if isinstance(key, ECC.EccKey) else key
    hint = (
        "Do not use this catalog: it may have been tampered with. Get it from the official source, "
        "or pass --allow-unsigned only if you trust where it came from."
    )
    if signature_text is None:
        raise SignatureError(f"{what} has no signature file ({what}{SIGNATURE_SUFFIX}).", context=what, hint=hint)
    try:
        doc = json.loads(signature_text)
        if not isinstance(doc, dict) or doc.get("algorithm") != "ed25519":
            raise ValueError("not an ed25519 signature document")
        sig = base64.b64decode(str(doc["signature"]), validate=True)
    except (ValueError, KeyError, binascii.Error) as exc:
        raise SignatureError(f"The signature of {what} is malformed: {exc}", context=what, hint=hint) from exc
    claimed = str(doc.get("key_id", ""))
    active = [k for k in ring if k.active]
    retired = next((k for k in ring if not k.active and k.key_id == claimed), None)
    if retired is not None:
        raise SignatureError(
            f"{what} is signed with the retired key {claimed}, which this app no longer trusts"
            + (f" ({retired.note})" if retired.note else "") + ".",
            context=what,
            hint="Get the catalog again from the official source (it is re-signed with the current key), or update "
            "the app.",
        )
    if not active:
        raise SignatureError(
            f"This app trusts no catalog signing key yet, so {what} cannot be verified.",
            context=what,
            hint="See docs/publishing.md (keys); pass --public-key FILE for a catalog whose key you trust.",
        )
    # The claimed id only picks the key to try first; every active key is tried, the signature decides.
    for k in sorted(active, key=lambda k: k.key_id != claimed):
        try:
            eddsa.new(k.key, "rfc8032").verify(data, sig)
            return k.key_id
        except ValueError:
            continue
    ids = ", ".join(k.key_id for k in active)
    if claimed and claimed not in {k.key_id for k in active}:
        raise SignatureError(
            f"{what} is signed with another key ({claimed}), not one this app trusts ({ids}).",
            context=what,
            hint=hint,
        )
    raise SignatureError(
        f"The signature of {what} does not match its content (tampered or corrupted).", context=what, hint=hint
    )
