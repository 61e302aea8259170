"""Password hashes: salted scrypt, parameters in the string, no false matches."""

from __future__ import annotations

import pytest

from server.auth.passwords import SCRYPT_N, hash_password, verify_password


def test_a_hash_verifies_its_password_and_nothing_else() -> None:
    stored = hash_password("correct horse")
    assert verify_password("correct horse", stored)
    assert not verify_password("correct horsE", stored)
    assert not verify_password("", stored)


def test_the_same_password_hashes_differently_and_carries_its_parameters() -> None:
    first, second = hash_password("same-password"), hash_password("same-password")
    assert first != second  # salted
    assert first.split("$")[:4] == ["scrypt", str(SCRYPT_N), "8", "1"]
    assert "same-password" not in first


def test_older_parameters_still_verify() -> None:
    # A hash made with other (cheaper) parameters stays valid after they change.
    import base64
    import hashlib

    salt = b"0123456789abcdef"
    digest = hashlib.scrypt(b"legacy-pass", salt=salt, n=2**10, r=8, p=1, dklen=32)
    stored = f"scrypt$1024$8$1${base64.b64encode(salt).decode()}${base64.b64encode(digest).decode()}"
    assert verify_password("legacy-pass", stored)


@pytest.mark.parametrize("stored", ["", "plain", "bcrypt$1$2$3$4$5", "scrypt$x$8$1$AAAA$AAAA", "scrypt$1024$8$1$!!$!!"])
def test_malformed_hashes_never_match(stored: str) -> None:
    assert not verify_password("anything", stored)
