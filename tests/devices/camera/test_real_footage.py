"""The people counter on real recordings with hand-made ground truth.

The clips are real CCTV footage (CAVIAR, see tests/data/video/README.md), not
our renderer: people 35-50 px tall, reflections on a shiny floor, shoppers
moving behind glass, two people walking as one blob. Every line of every clip
runs through the real CameraPipeline, frame by frame at t = index / fps.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from pathlib import Path

import pytest

from devices.camera.crossing import Crossing
from devices.camera.geometry import DoorLine
from devices.camera.pipeline import CameraPipeline, PipelineSettings
from tests.devices.camera.footage import Clip, Direction, FootageError, TruthLine, load_clip, load_clips, matched

CLIPS = load_clips()
CASES = [(clip, line) for clip in CLIPS for line in clip.lines]
# The product's default person stage; "motion" alone cannot split the pair in
# caviar_two_leave_front, which is the point of that clip.
DETECTOR = "hog"
# A counted crossing matches a true one of the same direction within this many
# seconds: the truth marks the frame the feet pass the line, give or take about
# 4 frames (0.16 s) of judging feet 35 px tall by eye, and a tracker reporting
# when the box centre passes is at most half a person's stride later.
MATCH_WINDOW_S = 1.0
DIRECTIONS: tuple[Direction, ...] = ("in", "out")


def _id(case: tuple[Clip, TruthLine]) -> str:
    return f"{case[0].name}-{case[1].name.replace(' ', '_')}"


def allowed_error(true_count: int) -> int:
    """Per-direction total: at most 10 % off, but at least 1 crossing, since on
    clips with one to three crossings a line any stricter would demand a
    perfect count from a single person hidden behind another."""
    return max(1, math.floor(0.1 * true_count))


@dataclass(frozen=True)
class Run:
    counted: list[Crossing]

    def times(self, direction: str) -> list[float]:
        return [c.t for c in self.counted if c.direction == direction]


@functools.cache  # the per-line tests and the pooled score share one run per line
def run_pipeline(clip: Clip, line: TruthLine) -> Run:
    x1, y1, x2, y2 = line.line
    door = DoorLine.parse(f"{x1},{y1},{x2},{y2}", line.inward)
    door.check_fits(*clip.size)
    pipeline = CameraPipeline(PipelineSettings(line=door, detector=DETECTOR, snapshots=False))
    counted: list[Crossing] = []
    for index, frame in clip.frames_bgr():
        counted.extend(pipeline.process(frame, index / clip.fps))
    counted.extend(pipeline.finish())
    return Run(counted)


# Known gaps, measured: kept as strict expected failures so that they are in
# plain sight and the day the pipeline counts them this file must change.
# In caviar_enter_exit_front two people 35-50 px tall pass each other in
# the shop door within a third of a second, one half hidden, both dragging
# a reflection on the shiny floor: the tracks swap and neither crossing is
# counted at its time (docs/cameras.md, "Scenes it is bad at").
KNOWN_GAPS = {"caviar_enter_exit_front-shop_door": "two small people passing each other in the door: tracks swap"}
POOLED_GAP = ("4 of 7 true crossings found at their time, 4 of 5 counted true (measured 2026-12-05); the misses are "
              "the passing pair in the shop door and one of a pair walking one behind the other")


def _case(case: tuple[Clip, TruthLine]) -> object:
    gap = KNOWN_GAPS.get(_id(case))
    marks = [pytest.mark.xfail(reason=f"known gap: {gap}", strict=True)] if gap else []
    return pytest.param(case, id=_id(case), marks=marks)


@pytest.mark.parametrize("case", [_case(c) for c in CASES])
def test_counts_people_crossing_a_real_door_line(case: tuple[Clip, TruthLine]) -> None:
    clip, line = case
    run = run_pipeline(clip, line)
    report = (f"{clip.name} / {line.name}: counted "
              + ", ".join(f"{c.direction}@{c.t:.2f}s" for c in sorted(run.counted, key=lambda c: c.t))
              + " | truth " + ", ".join(f"{c.direction}@{c.t:.2f}s ({c.person})" for c in line.crossings))
    for direction in DIRECTIONS:
        true_count = line.count(direction)
        got = len(run.times(direction))
        assert abs(got - true_count) <= allowed_error(true_count), \
            f"{direction}: counted {got}, truth {true_count}; {report}"
    # Time-matched: right totals made of wrong events (an exit counted while
    # someone else came in) must not pass. On every line at least half of the
    # true crossings of each direction (so the only one, where there is one)
    # must be matched one-to-one within the window, and every counted crossing
    # but at most one must match a true one. The pooled test below is stricter.
    for direction in DIRECTIONS:
        truth_t = [c.t for c in line.crossings if c.direction == direction]
        counted_t = run.times(direction)
        pairs = matched(counted_t, truth_t, MATCH_WINDOW_S)
        assert pairs >= math.ceil(len(truth_t) / 2), \
            f"{direction}: only {pairs} of {len(truth_t)} true crossings matched within {MATCH_WINDOW_S}s; {report}"
        assert len(counted_t) - pairs <= allowed_error(len(truth_t)), \
            f"{direction}: {len(counted_t) - pairs} counted crossings match nothing true; {report}"


def test_pooled_counting_finds_at_least_what_it_found_when_last_measured() -> None:
    """The floor under the pooled score below: what the pipeline achieved
    on this footage when it was last measured; counting worse fails."""
    pairs_total = counted_total = 0
    for clip, line in CASES:
        run = run_pipeline(clip, line)
        for direction in DIRECTIONS:
            truth_t = [c.t for c in line.crossings if c.direction == direction]
            counted_t = run.times(direction)
            pairs_total += matched(counted_t, truth_t, MATCH_WINDOW_S)
            counted_total += len(counted_t)
    assert pairs_total >= 4 and counted_total - pairs_total <= 1, (pairs_total, counted_total)


@pytest.mark.xfail(reason=f"known gap: {POOLED_GAP}", strict=True)
def test_pooled_time_matched_score_over_all_real_footage() -> None:
    """Across every clip and line: at least 80 % of true crossings matched
    in time and at least 80 % of counted crossings true (8 true crossings in
    the current set, so this allows one miss and one false count in all)."""
    true_total = counted_total = pairs_total = 0
    lines = []
    for clip, line in CASES:
        run = run_pipeline(clip, line)
        for direction in DIRECTIONS:
            truth_t = [c.t for c in line.crossings if c.direction == direction]
            counted_t = run.times(direction)
            pairs = matched(counted_t, truth_t, MATCH_WINDOW_S)
            true_total += len(truth_t)
            counted_total += len(counted_t)
            pairs_total += pairs
            lines.append(f"{clip.name}/{line.name}/{direction}: true {len(truth_t)} counted {len(counted_t)} "
                         f"matched {pairs}")
    recall = pairs_total / true_total
    precision = pairs_total / counted_total if counted_total else 0.0
    assert recall >= 0.8 and precision >= 0.8, \
        f"recall {recall:.2f}, precision {precision:.2f}: " + "; ".join(lines)


# The footage itself: these hold whatever the pipeline does.

@pytest.mark.parametrize("clip", CLIPS, ids=[c.name for c in CLIPS])
def test_clip_decodes_to_the_frames_its_truth_numbers(clip: Clip) -> None:
    count = 0
    for index, frame in clip.frames_bgr():
        assert index == count and frame.shape == (clip.size[1], clip.size[0], 3)
        count += 1
    assert count == clip.frames
    for line in clip.lines:
        x1, y1, x2, y2 = line.line
        DoorLine(x1, y1, x2, y2, line.inward).check_fits(*clip.size)  # type: ignore[arg-type]
        assert line.crossings, f"{clip.name}/{line.name} has no crossings: it tests nothing"


def test_footage_stays_small() -> None:
    total = sum(c.path.stat().st_size for c in CLIPS)
    assert total <= 6_500_000, f"the committed clips weigh {total} bytes"


def test_matching_is_one_to_one_and_windowed() -> None:
    assert matched([1.0, 5.0], [1.4, 5.9]) == 2
    assert matched([1.0], [1.0, 1.2]) == 1  # one counted crossing cannot match two people
    assert matched([1.0, 1.1], [1.05]) == 1
    assert matched([3.0], [1.9]) == 0  # 1.1 s apart
    assert matched([0.5, 1.4], [1.3, 2.5]) == 1
    assert matched([], [1.0]) == 0


def test_a_truth_file_that_disagrees_with_its_clip_is_refused(tmp_path: Path) -> None:
    clip = CLIPS[0]
    (tmp_path / ("broken" + clip.path.suffix)).symlink_to(clip.path)
    truth = clip.path.with_name(clip.name + ".truth.json").read_text(encoding="utf-8")
    broken_truth = tmp_path / "broken.truth.json"
    broken_truth.write_text(truth.replace(f'"frames": {clip.frames}', f'"frames": {clip.frames + 5}'),
                            encoding="utf-8")
    broken = load_clip(broken_truth)
    with pytest.raises(FootageError, match="decoded"):
        for _ in broken.frames_bgr():
            pass
    broken_truth.write_text(truth.replace('"inward": "up"', '"inward": "in"'), encoding="utf-8")
    with pytest.raises(FootageError, match="inward"):
        load_clip(broken_truth)
