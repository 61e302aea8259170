"""A door camera: frames from a URL (RTSP, MJPEG over HTTP, a file, a local
camera), people crossing the door line, the camera's health.

Two threads per camera, none on the event loop: capture (devices.camera.
capture, newest frame only) and analysis (the pipeline and the health
monitor). A slow analysis skips frames; it never delays a card decision,
which is made on the loop. Crossings go to the sink's ``person_crossed``;
state changes to ``device_status``: online once frames arrive, offline with
the reason when the source fails (then reconnects with capped jittered
backoff), and offline while the picture is frozen, dark or moved
(docs/cameras-gateway.md).
"""

from __future__ import annotations

import asyncio
import bisect
import logging
import os
import random
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal, Protocol

from pydantic import Field, field_validator, model_validator

from gateway.devices.base import DeviceConfigBase, EventSink, register
from rentgate import wire

if TYPE_CHECKING:
    from devices.camera.capture import CaptureSettings, CaptureThread, Frame, Opener
    from devices.camera.crossing import Crossing
    from devices.camera.health import HealthReport
    from devices.camera.pipeline import PipelineSettings

log = logging.getLogger(__name__)

_TAKE_WAIT_S = 0.5
_RECONNECT_BASE_S = 1.0
# A session that delivered frames this long resets the backoff.
_HEALTHY_AFTER_S = 30.0
# Frame times kept to turn a crossing's stream time into wall time.
_TIMES_KEPT = 512


class CameraConfig(DeviceConfigBase):
    type: Literal["camera"]
    door: wire.DeviceId  # a camera watches one door; its crossings are that door's
    url: str = Field(min_length=1, max_length=2000)
    fps: float = Field(default=5.0, gt=0, le=30)
    # The door line in pixels of the camera's picture, and which way is in.
    line: list[float]
    inward: Literal["up", "down", "left", "right"] = "down"
    detector: Literal["hog", "motion"] = "hog"
    person_fps: float = Field(default=5.0, gt=0, le=30)
    snapshots: bool = True
    jpeg_quality: int = Field(default=80, ge=30, le=95)
    # A file source: start again at its end (a demo) or stop; and whether to
    # play it at the pace of its timestamps (as a camera would) or as fast
    # as it can be analysed (checking a recording).
    loop: bool = False
    realtime: bool = True
    open_timeout_s: float = Field(default=10.0, gt=0, le=120)
    read_timeout_s: float = Field(default=5.0, gt=0, le=120)
    reconnect_max_s: float = Field(default=60.0, ge=1, le=3600)
    # Health: a picture that does not change, is black or covered, or shows
    # another scene for this long is reported.
    frozen_s: float = Field(default=10.0, gt=0, le=3600)
    dark_s: float = Field(default=5.0, gt=0, le=3600)
    moved_s: float = Field(default=10.0, gt=0, le=3600)

    @field_validator("line")
    @classmethod
    def _four(cls, value: list[float]) -> list[float]:
        from rentgate.lang import tr

        if len(value) != 4:
            raise ValueError(tr(f"门线是四个数字 [x1, y1, x2, y2]，这里有 {len(value)} 个",
                                f"a door line is four numbers [x1, y1, x2, y2]; this has {len(value)}"))
        return value

    @model_validator(mode="after")
    def _check(self) -> CameraConfig:
        from devices.camera.capture import CaptureSettings
        from devices.camera.errors import CameraConfigError
        from devices.camera.geometry import DoorLine

        try:
            x1, y1, x2, y2 = self.line
            DoorLine(x1, y1, x2, y2, self.inward)
            CaptureSettings(self.url, fps=self.fps)
        except CameraConfigError as exc:
            raise ValueError(str(exc)) from None
        return self

    def capture_settings(self) -> CaptureSettings:
        from devices.camera.capture import CaptureSettings

        return CaptureSettings(self.url, fps=self.fps, loop=self.loop, realtime=self.realtime,
                               open_timeout_s=self.open_timeout_s, read_timeout_s=self.read_timeout_s)

    def pipeline_settings(self) -> PipelineSettings:
        from devices.camera.geometry import DoorLine
        from devices.camera.pipeline import PipelineSettings

        x1, y1, x2, y2 = self.line
        return PipelineSettings(line=DoorLine(x1, y1, x2, y2, self.inward), detector=self.detector,
                                person_fps=self.person_fps, snapshots=self.snapshots, jpeg_quality=self.jpeg_quality)


class PipelineLike(Protocol):
    def process(self, frame: Any, t: float) -> list[Crossing]: ...
    def finish(self) -> list[Crossing]: ...


