from __future__ import annotations

from server.ingest.gaps import intersect, merge, new_gaps, settle, subtract


def test_subtract_splits_a_range_around_covered_parts() -> None:
    assert subtract((1, 10), [(3, 4), (7, 7)]) == [(1, 2), (5, 6), (8, 10)]
    assert subtract((1, 10), [(0, 20)]) == []
    assert subtract((5, 6), [(1, 2), (9, 9)]) == [(5, 6)]


def test_intersect_and_merge() -> None:
    assert intersect((5, 15), [(1, 6), (10, 12), (14, 30)]) == [(5, 6), (10, 12), (14, 15)]
    assert merge([(5, 6), (1, 2), (3, 4), (10, 11)]) == [(1, 6), (10, 11)]


def test_new_gaps_only_above_the_highest_seen() -> None:
    assert new_gaps(0, [(1, 3)]) == []
    assert new_gaps(3, [(7, 7), (9, 10)]) == [(4, 6), (8, 8)]
    assert new_gaps(10, [(2, 5)]) == []


def test_settle_fills_splits_and_loses() -> None:
    assert settle((4, 6), [(4, 6)], []) == []
    assert settle((4, 10), [(6, 6)], []) == [((4, 5), "open"), ((7, 10), "open")]
    assert settle((4, 10), [(6, 6)], [(8, 20)]) == [((4, 5), "open"), ((7, 7), "open"), ((8, 10), "lost")]
