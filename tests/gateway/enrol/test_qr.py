"""``--scan``: the landlord's QR code read from a picture and from video
(what a camera delivers), made here with segno and cv2.VideoWriter."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import segno

from gateway.enrol import qr
from gateway.enrol.errors import EnrolInputError
from rentgate.cli import main
from tests.gateway.enrol.fakes import CODE, GW, FakeServerSide, enrolling, http_fake

QR_TEXT = f"https://rentgate.example.cn/e/{CODE}"
SIZE = (640, 480)


def qr_png(path: Path, text: str = QR_TEXT) -> Path:
    segno.make(text, error="m").save(str(path), scale=8, border=4)
    return path


def frame_with(qr_path: Path | None, offset: tuple[int, int] = (180, 100)) -> np.ndarray:
    # A grey room; the phone's screen with the code on it, somewhere in view.
    frame = np.full((SIZE[1], SIZE[0], 3), 90, np.uint8)
    if qr_path is not None:
        code = cv2.imread(str(qr_path), cv2.IMREAD_COLOR)
        assert code is not None
        h, w = code.shape[:2]
        x, y = offset
        frame[y:y + h, x:x + w] = code
    return frame


def video(path: Path, frames: list[np.ndarray], fps: float = 10) -> Path:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"MJPG"), fps, SIZE)
    assert writer.isOpened()
    for frame in frames:
        writer.write(frame)
    writer.release()
    return path


def test_a_picture_of_the_code(tmp_path: Path) -> None:
    assert qr.scan(str(qr_png(tmp_path / "code.png"))) == QR_TEXT


def test_a_video_where_the_code_comes_into_view(tmp_path: Path) -> None:
    code = qr_png(tmp_path / "code.png")
    clip = video(tmp_path / "clip.avi", [frame_with(None)] * 15 + [frame_with(code, (150 + i, 90)) for i in range(10)])
    assert qr.scan(str(clip), timeout_s=30) == QR_TEXT


def test_another_qr_code_in_view_is_passed_over(tmp_path: Path) -> None:
    plate = qr_png(tmp_path / "plate.png", "https://rentgate.example.cn/p/Zx8f3kq")
    clip = video(tmp_path / "plate.avi", [frame_with(plate)] * 10)
    with pytest.raises(EnrolInputError) as caught:
        qr.scan(str(clip), timeout_s=30)
    assert caught.value.code == "scan_failed" and caught.value.exit_code == 2
    assert "不是登记码" in caught.value.message


def test_no_code_within_the_time_gives_up(tmp_path: Path) -> None:
    clip = video(tmp_path / "empty.avi", [frame_with(None)] * 50)
    ticks = itertools.count(0, 0.5)  # half a second per look
    with pytest.raises(EnrolInputError) as caught:
        qr.scan(str(clip), timeout_s=3, clock=lambda: float(next(ticks)))
    assert caught.value.code == "scan_failed"


@pytest.mark.parametrize("source", ["missing.png", "missing.mp4", "/dev/video99", "rtsp://127.0.0.1:9/none"])
def test_a_source_that_cannot_be_opened(tmp_path: Path, source: str) -> None:
    if not source.startswith(("/", "rtsp")):
        source = str(tmp_path / source)
    with pytest.raises(EnrolInputError) as caught:
        qr.scan(source, timeout_s=2)
    assert caught.value.code == "scan_failed"
    assert "--scan" in (caught.value.next_step or "")


def test_a_file_that_is_not_a_picture(tmp_path: Path) -> None:
    (tmp_path / "notes.png").write_text("not a picture")
    with pytest.raises(EnrolInputError):
        qr.scan(str(tmp_path / "notes.png"))


def test_enrol_by_scanning(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    side = FakeServerSide(tmp_path / "side")
    with http_fake(enrolling(side)) as url:
        code = qr_png(tmp_path / "code.png", f"{url}/e/{CODE.lower()}")
        clip = video(tmp_path / "clip.avi", [frame_with(None)] * 5 + [frame_with(code)] * 5)
        assert main(["gateway", "enroll", "--scan", str(clip), "--dir", str(tmp_path / "gw"), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out.splitlines()[-1])
    assert doc["gateway_id"] == GW and doc["server_url"] == url
