"""Who walks where and when in front of the synthetic camera, and the truth
about it: every crossing of the door line by a person's foot point, computed
from the script (never from pixels), and the card grants at the door.

Pure and deterministic: :func:`random_script` with the same seed gives the
same script, and :func:`truth` the same crossings."""

from __future__ import annotations

import math
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray

from devices.camera.geometry import DoorLine
from firmware_sim.camera.errors import CameraSimError
from firmware_sim.camera.layout import DEPTH_FORESHORTENING, MAX_H, MAX_W, MIN_H, MIN_W, Layout

Point = tuple[float, float]
Colour = tuple[int, int, int]  # BGR
Outcome = Literal["matched", "tailgating", "unidentified", "out"]

# Bounds on what a script may hold: a script is rendered frame by frame, and
# every walker's path is sampled in memory.
MAX_DURATION_S = 24 * 3600.0
MAX_WALKERS = 20_000
MAX_LEGS = 16
MAX_PAUSE_S = 60.0
# Paths are sampled this often; crossings are interpolated between samples.
PATH_DT = 0.01


@dataclass(frozen=True)
class Look:
    """How a person looks: clothes, skin and hair colours, build (width
    factor), height in metres, and whether they carry a bag."""

    shirt: Colour
    trousers: Colour
    skin: Colour
    hair: Colour
    shoes: Colour
    build: float = 1.0
    height_m: float = 1.7
    bag: bool = False


@dataclass(frozen=True)
class Leg:
    """Walk in a straight line to ``to`` (foot point, pixels), then stand for ``pause_s``."""

    to: Point
    pause_s: float = 0.0


@dataclass(frozen=True)
class Walker:
    id: int
    group: int
    start_t: float
    start: Point
    legs: tuple[Leg, ...]
    look: Look
    speed_mps: float = 1.3

    def __post_init__(self) -> None:
        if not 1 <= len(self.legs) <= MAX_LEGS:
            raise CameraSimError(f"a walker has 1 to {MAX_LEGS} legs of path")
        if not 0.3 <= self.speed_mps <= 3.0:
            raise CameraSimError("a walker's speed must be 0.3 to 3 m/s")
        if not all(0 <= leg.pause_s <= MAX_PAUSE_S for leg in self.legs):
            raise CameraSimError(f"a pause must be 0 to {MAX_PAUSE_S:g} s")
        if not (math.isfinite(self.start_t) and self.start_t >= 0):
            raise CameraSimError("a walker's start time must be a number >= 0")


@dataclass(frozen=True)
class Grant:
    """A card granted at the door at ``t``, by ``person`` of ``group``."""

    t: float
    group: int
    person: int


@dataclass(frozen=True)
class Light:
    """The room's light changes to ``gain`` times its normal brightness:
    all at once (``switch``) or over ``duration_s`` (``ramp``)."""

    t: float
    kind: Literal["ramp", "switch"]
    gain: float
    duration_s: float = 0.0


@dataclass(frozen=True)
class Distractor:
    """Something that moves and is no person: the cupboard door on the right
    wall swinging open and shut, or a shadow gliding over the floor across
    the door line."""

    t: float
    kind: Literal["door_leaf", "shadow"]
    duration_s: float


@dataclass(frozen=True)
class Track:
    """A walker's foot point sampled every :data:`PATH_DT` seconds, with the
    metres walked so far (for the gait)."""

    t: NDArray[np.float64]
    x: NDArray[np.float64]
    y: NDArray[np.float64]
    walked_m: NDArray[np.float64]

    @property
    def start(self) -> float:
        return float(self.t[0])

    @property
    def end(self) -> float:
        return float(self.t[-1])

    def at(self, t: float) -> tuple[float, float, float]:
        """(x, y, metres walked) at ``t``, which must be within the track."""
        i = int(np.searchsorted(self.t, t))
        if i <= 0:
            return float(self.x[0]), float(self.y[0]), float(self.walked_m[0])
        if i >= len(self.t):
            return float(self.x[-1]), float(self.y[-1]), float(self.walked_m[-1])
        f = (t - self.t[i - 1]) / (self.t[i] - self.t[i - 1])
        return (float(self.x[i - 1] + f * (self.x[i] - self.x[i - 1])),
                float(self.y[i - 1] + f * (self.y[i] - self.y[i - 1])),
                float(self.walked_m[i - 1] + f * (self.walked_m[i] - self.walked_m[i - 1])))


