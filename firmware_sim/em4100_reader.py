"""A simulated EM4100 reader behind a pty, as the gateway sees a USB-UART one.

The simulator keeps both the master and the slave of the pty open (slave
raw), so the gateway opens the slave path with pyserial exactly as it opens
``/dev/ttyUSB0`` in production. ptys ignore baud rates, so the reader paces
itself: a real reader repeats the frame about every 100 ms while a tag is in
its field.
"""

from __future__ import annotations

import array
import fcntl
import logging
import os
import random
import termios
import threading
import time
import tty
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from devices.em4100 import encode_frame

log = logging.getLogger(__name__)

REPEAT_INTERVAL_S = 0.1


@dataclass(kw_only=True)
class Noise:
    """What goes wrong on a real line, each as a probability per frame written.

    ``bad_checksum``: the frame arrives with a wrong checksum; ``split``: it
    arrives in 2-3 pieces with short pauses; ``garbage``: a few random bytes
    precede it; ``extra_repeats``: the tag lingers and the frame is sent 1-3
    more times (per presentation). ``rng`` makes a run reproducible.
    """

    bad_checksum: float = 0.0
    split: float = 0.0
    garbage: float = 0.0
    extra_repeats: float = 0.0
    rng: random.Random = field(default_factory=lambda: random.Random(0))

    def hit(self, probability: float) -> bool:
        return probability > 0 and self.rng.random() < probability


@dataclass(frozen=True, kw_only=True)
class SimReaderStats:
    swipes: int
    swipes_with_valid_frame: int
    frames_written: int
    bytes_written: int
    bytes_dropped: int
    unread_bytes: int


class SimEm4100Reader:
    """One reader on its own pty. Thread-safe: presentations are serialised."""

    def __init__(self, name: str, *, link: str | os.PathLike[str] | None = None) -> None:
        self.name = name
        self._master, self._slave = os.openpty()
        tty.setraw(self._slave)
        # A full pty must not block the simulator: like a UART with nobody
        # listening, what does not fit is lost (and counted).
        os.set_blocking(self._master, False)
        self.pts = os.ttyname(self._slave)
        self._link = Path(link) if link is not None else None
        if self._link is not None:
            _replace_symlink(self._link, self.pts)
        self._lock = threading.Lock()
        self._closed = False
        self.swipes = 0
        self.swipes_with_valid_frame = 0
        self.frames_written = 0
        self.bytes_written = 0
        self.bytes_dropped = 0
        log.info("simulated EM4100 reader %s on %s", name, self.port)

    @property
    def port(self) -> str:
        """The path a gateway opens: the stable link if one was given."""
        return str(self._link) if self._link is not None else self.pts

    def present(
        self,
        tag_id: int,
        *,
        version: int = 0x14,
        repeats: int = 3,
        noise: Noise | None = None,
        repeat_interval_s: float = REPEAT_INTERVAL_S,
    ) -> bool:
        """Hold a tag in the field: send its frame ``repeats`` times, paced.

        Returns whether at least one complete, uncorrupted frame was written,
        i.e. whether a listening gateway should report this swipe.
        """
        frame = encode_frame(version, tag_id)
        if noise is not None and noise.hit(noise.extra_repeats):
            repeats += noise.rng.randint(1, 3)
        with self._lock:
            self._check_open()
            self.swipes += 1
            valid = False
            for i in range(max(1, repeats)):
                if i:
                    time.sleep(repeat_interval_s)
                valid |= self._send_frame(frame, noise)
            if valid:
                self.swipes_with_valid_frame += 1
        return valid

    @contextmanager
    def held(self) -> Iterator[None]:
        """No presentation is in progress inside this block, and the next one
        waits until it ends (a tenant waiting at the door)."""
        with self._lock:
            yield

    def write_raw(self, data: bytes) -> int:
        """Write bytes as they are (for tests of line noise); returns bytes written."""
        with self._lock:
            self._check_open()
            return self._write(data)

    def unread_bytes(self) -> int:
        """Bytes waiting in the pty that no reader has taken yet."""
        if self._closed:
            return 0
        buf = array.array("i", [0])
        try:
            fcntl.ioctl(self._slave, termios.FIONREAD, buf, True)
        except OSError:
            return 0
        return int(buf[0])

    def stats(self) -> SimReaderStats:
        return SimReaderStats(
            swipes=self.swipes,
            swipes_with_valid_frame=self.swipes_with_valid_frame,
            frames_written=self.frames_written,
            bytes_written=self.bytes_written,
            bytes_dropped=self.bytes_dropped,
            unread_bytes=self.unread_bytes(),
        )

    def close(self) -> None:
        """Unplug the reader: the gateway's next read fails, the link goes."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            if self._link is not None:
                _remove_symlink_if_ours(self._link, self.pts)
            for fd in (self._master, self._slave):
                try:
                    os.close(fd)
                except OSError:
                    pass

    def __enter__(self) -> SimEm4100Reader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ internals

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError(f"simulated reader {self.name} is closed")

    def _send_frame(self, frame: bytes, noise: Noise | None) -> bool:
        corrupt = False
        if noise is not None:
            if noise.hit(noise.garbage):
                self._write(noise.rng.randbytes(noise.rng.randint(1, 8)))
            if noise.hit(noise.bad_checksum):
                frame = _corrupt_checksum(frame)
                corrupt = True
        chunks = _split(frame, noise) if noise is not None and noise.hit(noise.split) else [frame]
        written = 0
        for i, chunk in enumerate(chunks):
            if i and noise is not None:
                time.sleep(noise.rng.uniform(0.002, 0.02))
            written += self._write(chunk)
        self.frames_written += 1
        return not corrupt and written == len(frame)

    def _write(self, data: bytes) -> int:
        try:
            n = os.write(self._master, data)
        except BlockingIOError:
            n = 0
        self.bytes_written += n
        self.bytes_dropped += len(data) - n
        return n


def _split(frame: bytes, noise: Noise) -> list[bytes]:
    cuts = sorted(noise.rng.sample(range(1, len(frame)), noise.rng.randint(1, 2)))
    bounds = [0, *cuts, len(frame)]
    return [frame[a:b] for a, b in zip(bounds, bounds[1:])]


def _corrupt_checksum(frame: bytes) -> bytes:
    # Flip the low checksum digit to another hex digit: well-formed, wrong sum.
    digit = frame[12:13].decode("ascii")
    other = "0" if digit.upper() != "0" else "1"
    return frame[:12] + other.encode("ascii") + frame[13:]


def _replace_symlink(link: Path, target: str) -> None:
    link.parent.mkdir(parents=True, exist_ok=True)
    tmp = link.with_name(f".{link.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    tmp.unlink(missing_ok=True)
    os.symlink(target, tmp)
    os.replace(tmp, link)  # atomic: a gateway never sees the link missing


def _remove_symlink_if_ours(link: Path, target: str) -> None:
    try:
        if os.readlink(link) == target:
            link.unlink()
    except OSError:
        pass
