"""Ed25519 signing: what the server signs, only the right keys accept."""

from __future__ import annotations

import pytest

from rentgate import signing


def test_a_signature_verifies_with_its_key_and_not_after_tampering() -> None:
    key = signing.generate_private_key()
    keys = {"k1": key.public_key()}
    signature = signing.sign(b'{"version":7}', key)
    assert signing.verify(b'{"version":7}', signature, keys, "k1")
    assert signing.verify(b'{"version":7}', signature, keys)  # any known key
    assert not signing.verify(b'{"version":8}', signature, keys, "k1")


def test_unknown_key_id_and_garbage_signatures_are_refused_without_raising() -> None:
    key = signing.generate_private_key()
    signature = signing.sign(b"payload", key)
    assert not signing.verify(b"payload", signature, {"k1": key.public_key()}, "k2")
    assert not signing.verify(b"payload", signature, {}, None)
    for garbage in ("", "not base64!", "QUFB", "A" * 5000):
        assert not signing.verify(b"payload", garbage, {"k1": key.public_key()}, "k1")


def test_rotation_old_and_new_keys_are_both_accepted_each_under_its_own_id() -> None:
    old, new = signing.generate_private_key(), signing.generate_private_key()
    keys = {"2025": old.public_key(), "2026": new.public_key()}
    assert signing.verify(b"p", signing.sign(b"p", old), keys, "2025")
    assert signing.verify(b"p", signing.sign(b"p", new), keys, "2026")
    # A signature is bound to the key its id names.
    assert not signing.verify(b"p", signing.sign(b"p", old), keys, "2026")


def test_keys_round_trip_through_pem_and_raw_base64() -> None:
    key = signing.generate_private_key()
    again = signing.load_private_key(signing.private_key_pem(key))
    public = key.public_key()
    from_pem = signing.load_public_key(signing.public_key_pem(public))
    from_b64 = signing.load_public_key(signing.public_key_b64(public))
    signature = signing.sign(b"x", again)
    assert signing.verify(b"x", signature, {"a": from_pem}) and signing.verify(b"x", signature, {"a": from_b64})


@pytest.mark.parametrize("text", ["", "hello", "QUFB", "-----BEGIN PUBLIC KEY-----\nxx\n-----END PUBLIC KEY-----"])
def test_unreadable_keys_name_their_source(text: str) -> None:
    with pytest.raises(signing.SigningKeyError, match="config.public_keys.k1"):
        signing.load_public_key(text, source="config.public_keys.k1")


def test_a_key_of_another_algorithm_is_refused() -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    pem = ec.generate_private_key(ec.SECP256R1()).public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    with pytest.raises(signing.SigningKeyError, match="not Ed25519"):
        signing.load_public_key(pem)
