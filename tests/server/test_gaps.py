from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from server.ingest.gaps import advance, intersect, merge, new_gaps, settle, subtract


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


def _advance(max_seen: int, seen: list[tuple[int, int]], bound: int = 100,
             stored: tuple[int, ...] = ()) -> tuple[int, list[tuple[int, int]], list[tuple[int, int, bool]]]:
    def highest_stored(low: int, high: int) -> int | None:
        return max((s for s in stored if low <= s <= high), default=None)

    step = advance(max_seen, seen, bound, highest_stored)
    return step.highest, step.gaps, [(j.seq, j.after, j.followed) for j in step.jumps]


def test_advance_within_the_bound_is_new_gaps() -> None:
    assert _advance(3, [(7, 7), (9, 10)]) == (10, [(4, 6), (8, 8)], [])
    assert _advance(10, [(2, 5)]) == (10, [], [])
    assert _advance(0, [(1, 3)]) == (3, [], [])
    assert _advance(0, [(101, 101)]) == (101, [(1, 100)], [])  # exactly the bound is still a gap


def test_a_lone_number_past_the_bound_is_a_jump_that_moves_nothing() -> None:
    assert _advance(5, [(2**63 - 1, 2**63 - 1)]) == (5, [], [(2**63 - 1, 5, False)])
    # Ordinary numbers in the same batch still count, and their gaps are still asked for.
    assert _advance(5, [(8, 8), (10**12, 10**12)]) == (8, [(6, 7)], [(10**12, 8, False)])


def test_numbers_that_follow_a_jump_move_the_count_there() -> None:
    assert _advance(5, [(1000, 1001)]) == (1001, [], [(1000, 5, True)])
    assert _advance(5, [(1000, 1000), (1003, 1003)]) == (1003, [(1001, 1002)], [(1000, 5, True)])
    # ... also when they come later: the lone jump stored before is found.
    assert _advance(5, [(1003, 1003)], stored=(1000,)) == (1003, [(1001, 1002)], [])
    # ... but not when they are themselves too far from it.
    assert _advance(5, [(5000, 5000)], stored=(1000,)) == (5, [], [(5000, 5, False)])


@given(st.lists(st.integers(1, 500), min_size=1, max_size=30), st.integers(0, 500))
def test_advance_with_a_wide_bound_finds_the_same_gaps_as_new_gaps(seqs: list[int], max_seen: int) -> None:
    seen = merge([(s, s) for s in seqs])
    highest, holes, jumps = _advance(max_seen, seen, bound=1000)
    assert holes == new_gaps(max_seen, seen) and jumps == []
    assert highest == max(max_seen, seen[-1][1])
