"""Frames of the doorway: the fixed background drawn once, then per frame
the people where the script has them, the distractors, the room's light,
sensor noise and JPEG artefacts. Pure numpy and OpenCV drawing: no I/O."""

from __future__ import annotations

import math
import random
from collections.abc import Iterable, Iterator, Sequence

import cv2
import numpy as np
from numpy.typing import NDArray

from firmware_sim.camera.errors import CameraSimError
from firmware_sim.camera.figure import draw_person, draw_shadow
from firmware_sim.camera.layout import Layout
from firmware_sim.camera.script import Distractor, Light, Script, Track, Walker

Frame = NDArray[np.uint8]
MAX_FPS = 60.0
_NOISE_BANK = 8  # noise images drawn once and reused in turn, which is as random as a camera's


def _pt(layout: Layout, x: float, y: float) -> tuple[int, int]:
    px, py = layout.px(x, y)
    return (int(round(px)), int(round(py)))


def background(layout: Layout, seed: int) -> Frame:
    """The empty doorway: back wall with the door open onto the street, the
    corridor's side walls and tiled floor, a mat, a notice board and the
    letter boxes, with a little fixed texture."""
    w, h = layout.width, layout.height
    img = np.zeros((h, w, 3), np.uint8)
    img[:] = (170, 185, 195)  # wall
    # Side walls, a shade darker, and the floor between them.
    left = np.array([_pt(layout, 0, 0), _pt(layout, 150, 0), _pt(layout, 150, 200), _pt(layout, -60, 480),
                     _pt(layout, 0, 480)], np.int32)
    right = np.array([_pt(layout, 490, 0), _pt(layout, 640, 0), _pt(layout, 640, 480), _pt(layout, 700, 480),
                      _pt(layout, 490, 200)], np.int32)
    cv2.fillPoly(img, [left], (140, 155, 165))
    cv2.fillPoly(img, [right], (150, 160, 172))
    floor = np.array([_pt(layout, 150, 200), _pt(layout, 490, 200), _pt(layout, 700, 480),
                      _pt(layout, -60, 480)], np.int32)
    cv2.fillPoly(img, [floor], (120, 125, 128))
    # Floor tiles: rows closer together with distance, joints towards the door.
    for i in range(1, 12):
        f = (i / 12) ** 1.6
        y = 200 + 280 * f
        lx, rx = layout.floor_edges(y * layout.sy)
        cv2.line(img, (int(lx), int(y * layout.sy)), (int(rx), int(y * layout.sy)), (100, 104, 108), 1)
    for i in range(-6, 7):
        cv2.line(img, _pt(layout, 320 + i * 28, 200), _pt(layout, 320 + i * 70, 480), (100, 104, 108), 1)
    # The street seen through the door: a lit pavement, a far wall, a railing.
    dx0, dy0, dx1, dy1 = (int(round(v)) for v in layout.door)
    cv2.rectangle(img, (dx0, dy0), (dx1, dy1), (200, 205, 200), -1)
    cv2.rectangle(img, (dx0, dy0), (dx1, int(dy0 + (dy1 - dy0) * 0.45)), (185, 175, 160), -1)
    for i in range(6):
        x = dx0 + (dx1 - dx0) * (i + 0.5) / 6
        cv2.line(img, (int(x), int(dy0 + (dy1 - dy0) * 0.45)), (int(x), int(dy0 + (dy1 - dy0) * 0.6)),
                 (90, 90, 90), max(1, int(2 * layout.sx)))
    cv2.line(img, (dx0, int(dy0 + (dy1 - dy0) * 0.45)), (dx1, int(dy0 + (dy1 - dy0) * 0.45)), (90, 90, 90),
             max(1, int(2 * layout.sy)))
    # Door frame and threshold.
    frame_t = max(2, int(8 * layout.sx))
    cv2.rectangle(img, (dx0 - frame_t, dy0 - frame_t), (dx1 + frame_t, dy1), (40, 70, 110), frame_t)
    cv2.line(img, (dx0 - frame_t, dy1), (dx1 + frame_t, dy1), (70, 80, 90), max(1, int(4 * layout.sy)))
    # The mat inside the door, a notice board, the letter boxes, a ceiling light.
    mat = np.array([_pt(layout, 262, 206), _pt(layout, 378, 206), _pt(layout, 392, 232), _pt(layout, 248, 232)],
                   np.int32)
    cv2.fillConvexPoly(img, mat, (60, 70, 75))
    cv2.rectangle(img, _pt(layout, 40, 70), _pt(layout, 120, 150), (210, 215, 220), -1)
    for i in range(4):
        cv2.rectangle(img, _pt(layout, 48 + (i % 2) * 36, 78 + (i // 2) * 36),
                      _pt(layout, 78 + (i % 2) * 36, 106 + (i // 2) * 36),
                      ((60, 60, 180), (170, 120, 60), (80, 160, 80), (60, 160, 220))[i], -1)
    for i in range(3):
        for j in range(4):
            cv2.rectangle(img, _pt(layout, 520 + j * 26, 120 + i * 26), _pt(layout, 542 + j * 26, 142 + i * 26),
                          (110, 130, 140), -1)
    cv2.rectangle(img, _pt(layout, 555, 220), _pt(layout, 610, 380), (95, 115, 135), -1)  # the cupboard door
    cv2.ellipse(img, _pt(layout, 320, 12), (int(50 * layout.sx) + 1, int(8 * layout.sy) + 1), 0, 0, 360,
                (235, 245, 250), -1)
    # Fixed texture: plaster and dirt do not move.
    rng = np.random.default_rng(seed)
    texture = rng.normal(0, 4, (h, w, 1)).astype(np.int16)
    texture = cv2.GaussianBlur(texture.astype(np.float32), (3, 3), 0).astype(np.int16)[..., None]
    out: Frame = np.clip(img.astype(np.int16) + texture, 0, 255).astype(np.uint8)
    return out


def light_gain(lights: Sequence[Light], t: float) -> float:
    """How bright the room is at ``t``, as a factor of its normal light."""
    gain = 1.0
    for light in lights:
        if t < light.t:
            break
        if light.kind == "switch" or light.duration_s <= 0 or t >= light.t + light.duration_s:
            gain = light.gain
        else:
            gain = gain + (light.gain - gain) * (t - light.t) / light.duration_s
            break
    return gain


def _draw_distractor(img: Frame, layout: Layout, d: Distractor, t: float) -> None:
    f = (t - d.t) / d.duration_s  # 0..1 through the event
    if d.kind == "door_leaf":
        # The cupboard door on the right wall swings open and shut again.
        angle = math.sin(math.pi * f) * math.radians(80)
        hinge_x, top, bottom = 555.0, 220.0, 380.0
        reach = 55 * math.sin(angle)
        leaf = np.array([_pt(layout, hinge_x, top), _pt(layout, hinge_x - reach * 1.3, top - reach * 0.1),
                         _pt(layout, hinge_x - reach * 1.3, bottom + reach * 0.45), _pt(layout, hinge_x, bottom)],
                        np.int32)
        cv2.rectangle(img, _pt(layout, 555, 220), _pt(layout, 610, 380), (40, 45, 50), -1)  # the dark cupboard
        cv2.fillConvexPoly(img, leaf, (95, 115, 135), cv2.LINE_AA)
    else:
        # A shadow glides from the door's side across the door line.
        cx, cy = layout.px(180 + 280 * f, 195 + 130 * f)
        mask = np.zeros(img.shape[:2], np.uint8)
        cv2.ellipse(mask, (int(cx), int(cy)), (int(70 * layout.sx) + 1, int(28 * layout.sy) + 1), -20, 0, 360,
                    255, -1)
        soft = cv2.GaussianBlur(mask, (0, 0), 6 * layout.sx + 0.5)
        shade = 1.0 - 0.45 * soft.astype(np.float32) / 255.0
        img[:] = np.asarray(img.astype(np.float32) * shade[..., None], np.uint8)


class Renderer:
    """Draws frames of a scene of the given size; ``seed`` fixes the texture
    and the noise, so the same times give the same frames."""

    def __init__(self, layout: Layout, *, seed: int = 0, noise_sigma: float = 0.0,
                 jpeg_quality: int | None = None) -> None:
        self.layout = layout
        self.noise_sigma = noise_sigma
        self.jpeg_quality = jpeg_quality
        self._bg = background(layout, seed)
        self._rng = random.Random(f"camera-noise:{seed}")
        self._noise: list[NDArray[np.int16]] = []
        if noise_sigma > 0:
            gen = np.random.default_rng(seed + 1)
            self._noise = [gen.normal(0, noise_sigma, self._bg.shape).astype(np.int16) for _ in range(_NOISE_BANK)]

    def frame(self, t: float, people: Iterable[tuple[Walker, Track]], *, lights: Sequence[Light] = (),
              distractors: Sequence[Distractor] = ()) -> Frame:
        """The picture at ``t`` with the people whose tracks include ``t``."""
        layout = self.layout
        img = self._bg.copy()
        for d in distractors:
            if d.t <= t < d.t + d.duration_s:
                _draw_distractor(img, layout, d, t)
        visible = []
        for walker, track in people:
            if track.start <= t <= track.end:
                x, y, m = track.at(t)
                x2, y2, _ = track.at(t + 0.1)
                if (x2, y2) == (x, y):
                    x0, y0, _ = track.at(t - 0.1)
                    x2, y2 = x + (x - x0), y + (y - y0)
                moving = (x2, y2) != (x, y)
                norm = math.hypot(x2 - x, y2 - y) or 1.0
                visible.append((y, x, m, ((x2 - x) / norm, (y2 - y) / norm) if moving else (0.0, 1.0), moving,
                                walker))
        visible.sort(key=lambda v: v[0])  # the farther first
        outside = [v for v in visible if v[0] < layout.threshold_y]
        if outside:
            # Outside the door a person is seen only through the opening.
            street = self._bg.copy()
            for y, x, m, heading, moving, walker in outside:
                draw_person(street, x, y, layout.person_height(y) * walker.look.height_m / 1.7, walker.look, m,
                            heading, moving)
            x0, y0, x1, y1 = (int(round(v)) for v in layout.door)
            img[y0:y1, x0:x1] = street[y0:y1, x0:x1]
        for y, x, m, heading, moving, walker in visible:
            if y >= layout.threshold_y:
                h = layout.person_height(y) * walker.look.height_m / 1.7
                draw_shadow(img, x, y, h)
                draw_person(img, x, y, h, walker.look, m, heading, moving)
        gain = light_gain(lights, t)
        if gain != 1.0:
            img = np.asarray(cv2.convertScaleAbs(img, alpha=gain), np.uint8)
        if self._noise:
            noisy = img.astype(np.int16) + self._noise[self._rng.randrange(len(self._noise))]
            img = np.clip(noisy, 0, 255).astype(np.uint8)
        if self.jpeg_quality is not None:
            ok, data = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, self.jpeg_quality])
            if ok:
                decoded = cv2.imdecode(data, cv2.IMREAD_COLOR)
                if decoded is not None:
                    img = np.asarray(decoded, np.uint8)
        return img


def check_fps(fps: float) -> None:
    if not (math.isfinite(fps) and 0 < fps <= MAX_FPS):
        raise CameraSimError(f"the frame rate must be above 0 and at most {MAX_FPS:g} per second")


def render(script: Script, fps: float) -> Iterator[tuple[float, Frame]]:
    """(t, frame) for every frame of the script, t = n / fps from 0 up to
    the script's duration (excluded). The same script gives the same frames."""
    check_fps(fps)
    renderer = Renderer(script.layout, seed=script.seed, noise_sigma=script.noise_sigma,
                        jpeg_quality=script.jpeg_quality)
    tracks = script.tracks
    people = sorted(((w, tracks[w.id]) for w in script.walkers), key=lambda p: p[1].start)
    n_frames = frame_count(script.duration_s, fps)
    first = 0  # people are sorted by start; those who have left are skipped
    for n in range(n_frames):
        t = n / fps
        while first < len(people) and people[first][1].end < t - 5:
            first += 1
        now = [p for p in people[first:] if p[1].start <= t <= p[1].end]
        yield t, renderer.frame(t, now, lights=script.lights, distractors=script.distractors)


def frame_count(duration_s: float, fps: float) -> int:
    return max(1, math.ceil(duration_s * fps - 1e-9))
