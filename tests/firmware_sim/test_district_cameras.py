"""Unit door cameras in the district simulator: the same district, with
hidden occupants the card system cannot see, run with and without cameras."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from firmware_sim.district.cameras import CameraOptions
from firmware_sim.district.driver import DistrictOptions, run_district
from rentgate.cli import main


def _run(tmp_path: Path, share: float) -> dict[str, Any]:
    options = DistrictOptions(buildings=8, days=30, seed=3, workdir=tmp_path,
                              cameras=CameraOptions(share=share, hidden=0.25))
    return asyncio.run(run_district(options))


def test_cameras_find_hidden_occupants_the_cards_cannot(tmp_path: Path) -> None:
    without = _run(tmp_path / "without", 0.0)
    with_cameras = _run(tmp_path / "with", 1.0)
    # The same district and people; with cameras, hidden occupants found and
    # registered get a card and swipe it, so there are more card reads.
    assert without["people"] == with_cameras["people"] and with_cameras["events"] > without["events"]
    before, after = without["cameras"], with_cameras["cameras"]
    assert before["hidden_due"] == after["hidden_due"] >= 3
    assert before["hidden_found"] == 0 and before["crossings"] == 0
    assert after["hidden_recall"] >= 0.8 and after["camera_case_precision"] == 1.0
    assert with_cameras["kinds"]["unregistered_occupant"]["recall"] > without["kinds"]["unregistered_occupant"]["recall"]
    # Cameras do not make the card-based cases worse.
    assert with_cameras["kinds"]["unregistered_occupant"]["precision"] == 1.0
    assert with_cameras["kinds"]["presumed_departure"] == without["kinds"]["presumed_departure"]


@pytest.mark.parametrize("flag", ["--cameras", "--hidden", "--camera-miss", "--camera-double"])
def test_a_share_outside_0_to_1_is_refused(flag: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["sim", "district", "--buildings", "1", "--days", "1", flag, "1.5", "--json"]) == 2
    assert f"{flag} must be between 0 and 1" in capsys.readouterr().err


def test_the_json_says_what_the_cameras_saw(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["sim", "district", "--buildings", "3", "--days", "12", "--seed", "5", "--cameras", "1",
                 "--hidden", "0.5", "--camera-miss", "0", "--camera-double", "0", "--json"]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    cams = result["cameras"]
    assert cams["units_with_camera"] == result["units"] and cams["crossings"] > 0
    assert cams["miss_rate"] == 0 and cams["hidden_occupants"] >= 1