def track_of(walker: Walker, layout: Layout) -> Track:
    """Sample the walker's path: along each leg at their walking speed, which
    in pixels shrinks with distance from the camera, then their pause."""
    ts: list[float] = [walker.start_t]
    xs: list[float] = [walker.start[0]]
    ys: list[float] = [walker.start[1]]
    ms: list[float] = [0.0]
    t, x, y, m = walker.start_t, walker.start[0], walker.start[1], 0.0
    step_m = walker.speed_mps * PATH_DT
    for leg in walker.legs:
        tx, ty = leg.to
        while True:
            dx, dy = tx - x, ty - y
            ppm = layout.px_per_m(y)
            dist_m = math.hypot(dx / ppm, dy / (ppm * DEPTH_FORESHORTENING))
            if dist_m <= step_m:
                t += PATH_DT * dist_m / step_m if step_m else 0.0
                x, y, m = tx, ty, m + dist_m
                ts.append(t)
                xs.append(x)
                ys.append(y)
                ms.append(m)
                break
            f = step_m / dist_m
            t, x, y, m = t + PATH_DT, x + dx * f, y + dy * f, m + step_m
            ts.append(t)
            xs.append(x)
            ys.append(y)
            ms.append(m)
        if leg.pause_s > 0:
            t += leg.pause_s
            ts.append(t)
            xs.append(x)
            ys.append(y)
            ms.append(m)
    return Track(np.array(ts), np.array(xs), np.array(ys), np.array(ms))


@dataclass(frozen=True)
class Script:
    """Everything the camera will see: the picture size, the door line,
    the walkers and lights and distractors, and the grants at the door.
    ``noise_sigma`` is the sensor noise (grey levels), ``jpeg_quality`` the
    compression each frame goes through (None: none)."""

    width: int
    height: int
    duration_s: float
    line: DoorLine
    walkers: tuple[Walker, ...] = ()
    grants: tuple[Grant, ...] = ()
    lights: tuple[Light, ...] = ()
    distractors: tuple[Distractor, ...] = ()
    noise_sigma: float = 0.0
    jpeg_quality: int | None = None
    seed: int = 0
    scenarios: tuple[tuple[int, str], ...] = field(default=())  # (group, scenario name), for people reading truth

    def __post_init__(self) -> None:
        if not (MIN_W <= self.width <= MAX_W and MIN_H <= self.height <= MAX_H):
            raise CameraSimError(f"the picture must be {MIN_W}x{MIN_H} to {MAX_W}x{MAX_H} pixels")
        if not 0 < self.duration_s <= MAX_DURATION_S:
            raise CameraSimError(f"the duration must be above 0 and at most {MAX_DURATION_S:g} s")
        if len(self.walkers) > MAX_WALKERS:
            raise CameraSimError(f"at most {MAX_WALKERS} walkers in a script")
        if not 0 <= self.noise_sigma <= 50:
            raise CameraSimError("the noise must be 0 to 50 grey levels")
        if self.jpeg_quality is not None and not 5 <= self.jpeg_quality <= 100:
            raise CameraSimError("the JPEG quality must be 5 to 100")
        for light in self.lights:
            if not 0.05 <= light.gain <= 3.0:
                raise CameraSimError("a light's gain must be 0.05 to 3")

    @cached_property
    def layout(self) -> Layout:
        return Layout(self.width, self.height)

    @cached_property
    def tracks(self) -> dict[int, Track]:
        return {w.id: track_of(w, self.layout) for w in self.walkers}


@dataclass(frozen=True)
class TruthCrossing:
    """A foot point crossing the door line. ``outcome`` is what the door
    should make of it: ``matched`` (an inward crossing covered by one of its
    group's grants, ``grant`` its index in the script's grants),
    ``tailgating`` (one more inward crossing than its group had grants),
    ``unidentified`` (inward, and its group had no grant at all) or ``out``."""

    t: float
    direction: Literal["in", "out"]
    person: int
    group: int
    outcome: Outcome
    x: float
    y: float
    grant: int | None = None

    def to_json(self) -> dict[str, Any]:
        return {"t": round(self.t, 3), "direction": self.direction, "person": self.person, "group": self.group,
                "outcome": self.outcome, "x": round(self.x, 1), "y": round(self.y, 1), "grant": self.grant}


