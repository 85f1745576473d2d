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
    load_keyring,
    load_private_key,
    load_private_key_env,
    load_public_key,
    public_key_from_bytes,
    refuse_key_in_repository,
    sign_bytes,
    trusted_keys,
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
    [
        "not json",
        json.dumps({"algorithm": "rsa", "signature": "AA=="}),
        json.dumps({"algorithm": "ed25519"}),
        json.dumps({"algorithm": "ed25519", "signature": "***"}),
    ],
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


def test_shipped_key_ring_loads_and_trusts_no_unreachable_or_test_key() -> None:
    """The first key's private half is reachable by nobody: it is listed retired, with a note saying why, and no key
    is active until a maintainer adds one (docs/publishing.md). The test key is never in the ring."""
    ring = load_keyring()
    assert ring and all(k.note for k in ring)
    first = next(k for k in ring if k.key_id == "415b2fa4a54f45d3")
    assert first.status == "retired" and "nothing the project can reach" in first.note
    assert key_id(load_public_key(TEST_PUB)) not in {k.key_id for k in ring}


def _ring_file(tmp_path: Path, keys: list[tuple[bytes, str]]) -> Path:
    """A key ring file (schema-valid) with the given public PEMs and statuses."""
    entries = []
    for pem, status in keys:
        pub = public_key_from_bytes(pem)
        raw = base64.b64encode(bytes(pub.export_key(format="raw"))).decode()
        entries.append({"key_id": key_id(pub), "public_key": raw, "status": status, "note": f"{status} test key"})
    p = tmp_path / "ring.json"
    p.write_text(json.dumps({"schema_version": 1, "keys": entries}))
    return p


def test_rotation_old_and_new_key_both_verify_while_both_active_then_the_retired_one_is_refused(
    tmp_path: Path,
) -> None:
    """Rotation as docs/publishing.md describes it: (1) the app ships old + new key, both active: catalogs signed by
    either verify; (2) the old key is retired: its catalogs are refused with the key's note, the new key's verify."""
    old_priv, old_pub = generate_keypair()
    new_priv, new_pub = generate_keypair()
    old, new = load_private_key_bytes(old_priv), load_private_key_bytes(new_priv)
    data = b"catalog\n"
    by_old, by_new = sign_bytes(data, old), sign_bytes(data, new)
    both = load_keyring(_ring_file(tmp_path, [(old_pub, "active"), (new_pub, "active")]))
    assert verify_bytes(data, by_old, both, what="c") == key_id(old.public_key())
    assert verify_bytes(data, by_new, both, what="c") == key_id(new.public_key())
    (tmp_path / "r2").mkdir()
    after = load_keyring(_ring_file(tmp_path / "r2", [(old_pub, "retired"), (new_pub, "active")]))
    assert verify_bytes(data, by_new, after, what="c") == key_id(new.public_key())
    with pytest.raises(SignatureError, match=r"retired key .*retired test key"):
        verify_bytes(data, by_old, after, what="c")
    with pytest.raises(SignatureError, match="tampered"):
        verify_bytes(data + b"x", by_new, after, what="c")


def test_no_active_key_refuses_every_catalog_with_a_clear_message(tmp_path: Path) -> None:
    _priv, pub = generate_keypair()
    ring = load_keyring(_ring_file(tmp_path, [(pub, "retired")]))
    sig = sign_bytes(b"x", load_private_key(TEST_KEY))
    with pytest.raises(SignatureError, match="trusts no catalog signing key"):
        verify_bytes(b"x", sig, ring, what="c")


def test_key_ring_with_a_wrong_key_id_is_refused(tmp_path: Path) -> None:
    _priv, pub = generate_keypair()
    p = _ring_file(tmp_path, [(pub, "active")])
    doc = json.loads(p.read_text())
    doc["keys"][0]["key_id"] = "0" * 16
    p.write_text(json.dumps(doc))
    with pytest.raises(InputFileError, match="has the id"):
        load_keyring(p)


def test_public_key_option_replaces_the_ring() -> None:
    (k,) = trusted_keys(TEST_PUB)
    assert k.active and k.key_id == key_id(load_public_key(TEST_PUB))


def test_private_key_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SIGNING_KEY_FOR_TEST", TEST_KEY.read_text())
    assert key_id(load_private_key_env("SIGNING_KEY_FOR_TEST").public_key()) == key_id(load_public_key(TEST_PUB))
    monkeypatch.setenv("SIGNING_KEY_FOR_TEST", "")
    with pytest.raises(InputFileError, match="holds no signing key"):
        load_private_key_env("SIGNING_KEY_FOR_TEST")


def test_private_key_inside_a_git_work_tree_is_refused(tmp_path: Path) -> None:
    """Read or written: a key file in any git work tree (e.g. this checkout) is refused; only TEST-ONLY-* files,
    whose public half no app trusts, are allowed (the tests' key)."""
    repo = tmp_path / "repo"
    (repo / ".git").mkdir(parents=True)
    (repo / "keys").mkdir()
    key = repo / "keys" / "catalog.key"
    key.write_bytes(TEST_KEY.read_bytes())
    with pytest.raises(InputFileError, match="inside the git work tree"):
        load_private_key(key)
    with pytest.raises(InputFileError, match="inside the git work tree"):
        refuse_key_in_repository(repo / "new.key")
    refuse_key_in_repository(tmp_path / "outside.key")  # no error
    assert load_private_key(TEST_KEY) is not None  # TEST-ONLY-*: allowed


