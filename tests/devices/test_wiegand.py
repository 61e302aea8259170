from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from devices import wiegand
from devices.wiegand import WiegandError

EXAMPLE = 0b00101101000000001010001000  # facility 90, card 324 (DEVICES.md)


def test_the_documented_26_bit_example() -> None:
    assert wiegand.encode(90, 324) == EXAMPLE
    assert wiegand.decode(EXAMPLE, 26) == wiegand.WiegandCard(26, 90, 324)
    credential = wiegand.credential_from_packed(bytes.fromhex("2d00a200"), 26)
    assert (credential.format, credential.value, credential.bits) == ("wiegand26", "90:324", 26)


def test_34_bit_frames_carry_a_16_bit_facility() -> None:
    value = wiegand.encode(40000, 65535, 34)
    assert wiegand.decode(value, 34) == wiegand.WiegandCard(34, 40000, 65535)
    assert wiegand.to_credential(value, 34).value == "40000:65535"


def test_raw_mode_and_other_lengths_give_hex() -> None:
    uid_frame = 0x1DEADBEEF  # a reader's 32-bit UID in a 34-bit frame: parity means nothing
    raw = wiegand.to_credential(uid_frame, 34, mode="raw")
    assert (raw.format, raw.value, raw.bits) == ("osdp_raw", "1deadbeef", 34)
    assert wiegand.to_credential(0x5, 37).value == "0000000005"


@pytest.mark.parametrize(("value", "reason"), [
    (EXAMPLE ^ (1 << 25), "even parity"),
    (EXAMPLE ^ 1, "odd parity"),
])
def test_bad_parity_says_which(value: int, reason: str) -> None:
    with pytest.raises(WiegandError, match=reason) as info:
        wiegand.to_credential(value, 26)
    assert info.value.bits == 26


def test_encoder_refuses_what_does_not_fit() -> None:
    with pytest.raises(WiegandError, match="facility 256"):
        wiegand.encode(256, 1)
    with pytest.raises(WiegandError, match="only 26- and 34-bit"):
        wiegand.encode(1, 1, 37)


def test_short_packed_data_is_an_error() -> None:
    with pytest.raises(WiegandError, match="cannot hold"):
        wiegand.unpack(b"\x00", 26)


@given(st.integers(0, 255), st.integers(0, 65535))
def test_26_bit_round_trip(facility: int, card: int) -> None:
    value = wiegand.encode(facility, card)
    packed = wiegand.pack(value, 26)
    assert len(packed) == 4 and wiegand.unpack(packed, 26) == value
    assert wiegand.credential_from_packed(packed, 26).value == f"{facility}:{card}"


@given(st.integers(0, 65535), st.integers(0, 65535))
def test_34_bit_round_trip(facility: int, card: int) -> None:
    value = wiegand.encode(facility, card, 34)
    assert wiegand.decode(wiegand.unpack(wiegand.pack(value, 34), 34), 34) == wiegand.WiegandCard(34, facility, card)


@given(st.integers(0, 255), st.integers(0, 65535), st.integers(0, 25))
def test_any_single_flipped_bit_is_detected(facility: int, card: int, bit: int) -> None:
    with pytest.raises(WiegandError):
        wiegand.decode(wiegand.encode(facility, card) ^ (1 << bit), 26)


@given(st.binary(max_size=70), st.integers(-5, 600), st.sampled_from(["standard", "raw"]))
def test_random_bits_raise_nothing_but_wiegand_errors(data: bytes, bits: int, mode: wiegand.Mode) -> None:
    try:
        credential = wiegand.credential_from_packed(data, bits, mode=mode)
    except WiegandError:
        return
    assert credential.bits == bits
