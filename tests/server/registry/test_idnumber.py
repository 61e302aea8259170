from __future__ import annotations

from datetime import date

import pytest
from hypothesis import given
from hypothesis import strategies as st

from server.registry.idnumber import (
    InvalidIdNumber,
    check_character,
    make_id_number,
    mask_id_number,
    parse_id_number,
)

# The example printed in GB 11643-1999 itself.
STANDARD_EXAMPLE = "11010519491231002X"


def test_the_standards_own_example_is_valid_and_female() -> None:
    number = parse_id_number(STANDARD_EXAMPLE)
    assert number.birth_date == date(1949, 12, 31)
    assert number.sex == "F"
    assert number.area_code == "110105"


def test_lower_case_x_and_spaces_are_accepted() -> None:
    assert parse_id_number(" 110105 19491231 002x ").value == STANDARD_EXAMPLE


@pytest.mark.parametrize(("raw", "reason"), [
    ("110105194912310021", "wrong check character"),
    ("11010519491231002", "must be 18 characters, got 17"),
    ("1101051949123100AX", "must be 17 digits and a digit or X"),
    ("990105194912310021", "unknown province code 99"),
    # 30 February: the check character is right, the date is not.
    ("110105" + "19490230" + "002" + check_character("11010519490230002"), "birth date is not a real date"),
    ("110105" + "18000101" + "002" + check_character("11010518000101002"), "birth date is impossible"),
    ("110105" + "20990101" + "002" + check_character("11010520990101002"), "birth date is impossible"),
    ("110105" + "19491231" + "000" + check_character("11010519491231000"), "sequence number 000 is not issued"),
])
def test_invalid_numbers_say_why_without_repeating_the_number(raw: str, reason: str) -> None:
    with pytest.raises(InvalidIdNumber) as info:
        parse_id_number(raw, today=date(2026, 11, 22))
    assert info.value.reason == reason
    assert raw[6:14] not in str(info.value)


def test_an_area_code_no_longer_current_stays_valid() -> None:
    # 440126 was Panyu county before it became a district (440113) in 2000.
    number = make_id_number("440126", date(1975, 3, 9), 17)
    assert parse_id_number(number).area_code == "440126"


def test_masking_keeps_province_city_and_last_four_only() -> None:
    assert mask_id_number(STANDARD_EXAMPLE) == "1101**********002X"
    assert mask_id_number("1234") == "**34"


@given(st.dates(min_value=date(1900, 1, 1), max_value=date(2020, 12, 31)), st.integers(1, 999))
def test_generated_numbers_parse_back(birth: date, sequence: int) -> None:
    number = parse_id_number(make_id_number("320102", birth, sequence), today=date(2026, 1, 1))
    assert number.birth_date == birth
    assert number.sex == ("M" if sequence % 2 else "F")


@given(st.integers(0, 16), st.sampled_from("0123456789"))
def test_any_single_digit_change_is_caught(position: int, digit: str) -> None:
    valid = make_id_number("320102", date(1988, 8, 8), 421)
    changed = valid[:position] + digit + valid[position + 1:]
    if changed == valid:
        return
    with pytest.raises(InvalidIdNumber):
        parse_id_number(changed, today=date(2026, 1, 1))
