"""A script written as a video file, with its truth beside it in
``<video>.truth.json`` (the door line, the crossings and the grants)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import cv2

from firmware_sim.camera.errors import CameraSimError
from firmware_sim.camera.render import check_fps, frame_count, render
from firmware_sim.camera.script import Script, truth_json

# The containers OpenCV's own writer produces on every platform without
# extra codecs: Motion-JPEG in AVI and MPEG-4 part 2 in MP4.
CODECS = {".avi": "MJPG", ".mp4": "mp4v"}


def truth_path(video: Path) -> Path:
    return video.with_name(video.name + ".truth.json")


def write_video(path: Path | str, script: Script, fps: float) -> dict[str, Any]:
    """Render ``script`` at ``fps`` into ``path`` (.avi or .mp4) and write
    its truth; returns the truth as written. The video is written to a
    temporary name first, so a half-written file never has the real name."""
    check_fps(fps)
    path = Path(path)
    codec = CODECS.get(path.suffix.lower())
    if codec is None:
        raise CameraSimError(f"the video must end in {' or '.join(CODECS)}; got {path.name[-40:]!r}")
    if not path.parent.is_dir():
        raise CameraSimError(f"there is no folder {str(path.parent)[-80:]!r} to write the video into")
    partial = path.with_name(f".{path.stem}.partial{path.suffix}")
    writer = cv2.VideoWriter(str(partial), cv2.VideoWriter.fourcc(*codec), fps, (script.width, script.height))
    if not writer.isOpened():
        raise CameraSimError(f"OpenCV cannot write {codec} video to {path.name[-60:]!r} on this machine")
    frames = 0
    try:
        for _, frame in render(script, fps):
            writer.write(frame)
            frames += 1
    finally:
        writer.release()
    if frames != frame_count(script.duration_s, fps) or not partial.exists() or partial.stat().st_size == 0:
        partial.unlink(missing_ok=True)
        raise CameraSimError(f"OpenCV wrote no {codec} video to {path.name[-60:]!r}")
    os.replace(partial, path)
    result = {**truth_json(script, fps), "video": path.name, "frames": frames}
    sidecar = truth_path(path)
    sidecar.write_text(json.dumps(result, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    return result
