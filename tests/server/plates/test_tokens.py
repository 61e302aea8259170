"""Plate tokens: what a forger, a careless copier or a curious phone can do
to one, and what the verifier says."""

from __future__ import annotations

import base64
from datetime import date

import pytest

from server.plates.errors import TokenRejected
from server.plates.tokens import MAX_TOKEN_CHARS, sign, verify

KEY = bytes(range(32))
OTHER_KEY = bytes(range(1, 33))
KEYS = {"k1": KEY}
TODAY = date(2025, 3, 1)


def reason(token: str, keys: dict[str, bytes] = KEYS, today: date = TODAY) -> str:
    with pytest.raises(TokenRejected) as caught:
        verify(token, keys, today)
    return caught.value.reason


def test_round_trip_names_the_plate_and_nothing_else() -> None:
    token = sign("k1", KEY, 42, date(2030, 1, 1))
    claim = verify(token, KEYS, TODAY)
    assert (claim.plate_id, claim.key_id, claim.expires_on) == (42, "k1", date(2030, 1, 1))
    # Short enough for a 40 mm code, URL-safe, no padding.
    assert len(token) <= MAX_TOKEN_CHARS and token.startswith("k1.")
    assert all(c.isalnum() or c in "-_." for c in token)
    never = verify(sign("k1", KEY, 7, None), KEYS, TODAY)
    assert never.expires_on is None


def test_every_altered_byte_is_refused() -> None:
    token = sign("k1", KEY, 42, date(2030, 1, 1))
    body = base64.urlsafe_b64decode(token[3:] + "=")
    for index in range(len(body)):
        for flip in (0x01, 0x80):
            changed = bytearray(body)
            changed[index] ^= flip
            forged = "k1." + base64.urlsafe_b64encode(bytes(changed)).rstrip(b"=").decode()
            assert reason(forged) in ("bad_signature", "malformed"), index


def test_a_token_from_another_key_is_refused_as_forged() -> None:
    assert reason(sign("k1", OTHER_KEY, 42, None)) == "bad_signature"


def test_a_key_id_the_server_does_not_hold_is_unknown() -> None:
    assert reason(sign("k9", KEY, 42, None)) == "unknown_key"
    # A retired key: the plate was genuine, the key is gone.
    assert reason(sign("k1", KEY, 42, None), keys={"k2": OTHER_KEY}) == "unknown_key"


def test_expiry_is_inclusive_of_the_last_day() -> None:
    token = sign("k1", KEY, 42, date(2025, 3, 1))
    assert verify(token, KEYS, date(2025, 3, 1)).plate_id == 42
    with pytest.raises(TokenRejected) as caught:
        verify(token, KEYS, date(2025, 3, 2))
    assert caught.value.reason == "expired" and caught.value.plate_id == 42


def test_non_canonical_base64_is_refused() -> None:
    token = sign("k1", KEY, 42, None)
    body = token[3:]
    # Padding, the standard alphabet, or different trailing bits decode to
    # the same bytes: one plate has exactly one valid text.
    last = body[-1]
    sibling = next(c for c in "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
                   if c != last and base64.urlsafe_b64decode(body[:-1] + c + "===")
                   == base64.urlsafe_b64decode(body + "==="))
    for variant in (token + "=", token + "==", "k1." + body.replace("-", "+").replace("_", "/"),
                    "k1." + body[:-1] + sibling):
        if variant != token:
            assert reason(variant) == "malformed", variant


@pytest.mark.parametrize("token", [
    "", ".", "k1.", "k1", "K1." + "A" * 39, "k1.." + "A" * 38, "k1.A.B", "k1\n." + "A" * 39,
    "k1." + "A" * 40, "k1." + "A" * 38, "k1." + "ä" * 39, "k1." + "!" * 39, "abcdefghijklm." + "A" * 39,
    "k1." + "A" * (MAX_TOKEN_CHARS + 10), "x" * 100_000,
])
def test_garbage_is_malformed_not_an_error(token: str) -> None:
    assert reason(token) == "malformed"


@pytest.mark.parametrize(("key_id", "plate_id"), [("K1", 1), ("k1\n", 1), ("k1", 0), ("k1", 2**63)])
def test_sign_refuses_what_it_cannot_encode(key_id: str, plate_id: int) -> None:
    with pytest.raises(ValueError):
        sign(key_id, KEY, plate_id, None)