class HealthLike(Protocol):
    def observe(self, frame: Any, t: float) -> HealthReport | None: ...


PipelineFactory = Callable[["PipelineSettings"], PipelineLike]
HealthFactory = Callable[[CameraConfig], HealthLike]


def _real_pipeline(settings: PipelineSettings) -> PipelineLike:
    from devices.camera.pipeline import CameraPipeline

    return CameraPipeline(settings)


def _real_health(config: CameraConfig) -> HealthLike:
    from devices.camera.health import HealthMonitor

    return HealthMonitor(frozen_s=config.frozen_s, dark_s=config.dark_s, moved_s=config.moved_s)


@dataclass(frozen=True)
class _Ended:
    """Why a session stopped: ``online`` False with a reason for the user;
    ``final`` when there is nothing to reconnect to (a file that ended)."""

    detail: str
    delivered: bool  # frames were analysed in this session
    final: bool = False
    config_problem: bool = False


@dataclass
class CameraStats:
    sessions: int = 0
    frames: int = 0  # analysed
    dropped: int = 0  # arrived while the analysis was busy
    crossings: int = 0
    analysis_s: float = 0.0  # time spent in the pipeline


class CameraAdapter:
    def __init__(self, config: CameraConfig, sink: EventSink, *, pipeline_factory: PipelineFactory | None = None,
                 health_factory: HealthFactory | None = None, opener: Opener | None = None) -> None:
        self.config = config
        self.stats = CameraStats()
        self._sink = sink
        self._pipeline_factory = pipeline_factory or _real_pipeline
        self._health_factory = health_factory or _real_health
        self._opener = opener
        self._reported: tuple[bool, str] | None = None
        self._attempt = 0

    async def run(self) -> None:
        while True:
            ended = await self._session()
            self._report(False, ended.detail)
            if ended.final:
                log.info("camera %s: %s", self.config.id, ended.detail)
                return
            if ended.delivered:
                self._attempt = 0
            # A door line that does not fit will not fit sooner: wait the longest.
            cap = self.config.reconnect_max_s
            delay = cap if ended.config_problem else min(cap, _RECONNECT_BASE_S * 2.0 ** min(self._attempt, 20))
            delay *= random.uniform(0.5, 1.0)  # noqa: S311 - jitter, not security
            self._attempt += 1
            log.info("camera %s: %s; trying again in %.0f s", self.config.id, ended.detail, delay)
            await asyncio.sleep(delay)

    def _report(self, online: bool, detail: str) -> None:
        if self._reported != (online, detail):
            self._reported = (online, detail)
            self._sink.device_status(online, detail)

    async def _session(self) -> _Ended:
        import cv2

        from devices.camera.capture import CaptureThread, open_video

        # OpenCV spreads a filter over every core by default: the analysis
        # would then take the CPU the door decisions need. One thread each.
        cv2.setNumThreads(1)

        self.stats.sessions += 1
        capture = CaptureThread(self.config.capture_settings(), self._opener or open_video, name=self.config.id)
        stop = threading.Event()
        loop = asyncio.get_running_loop()
        done: asyncio.Future[_Ended] = loop.create_future()

        def analyse() -> None:
            _yield_to_the_door()
            try:
                result = self._analyse(capture, stop)
            except Exception as exc:  # noqa: BLE001 - the pipeline's bug must not take the gateway down
                log.exception("camera %s: the picture analysis failed", self.config.id)
                result = _Ended(f"picture analysis failed: {type(exc).__name__}", delivered=False)
            if not loop.is_closed():
                loop.call_soon_threadsafe(_settle, done, result)

        worker = threading.Thread(target=analyse, name=f"camera analysis {self.config.id}", daemon=True)
        capture.start()
        worker.start()
        try:
            return await done
        finally:
            stop.set()
            # Joining may wait for cv2 to return (bounded by its timeouts): off the loop.
            await asyncio.to_thread(_join, capture, worker)

    # ------------------------------------------------------------------ the analysis thread

    def _analyse(self, capture: CaptureThread, stop: threading.Event) -> _Ended:
        from devices.camera.errors import CameraConfigError

        pipeline: PipelineLike | None = None
        health: HealthLike | None = None
        times: deque[tuple[float, float]] = deque(maxlen=_TIMES_KEPT)
        delivered = False
        started = time.monotonic()
        while not stop.is_set():
            frame = capture.frames.take(_TAKE_WAIT_S)
            self.stats.dropped = capture.frames.dropped
            if frame is None:
                if capture.error is not None:
                    return _Ended(f"camera unreachable: {capture.error.reason}", delivered)
                if capture.ended:
                    if pipeline is not None:
                        self._crossed(pipeline.finish(), times)
                    return _Ended("the video file has ended", delivered, final=True)
                if (stalled := capture.stalled()) is not None:
                    return _Ended(f"camera unreachable: {stalled.reason}", delivered)
                continue
            if pipeline is None:
                height, width = frame.image.shape[:2]
                try:
                    self.config.pipeline_settings().line.check_fits(width, height)
                except CameraConfigError as exc:
                    return _Ended(f"configuration: {exc}", delivered=False, config_problem=True)
                pipeline = self._pipeline_factory(self.config.pipeline_settings())
                health = self._make_health()
                self._report(True, f"receiving {width}x{height} pictures")
            delivered = True
            times.append((frame.t, frame.wall))
            health = self._observe(health, frame)
            began = time.monotonic()
            crossings = pipeline.process(frame.image, frame.t)
            self.stats.analysis_s += time.monotonic() - began
            self.stats.frames += 1
            if crossings:
                self._crossed(crossings, times)
            if delivered and time.monotonic() - started > _HEALTHY_AFTER_S:
                self._attempt = 0
        return _Ended("stopped", delivered, final=True)

    def _make_health(self) -> HealthLike | None:
        try:
            return self._health_factory(self.config)
        except Exception:  # noqa: BLE001 - counting goes on without health reports
            log.exception("camera %s: the health monitor cannot start", self.config.id)
            return None

    def _observe(self, health: HealthLike | None, frame: Frame) -> HealthLike | None:
        if health is None:
            return None
        try:
            report = health.observe(frame.image, frame.t)
        except NotImplementedError:
            log.warning("camera %s: no health monitor in this version; health is not reported", self.config.id)
            return None
        except Exception:  # noqa: BLE001 - counting goes on without health reports
            log.exception("camera %s: the health monitor failed; health is no longer reported", self.config.id)
            return None
        if report is not None:
            if report.state == "ok":
                # The monitor's first report is "ok"; it is news only after a fault.
                if self._reported is None or not self._reported[0]:
                    self._report(True, f"picture ok: {report.detail}")
            else:
                # A frozen, dark or moved picture counts nobody right: the
                # camera is reported as not working until it recovers.
                self._report(False, f"picture {report.state}: {report.detail}")
        return health

    def _crossed(self, crossings: list[Crossing], times: deque[tuple[float, float]]) -> None:
        for crossing in crossings:
            self.stats.crossings += 1
            at = datetime.fromtimestamp(_wall_of(crossing.t, times), UTC)
            self._sink.person_crossed(crossing, at)