def _distances(track: Track, line: DoorLine) -> NDArray[np.float64]:
    """:meth:`DoorLine.distance` of every sample at once."""
    nx, ny = line.normal
    return (track.x - line.x1) * nx + (track.y - line.y1) * ny


def line_crossings(track: Track, line: DoorLine) -> list[tuple[float, Literal["in", "out"], float, float]]:
    """Where the track crosses the door segment: (t, direction, x, y)."""
    d = _distances(track, line)
    inside = d > 0
    found: list[tuple[float, Literal["in", "out"], float, float]] = []
    for i in np.flatnonzero(inside[1:] != inside[:-1]):
        f = float(d[i] / (d[i] - d[i + 1])) if d[i] != d[i + 1] else 0.0
        x = float(track.x[i] + f * (track.x[i + 1] - track.x[i]))
        y = float(track.y[i] + f * (track.y[i + 1] - track.y[i]))
        if not 0.0 <= line.along(x, y) <= 1.0:
            continue  # went round the end of the line, not across it
        t = float(track.t[i] + f * (track.t[i + 1] - track.t[i]))
        found.append((t, "in" if inside[i + 1] else "out", x, y))
    return found


def truth(script: Script) -> list[TruthCrossing]:
    """Every crossing in time order. Within a group the first inward
    crossings take its grants in time order; the ones beyond are tailgating,
    or unidentified when the group had no grant at all."""
    raw: list[tuple[float, Literal["in", "out"], float, float, Walker]] = []
    for walker in script.walkers:
        for t, direction, x, y in line_crossings(script.tracks[walker.id], script.line):
            raw.append((t, direction, x, y, walker))
    raw.sort(key=lambda r: (r[0], r[4].id))
    grants_of: dict[int, list[int]] = {}
    for index in sorted(range(len(script.grants)), key=lambda i: script.grants[i].t):
        grants_of.setdefault(script.grants[index].group, []).append(index)
    used: dict[int, int] = {}
    out: list[TruthCrossing] = []
    for t, direction, x, y, walker in raw:
        if direction == "out":
            out.append(TruthCrossing(t, "out", walker.id, walker.group, "out", x, y))
            continue
        grants = grants_of.get(walker.group, [])
        n = used.get(walker.group, 0)
        used[walker.group] = n + 1
        if n < len(grants):
            out.append(TruthCrossing(t, "in", walker.id, walker.group, "matched", x, y, grants[n]))
        else:
            out.append(TruthCrossing(t, "in", walker.id, walker.group, "tailgating" if grants else "unidentified",
                                     x, y))
    return out


# ---------------------------------------------------------------- scenarios

SCENARIOS: tuple[str, ...] = (
    "alone_in", "alone_out", "pair_side", "pair_behind", "group3", "linger_in", "linger_back", "linger_out",
    "turn_back", "in_then_out", "opposite",
)
DEFAULT_MIX: Mapping[str, float] = {
    "alone_in": 4, "alone_out": 3, "pair_side": 1.2, "pair_behind": 1.2, "group3": 0.6, "linger_in": 0.8,
    "linger_back": 0.6, "linger_out": 0.6, "turn_back": 0.6, "in_then_out": 0.6, "opposite": 0.8,
}

_SHIRTS: tuple[Colour, ...] = ((40, 40, 170), (150, 60, 30), (50, 120, 40), (200, 200, 200), (30, 30, 30),
                               (40, 150, 220), (120, 50, 120), (90, 90, 90), (30, 60, 110), (180, 140, 60),
                               (60, 200, 230), (140, 160, 200))
_TROUSERS: tuple[Colour, ...] = ((60, 40, 20), (30, 30, 30), (110, 90, 70), (150, 140, 130), (40, 50, 80),
                                 (80, 80, 80))
_SKINS: tuple[Colour, ...] = ((150, 180, 220), (120, 160, 205), (100, 140, 190), (140, 175, 215))
_HAIRS: tuple[Colour, ...] = ((20, 20, 25), (30, 35, 45), (50, 60, 80), (120, 120, 125))


