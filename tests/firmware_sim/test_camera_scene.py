"""The rendered doorway and its truth: same seed, same frames; the truth
follows the scripted paths; grants come before the crossings they cover."""

from __future__ import annotations

import random
from collections import Counter

import numpy as np
import pytest

from firmware_sim.camera.errors import CameraSimError
from firmware_sim.camera.layout import Layout
from firmware_sim.camera.render import Renderer, light_gain, render
from firmware_sim.camera.script import (
    SCENARIOS,
    Grant,
    Leg,
    Light,
    Script,
    Walker,
    group_of,
    random_look,
    random_script,
    truth,
)


def _one(scenario: str, seed: int = 3, granted: int | None = None) -> Script:
    layout = Layout(320, 240)
    walkers, grants = group_of(scenario, random.Random(seed), layout, layout.default_line(), group=0, t0=4.0,
                               next_id=0, granted=granted)
    return Script(320, 240, 20.0, layout.default_line(), tuple(walkers), tuple(grants))


def test_the_same_seed_renders_the_same_frames_and_another_seed_does_not() -> None:
    a = [f for _, f in render(random_script(5, 12, width=320, height=240), 5)]
    b = [f for _, f in render(random_script(5, 12, width=320, height=240), 5)]
    c = [f for _, f in render(random_script(6, 12, width=320, height=240), 5)]
    assert len(a) == 60 and all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))
    assert not all(np.array_equal(x, y) for x, y in zip(a, c, strict=True))
    assert a[0].shape == (240, 320, 3) and a[0].dtype == np.uint8


def test_one_person_walking_in_crosses_the_line_once_inwards_at_the_line() -> None:
    script = _one("alone_in", granted=1)
    [crossing] = truth(script)
    assert crossing.direction == "in" and crossing.outcome == "matched" and crossing.grant == 0
    assert crossing.y == pytest.approx(script.line.y1)
    track = script.tracks[crossing.person]
    x, y, _ = track.at(crossing.t - 0.05)
    assert script.line.distance(x, y) < 0  # still outside just before
    x, y, _ = track.at(crossing.t + 0.05)
    assert script.line.distance(x, y) > 0
    assert 1.0 <= crossing.t - script.grants[0].t <= 4.0


@pytest.mark.parametrize(("scenario", "directions"), [
    ("alone_out", ["out"]),
    ("turn_back", []),
    ("linger_back", []),
    ("in_then_out", ["in", "out"]),
    ("linger_in", ["in"]),
    ("linger_out", ["out"]),
    ("group3", ["in", "in", "in"]),
])
def test_each_scenario_crosses_as_scripted(scenario: str, directions: list[str]) -> None:
    assert [c.direction for c in truth(_one(scenario))] == directions


def test_a_pair_with_one_swipe_is_one_match_and_one_tailgater() -> None:
    for seed in range(8):
        script = _one("pair_behind", seed, granted=1)
        crossings = truth(script)
        if [c.direction for c in crossings] != ["in", "in"]:
            continue  # a pair going out
        assert [c.outcome for c in crossings] == ["matched", "tailgating"]
        assert crossings[0].t < crossings[1].t
        return
    pytest.fail("no pair walked in")


def test_nobody_swiping_makes_every_inward_crossing_unidentified() -> None:
    crossings = truth(_one("group3", granted=0))
    assert [c.outcome for c in crossings] == ["unidentified"] * 3


def test_a_random_script_mixes_every_outcome_and_keeps_groups_apart() -> None:
    script = random_script(11, 1200)
    crossings = truth(script)
    outcomes: Counter[str] = Counter(c.outcome for c in crossings)
    assert all(outcomes[k] > 0 for k in ("matched", "tailgating", "unidentified", "out"))
    assert {name for _, name in script.scenarios} == set(SCENARIOS)
    # A group's inward crossings all come after the previous group's.
    last: dict[int, float] = {}
    for c in crossings:
        last[c.group] = max(last.get(c.group, 0.0), c.t)
    firsts = {g: min(c.t for c in crossings if c.group == g) for g in last}
    groups = sorted(last)
    assert all(firsts[b] > last[a] for a, b in zip(groups, groups[1:], strict=False))
    # Every matched crossing has its own grant, 1 to 4 s before it.
    matched = [c for c in crossings if c.outcome == "matched"]
    assert len({c.grant for c in matched}) == len(matched)
    assert all(1.0 <= c.t - script.grants[c.grant].t <= 4.0 + 1e-6 for c in matched if c.grant is not None)


