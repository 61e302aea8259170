from __future__ import annotations

import pytest

from devices.debounce import Debouncer


def held_in_field(deb: Debouncer, key: str, start: float, seconds: float, every: float = 0.1) -> list[bool]:
    steps = int(round(seconds / every))
    return [deb.accept(key, start + i * every) for i in range(steps + 1)]


def test_a_tag_held_for_five_seconds_is_one_read() -> None:
    deb = Debouncer(0.8)
    assert held_in_field(deb, "A", 0.0, 5.0).count(True) == 1


def test_a_tag_presented_again_after_the_window_is_a_new_read() -> None:
    deb = Debouncer(0.8)
    held_in_field(deb, "A", 0.0, 1.0)
    assert deb.accept("A", 1.0 + 0.8)  # absent for exactly the window
    assert not deb.accept("A", 1.9)


def test_a_tag_back_within_the_window_is_still_the_same_read() -> None:
    deb = Debouncer(0.8)
    held_in_field(deb, "A", 0.0, 1.0)
    assert not deb.accept("A", 1.5)


def test_different_tags_do_not_suppress_each_other() -> None:
    deb = Debouncer(0.8)
    assert deb.accept("A", 0.0)
    assert deb.accept("B", 0.05)
    assert not deb.accept("A", 0.1)


def test_zero_window_accepts_every_frame() -> None:
    deb = Debouncer(0)
    assert all(held_in_field(deb, "A", 0.0, 1.0))


def test_memory_is_bounded_by_expiry_and_by_max_keys() -> None:
    deb = Debouncer(0.8, max_keys=10)
    for i in range(1000):
        deb.accept(f"tag{i}", 0.0)
    assert len(deb) == 10
    deb.accept("late", 100.0)
    assert len(deb) == 1


def test_negative_window_is_refused() -> None:
    with pytest.raises(ValueError):
        Debouncer(-1)