def random_look(rng: random.Random) -> Look:
    return Look(shirt=rng.choice(_SHIRTS), trousers=rng.choice(_TROUSERS), skin=rng.choice(_SKINS),
                hair=rng.choice(_HAIRS), shoes=rng.choice(((20, 20, 20), (60, 60, 60), (200, 200, 200))),
                build=rng.uniform(0.85, 1.15), height_m=rng.uniform(1.55, 1.9), bag=rng.random() < 0.3)


@dataclass
class _Group:
    """Builds one scenario's walkers in 640x480 scene units."""

    layout: Layout
    rng: random.Random
    group: int
    t0: float
    next_id: int
    walkers: list[Walker] = field(default_factory=list)

    def _pt(self, x: float, y: float) -> Point:
        return self.layout.px(x, y)

    def add(self, start: Point, legs: Sequence[tuple[Point, float]], delay: float = 0.0,
            speed: float | None = None) -> Walker:
        walker = Walker(
            id=self.next_id + len(self.walkers), group=self.group, start_t=round(self.t0 + delay, 3),
            start=self._pt(*start), legs=tuple(Leg(self._pt(*p), pause) for p, pause in legs),
            look=random_look(self.rng), speed_mps=speed if speed is not None else self.rng.uniform(1.0, 1.5))
        self.walkers.append(walker)
        return walker

    def door_x(self) -> float:
        return self.rng.uniform(280, 360)

    def side(self) -> float:
        return -110.0 if self.rng.random() < 0.5 else 750.0

    def walk_in(self, x: float, delay: float = 0.0, speed: float | None = None,
                linger: float = 0.0) -> Walker:
        """From outside the door, through it, then off to the stairs or the lift."""
        out_x = self.side()
        legs: list[tuple[Point, float]] = []
        if linger:
            legs.append(((x, self.rng.uniform(205, 222)), linger))
        legs += [((x + self.rng.uniform(-20, 20), 330), 0.0), ((out_x, 375), 0.0)]
        return self.add((x, 110), legs, delay, speed)

    def walk_out(self, x: float, delay: float = 0.0, speed: float | None = None,
                 linger: float = 0.0) -> Walker:
        """From the side, up to the door and out, then along the street."""
        side = self.side()
        legs: list[tuple[Point, float]] = [((x + self.rng.uniform(-25, 25), 320), 0.0)]
        if linger:
            legs.append(((x, self.rng.uniform(262, 285)), linger))
        legs += [((x, 150), 0.0), ((x + (170 if self.rng.random() < 0.5 else -170), 138), 0.0)]
        return self.add((side, 380), legs, delay, speed)

    def back_out(self, x: float, y_turn: float, pause: float, delay: float = 0.0) -> Walker:
        """In through the door to ``y_turn``, stand, and back out again."""
        legs: list[tuple[Point, float]] = [((x, y_turn), pause), ((x, 150), 0.0),
                                           ((x + (170 if self.rng.random() < 0.5 else -170), 138), 0.0)]
        return self.add((x, 110), legs, delay)


