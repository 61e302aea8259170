"""What is kept of a terminal across restarts (gateway/terminals/state.py):
files written before the marked event was kept load as they were."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gateway.terminals.state import MAX_MARK, SavedState

MARK = "2026-12-06T05:00:00+00:00/5/9"


def _load(tmp_path: Path, doc: object) -> SavedState:
    path = tmp_path / "k1t.json"
    path.write_text(json.dumps(doc))
    return SavedState.load(path)


def test_a_file_from_before_the_mark_loads_with_no_mark(tmp_path: Path) -> None:
    saved = _load(tmp_path, {"version_held": 7, "last_full_at": "2026-12-06T05:00:00+00:00", "caught_up_to": 42})
    assert saved == SavedState(version_held=7, last_full_at="2026-12-06T05:00:00+00:00", caught_up_to=42)
    assert saved.marked_serial is None and saved.marked_event is None


def test_the_mark_is_kept_across_a_save(tmp_path: Path) -> None:
    path = tmp_path / "k1t.json"
    SavedState(version_held=1, caught_up_to=42, marked_serial=40, marked_event=MARK).save(path)
    assert SavedState.load(path) == SavedState(version_held=1, caught_up_to=42, marked_serial=40, marked_event=MARK)


@pytest.mark.parametrize("doc", [
    {"caught_up_to": 42, "marked_serial": 43, "marked_event": MARK},  # above what was caught up
    {"caught_up_to": None, "marked_serial": 40, "marked_event": MARK},
    {"caught_up_to": 42, "marked_serial": 40},  # half of it
    {"caught_up_to": 42, "marked_event": MARK},
    {"caught_up_to": 42, "marked_serial": 40, "marked_event": "x" * (MAX_MARK + 1)},  # never cut short
    {"caught_up_to": 42, "marked_serial": 40, "marked_event": ""},
    {"caught_up_to": 42, "marked_serial": True, "marked_event": MARK},
])
def test_a_mark_that_is_no_use_is_dropped_and_the_rest_kept(tmp_path: Path, doc: dict[str, object]) -> None:
    saved = _load(tmp_path, doc)
    assert saved.marked_serial is None and saved.marked_event is None
    assert saved.caught_up_to == doc["caught_up_to"]