def test_a_mix_of_one_scenario_gives_only_that() -> None:
    script = random_script(2, 120, {"alone_out": 1}, width=320, height=240)
    assert {c.direction for c in truth(script)} == {"out"} and not script.grants


def test_a_person_is_drawn_where_the_script_puts_them() -> None:
    script = _one("alone_in", granted=1)
    crossing = truth(script)[0]
    renderer = Renderer(script.layout)
    empty = renderer.frame(crossing.t, [])
    walker = script.walkers[0]
    drawn = renderer.frame(crossing.t, [(walker, script.tracks[walker.id])])
    changed = np.argwhere(np.abs(drawn.astype(int) - empty.astype(int)).max(axis=2) > 30)
    y0, x0 = changed.min(axis=0)
    y1, x1 = changed.max(axis=0)
    height = script.layout.person_height(crossing.y) * walker.look.height_m / 1.7
    assert x0 <= crossing.x <= x1
    assert y1 == pytest.approx(crossing.y, abs=0.06 * height)  # the feet on the line
    assert y1 - y0 == pytest.approx(height, rel=0.15)
    assert 60 <= height <= 130  # 120 to 260 px in a 640x480 picture, halved here


def test_light_changes_brighten_and_darken_the_picture() -> None:
    lights = (Light(2.0, "switch", 0.5), Light(4.0, "ramp", 1.0, 2.0))
    assert [light_gain(lights, t) for t in (1.0, 3.0, 5.0, 7.0)] == [1.0, 0.5, 0.75, 1.0]
    layout = Layout(320, 240)
    script = Script(320, 240, 8.0, layout.default_line(), lights=lights)
    means = {t: float(f.mean()) for t, f in render(script, 1)}
    assert means[3.0] == pytest.approx(means[1.0] * 0.5, rel=0.05)
    assert means[5.0] == pytest.approx(means[1.0] * 0.75, rel=0.05)


def test_distractors_move_pixels_but_cross_nothing() -> None:
    layout = Layout(320, 240)
    script = random_script(4, 400, {"alone_in": 1}, width=320, height=240)
    assert {d.kind for d in script.distractors} == {"door_leaf", "shadow"}
    quiet = Script(320, 240, 10.0, layout.default_line())
    assert truth(quiet) == []
    d = script.distractors[0]
    with_it = Renderer(layout).frame(d.t + d.duration_s / 2, [], distractors=(d,))
    without = Renderer(layout).frame(d.t + d.duration_s / 2, [])
    assert np.abs(with_it.astype(int) - without.astype(int)).max() > 40


def test_noise_and_jpeg_change_the_picture_a_little() -> None:
    layout = Layout(320, 240)
    clean = Renderer(layout).frame(1.0, [])
    noisy = Renderer(layout, noise_sigma=5.0, jpeg_quality=40).frame(1.0, [])
    diff = np.abs(clean.astype(int) - noisy.astype(int))
    assert 1.0 < diff.mean() < 12.0


@pytest.mark.parametrize("bad", [
    lambda: random_script(1, 0),
    lambda: random_script(1, 60, {"dancing": 1}),
    lambda: random_script(1, 60, {"alone_in": 0}),
    lambda: Script(100, 100, 10, Layout().default_line()),
    lambda: Walker(0, 0, 0.0, (0, 0), (), random_look(random.Random(1))),
    lambda: Walker(0, 0, 0.0, (0, 0), (Leg((1, 1), 500.0),), random_look(random.Random(1))),
    lambda: list(render(Script(320, 240, 1, Layout(320, 240).default_line()), 0)),
])
def test_bad_scripts_are_refused_with_a_clear_error(bad: object) -> None:
    with pytest.raises(CameraSimError):
        bad()  # type: ignore[operator]


def test_grants_of_people_who_changed_their_mind_cover_nobody() -> None:
    script = _one("linger_back", granted=1)
    assert truth(script) == [] and script.grants == (Grant(script.grants[0].t, 0, 0),)
