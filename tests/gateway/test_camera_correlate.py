"""Matching inward crossings with a door's grants (gateway/camera/correlate.py)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from gateway.camera.correlate import MAX_PENDING_PER_DOOR, Correlator, Decision, InwardCrossing

T0 = 1_800_000_000.0


def crossing(t: float, door: str = "door-1", track: int = 0) -> InwardCrossing:
    return InwardCrossing(door=door, device="cam-1", t=T0 + t, at=datetime.fromtimestamp(T0 + t, UTC), track=track)


def run(grants: list[tuple[float, int]], crossings: list[float], *, door: str = "door-1",
        before: float = 10.0, after: float = 2.0) -> list[Decision]:
    correlator = Correlator(grant_before_s=before, grant_after_s=after, settle_s=0.5)
    for t, seq in grants:
        correlator.add_grant(door, T0 + t, seq)
    for i, t in enumerate(crossings):
        assert correlator.add_crossing(crossing(t, door, i), T0 + t) == []
    return correlator.decide(T0 + 1000)


def summary(decisions: list[Decision]) -> list[tuple[float, str, int | None]]:
    return [(round(d.crossing.t - T0, 3), d.outcome, d.grant_seq) for d in decisions]


def test_min_cost_pairs_right_where_nearest_first_pairs_wrong() -> None:
    # The crossing at 4.5 s is nearest the grant at 5 s (0.5 s before it), but
    # taking it leaves 6 s with the grant of 0 s: 6.5 s in all against 5.5 s.
    decisions = run([(0.0, 100), (5.0, 105)], [4.5, 6.0])
    assert summary(decisions) == [(4.5, "matched", 100), (6.0, "matched", 105)]


def test_two_people_on_one_grant_is_one_match_and_one_tailgating() -> None:
    decisions = run([(0.0, 7)], [1.0, 2.5])
    assert summary(decisions) == [(1.0, "matched", 7), (2.5, "tailgating", None)]
    tail = decisions[1]
    assert (tail.entered, tail.granted) == (2, 1)


def test_three_people_on_two_grants() -> None:
    decisions = run([(0.0, 1), (0.5, 2)], [1.0, 1.5, 2.0])
    outcomes = [d.outcome for d in decisions]
    assert outcomes.count("matched") == 2 and outcomes.count("tailgating") == 1
    tail = next(d for d in decisions if d.outcome == "tailgating")
    assert (tail.entered, tail.granted) == (3, 2)
    # The two matches are the cheapest: the earliest crossings with the grants.
    assert {d.grant_seq for d in decisions if d.outcome == "matched"} == {1, 2}


def test_a_grant_with_nobody_walking_in_gives_nothing() -> None:
    assert run([(0.0, 1)], []) == []


def test_a_crossing_with_no_grant_is_an_unidentified_entry() -> None:
    assert summary(run([], [3.0])) == [(3.0, "unidentified", None)]


def test_the_window_edges() -> None:
    # A grant may come up to 10 s before the crossing and up to 2 s after it.
    assert summary(run([(0.0, 1)], [10.0])) == [(10.0, "matched", 1)]
    assert summary(run([(0.0, 1)], [10.01])) == [(10.01, "unidentified", None)]
    assert summary(run([(2.0, 1)], [0.0])) == [(0.0, "matched", 1)]
    assert summary(run([(2.01, 1)], [0.0])) == [(0.0, "unidentified", None)]
    # A grant of another door is not a grant of this one.
    correlator = Correlator()
    correlator.add_grant("door-2", T0, 1)
    correlator.add_crossing(crossing(1.0, "door-1"), T0 + 1)
    assert [d.outcome for d in correlator.decide(T0 + 100)] == ["unidentified"]


def test_a_crossing_waits_for_a_grant_that_lands_just_after_it() -> None:
    correlator = Correlator(grant_before_s=10, grant_after_s=2, settle_s=0.5)
    correlator.add_crossing(crossing(0.0), T0)
    assert correlator.next_due() == pytest.approx(T0 + 2.5)
    assert correlator.decide(T0 + 2.4) == []  # the window is still open
    correlator.add_grant("door-1", T0 + 1.5, 42)  # the terminal's verdict came late
    decisions = correlator.decide(T0 + 2.5)
    assert summary(decisions) == [(0.0, "matched", 42)]
    assert correlator.pending() == 0 and correlator.next_due() is None


def test_a_spent_grant_does_not_admit_a_later_person() -> None:
    correlator = Correlator()
    correlator.add_grant("door-1", T0, 1)
    correlator.add_crossing(crossing(1.0), T0 + 1)
    assert [d.outcome for d in correlator.decide(T0 + 4)] == ["matched"]
    correlator.add_crossing(crossing(5.0, track=1), T0 + 5)
    later = correlator.decide(T0 + 8)
    assert [(d.outcome, d.entered, d.granted) for d in later] == [("tailgating", 2, 1)]


def test_a_late_report_of_a_crossing_is_still_matched() -> None:
    # The analysis was busy: the crossing of 1 s reaches the correlator at 30 s.
    correlator = Correlator()
    correlator.add_grant("door-1", T0, 9)
    correlator.decide(T0 + 29)
    correlator.add_crossing(crossing(1.0), T0 + 30)
    assert summary(correlator.decide(T0 + 30)) == [(1.0, "matched", 9)]


def test_many_doors_are_matched_independently() -> None:
    correlator = Correlator()
    for d in range(50):
        correlator.add_grant(f"door-{d}", T0 + d, 1000 + d)
        correlator.add_crossing(crossing(d + 1.0, f"door-{d}"), T0 + d + 1)
        if d % 2:  # odd doors: a second person on the same grant
            correlator.add_crossing(crossing(d + 1.5, f"door-{d}", track=1), T0 + d + 1.5)
    decisions = correlator.decide(T0 + 100)
    by_door: dict[str, list[str]] = {}
    for decision in decisions:
        by_door.setdefault(decision.crossing.door, []).append(decision.outcome)
        if decision.outcome == "matched":
            assert decision.grant_seq == 1000 + int(decision.crossing.door.split("-")[1])
    assert len(by_door) == 50
    for d in range(50):
        assert by_door[f"door-{d}"] == (["matched", "tailgating"] if d % 2 else ["matched"])
    assert [d.crossing.t for d in decisions] == sorted(d.crossing.t for d in decisions)


def test_a_flood_of_crossings_is_decided_early_not_held_without_bound() -> None:
    correlator = Correlator()
    forced: list[Decision] = []
    for i in range(MAX_PENDING_PER_DOOR + 10):
        forced += correlator.add_crossing(crossing(i * 0.001, track=i), T0)
    assert correlator.pending() <= MAX_PENDING_PER_DOOR
    assert len(forced) == 10 and all(d.outcome == "unidentified" for d in forced)


def test_flush_decides_everything_with_what_is_known() -> None:
    correlator = Correlator()
    correlator.add_grant("door-1", T0, 5)
    correlator.add_crossing(crossing(0.5), T0 + 0.5)
    correlator.add_crossing(crossing(0.6, track=1), T0 + 0.6)
    assert sorted(d.outcome for d in correlator.flush()) == ["matched", "tailgating"]
    assert correlator.pending() == 0


def test_negative_windows_are_refused() -> None:
    with pytest.raises(ValueError, match="must not be negative"):
        Correlator(grant_before_s=-1)


def test_following_someone_through_is_tailgating_walking_in_long_after_is_unidentified() -> None:
    # One card at 0 s: its holder walks through at 2 s; someone 2 s behind
    # them followed them through; someone at 8.5 s (the grant is spent and
    # 8.5 s old, beyond follow_s) came in on nobody's grant.
    decisions = run([(0.0, 7)], [2.0, 4.0, 8.5])
    assert summary(decisions) == [(2.0, "matched", 7), (4.0, "tailgating", None), (8.5, "unidentified", None)]
    # The grant still admits its own holder up to grant_before_s after it.
    assert summary(run([(0.0, 7)], [8.5])) == [(8.5, "matched", 7)]
    with pytest.raises(ValueError):
        Correlator(follow_s=-1)
