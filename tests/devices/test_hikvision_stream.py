"""The alert stream's incremental multipart reader, fed in every possible
split, with garbage, oversize parts and pictures; and fuzzed."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from devices.hikvision_stream import AlertStream, MultipartReader, boundary_of
from tests.devices.test_hikvision import FACE_PASS_JSON, FACE_PASS_XML, HEARTBEAT_XML


def _part(body: bytes, media: str = "application/xml; charset=\"UTF-8\"") -> bytes:
    return (b"--boundary\r\nContent-Type: " + media.encode() + b"\r\nContent-Length: " + str(len(body)).encode()
            + b"\r\n\r\n" + body + b"\r\n")


JPEG = b"\xff\xd8" + bytes(range(256)) * 40 + b"\xff\xd9"
PICTURE = (b"--boundary\r\nContent-Type: image/jpeg\r\nContent-Disposition: attachment; filename=\"face.jpg\"\r\n\r\n"
           + JPEG + b"\r\n")
STREAM = _part(HEARTBEAT_XML) + _part(FACE_PASS_XML) + PICTURE + _part(FACE_PASS_JSON, "application/json") \
    + _part(HEARTBEAT_XML)


def _persons(stream: AlertStream, chunks: list[bytes]) -> list[str | None]:
    items = [item for chunk in chunks for item in stream.feed(chunk)]
    return [e.person for item in items for e in item.events]


def test_the_boundary_comes_from_the_content_type() -> None:
    assert boundary_of('multipart/mixed; boundary="boundary"') == b"boundary"


def test_parts_come_out_as_they_complete_whatever_the_chunking() -> None:
    for size in (1, 2, 3, 7, 64, 1000, len(STREAM)):
        stream = AlertStream(b"boundary")
        chunks = [STREAM[i:i + size] for i in range(0, len(STREAM), size)]
        # The last part completes only when the next delimiter arrives.
        assert _persons(stream, [*chunks, b"--boundary\r\n"]) == ["1001", "1001"], size
        assert stream.reader.resyncs == 0 and stream.reader.pending < 200


def test_garbage_between_parts_is_skipped_and_counted() -> None:
    stream = AlertStream(b"boundary")
    noisy = b"\x00\x17 reboot banner\r\n" + _part(FACE_PASS_XML) + b"--boun" + b"\xff" * 50 + _part(FACE_PASS_XML)
    assert _persons(stream, [noisy, b"--boundary\r\n"]) == ["1001", "1001"]
    assert stream.reader.resyncs >= 1


def test_a_bad_part_is_an_error_item_and_the_stream_goes_on() -> None:
    stream = AlertStream(b"boundary")
    items = stream.feed(_part(b"<EventNotificationAlert><broken") + _part(FACE_PASS_XML) + b"--boundary\r\n")
    assert items[0].error is not None and "XML" in items[0].error.reason
    assert [e.person for e in items[1].events] == ["1001"]


def test_oversize_parts_are_dropped_with_bounded_memory_and_reported() -> None:
    reader = MultipartReader(b"boundary", max_part=4096, max_picture=10_000)
    reader.feed(b"--boundary\r\nContent-Type: application/xml\r\n\r\n")
    for _ in range(100):
        reader.feed(b"<x>" * 1000)
        assert reader.pending < 4096 + 3000
    parts = reader.feed(b"--boundary\r\nContent-Type: image/jpeg\r\n\r\n")
    for _ in range(100):
        assert reader.feed(b"\xff" * 1000) == []
        assert reader.pending < 100  # a picture is never held
    parts += reader.feed(b"\r\n--boundary--\r\n")
    assert [(p.dropped, p.body) for p in parts] == [("oversize", None), ("oversize", None)]


def test_a_picture_under_the_bound_is_dropped_unseen() -> None:
    parts = MultipartReader(b"boundary").feed(PICTURE + b"--boundary--")
    assert [(p.dropped, p.body, p.size) for p in parts] == [("picture", None, len(JPEG))]


def test_a_stream_cut_mid_part_reports_truncation() -> None:
    reader = MultipartReader(b"boundary")
    reader.feed(_part(FACE_PASS_XML)[:300])
    assert reader.close() == [] and reader.truncated


@settings(max_examples=300, deadline=None)
@given(data=st.binary(max_size=600), cut=st.integers(0, 600))
def test_random_bytes_never_raise(data: bytes, cut: int) -> None:
    stream = AlertStream(b"boundary", max_part=256, max_picture=256)
    stream.feed(data[:cut])
    stream.feed(data[cut:])
    stream.close()
    assert stream.reader.pending <= 256 + 600


@settings(max_examples=300, deadline=None)
@given(edits=st.lists(st.tuples(st.integers(0, len(STREAM)), st.integers(0, 12), st.binary(max_size=12)),
                      min_size=1, max_size=5),
       size=st.integers(1, 500))
def test_a_mutated_stream_never_raises_and_recovers(edits: list[tuple[int, int, bytes]], size: int) -> None:
    data = bytearray(STREAM)
    for at, cut, insert in edits:
        data[at:at + cut] = insert
    stream = AlertStream(b"boundary")
    for i in range(0, len(data), size):
        stream.feed(bytes(data[i:i + size]))
    # Whatever came before, the stream is read again from the second clean part on.
    items = stream.feed(b"\r\n" + _part(FACE_PASS_XML) + _part(FACE_PASS_XML) + b"--boundary\r\n")
    assert "1001" in [e.person for item in items for e in item.events]
    stream.close()