def test_public_key_as_raw_base64() -> None:
    pub = load_public_key(TEST_PUB)
    raw = bytes(pub.export_key(format="raw"))
    assert len(raw) == 32
    assert key_id(public_key_from_bytes(base64.b64encode(raw))) == key_id(pub)
    with pytest.raises(InputFileError):
        public_key_from_bytes(b"garbage!")
    with pytest.raises(InputFileError):  # base64 of the wrong length
        public_key_from_bytes(base64.b64encode(raw[:31]))


def test_wrong_kind_of_key_refused(tmp_path: Path) -> None:
    """A NIST P-256 key, or a private key where the public one belongs (and vice versa), is refused."""
    from Cryptodome.PublicKey import ECC

    p256 = ECC.generate(curve="P-256")
    with pytest.raises(InputFileError, match="not an ed25519"):
        public_key_from_bytes(p256.public_key().export_key(format="PEM").encode())
    with pytest.raises(InputFileError, match="private key where a public one"):
        public_key_from_bytes(TEST_KEY.read_bytes())
    (tmp_path / "pub.pem").write_bytes(TEST_PUB.read_bytes())
    with pytest.raises(InputFileError, match="no private key"):
        load_private_key(tmp_path / "pub.pem")
    (tmp_path / "p256.pem").write_text(p256.export_key(format="PEM"))
    with pytest.raises(InputFileError, match="not an ed25519"):
        load_private_key(tmp_path / "p256.pem")


def test_interoperates_with_another_ed25519_implementation() -> None:
    """Keys and signatures are plain RFC 8032/8410: the `cryptography` package (OpenSSL; a test-only dependency)
    verifies our signatures with our PEM public key, and we verify its signatures with its PEM keys."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

    data = b"catalog bytes\n"
    ours = json.loads(sign_bytes(data, load_private_key(TEST_KEY)))
    their_pub = serialization.load_pem_public_key(TEST_PUB.read_bytes())
    assert isinstance(their_pub, Ed25519PublicKey)
    their_pub.verify(base64.b64decode(ours["signature"]), data)  # raises InvalidSignature if not

    their_key = Ed25519PrivateKey.generate()
    pem_pub = their_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    doc = {"algorithm": "ed25519", "signature": base64.b64encode(their_key.sign(data)).decode()}
    pub = public_key_from_bytes(pem_pub)
    assert verify_bytes(data, json.dumps(doc), pub, what="catalog") == key_id(pub)
    with pytest.raises(SignatureError):
        verify_bytes(data + b"x", json.dumps(doc), pub, what="catalog")


def test_rfc8032_test_vector() -> None:
    """RFC 8032 section 7.1, TEST 2 (one-byte message): the public key and signature verify, a flipped bit does not."""
    pub = public_key_from_bytes(
        base64.b64encode(bytes.fromhex("3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c"))
    )
    sig = bytes.fromhex(
        "92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da"
        "085ac1e43e15996e458f3613d0f11d8c387b2eaeb4302aeeb00d291612bb0c00"
    )
    doc = json.dumps({"algorithm": "ed25519", "signature": base64.b64encode(sig).decode()})
    assert verify_bytes(b"\x72", doc, pub, what="vector") == key_id(pub)
    with pytest.raises(SignatureError):
        verify_bytes(b"\x73", doc, pub, what="vector")


def test_bad_private_key_file(tmp_path: Path) -> None:
    (tmp_path / "k").write_text("nope")
    with pytest.raises(InputFileError, match="not an unencrypted PEM"):
        load_private_key(tmp_path / "k")
    with pytest.raises(InputFileError, match=r"signing key .* not found") as ei:
        load_private_key(tmp_path / "missing")
    assert "--key" in ei.value.hint
    with pytest.raises(InputFileError, match="larger than"):  # read through the bounded reader (#14)
        load_private_key(Path("/dev/zero"))


def load_private_key_bytes(pem: bytes):  # type: ignore[no-untyped-def]
    from Cryptodome.PublicKey import ECC

    return ECC.import_key(pem.decode("ascii"))


def test_a_link_outside_to_a_key_inside_a_work_tree_is_refused(tmp_path: Path) -> None:
    """A symbolic link outside every repository that points at a key inside one (read), or at a place inside one
    (written by --new-key, which would follow the link), is refused like the key itself; so is a TEST-ONLY-* name
    on a link whose target is not a TEST-ONLY-* file."""
    repo = tmp_path / "repo"
    (repo / ".git").mkdir(parents=True)
    key = repo / "catalog.key"
    key.write_bytes(TEST_KEY.read_bytes())
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "catalog.key").symlink_to(key)
    with pytest.raises(InputFileError, match="inside the git work tree"):
        load_private_key(outside / "catalog.key")
    (outside / "new.key").symlink_to(repo / "new.key")  # dangling: --new-key would create the file in the repo
    with pytest.raises(InputFileError, match="inside the git work tree"):
        refuse_key_in_repository(outside / "new.key")
    (outside / "TEST-ONLY-disguised.key").symlink_to(key)
    with pytest.raises(InputFileError, match="inside the git work tree"):
        load_private_key(outside / "TEST-ONLY-disguised.key")
    (outside / "dir-link").symlink_to(repo, target_is_directory=True)
    with pytest.raises(InputFileError, match="inside the git work tree"):
        load_private_key(outside / "dir-link" / "catalog.key")
