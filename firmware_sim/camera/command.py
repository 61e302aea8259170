"""``rentgate sim camera write|serve``: the synthetic door camera on the
command line. Progress on stderr; with ``--json`` one JSON object as the last
line of stdout."""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
import time
from pathlib import Path
from types import FrameType
from typing import Any

from rentgate.lang import tr


def add_parser(sim_sub: Any) -> None:
    camera = sim_sub.add_parser(
        "camera", help="a synthetic camera at a door: videos with their truth, or a live MJPEG stream",
        description="A rendered doorway with people walking in and out: write a video file with the truth of "
                    "who crossed the door line when beside it, or serve the scene live as MJPEG over HTTP "
                    "(see docs/camera-sim.md).")
    sub = camera.add_subparsers(dest="camera_command", required=True, metavar="CAMERA_COMMAND")
    write = sub.add_parser("write", help="write a video (.avi or .mp4) and FILE.truth.json beside it",
                           description="Renders a random script of people going in and out (pairs, groups, "
                                       "people lingering or turning back, light changes, noise) into a video "
                                       "file, and its truth (door line, crossings, card grants) into "
                                       "FILE.truth.json.")
    write.add_argument("file", metavar="FILE", help="the video to write: .avi (Motion-JPEG) or .mp4 (MPEG-4)")
    write.add_argument("--seed", type=int, default=1, help="the same seed gives the same video and truth")
    write.add_argument("--duration", type=float, default=60.0, metavar="S", help="seconds of video (default 60)")
    write.add_argument("--fps", type=float, default=10.0, help="frames per second (default 10)")
    write.add_argument("--size", default="640x480", metavar="WxH", help="picture size (default 640x480)")
    write.add_argument("--clean", action="store_true", help="no light changes, noise or distractors")
    write.add_argument("--json", action="store_true", help="print the truth's counts as one JSON object")
    write.set_defaults(func=_write)
    serve = sub.add_parser("serve", help="serve the doorway live as MJPEG over HTTP",
                           description="Serves /stream.mjpg (multipart MJPEG), /snapshot.jpg and /stats; POST "
                                       "/enqueue?n=N&direction=in|out&granted=G walks people through and POST "
                                       "/fault?kind=KIND&seconds=S switches a fault on. Runs until Ctrl-C, "
                                       "SIGTERM or --duration.")
    serve.add_argument("--host", default="127.0.0.1", help="the address to listen on (default 127.0.0.1)")
    serve.add_argument("--port", type=int, default=8554, help="the port (0: a free one; the URL is printed)")
    serve.add_argument("--fps", type=float, default=10.0, help="frames per second (default 10)")
    serve.add_argument("--size", default="640x480", metavar="WxH", help="picture size (default 640x480)")
    serve.add_argument("--seed", type=int, default=1, help="seeds the people's looks and the follow mix")
    serve.add_argument("--follow", metavar="FILE", default=None,
                       help="a building simulator's swipe log (JSON lines, see --swipe-log of `rentgate sim "
                            "building`): people walk in after each granted swipe at --door")
    serve.add_argument("--door", default=None, help="the door this camera watches (with --follow)")
    serve.add_argument("--tailgate", type=float, default=0.15, metavar="P",
                       help="with --follow: chance that a second person follows a granted swipe (default 0.15)")
    serve.add_argument("--unidentified", type=float, default=0.08, metavar="P",
                       help="with --follow: chance per granted swipe that someone later walks in without "
                            "one (default 0.08)")
    serve.add_argument("--outward", type=float, default=0.3, metavar="P",
                       help="with --follow: chance per granted swipe that someone later walks out (default 0.3)")
    serve.add_argument("--every", type=float, default=None, metavar="S",
                       help="without --follow: a person walks in or out about every S seconds")
    serve.add_argument("--fault", action="append", default=[], metavar="KIND:AT:SECONDS",
                       help="switch a fault on AT seconds after the start for SECONDS: vanish, freeze, black, "
                            "shift or corrupt (corrupt for 0 s: one part); may be repeated")
    serve.add_argument("--duration", type=float, default=None, metavar="S", help="stop after S seconds")
    serve.add_argument("--json", action="store_true", help="print the stats as one JSON object at the end")
    serve.set_defaults(func=_serve)


def _size(text: str) -> tuple[int, int]:
    from firmware_sim.camera.errors import CameraSimError

    w, _, h = text.lower().partition("x")
    try:
        return int(w), int(h)
    except ValueError:
        raise CameraSimError(f"a size is WIDTHxHEIGHT, such as 640x480; got {text[:20]!r}") from None


def _fail(args: argparse.Namespace, message: str, code: int = 2) -> int:
    print(tr("错误：", "error: ") + message, file=sys.stderr)
    if getattr(args, "json", False):
        print(json.dumps({"error": message}, ensure_ascii=False))
    return code


