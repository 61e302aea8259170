from __future__ import annotations

import unicodedata
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


# --------------------------------------------------------------------------- one form for every spelling


def _full_width(text: str) -> str:
    """What a phone keyboard in full-width mode types: ０-９, Ｘ, ｘ."""
    return "".join(chr(ord(c) + 0xFEE0) if "!" <= c <= "~" else c for c in text)


def _arabic_indic(text: str) -> str:
    return "".join(chr(0x0660 + int(c)) if c.isascii() and c.isdigit() else c for c in text)


def test_full_width_digits_x_and_spaces_are_the_same_number() -> None:
    assert parse_id_number(_full_width(STANDARD_EXAMPLE)).value == STANDARD_EXAMPLE
    assert parse_id_number(_full_width(STANDARD_EXAMPLE.lower())).value == STANDARD_EXAMPLE
    # An ideographic space (U+3000) and a no-break space between the groups.
    assert parse_id_number("\u3000１１０１０５\u00a0１９４９１２３１ ００２ｘ").value == STANDARD_EXAMPLE


def test_the_sequence_rule_sees_through_full_width_zeros() -> None:
    """``…０００6`` once passed: ``"０００" != "000"`` while int() read the digits."""
    first17 = "44010619900517000"
    raw = _full_width(first17) + check_character(first17)
    with pytest.raises(InvalidIdNumber) as info:
        parse_id_number(raw, today=date(2026, 1, 1))
    assert info.value.reason == "sequence number 000 is not issued"


def test_arabic_indic_digits_are_refused_not_mapped() -> None:
    """int() and \\d take them, NFKC does not map them: refused, so no second
    person can be made from another script's spelling of a number."""
    number = make_id_number("440106", date(1990, 5, 17), 123)
    assert int(_arabic_indic("123")) == 123  # what the old check relied on
    with pytest.raises(InvalidIdNumber) as info:
        parse_id_number(_arabic_indic(number))
    assert info.value.reason == "must be 17 digits and a digit or X"


@pytest.mark.parametrize("hidden", ["\u200b", "\u2060", "\ufeff", "\u202e", "\u0000", "\t"])
def test_invisible_characters_inside_are_refused_as_not_digits(hidden: str) -> None:
    with pytest.raises(InvalidIdNumber) as info:
        parse_id_number(STANDARD_EXAMPLE[:9] + hidden + STANDARD_EXAMPLE[9:])
    assert info.value.reason == "must be 17 digits and a digit or X"


def _decimal_digits() -> list[str]:
    return [chr(c) for c in range(0x110000) if unicodedata.category(chr(c)) == "Nd"]


def test_every_decimal_digit_of_every_script_is_the_ascii_digit_or_refused() -> None:
    """All 600-odd characters Python calls decimal digits, each put in place
    of a digit: a number parses to exactly the ASCII number (NFKC maps the
    character to that very digit) or is refused. Never a third number."""
    mapped = refused = 0
    for char in _decimal_digits():
        digit = unicodedata.digit(char)
        # A sequence holding the digit: 101 for 0, else ddd.
        number = make_id_number("320102", date(1988, 8, 8), digit * 111 or 101)
        position = 14 + number[14:17].index(str(digit))
        spelt = number[:position] + char + number[position + 1:]
        try:
            value = parse_id_number(spelt, today=date(2026, 1, 1)).value
        except InvalidIdNumber:
            assert unicodedata.normalize("NFKC", char) != str(unicodedata.digit(char))
            refused += 1
        else:
            assert value == number
            mapped += 1
    assert mapped >= 10 + 10 and refused > 500  # ASCII and full-width at least; most scripts refused


def test_only_x_is_upper_cased() -> None:
    """str.upper() would turn the long s into an ASCII S: only x is upper-cased."""
    assert "ſ".upper() == "S"
    with pytest.raises(InvalidIdNumber):
        parse_id_number(STANDARD_EXAMPLE[:17] + "ſ")


@given(st.lists(st.booleans(), min_size=18, max_size=18), st.integers(1, 999))
def test_any_mix_of_full_width_and_ascii_is_one_number(wide: list[bool], sequence: int) -> None:
    number = make_id_number("440106", date(1979, 2, 28), sequence)
    mixed = "".join(_full_width(c) if w else c for c, w in zip(number, wide, strict=True))
    assert parse_id_number(mixed, today=date(2026, 1, 1)).value == number
