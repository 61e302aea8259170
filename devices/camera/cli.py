"""``rentgate camera count``: the gateway's counting pipeline on any
recording, printing each crossing and the totals."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from rentgate.lang import tr

INWARD_HELP = ("the way people walk when they go in: up, down, left or right in the picture "
               "(down = towards the bottom edge)")


def register(subparsers: Any) -> None:
    camera = subparsers.add_parser("camera", help="count people crossing a door line in a video",
                                   description="The gateway's people counting, run on a recording.")
    sub = camera.add_subparsers(dest="camera_command", required=True, metavar="CAMERA_COMMAND")
    count = sub.add_parser(
        "count", help="count the people who cross a door line in a video file",
        description="Runs the same pipeline as a gateway's camera (motion, person stage, tracks, door line) "
                    "over a video file as fast as the CPU allows, and prints every crossing with its time, "
                    "direction and track, then the totals. Draw the line across the doorway, with its two ends "
                    "on either side of it, in pixels of the video's picture (0,0 is the top left corner).")
    count.add_argument("--video", required=True, metavar="FILE", help="the recording (any format OpenCV reads)")
    count.add_argument("--line", required=True, metavar="X1,Y1,X2,Y2",
                       help="the door line's two ends in pixels, e.g. 100,240,540,240")
    count.add_argument("--in", dest="inward", default="down", choices=("up", "down", "left", "right"),
                       help=INWARD_HELP)
    count.add_argument("--detector", default="hog", metavar="NAME",
                       help="hog (people seen from the front or side), motion (cameras looking straight down), "
                            "or package.module:factory for a detector of your own")
    count.add_argument("--anchor", default="bottom", choices=("bottom", "centre"),
                       help="which point of a person must cross: their feet (bottom) or the middle of their box "
                            "(centre, for cameras looking straight down)")
    count.add_argument("--fps", type=float, default=None, metavar="N",
                       help="analyse at most N frames per second of video, as a gateway set to that rate would "
                            "(default: every frame)")
    count.add_argument("--person-fps", type=float, default=5.0, metavar="N",
                       help="how often per second the person stage runs while something moves")
    count.add_argument("--require-person", action="store_true",
                       help="count only tracks the person stage has recognised as a person at least once")
    count.add_argument("--snapshots", metavar="FOLDER", default=None,
                       help="also write a JPEG of each crossing into this folder (it must not hold files yet)")
    count.add_argument("--json", action="store_true", help="print the result as one JSON object on stdout")
    count.set_defaults(func=_count)


def _fail(message: str) -> int:
    print(message, file=sys.stderr)
    return 2


def _count(args: argparse.Namespace) -> int:
    import cv2

    from devices.camera.errors import CameraError
    from devices.camera.geometry import DoorLine
    from devices.camera.pipeline import PipelineSettings
    from devices.camera.recording import count_recording

    # One core per analysis, as on a gateway that runs several cameras.
    cv2.setNumThreads(1)
    if args.fps is not None and not (0 < args.fps <= 240):
        return _fail(tr("--fps 必须大于 0 且不超过 240。", "--fps must be above 0 and at most 240."))
    snapshot_dir: Path | None = None
    if args.snapshots:
        snapshot_dir = Path(args.snapshots)
        if snapshot_dir.exists() and (not snapshot_dir.is_dir() or any(snapshot_dir.iterdir())):
            return _fail(tr(f"{snapshot_dir} 已存在且不是空文件夹；请给一个新的或空的文件夹。",
                            f"{snapshot_dir} exists and is not an empty folder; give a new or empty one."))
    try:
        line = DoorLine.parse(args.line, args.inward)
        settings = PipelineSettings(line=line, detector=args.detector, person_fps=args.person_fps,
                                    anchor=args.anchor, require_person=args.require_person,
                                    snapshots=snapshot_dir is not None)
        if snapshot_dir is not None:
            snapshot_dir.mkdir(parents=True, exist_ok=True)

        def show(crossing: Any) -> None:
            if snapshot_dir is not None and crossing.snapshot:
                name = f"{crossing.t:09.2f}s-{crossing.direction}-track{crossing.track}.jpg"
                (snapshot_dir / name).write_bytes(crossing.snapshot)
            if not args.json:
                word = tr("进", "in ") if crossing.direction == "in" else tr("出", "out")
                print(f"{_clock(crossing.t)}  {word}  {tr('轨迹', 'track')} {crossing.track}", flush=True)

        result = count_recording(args.video, settings, max_fps=args.fps, on_crossing=show)
    except CameraError as exc:
        return _fail(tr(f"无法计数：{exc}", f"cannot count: {exc}"))
    totals = result.totals
    if args.json:
        print(json.dumps({
            "video": result.path, "fps": round(result.fps, 3), "size": list(result.size),
            "line": [line.x1, line.y1, line.x2, line.y2], "inward": line.inward, "detector": args.detector,
            "anchor": args.anchor, "frames_read": result.frames_read, "frames_analysed": result.frames_analysed,
            "bad_frames": result.bad_frames,
            "crossings": [{"t": round(c.t, 3), "direction": c.direction, "track": c.track, "box": list(c.box),
                           "person_seen": c.confirmed} for c in result.crossings],
            "totals": totals, "cpu_s": round(result.cpu_s, 3),
            "frames_per_cpu_s": round(result.frames_analysed / result.cpu_s, 1) if result.cpu_s else None,
        }, ensure_ascii=False))
    else:
        print(tr(f"合计：进 {totals['in']} 人，出 {totals['out']} 人（分析 {result.frames_analysed} 帧，"
                 f"用 CPU {result.cpu_s:.1f} 秒）",
                 f"Total: {totals['in']} in, {totals['out']} out ({result.frames_analysed} frames analysed, "
                 f"{result.cpu_s:.1f} s of CPU)"))
    return 0


def _clock(t: float) -> str:
    minutes, seconds = divmod(t, 60)
    return f"{int(minutes):02d}:{seconds:05.2f}"