def _write(args: argparse.Namespace) -> int:
    from firmware_sim.camera.errors import CameraSimError
    from firmware_sim.camera.script import random_script
    from firmware_sim.camera.video import truth_path, write_video

    started = time.monotonic()
    try:
        width, height = _size(args.size)
        script = random_script(args.seed, args.duration, width=width, height=height, lighting=not args.clean,
                               noise=not args.clean, distractors=not args.clean)
        result = write_video(Path(args.file), script, args.fps)
    except CameraSimError as exc:
        return _fail(args, str(exc))
    except OSError as exc:
        return _fail(args, tr(f"无法写入：{exc}", f"cannot write: {exc}"), 1)
    counts = result["counts"]
    print(tr(f"写入 {result['frames']} 帧（{time.monotonic() - started:.1f} 秒）：进 {counts['in']} 人（刷卡 "
             f"{counts['matched']}，尾随 {counts['tailgating']}，未识别 {counts['unidentified']}），出 {counts['out']} 人；"
             f"真值在 {truth_path(Path(args.file))}",
             f"wrote {result['frames']} frames in {time.monotonic() - started:.1f} s: {counts['in']} in "
             f"({counts['matched']} matched, {counts['tailgating']} tailgating, {counts['unidentified']} "
             f"unidentified), {counts['out']} out; truth in {truth_path(Path(args.file))}"), file=sys.stderr)
    if args.json:
        print(json.dumps({"video": str(args.file), "truth": str(truth_path(Path(args.file))),
                          "frames": result["frames"], "counts": counts}, ensure_ascii=False))
    return 0


def _serve(args: argparse.Namespace) -> int:
    import random

    from firmware_sim.camera.errors import CameraSimError
    from firmware_sim.camera.faults import parse_fault
    from firmware_sim.camera.follow import Follower, FollowMix
    from firmware_sim.camera.live import LiveScene
    from firmware_sim.camera.mjpeg import MjpegServer

    if args.follow is not None and not args.door:
        return _fail(args, tr("--follow 需要 --door（摄像头看的是哪个门）", "--follow needs --door (the door it watches)"))
    if args.duration is not None and not 0 < args.duration <= 7 * 86400:
        return _fail(args, tr("--duration 应在 0 到 604800 秒之间", "--duration must be above 0, at most 604800 s"))
    if args.every is not None and not 1 <= args.every <= 3600:
        return _fail(args, tr("--every 应在 1 到 3600 秒之间", "--every must be 1 to 3600 s"))
    if not 0 <= args.port <= 65535:
        return _fail(args, tr("--port 应在 0 到 65535 之间", "--port must be 0 to 65535"))
    try:
        width, height = _size(args.size)
        faults = sorted((parse_fault(f) for f in args.fault), key=lambda f: f[1])
        mix = FollowMix(args.tailgate, args.unidentified, args.outward)
        scene = LiveScene(width=width, height=height, seed=args.seed)
        server = MjpegServer(scene, host=args.host, port=args.port, fps=args.fps)
    except CameraSimError as exc:
        return _fail(args, str(exc))
    try:
        server.start()
    except OSError as exc:
        return _fail(args, tr(f"无法监听 {args.host}:{args.port}：{exc}", f"cannot listen on {args.host}:{args.port}: "
                              f"{exc}"), 1)
    follower = Follower(scene, args.follow, args.door, seed=args.seed, mix=mix) if args.follow else None
    stop = threading.Event()

    def on_sigterm(signum: int, frame: FrameType | None) -> None:
        stop.set()

    previous = signal.signal(signal.SIGTERM, on_sigterm)
    started = time.monotonic()
    try:
        if follower is not None:
            follower.start()
        # Announced once the swipe log is being followed: a swipe logged
        # after this line is seen.
        print(tr(f"摄像头：{server.url}", f"camera: {server.url}"), file=sys.stderr, flush=True)
        rng = random.Random(f"camera-every:{args.seed}")
        next_walk = started + (rng.uniform(0.5, 1.5) * args.every if args.every else float("inf"))
        pending = list(faults)
        while not stop.is_set():
            now = time.monotonic()
            if args.duration is not None and now - started >= args.duration:
                break
            while pending and now - started >= pending[0][1]:
                kind, _, seconds = pending.pop(0)
                server.fault(kind, seconds)
                print(tr(f"故障：{kind} {seconds:g} 秒", f"fault: {kind} for {seconds:g} s"), file=sys.stderr)
            if now >= next_walk:
                try:
                    if rng.random() < 0.6:
                        scene.enqueue(1, "in", granted=1 if rng.random() < 0.85 else 0)
                    else:
                        scene.enqueue(1, "out")
                except CameraSimError as exc:
                    print(tr(f"没有人走：{exc}", f"nobody walks: {exc}"), file=sys.stderr)
                next_walk = now + rng.uniform(0.5, 1.5) * (args.every or 0)
            stop.wait(0.1)
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGTERM, previous)
        if follower is not None:
            follower.stop()
        server.stop()
    stats = server.stats()
    stats["scene"].pop("crossings", None)
    if follower is not None:
        stats["follow"] = follower.stats()
    stats["elapsed_s"] = round(time.monotonic() - started, 3)
    crossed = stats["scene"]["crossed"]
    print(tr(f"发送 {stats['frames']} 帧；进 {crossed['in']} 人（刷卡 {crossed['matched']}，尾随 {crossed['tailgating']}，"
             f"未识别 {crossed['unidentified']}），出 {crossed['out']} 人",
             f"{stats['frames']} frames; {crossed['in']} in ({crossed['matched']} matched, {crossed['tailgating']} "
             f"tailgating, {crossed['unidentified']} unidentified), {crossed['out']} out"), file=sys.stderr)
    if args.json:
        print(json.dumps(stats, ensure_ascii=False), flush=True)
    return 0
