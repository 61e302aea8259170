"""``--scan``: read the landlord's QR code with the gateway's own camera.

The source is what a camera device takes (docs/cameras-gateway.md): a V4L2
index or /dev/videoN, an rtsp:// or http(s):// stream, a video file, or a
still picture. Frames go through OpenCV's QR detector until one holds an
enrolment address (``<server>/e/<code>``) or the time is up; other QR codes
in view (a door plate, say) are passed over and mentioned if nothing else
turns up."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from gateway.enrol.errors import EnrolInputError
from gateway.enrol.invitation import is_invitation
from rentgate.lang import tr

log = logging.getLogger(__name__)

DEFAULT_TIMEOUT_S = 60.0
SCAN_FPS = 10.0
_STILL = {".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff", ".pgm", ".ppm"}
# Beyond this side a QR held at arm's length is still large: halve big
# frames, which the detector handles faster and often better.
_SCALE_ABOVE = 1600


class QrReader:
    """OpenCV's QR detector, with the ArUco-based one (OpenCV 4.8+, better
    on blurred or tilted codes) as a second try."""

    def __init__(self) -> None:
        import cv2

        self._cv2 = cv2
        self._detectors: list[Any] = [cv2.QRCodeDetector()]
        if hasattr(cv2, "QRCodeDetectorAruco"):
            self._detectors.append(cv2.QRCodeDetectorAruco())

    def texts(self, image: Any) -> list[str]:
        """The texts of the QR codes found in a picture (BGR or grey)."""
        cv2 = self._cv2
        if image is None or getattr(image, "size", 0) == 0:
            return []
        height, width = image.shape[:2]
        if max(height, width) > _SCALE_ABOVE:
            factor = _SCALE_ABOVE / max(height, width)
            image = cv2.resize(image, (int(width * factor), int(height * factor)), interpolation=cv2.INTER_AREA)
        found: list[str] = []
        for detector in self._detectors:
            try:
                # Multi first: a door plate's QR in view must not hide the landlord's.
                ok, texts, _points, _straight = detector.detectAndDecodeMulti(image)
            except cv2.error:
                continue
            found = [str(text) for text in (texts if ok else ()) if text]
            if found:
                break
        return found


def scan(source: str, *, timeout_s: float = DEFAULT_TIMEOUT_S,
         accept: Callable[[str], bool] = is_invitation,
         clock: Callable[[], float] = time.monotonic) -> str:
    """The first QR text ``accept`` takes. Raises EnrolInputError when the
    source cannot be opened, ends, or shows no such code within ``timeout_s``."""
    reader = QrReader()
    if Path(source).suffix.lower() in _STILL and "://" not in source:
        return _scan_still(source, reader, accept)
    return _scan_video(source, reader, accept, timeout_s, clock)


def _scan_still(source: str, reader: QrReader, accept: Callable[[str], bool]) -> str:
    import cv2

    if not Path(source).is_file():
        raise _cannot_open(source, tr("没有这个文件", "no such file"))
    image = cv2.imread(source, cv2.IMREAD_COLOR)
    if image is None:
        raise _cannot_open(source, tr("不是能读的图片", "not a readable picture"))
    texts = reader.texts(image)
    for text in texts:
        if accept(text):
            return text
    raise _not_found(source, saw_other=bool(texts), live=False)


def _scan_video(source: str, reader: QrReader, accept: Callable[[str], bool], timeout_s: float,
                clock: Callable[[], float]) -> str:
    from devices.camera.capture import CaptureSettings, FrameSource
    from devices.camera.errors import CameraError

    deadline = clock() + timeout_s
    try:
        settings = CaptureSettings(url=source, fps=SCAN_FPS, realtime=False,
                                   open_timeout_s=max(1.0, min(10.0, timeout_s)),
                                   read_timeout_s=max(1.0, min(5.0, timeout_s)))
        frames = FrameSource(settings)
        frames.open()
    except CameraError as exc:
        raise _cannot_open(source, getattr(exc, "reason", str(exc))) from exc
    live = not settings.is_file
    saw_other = False
    try:
        while clock() < deadline:
            try:
                frame = frames.read()
            except CameraError as exc:
                raise _cannot_open(source, getattr(exc, "reason", str(exc))) from exc
            if frame is None:  # the end of a file
                break
            for text in reader.texts(frame.image):
                if accept(text):
                    return text
                saw_other = True
    finally:
        frames.close()
    raise _not_found(source, saw_other=saw_other, live=live, timeout_s=timeout_s)


def _cannot_open(source: str, why: str) -> EnrolInputError:
    return EnrolInputError(
        "scan_failed", tr(f"打不开摄像头或文件 {source}：{why}", f"cannot open the camera or file {source}: {why}"),
        tr("检查 --scan 给的设备（如 0 或 /dev/video0）、地址或文件；也可以直接输入登记码",
           "check the device (like 0 or /dev/video0), address or file given to --scan; or type the code instead"))


def _not_found(source: str, *, saw_other: bool, live: bool, timeout_s: float = 0.0) -> EnrolInputError:
    other = tr("（看到了二维码，但不是登记码）", " (a QR code was seen, but not an enrolment code)") if saw_other else ""
    if live:
        text = tr(f"{timeout_s:.0f} 秒内没有在 {source} 的画面里找到登记二维码{other}",
                  f"no enrolment QR code in view of {source} within {timeout_s:.0f} s{other}")
        step = tr("把房东手机上的二维码放在摄像头前 20–40 厘米、光线好的地方再试；或直接输入登记码",
                  "hold the QR code on the landlord's phone 20-40 cm in front of the camera, in good light, and "
                  "try again; or type the code instead")
    else:
        text = tr(f"{source} 里没有登记二维码{other}", f"no enrolment QR code in {source}{other}")
        step = tr("换一张清楚的照片，或直接输入登记码", "use a sharper picture, or type the code instead")
    return EnrolInputError("scan_failed", text, step)
