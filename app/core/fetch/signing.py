"""Detached ed25519 signatures of catalogs: the public key ships in the app, maintainers hold the private key.

A signature file (`catalog.json.sig`) is a small JSON object::

    {"algorithm": "ed25519", "key_id": "<16 hex>", "signature": "<base64 of 64 bytes>"}

over the exact bytes of the catalog file (RFC 8032 "pure" Ed25519; keys are PEM: SubjectPublicKeyInfo and
unencrypted PKCS#8, RFC 8410). `key_id` is the first 16 hex digits of the sha256 of the raw
32-byte public key; it only helps to tell keys apart in messages, the check is the signature itself.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from pathlib import Path

from Cryptodome.PublicKey import ECC
from Cryptodome.Signature import eddsa

from app.core.errors import InputFileError
from app.core.fetch.errors import SignatureError
from app.core.paths import data_path

# pycryptodomex does the ed25519 math: py7zr needs it anyway, so signatures add nothing to the bundle (the
# `cryptography` wheel's one Rust extension was 11.6 MB of it). Both private and public keys are ECC.EccKey.
Ed25519PublicKey = ECC.EccKey
Ed25519PrivateKey = ECC.EccKey

SIGNATURE_SUFFIX = ".sig"
PUBLIC_KEY_FILE = "catalog-signing.pub"


def shipped_public_key_path() -> Path:
    return data_path(PUBLIC_KEY_FILE)


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


def load_public_key(path: Path | None = None) -> Ed25519PublicKey:
    """The given public key file, or the one shipped in the app."""
    p = path or shipped_public_key_path()
    try:
        data = p.read_bytes()
    except OSError as exc:
        raise InputFileError(f"Cannot read the public key {p}: {exc.strerror or exc}.", context=str(p)) from exc
    return public_key_from_bytes(data, origin=str(p))


def load_private_key(path: Path) -> Ed25519PrivateKey:
    """An unencrypted PKCS#8 PEM ed25519 private key (CI passes it from a secret)."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise InputFileError(
            f"Cannot read the signing key {path}: {exc.strerror or exc}.",
            context=str(path),
            hint="Pass --key with the catalog's private key (PEM).",
        ) from exc
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


def verify_bytes(data: bytes, signature_text: str | bytes | None, key: Ed25519PublicKey, *, what: str) -> str:
    """Check a detached signature; return the key id on success.

    Raises:
        SignatureError: missing, malformed, made with another key, or not matching the bytes.
    """
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
    expected_id = key_id(key)
    claimed = str(doc.get("key_id", ""))
    try:
        eddsa.new(key, "rfc8032").verify(data, sig)
    except ValueError:
        if claimed and claimed != expected_id:
            raise SignatureError(
                f"{what} is signed with another key ({claimed}), not the one this app trusts ({expected_id}).",
                context=what,
                hint=hint,
            ) from None
        raise SignatureError(
            f"The signature of {what} does not match its content (tampered or corrupted).", context=what, hint=hint
        ) from None
    return expected_id
