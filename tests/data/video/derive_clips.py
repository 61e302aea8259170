"""Regenerate the committed clips from the CAVIAR originals.

    .venv/bin/python tests/data/video/derive_clips.py DIR_WITH_ORIGINALS

DIR_WITH_ORIGINALS holds the unmodified CAVIAR files (see README.md for where
to get them). Each original is checked against its SHA-256 first, so a clip is
only ever derived from the exact bytes the truth was annotated on. A clip whose
``frames`` is ``None`` is the original copied byte for byte; the others are
re-encoded with OpenCV's FFmpeg writer (``mp4v``, same size and frame rate, no
scaling): frames ``first`` .. ``first + frames - 1`` of the original become
frames 0 .. ``frames - 1`` of the clip, which is the numbering the truth uses.
"""

from __future__ import annotations

import hashlib
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent


@dataclass(frozen=True)
class Derivation:
    clip: str
    original: str
    original_sha256: str
    first: int = 0
    frames: int | None = None  # None: copy the original unchanged


DERIVATIONS = (
    Derivation("caviar_enter_exit_front.mpg", "EnterExitCrossingPaths1front.mpg",
               "4ad6b51f756cf5c05df6017137bdb11a31bc320dd53de75aaa06a9dccf8ea7c9"),
    Derivation("caviar_two_leave_front.mp4", "TwoLeaveShop2front.mpg",
               "ba3b7f2ebf36d52e085ac3f0e9e044276862020b20381b728a10dd23f07b9f7f", first=150, frames=300),
)


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def derive(d: Derivation, originals: Path) -> None:
    import cv2  # only this script and the tests need OpenCV

    src = originals / d.original
    if sha256(src) != d.original_sha256:
        raise SystemExit(f"{src} is not the CAVIAR original the truth was made on (SHA-256 differs)")
    out = HERE / d.clip
    if d.frames is None:
        shutil.copyfile(src, out)
        return
    cap = cv2.VideoCapture(str(src))
    fps = cap.get(cv2.CAP_PROP_FPS)
    size = (int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT)))
    writer = cv2.VideoWriter(str(out), cv2.VideoWriter.fourcc(*"mp4v"), fps, size)
    index = written = 0
    try:
        while written < d.frames:
            ok, frame = cap.read()
            if not ok:
                raise SystemExit(f"{src} ended after {index} frames; needed {d.first + d.frames}")
            if index >= d.first:
                writer.write(frame)
                written += 1
            index += 1
    finally:
        writer.release()
        cap.release()


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    for d in DERIVATIONS:
        derive(d, Path(argv[1]))
        print(f"{d.clip}: {sha256(HERE / d.clip)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