def _build_group(name: str, g: _Group) -> tuple[list[Walker], int]:
    """The walkers of one scenario and how many of them swipe a card."""
    rng = g.rng
    c = g.door_x()
    if name == "alone_in":
        g.walk_in(c)
        return g.walkers, 1 if rng.random() < 0.85 else 0
    if name == "alone_out":
        g.walk_out(c)
        return g.walkers, 0
    if name in ("pair_side", "pair_behind", "group3"):
        n = 3 if name == "group3" else 2
        outward = name != "group3" and rng.random() < 0.25
        speed = rng.uniform(1.0, 1.4)
        for i in range(n):
            if name == "pair_side":
                x, delay = c + (i - 0.5) * rng.uniform(50, 62), rng.uniform(0, 0.2)
            elif name == "pair_behind":
                x, delay = c + rng.uniform(-10, 10), i * rng.uniform(0.8, 1.5)
            else:
                x, delay = c + (i - 1) * rng.uniform(30, 45), i * rng.uniform(0.3, 0.9)
            (g.walk_out if outward else g.walk_in)(x, delay, speed)
        if outward:
            return g.walkers, 0
        if n == 2:
            return g.walkers, rng.choices((2, 1, 0), (0.4, 0.45, 0.15))[0]
        return g.walkers, rng.choices((3, 2, 1, 0), (0.3, 0.25, 0.3, 0.15))[0]
    if name == "linger_in":
        g.walk_in(c, linger=rng.uniform(2, 5))
        return g.walkers, 1 if rng.random() < 0.8 else 0
    if name == "linger_back":
        g.back_out(c, rng.uniform(205, 222), rng.uniform(2, 4))
        return g.walkers, 1 if rng.random() < 0.3 else 0
    if name == "linger_out":
        g.walk_out(c, linger=rng.uniform(2, 5))
        return g.walkers, 0
    if name == "turn_back":
        g.back_out(c, rng.uniform(218, 226), 0.0)
        return g.walkers, 0
    if name == "in_then_out":
        g.back_out(c, rng.uniform(290, 320), rng.uniform(0.5, 2.0))
        return g.walkers, 1 if rng.random() < 0.85 else 0
    if name == "opposite":
        g.walk_in(c - 40 if rng.random() < 0.5 else c + 40)
        g.walk_out(c + 40 if g.walkers[0].start[0] < g.layout.px(c, 0)[0] else c - 40, rng.uniform(0, 0.8))
        return g.walkers, 1 if rng.random() < 0.85 else 0
    raise CameraSimError(f"unknown scenario {name[:40]!r}; known: {', '.join(SCENARIOS)}")


def group_of(name: str, rng: random.Random, layout: Layout, line: DoorLine, *, group: int, t0: float,
             next_id: int, granted: int | None = None) -> tuple[list[Walker], list[Grant]]:
    """One scenario's walkers starting at ``t0``, and its grants: each of the
    first ``granted`` people (default: the scenario's own mix) to cross swipes
    1 to 4 s before reaching the line."""
    g = _Group(layout, rng, group, t0, next_id)
    walkers, swiped = _build_group(name, g)
    if granted is not None:
        swiped = granted
    firsts = sorted((c[0], w.id) for w in walkers for c in line_crossings(track_of(w, layout), line)[:1]
                    if c[1] == "in")
    grants = [Grant(round(max(0.0, t - rng.uniform(1.0, 4.0)), 3), group, person) for t, person in firsts[:swiped]]
    if swiped and not firsts:  # swiped, then changed their mind before the line
        grants = [Grant(round(walkers[0].start_t + rng.uniform(0.3, 1.0), 3), group, walkers[0].id)]
    return walkers, sorted(grants, key=lambda gr: gr.t)


def queue_group(direction: Literal["in", "out"], n: int, rng: random.Random, layout: Layout, *, group: int,
                t0: float, next_id: int) -> list[Walker]:
    """``n`` people walking in or out one behind the other, as a tenant and
    whoever follows them through the door."""
    g = _Group(layout, rng, group, t0, next_id)
    c = g.door_x()
    speed = rng.uniform(1.0, 1.4)
    delay = 0.0
    for i in range(n):
        x = c + (rng.uniform(-12, 12) if i else 0.0)
        (g.walk_in if direction == "in" else g.walk_out)(x, delay, speed)
        delay += rng.uniform(0.8, 1.4)
    return g.walkers


def _clear_at(walkers: Sequence[Walker], layout: Layout, line: DoorLine) -> float:
    """When the last of these people is more than 80 px from the line for good."""
    clear = 0.0
    for w in walkers:
        track = track_of(w, layout)
        near = np.flatnonzero(np.abs(_distances(track, line)) < 80)
        clear = max(clear, float(track.t[near[-1]]) if len(near) else track.start)
    return clear


