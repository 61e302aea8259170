"""Multipart bodies as Hikvision terminals send them, read incrementally.

Two places need this. The "HTTP listening" push posts ``multipart/form-data``
with an event part and often a face picture; the alert stream
(``GET /ISAPI/Event/notification/alertStream``) is a ``multipart/mixed``
response that never ends, one ``EventNotificationAlert`` per part (XML or
JSON), heartbeats every few seconds, sometimes pictures.

:class:`MultipartReader` is fed byte chunks and returns the parts completed so
far. Pictures are dropped while they stream past (never buffered, never
returned); every part is bounded; bytes that do not belong to a part (a
terminal that restarted mid-part, line noise) are skipped up to the next
delimiter and counted. :class:`AlertStream` turns the parts into
:class:`~devices.hikvision.TerminalEvent` values or rejections.

Pure: no sockets, no clock.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Literal

from devices.hikvision import TerminalEvent, VendorPayloadError, parse_document

__all__ = ["AlertStream", "MultipartReader", "Part", "StreamItem", "boundary_of", "form_events", "is_event_part"]

# Form field names of the event part (firmware generations and device kinds
# differ); a part with one of these names is an event whatever its type says.
EVENT_PART_NAMES = frozenset({"event_log", "AccessControllerEvent", "EventNotificationAlert", "MoveDetection",
                              "VMD", "eventLog"})
_DOCUMENT_MEDIA = frozenset({"application/json", "text/json", "application/xml", "text/xml"})
_MAX_HEADERS = 8 * 1024
_MAX_BOUNDARY = 200


def boundary_of(content_type: str) -> bytes:
    """The boundary parameter of a multipart content type."""
    for param in content_type.split(";")[1:]:
        key, _, value = param.partition("=")
        if key.strip().lower() == "boundary":
            value = value.strip().strip('"')
            if 0 < len(value) <= _MAX_BOUNDARY and value.isascii():
                return value.encode("ascii")
    raise VendorPayloadError("hikvision", f"multipart content type without a usable boundary: {content_type[:120]!r}")


@dataclass(frozen=True)
class Part:
    """One part. ``body`` is None when the part was dropped unseen: a picture
    (``dropped="picture"``) or a part over the size bound (``"oversize"``)."""

    headers: Mapping[str, str]
    body: bytes | None
    size: int
    dropped: Literal["picture", "oversize"] | None = None

    @property
    def media(self) -> str:
        return self.headers.get("content-type", "").split(";", 1)[0].strip().lower()

    @property
    def name(self) -> str | None:
        return _param(self.headers.get("content-disposition", ""), "name")


def is_event_part(part: Part) -> bool:
    """Whether a part holds an event document: named as one, typed as one, or
    (firmware that sends neither) looking like one."""
    if part.body is None:
        return False
    if part.name in EVENT_PART_NAMES or part.media in _DOCUMENT_MEDIA:
        return True
    if part.name is None and not part.media:
        return part.body.lstrip()[:1] in (b"{", b"<")
    return False


class MultipartReader:
    """Incremental multipart parser: ``feed(chunk) -> parts``, ``close() -> parts``.

    ``max_part``: the largest part kept (an event document); a bigger one is
    returned as ``dropped="oversize"`` after its bytes were skipped.
    ``max_picture``: pictures are never kept, but one that goes on past this
    is reported oversize (a stuck or hostile sender) instead of silently eaten.
    """

    def __init__(self, boundary: bytes, *, max_part: int = 1 << 20, max_picture: int = 8 << 20) -> None:
        self._delimiter = b"--" + boundary
        self._max_part = max_part
        self._max_picture = max_picture
        self._buffer = bytearray()
        self._state: Literal["seek", "line", "headers", "body"] = "seek"
        self._headers: dict[str, str] = {}
        self._drop: Literal["picture", "oversize"] | None = None
        self._size = 0
        self._length: int | None = None
        self.skipped_bytes = 0  # bytes outside any part (garbage before a delimiter)
        self.resyncs = 0  # times garbage had to be skipped to find a delimiter
        self.parts_seen = 0
        self.closed = False  # the close delimiter ("--boundary--") was seen
        self.truncated = False  # input ended inside a part

    def feed(self, chunk: bytes) -> list[Part]:
        self._buffer += chunk
        parts: list[Part] = []
        while self._step(parts):
            pass
        return parts

    def close(self) -> list[Part]:
        """End of input. A part cut off before its closing delimiter is not
        returned (its end is unknown): :attr:`truncated` says so."""
        parts = self.feed(b"")
        self.truncated = self._state in ("headers", "body") and not self.closed
        return parts

    @property
    def pending(self) -> int:
        """Bytes held waiting for more input (bounded by the part limits)."""
        return len(self._buffer)

    def _step(self, parts: list[Part]) -> bool:
        if self._state == "seek":
            return self._seek()
        if self._state == "line":
            return self._end_of_delimiter_line()
        if self._state == "headers":
            return self._read_headers()
        return self._read_body(parts)

    def _seek(self) -> bool:
        at = self._buffer.find(self._delimiter)
        if at < 0:
            keep = len(self._delimiter) - 1
            garbage = len(self._buffer) - keep
            if garbage > 0:
                self._skip_garbage(garbage)
            return False
        self._skip_garbage(at)
        del self._buffer[:len(self._delimiter)]
        self._state = "line"
        return True

    def _skip_garbage(self, count: int) -> None:
        if self._buffer[:count].strip():
            self.resyncs += 1
            self.skipped_bytes += count
        del self._buffer[:count]

    def _end_of_delimiter_line(self) -> bool:
        if len(self._buffer) < 2:
            return False
        if self._buffer[:2] == b"--":
            # The close delimiter. A stream goes on after it only if the
            # terminal starts a new body, so keep looking for delimiters.
            self.closed = True
            del self._buffer[:2]
            self._state = "seek"
            return True
        end = self._buffer.find(b"\n")
        if end < 0:
            if len(self._buffer) > 1024:  # "--boundary" followed by junk, not a delimiter
                self._state = "seek"
                return True
            return False
        if self._buffer[:end].strip():
            self._state = "seek"  # "--boundaryX...": text that merely starts like one
            return True
        del self._buffer[:end + 1]
        self._state, self._headers, self._size, self._drop = "headers", {}, 0, None
        self.closed = False
        return True

    def _read_headers(self) -> bool:
        end, gap = _blank_line(self._buffer)
        if end < 0:
            if len(self._buffer) > _MAX_HEADERS:
                self.resyncs += 1
                self._state = "seek"
                return True
            return False
        self._headers = _parse_headers(bytes(self._buffer[:end]))
        del self._buffer[:end + gap]
        if _is_picture(self._headers):
            self._drop = "picture"
        self._length = self._declared_length()
        self._state = "body"
        return True

    def _declared_length(self) -> int | None:
        text = self._headers.get("content-length", "")
        if self._drop is None and text.isascii() and text.isdigit() and int(text) <= self._max_part:
            return int(text)
        return None

    def _read_body(self, parts: list[Part]) -> bool:
        at = self._buffer.find(self._delimiter)
        length = self._length
        if length is not None and (at < 0 or at >= length) and len(self._buffer) >= length:
            # The part's own Content-Length (Hikvision sends one) ends it, so
            # bytes between it and the next delimiter are garbage to skip, not
            # part of the document. A delimiter before that length wins: the
            # length was wrong.
            body = bytes(self._buffer[:length])
            del self._buffer[:length]
            self._size += length
            parts.append(self._finish(body))
            self._state = "seek"
            return True
        if at < 0:
            self._hold_or_drop(len(self._buffer) - (len(self._delimiter) + 1))
            return False
        body = bytes(self._buffer[:at])
        del self._buffer[:at]
        body = body[:-2] if body.endswith(b"\r\n") else body[:-1] if body.endswith(b"\n") else body
        self._size += len(body)
        parts.append(self._finish(body))
        self._state = "seek"
        return True

    def _hold_or_drop(self, settled: int) -> None:
        # Bytes that cannot be the start of a delimiter are settled: a dropped
        # part forgets them at once, a kept part keeps them up to its bound.
        if settled <= 0:
            return
        limit = self._max_picture if self._drop == "picture" else self._max_part
        if self._drop is None and self._size + settled <= limit:
            return
        if self._drop is None:
            self._drop = "oversize"
        self._size += settled
        del self._buffer[:settled]

    def _finish(self, tail: bytes) -> Part:
        self.parts_seen += 1
        limit = self._max_picture if self._drop == "picture" else self._max_part
        if self._size > limit:
            return Part(self._headers, None, self._size, "oversize")
        if self._drop is not None:
            return Part(self._headers, None, self._size, self._drop)
        return Part(self._headers, tail, self._size)


def _blank_line(buffer: bytearray) -> tuple[int, int]:
    """Where the headers end and how long the blank line is; a part with no
    headers starts with the blank line itself."""
    if buffer.startswith(b"\r\n"):
        return 0, 2
    if buffer.startswith(b"\n"):
        return 0, 1
    crlf, lf = buffer.find(b"\r\n\r\n"), buffer.find(b"\n\n")
    if crlf >= 0 and (lf < 0 or crlf < lf):
        return crlf, 4
    if lf >= 0:
        return lf, 2
    return -1, 0


def _parse_headers(raw: bytes) -> dict[str, str]:
    headers: dict[str, str] = {}
    for line in raw.decode("latin-1").splitlines():
        name, sep, value = line.partition(":")
        if sep:
            headers[name.strip().lower()] = value.strip()
    return headers


def _param(header: str, key: str) -> str | None:
    for param in header.split(";")[1:]:
        name, sep, value = param.partition("=")
        if sep and name.strip().lower() == key:
            return value.strip().strip('"')
    return None


def _is_picture(headers: Mapping[str, str]) -> bool:
    media = headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if media.startswith("image/") or media == "application/octet-stream":
        return True
    disposition = headers.get("content-disposition", "")
    name = _param(disposition, "name") or ""
    return _param(disposition, "filename") is not None or "picture" in name.lower() or "image" in name.lower()


def form_events(parts: list[Part], *, truncated: bool) -> list[TerminalEvent]:
    """The events of a whole form post read by a :class:`MultipartReader`.
    A post cut off after its event part still counts: the terminal is done
    with the event, and a 400 would only make it post again and again."""
    if truncated and not any(p.body is not None for p in parts):
        raise VendorPayloadError("hikvision", "multipart body cut off before its event part ended")
    if not parts:
        raise VendorPayloadError("hikvision", "multipart body without parts (bad boundary?)")
    return _events_of_parts(parts)


def _events_of_parts(parts: Iterable[Part]) -> list[TerminalEvent]:
    events: list[TerminalEvent] = []
    found = False
    for part in parts:
        if part.dropped == "oversize" and part.name in EVENT_PART_NAMES:
            raise VendorPayloadError("hikvision", f"event part {part.name!r} larger than the limit ({part.size} bytes)")
        if is_event_part(part):
            found = True
            assert part.body is not None
            events.extend(parse_document(part.body, part.media))
    if not found:
        raise VendorPayloadError("hikvision", "multipart body has no event part (JSON or XML)")
    return events


@dataclass(frozen=True)
class StreamItem:
    """What one part of the alert stream was: events (empty for a heartbeat),
    or a rejection with its reason (the stream goes on)."""

    events: list[TerminalEvent] = field(default_factory=list)
    error: VendorPayloadError | None = None
    dropped: Literal["picture", "oversize"] | None = None


class AlertStream:
    """The body of ``/ISAPI/Event/notification/alertStream``, fed as it arrives."""

    def __init__(self, boundary: bytes, *, max_part: int = 1 << 20, max_picture: int = 8 << 20) -> None:
        self.reader = MultipartReader(boundary, max_part=max_part, max_picture=max_picture)

    def feed(self, chunk: bytes) -> list[StreamItem]:
        return [self._item(part) for part in self.reader.feed(chunk)]

    def close(self) -> list[StreamItem]:
        return [self._item(part) for part in self.reader.close()]

    @staticmethod
    def _item(part: Part) -> StreamItem:
        if part.dropped is not None:
            reason = f"part of {part.size} bytes over the limit" if part.dropped == "oversize" else None
            error = VendorPayloadError("hikvision", reason) if reason else None
            return StreamItem(error=error, dropped=part.dropped)
        assert part.body is not None
        try:
            return StreamItem(events=parse_document(part.body, part.media))
        except VendorPayloadError as exc:
            return StreamItem(error=exc)
