"""The counting pipeline on the synthetic doorway, scenario by scenario,
with the script's truth. The figures over every scenario together are
bench/camera.py's; here each behaviour a door needs is held on its own."""

from __future__ import annotations

import numpy as np
import pytest

from devices.camera.crossing import Crossing
from devices.camera.errors import BadFrame, CameraConfigError
from devices.camera.geometry import DoorLine
from devices.camera.pipeline import CameraPipeline, PipelineSettings
from tests.devices.camera.synthetic import count

QUIET: dict[str, bool] = {"lighting": False, "noise": False, "distractors": False}


def test_people_walking_alone_are_each_counted_once_in_their_direction() -> None:
    counted = count(11, 90, {"alone_in": 1, "alone_out": 1}, **QUIET)  # type: ignore[arg-type]
    assert counted.inward.true >= 4 and counted.outward.true >= 3
    for found in (counted.inward, counted.outward):
        assert found.matched == found.true == found.counted, (found, counted.crossings)


def test_a_pair_side_by_side_is_two_people() -> None:
    counted = count(12, 90, {"pair_side": 1}, **QUIET)  # type: ignore[arg-type]
    assert counted.inward.true + counted.outward.true >= 6
    assert counted.inward.recall >= 0.75 and counted.inward.precision == 1.0, counted
    assert counted.outward.precision == 1.0, counted


def test_lingering_and_turning_back_are_not_counted_twice() -> None:
    # Standing near the line, walking up to it and back, crossing and coming
    # straight back: each true crossing once, and nothing else.
    counted = count(13, 120, {"linger_in": 1, "linger_back": 1, "linger_out": 1, "turn_back": 1,
                              "in_then_out": 1}, **QUIET)  # type: ignore[arg-type]
    assert counted.inward.true >= 3
    for found in (counted.inward, counted.outward):
        assert found.precision == 1.0 and found.recall >= 0.8, (found, counted.crossings)


def test_light_switched_noise_and_a_swinging_door_count_no_one() -> None:
    # The same scene with its troubles but people who only walk past outside
    # the door: what moves is light, noise and the door leaf.
    counted = count(14, 120, {"alone_in": 1, "alone_out": 1})
    assert counted.script.lights and counted.script.distractors and counted.script.noise_sigma > 0
    for found in (counted.inward, counted.outward):
        assert found.precision >= 0.9 and found.recall >= 0.8, (found, counted.crossings)


def test_the_motion_detector_counts_without_a_person_stage() -> None:
    counted = count(11, 90, {"alone_in": 1, "alone_out": 1}, detector="motion", **QUIET)
    assert counted.inward.matched == counted.inward.true
    assert all(not c.confirmed for c in counted.crossings)


def test_a_crossing_carries_a_jpeg_of_its_frame() -> None:
    counted = count(11, 30, {"alone_in": 1}, **QUIET)  # type: ignore[arg-type]
    assert counted.crossings
    for crossing in counted.crossings:
        assert crossing.snapshot is not None and crossing.snapshot[:3] == b"\xff\xd8\xff"


# ---------------------------------------------------------------------------- bad input


def _pipeline(**kw: object) -> CameraPipeline:
    return CameraPipeline(PipelineSettings(line=DoorLine(10, 60, 150, 60, "down"), **kw))  # type: ignore[arg-type]


@pytest.mark.parametrize("frame", [None, np.zeros((0, 0, 3), np.uint8), np.zeros((100, 100, 4), np.uint8),
                                   np.zeros((100, 100, 3), np.float32), np.zeros((10, 10, 3), np.uint8),
                                   "a picture"])
def test_what_is_not_a_picture_is_a_bad_frame_not_a_crash(frame: object) -> None:
    pipeline = _pipeline()
    with pytest.raises(BadFrame):
        pipeline.process(frame, 0.0)  # type: ignore[arg-type]
    assert pipeline.bad_frames == 1
    # The pipeline goes on with the next good frame.
    assert pipeline.process(np.zeros((120, 160, 3), np.uint8), 0.1) == []


