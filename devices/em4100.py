"""EM4100 / RDM6300 125 kHz reader frames, parsed from a byte stream.

A frame is 14 bytes: STX (0x02), ten ASCII hex digits (a version byte then a
32-bit tag id), two ASCII hex digits of checksum (XOR of the five bytes), ETX
(0x03). Example: ``02 "14008EC793" "CE" 03``.

The parser is pure: the transport feeds it whatever a read returned, and it
hands back the complete frames. It never raises on input; bad frames are
counted and skipped.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import reduce
from operator import xor
from typing import Final, Literal

from devices.errors import FrameError

STX: Final = 0x02
ETX: Final = 0x03
FRAME_LEN: Final = 14
_HEX_DIGITS: Final = frozenset(b"0123456789abcdefABCDEF")
_BODY_END: Final = FRAME_LEN - 1  # index of ETX


@dataclass(frozen=True, slots=True)
class Em4100Frame:
    version: int
    tag_id: int

    @property
    def card(self) -> str:
        """The credential value on the wire: ten upper-case hex digits."""
        return f"{self.version:02X}{self.tag_id:08X}"

    @property
    def format(self) -> Literal["em4100"]:
        return "em4100"


def checksum(version: int, tag_id: int) -> int:
    return reduce(xor, _five_bytes(version, tag_id))


def encode_frame(version: int, tag_id: int) -> bytes:
    """The 14 bytes a reader sends for this tag (upper-case hex, as readers do)."""
    if not 0 <= version <= 0xFF:
        raise FrameError(f"EM4100 version byte out of range: {version!r}")
    if not 0 <= tag_id <= 0xFFFFFFFF:
        raise FrameError(f"EM4100 tag id out of 32-bit range: {tag_id!r}")
    body = f"{version:02X}{tag_id:08X}{checksum(version, tag_id):02X}".encode("ascii")
    return bytes([STX]) + body + bytes([ETX])


def _five_bytes(version: int, tag_id: int) -> bytes:
    return bytes([version]) + tag_id.to_bytes(4, "big")


class Em4100Parser:
    """Incremental frame parser with resynchronisation on STX.

    A candidate frame is rejected as soon as one of its bytes is impossible
    (a non-hex digit, or anything but ETX at the end), so a frame that lost its
    tail never swallows the STX of the next one. The buffer therefore never
    holds more than one incomplete frame.
    """

    def __init__(self) -> None:
        self._buf = bytearray()
        self.frames_ok = 0
        self.bad_checksum = 0
        self.bad_format = 0
        self.bytes_discarded = 0  # garbage and rejected partial frames

    @property
    def buffered(self) -> int:
        return len(self._buf)

    @property
    def bad_frames(self) -> int:
        return self.bad_checksum + self.bad_format

    def feed(self, data: bytes) -> list[Em4100Frame]:
        self._buf += data
        frames: list[Em4100Frame] = []
        while self._buf:
            if not self._skip_to_stx():
                break
            bad_at = self._first_bad_index()
            if bad_at is not None:
                # Drop only the STX: the offending byte may start the next frame.
                self.bad_format += 1
                self.bytes_discarded += 1
                del self._buf[:1]
                continue
            if len(self._buf) < FRAME_LEN:
                break
            frame = self._decode(bytes(self._buf[:FRAME_LEN]))
            del self._buf[:FRAME_LEN]
            if frame is not None:
                frames.append(frame)
        return frames

    def _skip_to_stx(self) -> bool:
        start = self._buf.find(STX)
        if start < 0:
            self.bytes_discarded += len(self._buf)
            self._buf.clear()
            return False
        if start:
            self.bytes_discarded += start
            del self._buf[:start]
        return True

    def _first_bad_index(self) -> int | None:
        for i in range(1, min(len(self._buf), FRAME_LEN)):
            byte = self._buf[i]
            ok = byte == ETX if i == _BODY_END else byte in _HEX_DIGITS
            if not ok:
                return i
        return None

    def _decode(self, raw: bytes) -> Em4100Frame | None:
        fields = bytes.fromhex(raw[1:_BODY_END].decode("ascii"))
        version, tag_id, sent = fields[0], int.from_bytes(fields[1:5], "big"), fields[5]
        if reduce(xor, fields[:5]) != sent:
            self.bad_checksum += 1
            return None
        self.frames_ok += 1
        return Em4100Frame(version=version, tag_id=tag_id)