def random_script(seed: int, duration_s: float, mix: Mapping[str, float] | None = None, *,
                  width: int = 640, height: int = 480, lighting: bool = True, noise: bool = True,
                  distractors: bool = True) -> Script:
    """Groups of people one after another, each scenario drawn from ``mix``
    (weights by name, see :data:`SCENARIOS`), a few seconds apart once the
    last group has left the door line behind; with ``lighting`` some slow and
    sudden light changes, with ``noise`` sensor noise and JPEG artefacts,
    with ``distractors`` a swinging cupboard door and gliding shadows."""
    if not 0 < duration_s <= MAX_DURATION_S:
        raise CameraSimError(f"the duration must be above 0 and at most {MAX_DURATION_S:g} s")
    weights = dict(DEFAULT_MIX if mix is None else mix)
    unknown = sorted(set(weights) - set(SCENARIOS))
    if unknown:
        raise CameraSimError(f"unknown scenario {unknown[0][:40]!r}; known: {', '.join(SCENARIOS)}")
    if any(not (math.isfinite(w) and w >= 0) for w in weights.values()) or sum(weights.values()) <= 0:
        raise CameraSimError("scenario weights must be numbers >= 0, at least one above 0")
    layout = Layout(width, height)
    line = layout.default_line()
    rng = random.Random(f"camera-script:{seed}")
    names, probs = zip(*sorted(weights.items()), strict=True)
    walkers: list[Walker] = []
    grants: list[Grant] = []
    scenarios: list[tuple[int, str]] = []
    t = rng.uniform(1.0, 3.0)
    group = 0
    while t < duration_s - 8.0 and len(walkers) < MAX_WALKERS - 3:
        name = rng.choices(names, probs)[0]
        members, swipes = group_of(name, rng, layout, line, group=group, t0=t, next_id=len(walkers))
        walkers += members
        grants += swipes
        scenarios.append((group, name))
        group += 1
        t = _clear_at(members, layout, line) + rng.uniform(2.0, 6.0)
    lights: list[Light] = []
    if lighting:
        at = rng.uniform(5, 20)
        gain = 1.0
        while at < duration_s - 2:
            if rng.random() < 0.5:
                gain = rng.uniform(0.55, 1.35) if gain == 1.0 else 1.0
                lights.append(Light(round(at, 3), "ramp", round(gain, 3), round(rng.uniform(4, 12), 3)))
            else:
                gain = rng.uniform(0.45, 0.7) if gain == 1.0 else 1.0
                lights.append(Light(round(at, 3), "switch", round(gain, 3)))
            at += rng.uniform(20, 45)
    moving: list[Distractor] = []
    if distractors:
        at = rng.uniform(8, 30)
        while at < duration_s - 4:
            kind: Literal["door_leaf", "shadow"] = "door_leaf" if rng.random() < 0.5 else "shadow"
            moving.append(Distractor(round(at, 3), kind, round(rng.uniform(2.5, 4.5), 3)))
            at += rng.uniform(25, 50)
    return Script(width=width, height=height, duration_s=duration_s, line=line, walkers=tuple(walkers),
                  grants=tuple(sorted(grants, key=lambda g: g.t)), lights=tuple(lights), distractors=tuple(moving),
                  noise_sigma=round(rng.uniform(2.0, 6.0), 2) if noise else 0.0,
                  jpeg_quality=rng.randint(40, 75) if noise else None, seed=seed, scenarios=tuple(scenarios))


def line_to_json(line: DoorLine) -> dict[str, Any]:
    return {"x1": line.x1, "y1": line.y1, "x2": line.x2, "y2": line.y2, "inward": line.inward}


def truth_json(script: Script, fps: float | None = None) -> dict[str, Any]:
    """The script's truth as the sidecar file holds it."""
    crossings = truth(script)
    counts = {k: sum(1 for c in crossings if c.outcome == k) for k in ("matched", "tailgating", "unidentified", "out")}
    return {
        "version": 1,
        "width": script.width, "height": script.height, "duration_s": script.duration_s, "fps": fps,
        "seed": script.seed,
        "line": line_to_json(script.line),
        "counts": {"in": sum(1 for c in crossings if c.direction == "in"), **counts},
        "crossings": [c.to_json() for c in crossings],
        "grants": [{"t": g.t, "group": g.group, "person": g.person} for g in script.grants],
        "groups": [{"group": group, "scenario": name} for group, name in script.scenarios],
        "lights": [{"t": li.t, "kind": li.kind, "gain": li.gain, "duration_s": li.duration_s} for li in script.lights],
        "distractors": [{"t": d.t, "kind": d.kind, "duration_s": d.duration_s} for d in script.distractors],
        "noise_sigma": script.noise_sigma, "jpeg_quality": script.jpeg_quality,
    }