def test_frame_times_must_not_go_back() -> None:
    pipeline = _pipeline()
    pipeline.process(np.zeros((120, 160, 3), np.uint8), 5.0)
    for t in (4.0, float("nan"), float("inf")):
        with pytest.raises(BadFrame):
            pipeline.process(np.zeros((120, 160, 3), np.uint8), t)


def test_a_door_line_outside_the_picture_is_refused_with_what_to_do() -> None:
    pipeline = CameraPipeline(PipelineSettings(line=DoorLine(10, 60, 900, 60, "down")))
    with pytest.raises(CameraConfigError, match=r"outside the 160x120 picture.*between 0,0 and 160,120"):
        pipeline.process(np.zeros((120, 160, 3), np.uint8), 0.0)


def test_a_camera_that_changes_resolution_starts_again() -> None:
    pipeline = _pipeline()
    pipeline.process(np.zeros((120, 160, 3), np.uint8), 0.0)
    assert pipeline.process(np.zeros((240, 320, 3), np.uint8), 0.1) == []
    with pytest.raises(CameraConfigError):
        CameraPipeline(PipelineSettings(line=DoorLine(10, 60, 150, 60))).process(
            np.zeros((40, 100, 3), np.uint8), 0.0)


@pytest.mark.parametrize(("kw", "words"), [
    ({"person_fps": 0}, "person_fps"), ({"person_fps": float("nan")}, "person_fps"),
    ({"jpeg_quality": 5}, "jpeg_quality"), ({"anchor": "top"}, "anchor"),
    ({"detector": "no_such_module:make"}, "cannot be loaded"), ({"detector": "yolo"}, "unknown detector"),
])
def test_absurd_settings_say_what_to_change(kw: dict[str, object], words: str) -> None:
    with pytest.raises(CameraConfigError, match=words):
        _pipeline(**kw)


@pytest.mark.parametrize(("text", "inward", "words"), [
    ("1,2,3", "down", "four numbers"), ("a,b,c,d", "down", "four numbers"), ("0,0,3,0", "down", "at least 8"),
    ("0,0,100,0", "left", "runs along the door line"), ("0,0,100,0", "north", "one of up, down"),
    ("nan,0,100,0", "down", "finite"),
])
def test_a_door_line_that_cannot_work_is_refused(text: str, inward: str, words: str) -> None:
    with pytest.raises(CameraConfigError, match=words):
        DoorLine.parse(text, inward)


def test_the_inside_is_the_side_people_walk_towards_when_going_in() -> None:
    across = DoorLine(0, 100, 200, 100, "down")
    assert across.distance(50, 150) > 0 > across.distance(50, 50)
    assert DoorLine(200, 100, 0, 100, "down").distance(50, 150) > 0  # the order of the ends does not matter
    upright = DoorLine(100, 0, 100, 200, "left")
    assert upright.distance(20, 50) > 0 > upright.distance(180, 50)


class _Everywhere:
    """A detector plugged in by name: it sees one person in every region."""

    def detect(self, frame: object, regions: list[tuple[int, int, int, int]]) -> list[object]:
        from devices.camera.detect import Detection

        return [Detection(r, 1.0) for r in regions]


def make_everywhere() -> _Everywhere:
    return _Everywhere()


def test_another_detector_is_plugged_in_by_its_name() -> None:
    counted_with: list[Crossing] = []
    pipeline = _pipeline(detector="tests.devices.camera.test_pipeline:make_everywhere")
    assert isinstance(pipeline.detector, _Everywhere)
    frame = np.full((120, 160, 3), 90, np.uint8)
    for i in range(30):  # an empty doorway first: the background is learnt
        counted_with += pipeline.process(frame, i * 0.1)
    for i in range(30):
        picture = frame.copy()
        y = 20 + i * 3
        picture[max(0, y - 40):y, 70:90] = (20, 20, 200)
        counted_with += pipeline.process(picture, 3 + i * 0.1)
    assert [(c.direction, c.confirmed) for c in counted_with] == [("in", True)]
