"""Reading a code back with OpenCV, as the tests do. The classic detector
misses roughly one pristine code in a hundred (its finder-pattern search,
not the symbol: segno's matrix is checked separately); the ArUco-based
detector of the same library reads those, so a miss by both is a real one."""

from __future__ import annotations

import cv2
import numpy as np

_CLASSIC = cv2.QRCodeDetector()
_ARUCO = cv2.QRCodeDetectorAruco()


def read_qr(image: np.ndarray) -> str:
    for detector in (_CLASSIC, _ARUCO):
        text, _, _ = detector.detectAndDecode(image)
        if text:
            return str(text)
    return ""
