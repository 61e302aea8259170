"""Counting the synthetic doorway (firmware_sim/camera) with the pipeline:
one scenario mix at a time, against the script's own truth."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from devices.camera.crossing import Crossing
from devices.camera.evaluate import DirectionScore, score
from devices.camera.geometry import DoorLine
from devices.camera.pipeline import CameraPipeline, PipelineSettings
from firmware_sim.camera.render import render
from firmware_sim.camera.script import Script, random_script, truth


@dataclass(frozen=True)
class Counted:
    script: Script
    crossings: list[Crossing]
    inward: DirectionScore
    outward: DirectionScore


def line_of(script: Script) -> DoorLine:
    line = script.line
    return DoorLine(line.x1, line.y1, line.x2, line.y2, line.inward)


def count(seed: int, duration_s: float, mix: Mapping[str, float] | None = None, *, fps: float = 10,
          detector: str = "hog", lighting: bool = True, noise: bool = True, distractors: bool = True) -> Counted:
    script = random_script(seed, duration_s, mix, lighting=lighting, noise=noise, distractors=distractors)
    pipeline = CameraPipeline(PipelineSettings(line=line_of(script), detector=detector))
    crossings: list[Crossing] = []
    for t, frame in render(script, fps):
        crossings += pipeline.process(frame, t)
    crossings += pipeline.finish()
    found = score([(c.t, c.direction) for c in crossings], [(x.t, x.direction) for x in truth(script)])
    return Counted(script, crossings, found["in"], found["out"])
