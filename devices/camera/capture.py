"""Frames from a video source at a bounded rate, newest first.

Blocking code for a thread of its own: :class:`FrameSource` opens an RTSP,
HTTP (MJPEG) or file URL, or a local camera, with ``cv2.VideoCapture`` and
hands out frames no faster than the configured rate; :class:`CaptureThread`
runs it and leaves only the newest frame in a one-slot :class:`LatestFrame`,
so a consumer that falls behind sees fresh pictures and a count of the
skipped ones, never a queue that grows.

``cv2`` blocks in open and read; FFmpeg's own timeouts are set where the
backend takes them, and :meth:`CaptureThread.stalled` is the watchdog for the
cases where it does not return anyway.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
from numpy.typing import NDArray

from devices.camera.errors import CameraConfigError, SourceError

log = logging.getLogger(__name__)

Image = NDArray[np.uint8]

_LIVE_SCHEMES = ("rtsp://", "rtsps://", "http://", "https://")
# A frame must be a colour picture of a plausible size: a 4K camera is the
# largest the gateway is sized for; a corrupt decode can report anything.
MAX_SIDE = 4096
MIN_SIDE = 16
# This many undecodable frames in a row and the source counts as broken.
MAX_BAD_IN_A_ROW = 25


@dataclass(frozen=True)
class CaptureSettings:
    url: str
    # Frames per second handed to the consumer (at most).
    fps: float = 5.0
    # A file source: start again at the end instead of stopping.
    loop: bool = False
    # A file source: deliver at the pace of its timestamps (as a camera
    # would) rather than as fast as it decodes.
    realtime: bool = True
    open_timeout_s: float = 10.0
    read_timeout_s: float = 5.0

    def __post_init__(self) -> None:
        if not self.url.strip():
            raise CameraConfigError("the camera url is empty")
        if not 0 < self.fps <= 30:
            raise CameraConfigError(f"fps must be above 0 and at most 30; got {self.fps:g}")
        if self.open_timeout_s <= 0 or self.read_timeout_s <= 0:
            raise CameraConfigError("the open and read timeouts must be above 0 seconds")
        source_kind(self.url)  # an unknown scheme fails here, at config load

    @property
    def is_file(self) -> bool:
        return source_kind(self.url) == "file"


def source_kind(url: str) -> str:
    """``live`` (network stream), ``device`` (a local camera) or ``file``."""
    lowered = url.lower()
    if lowered.startswith(_LIVE_SCHEMES):
        return "live"
    if url.isdigit() or url.startswith("/dev/video"):
        return "device"
    if "://" in url:
        raise CameraConfigError(f"unsupported camera url scheme in {url[:80]!r}: use rtsp://, http(s)://, "
                                "a video file path, /dev/videoN or a camera index")
    return "file"


@dataclass(frozen=True)
class Frame:
    image: Image
    # Stream seconds: the file's timestamp for a file (growing across loops),
    # the monotonic clock at grab for a live source. The pipeline's clock.
    t: float
    # Wall-clock time (time.time()) when the frame was taken off the source.
    wall: float
    index: int


class VideoCaptureLike(Protocol):
    def isOpened(self) -> bool: ...  # noqa: N802 - cv2's names
    def grab(self) -> bool: ...
    def retrieve(self) -> tuple[bool, Any]: ...
    def read(self) -> tuple[bool, Any]: ...
    def get(self, prop: int) -> float: ...
    def set(self, prop: int, value: float) -> bool: ...
    def release(self) -> None: ...


Opener = Callable[[CaptureSettings], VideoCaptureLike]


def open_video(settings: CaptureSettings) -> VideoCaptureLike:
    """``cv2.VideoCapture`` with the timeouts and backend the source needs."""
    import cv2

    kind = source_kind(settings.url)
    params = [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, int(settings.open_timeout_s * 1000),
              cv2.CAP_PROP_READ_TIMEOUT_MSEC, int(settings.read_timeout_s * 1000)]
    cap: VideoCaptureLike
    if kind == "device":
        index = int(settings.url) if settings.url.isdigit() else settings.url
        cap = cv2.VideoCapture(index, cv2.CAP_V4L2)
        # A local camera sets its own rate: decoding frames only to drop them costs CPU.
        cap.set(cv2.CAP_PROP_FPS, settings.fps)
        cap.set(cv2.CAP_PROP_BUFFERSIZE, 1)
    elif kind == "live":
        cap = cv2.VideoCapture(settings.url, cv2.CAP_FFMPEG, params)
    else:
        if not os.path.isfile(settings.url):
            raise SourceError(settings.url, "no such video file")
        cap = cv2.VideoCapture(settings.url, cv2.CAP_FFMPEG)
    return cap


class FrameSource:
    """One open source; :meth:`read` blocks until the next frame is due."""

    def __init__(self, settings: CaptureSettings, opener: Opener = open_video) -> None:
        self.settings = settings
        self.bad_frames = 0  # corrupt or wrongly shaped, since open
        self.skipped = 0  # grabbed but not decoded to keep to the rate
        self._opener = opener
        self._cap: VideoCaptureLike | None = None
        self._interval = 1.0 / settings.fps
        self._next_due = 0.0  # stream seconds of the next frame to deliver
        self._loop_offset = 0.0  # file: stream seconds added by earlier loops
        self._last_file_t = 0.0
        self._start_wall = 0.0
        self._index = 0
        self._shape: tuple[int, ...] | None = None

    def open(self) -> None:
        try:
            cap = self._opener(self.settings)
        except SourceError:
            raise
        except Exception as exc:  # noqa: BLE001 - cv2 raises cv2.error and others
            raise SourceError(self.settings.url, f"cannot open: {exc}") from exc
        if not cap.isOpened():
            cap.release()
            raise SourceError(self.settings.url, "cannot open the source (unreachable, wrong address or format)")
        self._cap = cap
        self._start_wall = time.monotonic()

    def close(self) -> None:
        if self._cap is not None:
            self._cap.release()
            self._cap = None

    def read(self) -> Frame | None:
        """The next frame due, or None at the end of a file that does not loop.
        Raises :class:`SourceError` when the source fails."""
        if self._cap is None:
            raise SourceError(self.settings.url, "not open")
        if self.settings.is_file:
            return self._read_file(self._cap)
        return self._read_live(self._cap)

    # ------------------------------------------------------------------ files

    def _read_file(self, cap: VideoCaptureLike) -> Frame | None:
        import cv2

        bad_in_a_row = 0
        while True:
            if not cap.grab():
                if not self.settings.loop:
                    return None
                if self._index == 0 and self._last_file_t == 0.0:
                    raise SourceError(self.settings.url, "the file holds no readable frames")
                # Loop: keep the stream clock growing so the pipeline sees time go on.
                self._loop_offset += self._last_file_t + self._interval
                self._last_file_t = 0.0
                cap.set(cv2.CAP_PROP_POS_FRAMES, 0)
                if not cap.grab():
                    raise SourceError(self.settings.url, "cannot rewind the file")
            file_t = max(cap.get(cv2.CAP_PROP_POS_MSEC), 0.0) / 1000.0
            self._last_file_t = file_t
            t = self._loop_offset + file_t
            if t + 1e-6 < self._next_due:
                self.skipped += 1
                continue
            image = self._retrieve(cap, bad_in_a_row)
            if image is None:
                bad_in_a_row += 1
                continue
            # From the due time, not the frame's, so a 25 fps file read at
            # 10 fps gives 10 frames a second, not 25/3.
            self._next_due += self._interval
            if self._next_due <= t:
                self._next_due = t + self._interval
            if self.settings.realtime:
                delay = self._start_wall + t - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
            return self._frame(image, t)

    # ------------------------------------------------------------------ live

    def _read_live(self, cap: VideoCaptureLike) -> Frame:
        bad_in_a_row = 0
        while True:
            # grab() takes the next packet off the network; only a frame we
            # keep is decoded and converted (retrieve), the costly half.
            started = time.monotonic()
            if not cap.grab():
                waited = time.monotonic() - started
                if waited >= 0.9 * self.settings.read_timeout_s:
                    raise SourceError(self.settings.url, f"no frame for {waited:.0f} s (read timeout)")
                raise SourceError(self.settings.url, "the stream ended or could not be decoded")
            now = time.monotonic()
            if now + 1e-3 < self._next_due:
                self.skipped += 1
                continue
            image = self._retrieve(cap, bad_in_a_row)
            if image is None:
                bad_in_a_row += 1
                continue
            # Schedule from the due time, not from now, so the rate does not
            # drift below fps by the time each grab takes.
            self._next_due += self._interval
            if self._next_due < now:  # the first frame, or we fell behind: start again from now
                self._next_due = now + self._interval
            return self._frame(image, now)

    # ------------------------------------------------------------------ checks

    def _retrieve(self, cap: VideoCaptureLike, bad_in_a_row: int) -> Image | None:
        """The grabbed frame decoded, or None for a corrupt one (counted);
        one more after ``bad_in_a_row`` corrupt frames in a row, up to
        MAX_BAD_IN_A_ROW, is an error."""
        ok, image = cap.retrieve()
        if ok and self._good(image):
            return image  # type: ignore[no-any-return]
        self.bad_frames += 1
        if bad_in_a_row + 1 >= MAX_BAD_IN_A_ROW:
            raise SourceError(self.settings.url, f"{bad_in_a_row + 1} corrupt frames in a row")
        return None

    def _good(self, image: object) -> bool:
        if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
            return False
        height, width = image.shape[:2]
        if not (MIN_SIDE <= width <= MAX_SIDE and MIN_SIDE <= height <= MAX_SIDE):
            return False
        if self._shape is None:
            self._shape = image.shape
        # A picture whose size changes mid-stream is a broken decode (a camera
        # that changes resolution reconnects, and then the size may change).
        return bool(image.shape == self._shape)

    def _frame(self, image: Image, t: float) -> Frame:
        self._index += 1
        return Frame(image=image, t=t, wall=time.time(), index=self._index)


class LatestFrame:
    """A one-slot handoff between the capture thread and the analysis: a new
    frame replaces one not yet taken, which is counted as dropped."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._frame: Frame | None = None
        self._closed = False
        self.delivered = 0
        self.dropped = 0

    def put(self, frame: Frame, *, wait: bool = False) -> None:
        """Leave ``frame`` in the slot. ``wait``: first wait until the slot is
        taken (a file read as fast as it is analysed: nothing to drop)."""
        with self._cond:
            if wait:
                self._cond.wait_for(lambda: self._frame is None or self._closed)
            if self._frame is not None:
                self.dropped += 1
            self._frame = frame
            self._cond.notify_all()

    def close(self) -> None:
        """No more frames: :meth:`take` returns None once the slot is empty."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def take(self, timeout: float) -> Frame | None:
        """The newest frame, waiting up to ``timeout`` seconds; None if none
        came or the handoff is closed."""
        with self._cond:
            self._cond.wait_for(lambda: self._frame is not None or self._closed, timeout)
            frame, self._frame = self._frame, None
            if frame is not None:
                self.delivered += 1
                self._cond.notify_all()  # a waiting put
            return frame


class CaptureThread:
    """Reads a :class:`FrameSource` on a daemon thread into a
    :class:`LatestFrame`. ``error`` holds the reason it stopped, ``ended``
    says a file came to its end."""

    def __init__(self, settings: CaptureSettings, opener: Opener = open_video, *, name: str = "camera") -> None:
        self.settings = settings
        self.name = name
        self.frames = LatestFrame()
        self.source = FrameSource(settings, opener)
        self.error: SourceError | None = None
        self.ended = False
        self._stop = threading.Event()
        # Monotonic time of the last sign of life (open started, frame read):
        # the watchdog compares it with the timeouts.
        self._alive_at = time.monotonic()
        self._opened = False
        self._thread = threading.Thread(target=self._run, name=f"capture {name}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 2.0) -> bool:
        """Ask the thread to stop and wait up to ``timeout``; False if it is
        still stuck in cv2 (it is a daemon and releases the source when cv2
        returns)."""
        self._stop.set()
        self.frames.close()
        if self._thread.is_alive() and threading.current_thread() is not self._thread:
            self._thread.join(timeout)
        return not self._thread.is_alive()

    def stalled(self) -> SourceError | None:
        """The watchdog: a reason if the source has shown no sign of life for
        longer than its timeout (cv2 is stuck in open or read)."""
        if self.error is not None or self.ended:
            return None
        limit = self.settings.read_timeout_s if self._opened else self.settings.open_timeout_s
        # A file paced in real time waits between frames on purpose.
        limit += 2 * (1.0 / self.settings.fps)
        quiet = time.monotonic() - self._alive_at
        if quiet > limit:
            what = "no frame" if self._opened else "the source did not open"
            return SourceError(self.settings.url, f"{what} for {quiet:.0f} s")
        return None

    @property
    def skipped(self) -> int:
        return self.source.skipped

    @property
    def bad_frames(self) -> int:
        return self.source.bad_frames

    def _run(self) -> None:
        try:
            self._alive_at = time.monotonic()
            self.source.open()
            self._opened = True
            self._alive_at = time.monotonic()
            while not self._stop.is_set():
                frame = self.source.read()
                self._alive_at = time.monotonic()
                if frame is None:
                    self.ended = True
                    break
                # A file not paced in real time waits for the analysis instead.
                self.frames.put(frame, wait=self.settings.is_file and not self.settings.realtime)
                self._alive_at = time.monotonic()
        except SourceError as exc:
            self.error = exc
        except Exception as exc:  # noqa: BLE001 - cv2.error from a broken stream; reported, not raised in a thread
            self.error = SourceError(self.settings.url, f"reading failed: {exc}")
        finally:
            self.source.close()
            self.frames.close()
