"""devices.camera.capture against real sources: a video file on disk and an
MJPEG camera served over HTTP on a free port, with its faults."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from devices.camera.capture import CaptureSettings, CaptureThread, Frame, FrameSource, LatestFrame
from devices.camera.errors import CameraConfigError, SourceError
from tests.devices.mjpeg_server import MjpegServer, write_video


def wait_for(predicate: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.02)


def test_a_file_is_read_at_the_configured_rate_by_its_timestamps(tmp_path: Path) -> None:
    path = str(tmp_path / "door.avi")
    write_video(path, seconds=2.0, fps=25)
    source = FrameSource(CaptureSettings(path, fps=5, realtime=False))
    source.open()
    times = []
    while (frame := source.read()) is not None:
        times.append(frame.t)
        assert frame.image.shape == (240, 320, 3)
    source.close()
    assert len(times) == 10
    assert times == pytest.approx([i * 0.2 for i in range(10)], abs=0.005)
    # The other 40 frames were grabbed but never decoded.
    assert source.skipped == 40


def test_a_file_paced_in_real_time_takes_its_length(tmp_path: Path) -> None:
    path = str(tmp_path / "door.avi")
    write_video(path, seconds=1.0, fps=25)
    source = FrameSource(CaptureSettings(path, fps=10))
    source.open()
    started = time.monotonic()
    count = sum(1 for _ in iter(source.read, None))
    elapsed = time.monotonic() - started
    assert count == 10
    assert 0.8 <= elapsed < 1.5


def test_a_looping_file_keeps_its_clock_going(tmp_path: Path) -> None:
    path = str(tmp_path / "door.avi")
    write_video(path, seconds=1.0, fps=25)
    source = FrameSource(CaptureSettings(path, fps=5, loop=True, realtime=False))
    source.open()
    times = [f.t for f in (source.read() for _ in range(12)) if f is not None]
    assert len(times) == 12
    assert all(b > a for a, b in zip(times, times[1:], strict=False)), times
    assert times[-1] > 2.0


def test_a_missing_file_and_a_bad_scheme_are_clear() -> None:
    with pytest.raises(SourceError, match="no such video file"):
        FrameSource(CaptureSettings("/nonexistent/door.avi")).open()
    with pytest.raises(CameraConfigError, match="unsupported camera url scheme"):
        CaptureSettings("ftp://camera/door")
    with pytest.raises(CameraConfigError, match="fps"):
        CaptureSettings("door.avi", fps=0)


def test_mjpeg_over_http_is_delivered_at_the_rate_asked() -> None:
    with MjpegServer(fps=25) as camera:
        capture = CaptureThread(CaptureSettings(camera.url, fps=5, read_timeout_s=3))
        capture.start()
        try:
            frames = [capture.frames.take(3.0) for _ in range(8)]
        finally:
            capture.stop()
    assert all(f is not None for f in frames)
    times = [f.t for f in frames if f is not None]
    gaps = np.diff(times)
    # Never early: frame i is kept no sooner than 0.2 s * i after the first
    # (a late frame is followed by a sooner one, so no bound on each gap),
    # and the rate is the one asked for.
    early = [t - (times[0] + 0.2 * i) for i, t in enumerate(times) if t < times[0] + 0.2 * i - 0.002]
    assert not early, (early, gaps)
    assert np.median(gaps) == pytest.approx(0.2, abs=0.03), gaps
    # Most of the frames the camera sent (25 a second; about four of five)
    # were grabbed and never decoded.
    assert capture.skipped >= 2 * len(times), capture.skipped


def test_a_camera_that_hangs_is_reported_within_the_read_timeout() -> None:
    with MjpegServer() as camera:
        capture = CaptureThread(CaptureSettings(camera.url, fps=5, read_timeout_s=1.5))
        capture.start()
        assert capture.frames.take(5.0) is not None
        camera.mode = "hang"
        hung_at = time.monotonic()
        wait_for(lambda: capture.error is not None or capture.stalled() is not None, 6.0, "the hang to be seen")
        took = time.monotonic() - hung_at
        capture.stop()
    error = capture.error or capture.stalled()
    assert error is not None and "no frame" in error.reason
    assert took < 4.0


def test_a_camera_that_goes_away_ends_the_capture_with_a_reason() -> None:
    camera = MjpegServer()
    camera.start()
    capture = CaptureThread(CaptureSettings(camera.url, fps=5, read_timeout_s=2))
    capture.start()
    assert capture.frames.take(5.0) is not None
    camera.stop()
    wait_for(lambda: capture.error is not None, 5.0, "the capture to fail")
    assert capture.error is not None and capture.error.url == camera.url
    # take() returns at once once the capture has stopped: the consumer never hangs on it.
    wait_for(lambda: capture.frames.take(0.01) is None, 1.0, "the slot to empty")
    started = time.monotonic()
    assert capture.frames.take(5.0) is None
    assert time.monotonic() - started < 0.5


def test_a_stream_of_garbage_is_an_error_not_a_frame() -> None:
    with MjpegServer() as camera:
        camera.mode = "corrupt"
        capture = CaptureThread(CaptureSettings(camera.url, fps=5, read_timeout_s=2, open_timeout_s=8))
        capture.start()
        wait_for(lambda: capture.error is not None or capture.stalled() is not None, 15.0, "the capture to fail")
        capture.stop()
    assert capture.frames.delivered == 0


class _Corrupting:
    """A cv2.VideoCapture stand-in whose decodes come back as the wrong shape."""

    def __init__(self, images: list[Any]) -> None:
        self.images = images

    def isOpened(self) -> bool:  # noqa: N802 - cv2's name
        return True

    def grab(self) -> bool:
        return True

    def retrieve(self) -> tuple[bool, Any]:
        image = self.images.pop(0) if self.images else None
        return image is not None, image

    def read(self) -> tuple[bool, Any]:
        return self.retrieve()

    def get(self, prop: int) -> float:
        return 0.0

    def set(self, prop: int, value: float) -> bool:
        return False

    def release(self) -> None:
        pass


def test_wrongly_shaped_frames_are_counted_and_skipped_then_fail() -> None:
    good = np.zeros((120, 160, 3), np.uint8)
    images: list[Any] = [np.zeros((120, 160), np.uint8), good, np.zeros((240, 320, 3), np.uint8),
                         np.zeros((5, 5, 3), np.uint8), good]
    source = FrameSource(CaptureSettings("http://camera.invalid/x", fps=30), opener=lambda s: _Corrupting(images))
    source.open()
    first = source.read()
    second = source.read()
    assert first is not None and second is not None
    assert source.bad_frames == 3  # grey, a size change mid-stream, too small
    with pytest.raises(SourceError, match="corrupt frames in a row"):
        source.read()  # nothing but failures from here on


def test_the_handoff_keeps_only_the_newest_frame() -> None:
    slot = LatestFrame()
    image = np.zeros((16, 16, 3), np.uint8)
    for i in range(5):
        slot.put(Frame(image=image, t=float(i), wall=0.0, index=i))
    frame = slot.take(0.1)
    assert frame is not None and frame.index == 4
    assert slot.dropped == 4
    assert slot.take(0.05) is None


def test_a_file_read_as_fast_as_analysed_waits_for_the_analysis_instead_of_dropping(tmp_path: Path) -> None:
    path = str(tmp_path / "door.avi")
    write_video(path, seconds=2.0, fps=25)
    capture = CaptureThread(CaptureSettings(path, fps=10, realtime=False))
    capture.start()
    indexes = []
    while (frame := capture.frames.take(5.0)) is not None:
        indexes.append(frame.index)
        time.sleep(0.02)  # an analysis slower than the decoder
    capture.stop()
    assert indexes == list(range(1, 21))
    assert capture.frames.dropped == 0 and capture.ended and capture.error is None
