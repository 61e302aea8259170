from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from devices.em4100 import FRAME_LEN, Em4100Frame, Em4100Parser, encode_frame
from devices.errors import DeviceError, FrameError

# DEVICES.md: 0x14 ^ 0x00 ^ 0x8E ^ 0xC7 ^ 0x93 = 0xCE
EXAMPLE = b"\x02" + b"14008EC793" + b"CE" + b"\x03"
EXAMPLE_FRAME = Em4100Frame(version=0x14, tag_id=0x008EC793)
OTHER = encode_frame(0x01, 0xDEADBEEF)


def test_example_frame_from_the_datasheet_decodes_to_its_card_number() -> None:
    parser = Em4100Parser()
    [frame] = parser.feed(EXAMPLE)
    assert frame == EXAMPLE_FRAME
    assert frame.card == "14008EC793"
    assert frame.format == "em4100"
    assert parser.frames_ok == 1 and parser.bad_frames == 0 and parser.buffered == 0


def test_encode_frame_produces_the_datasheet_bytes() -> None:
    assert encode_frame(0x14, 0x008EC793) == EXAMPLE
    assert len(EXAMPLE) == FRAME_LEN


@pytest.mark.parametrize(("version", "tag_id"), [(-1, 0), (0x100, 0), (0, -1), (0, 1 << 32)])
def test_encode_frame_rejects_fields_out_of_range(version: int, tag_id: int) -> None:
    with pytest.raises(FrameError) as info:
        encode_frame(version, tag_id)
    assert isinstance(info.value, DeviceError) and isinstance(info.value, ValueError)


def test_card_keeps_leading_zeros_in_upper_case() -> None:
    assert Em4100Frame(version=0, tag_id=0xAB).card == "00000000AB"


@pytest.mark.parametrize("cut", range(1, FRAME_LEN))
def test_a_frame_split_at_any_point_decodes_once_complete(cut: int) -> None:
    parser = Em4100Parser()
    assert parser.feed(EXAMPLE[:cut]) == []
    assert parser.feed(EXAMPLE[cut:]) == [EXAMPLE_FRAME]


def test_byte_by_byte_delivery_decodes_back_to_back_frames() -> None:
    parser = Em4100Parser()
    out = [f for b in EXAMPLE + OTHER + EXAMPLE for f in parser.feed(bytes([b]))]
    assert [f.card for f in out] == ["14008EC793", "01DEADBEEF", "14008EC793"]


def test_garbage_between_frames_is_skipped_and_counted() -> None:
    parser = Em4100Parser()
    out = parser.feed(b"\xff\x00noise" + EXAMPLE + b"\r\n\x03\x02zz" + OTHER)
    assert [f.card for f in out] == ["14008EC793", "01DEADBEEF"]
    assert parser.bytes_discarded == len(b"\xff\x00noise") + len(b"\r\n\x03\x02zz")
    assert parser.bad_format == 1  # the stray STX before "zz"


def test_a_truncated_frame_does_not_swallow_the_next_one() -> None:
    parser = Em4100Parser()
    assert parser.feed(EXAMPLE[:9] + OTHER) == [Em4100Frame(version=0x01, tag_id=0xDEADBEEF)]
    assert parser.bad_format == 1


def test_bad_checksum_is_counted_and_skipped() -> None:
    bad = EXAMPLE[:11] + b"CF" + b"\x03"
    parser = Em4100Parser()
    assert parser.feed(bad + OTHER) == [Em4100Frame(version=0x01, tag_id=0xDEADBEEF)]
    assert parser.bad_checksum == 1 and parser.frames_ok == 1


def test_missing_etx_is_a_format_error() -> None:
    parser = Em4100Parser()
    assert parser.feed(EXAMPLE[:-1] + b"\x04" + EXAMPLE) == [EXAMPLE_FRAME]
    assert parser.bad_format == 1


def test_lowercase_hex_is_accepted_and_normalised() -> None:
    parser = Em4100Parser()
    [frame] = parser.feed(b"\x02" + b"14008ec793ce" + b"\x03")
    assert frame.card == "14008EC793"


# ---------------------------------------------------------------- properties

frames = st.builds(Em4100Frame, version=st.integers(0, 0xFF), tag_id=st.integers(0, 0xFFFFFFFF))


@settings(max_examples=300)
@given(st.lists(st.binary(max_size=64), max_size=20))
def test_random_bytes_never_raise_and_the_buffer_stays_bounded(chunks: list[bytes]) -> None:
    parser = Em4100Parser()
    for chunk in chunks:
        parser.feed(chunk)
        assert parser.buffered < FRAME_LEN


@settings(max_examples=300)
@given(frames, st.binary(max_size=40), st.binary(max_size=40))
def test_a_valid_frame_in_any_noise_is_decoded(frame: Em4100Frame, before: bytes, after: bytes) -> None:
    # Noise cannot consume the frame's STX: a candidate frame only completes
    # with 12 hex digits and an ETX, and 0x02 is neither. Noise may still
    # contain frames of its own, so only membership holds for arbitrary noise.
    out = Em4100Parser().feed(before + encode_frame(frame.version, frame.tag_id) + after)
    assert frame in out


@settings(max_examples=300)
@given(frames, st.binary(max_size=40).map(lambda b: b.replace(b"\x03", b"")), st.binary(max_size=40))
def test_noise_without_etx_yields_exactly_the_embedded_frame(
    frame: Em4100Frame, before: bytes, after: bytes
) -> None:
    # Without ETX before the frame, no other candidate can complete there; the
    # noise after it can at most leave a pending partial frame.
    out = Em4100Parser().feed(before + encode_frame(frame.version, frame.tag_id) + after.replace(b"\x03", b""))
    assert out == [frame]


@given(st.lists(frames, min_size=1, max_size=5), st.data())
def test_frames_split_at_random_points_decode_identically(frames_: list[Em4100Frame], data: st.DataObject) -> None:
    stream = b"".join(encode_frame(f.version, f.tag_id) for f in frames_)
    cuts = sorted(data.draw(st.sets(st.integers(1, len(stream) - 1), max_size=10)))
    bounds = [0, *cuts, len(stream)]
    parser = Em4100Parser()
    out = [f for a, b in zip(bounds, bounds[1:]) for f in parser.feed(stream[a:b])]
    assert out == frames_
    assert parser.buffered == 0
