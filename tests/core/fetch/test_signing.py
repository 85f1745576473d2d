"""Detached ed25519 signatures: sign, verify, and refuse tampered / missing / wrong-key signatures."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

from app.core.errors import InputFileError
from app.core.fetch.errors import SignatureError
from app.core.fetch.signing import (
    generate_keypair,
    key_id,
    load_private_key,
    load_public_key,
    public_key_from_bytes,
    shipped_public_key_path,
    sign_bytes,
    verify_bytes,
)
from tests.conftest import FIXTURES

TEST_KEY = FIXTURES / "TEST-ONLY-catalog-signing.key"
TEST_PUB = FIXTURES / "TEST-ONLY-catalog-signing.pub"


def test_round_trip_with_the_test_key() -> None:
    key = load_private_key(TEST_KEY)
    data = b'{"schema_version": 1, "entries": []}\n'
    sig = sign_bytes(data, key)
    assert verify_bytes(data, sig, load_public_key(TEST_PUB), what="catalog") == key_id(key.public_key())
    assert json.loads(sig)["key_id"] == key_id(load_public_key(TEST_PUB))


def test_tampered_data_refused() -> None:
    key = load_private_key(TEST_KEY)
    sig = sign_bytes(b"original", key)
    with pytest.raises(SignatureError, match="does not match its content"):
        verify_bytes(b"0riginal", sig, load_public_key(TEST_PUB), what="catalog")


def test_missing_signature_refused() -> None:
    with pytest.raises(SignatureError, match="no signature file") as ei:
        verify_bytes(b"x", None, load_public_key(TEST_PUB), what="catalog.json")
    assert "--allow-unsigned" in ei.value.hint


def test_wrong_key_refused_and_named() -> None:
    other_priv, _ = generate_keypair()
    other = load_private_key_bytes(other_priv)
    sig = sign_bytes(b"data", other)
    with pytest.raises(SignatureError, match="signed with another key"):
        verify_bytes(b"data", sig, load_public_key(TEST_PUB), what="catalog")


@pytest.mark.parametrize(
    "sig",
    ["not json", json.dumps({"algorithm": "rsa", "signature": "AA=="}), json.dumps({"algorithm": "ed25519"}),
     json.dumps({"algorithm": "ed25519", "signature": "***"})],
)
def test_malformed_signature_refused(sig: str) -> None:
    with pytest.raises(SignatureError, match="malformed"):
        verify_bytes(b"data", sig, load_public_key(TEST_PUB), what="catalog")


def test_truncated_signature_refused() -> None:
    key = load_private_key(TEST_KEY)
    doc = json.loads(sign_bytes(b"data", key))
    doc["signature"] = base64.b64encode(base64.b64decode(doc["signature"])[:40]).decode()
    with pytest.raises(SignatureError):
        verify_bytes(b"data", json.dumps(doc), load_public_key(TEST_PUB), what="catalog")


def test_shipped_key_is_not_the_test_key_and_loads() -> None:
    shipped = load_public_key()
    assert shipped_public_key_path().name == "catalog-signing.pub"
    assert key_id(shipped) != key_id(load_public_key(TEST_PUB))


def test_public_key_as_raw_base64() -> None:
    pub = load_public_key(TEST_PUB)
    from cryptography.hazmat.primitives import serialization

    raw = pub.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    assert key_id(public_key_from_bytes(base64.b64encode(raw))) == key_id(pub)
    with pytest.raises(InputFileError):
        public_key_from_bytes(b"garbage!")


def test_bad_private_key_file(tmp_path: Path) -> None:
    (tmp_path / "k").write_text("nope")
    with pytest.raises(InputFileError, match="not an unencrypted PEM"):
        load_private_key(tmp_path / "k")
    with pytest.raises(InputFileError, match="Cannot read"):
        load_private_key(tmp_path / "missing")


def load_private_key_bytes(pem: bytes):  # type: ignore[no-untyped-def]
    from cryptography.hazmat.primitives import serialization

    return serialization.load_pem_private_key(pem, None)