def _wall_of(t: float, times: deque[tuple[float, float]]) -> float:
    """The wall time of the frame at stream time ``t`` (the nearest kept)."""
    if not times:
        return time.time()
    keys = [k for k, _ in times]
    i = bisect.bisect_left(keys, t)
    candidates = [j for j in (i - 1, i) if 0 <= j < len(times)]
    best = min(candidates, key=lambda j: abs(keys[j] - t))
    return times[best][1] + (t - keys[best])


# The analysis thread's nice value. With every core busy (a gateway's two
# cores, one analysing a 1080p picture, the other shared with whatever else
# runs) the scheduler would share the loop's core with the analysis fairly, and
# a card decision waits its turn: measured p50 1 ms idle, 6-7 ms busy. Niced,
# the analysis gets what the door leaves: a slower count, never a slower door.
ANALYSIS_NICE = 10


def _yield_to_the_door() -> None:
    """Lower the calling thread's CPU priority (on Linux the nice value is a
    per-thread attribute, set through the thread's own id); elsewhere, or if
    refused, the thread runs at the process's priority."""
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), ANALYSIS_NICE)
    except (AttributeError, OSError) as exc:
        log.debug("camera analysis keeps the process's priority: %s", exc)


def _settle(future: asyncio.Future[_Ended], result: _Ended) -> None:
    if not future.done():  # the session may have been cancelled meanwhile
        future.set_result(result)


def _join(capture: CaptureThread, worker: threading.Thread) -> None:
    worker.join(_TAKE_WAIT_S * 4)
    if not capture.stop(timeout=2.0):
        # Not the URL: it may carry the camera's password.
        log.warning("capture thread %s still stuck in the video library; left to finish on its own",
                    capture.name)


register("camera", CameraConfig, CameraAdapter)
