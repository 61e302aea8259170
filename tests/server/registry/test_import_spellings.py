"""A registrations file spells identity numbers as the phone or keyboard that
typed them did: the full-width form of a number already in the registry is
that person, not a second one; another script's digits are a row error that
never repeats the number. The import goes through parse_id_number, so this
holds by the same rule as the API (test_api_text_input.py)."""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa

from server.db.models import persons
from tests.server.registry.test_import import WANG, ZHANG, count, run, with_addresses, write


def full_width(text: str) -> str:
    return "".join(chr(ord(c) + 0xFEE0) if "!" <= c <= "~" else c for c in text)


def test_a_full_width_number_in_a_file_is_the_person_already_registered(sqlite_engine: sa.Engine,
                                                                        tmp_path: Path) -> None:
    with_addresses(sqlite_engine)
    first = run(sqlite_engine, "registrations", write(tmp_path, f"{ZHANG},张三,,,B0001,101,2025-06-01,2025-07-01,,"))
    assert first.errors == [] and first.counts["persons_created"] == 1
    again = run(sqlite_engine, "registrations", write(
        tmp_path, f"{full_width(ZHANG)},张三,,,B0001,102,2025-07-01,,,", name="again.csv"))
    assert again.errors == [] and again.counts["persons_created"] == 0
    assert count(sqlite_engine, persons) == 1


def test_arabic_indic_digits_in_a_file_are_a_row_error_without_the_number(sqlite_engine: sa.Engine,
                                                                         tmp_path: Path) -> None:
    with_addresses(sqlite_engine)
    spelt = "".join(chr(0x0660 + int(c)) if c.isdigit() else c for c in WANG)
    result = run(sqlite_engine, "registrations", write(tmp_path, f"{spelt},王五,,,B0001,101,2025-06-01,,,"))
    assert [(e.row, e.column) for e in result.errors] == [(2, "身份证号")]
    assert "17 位数字" in result.errors[0].problem and spelt not in result.errors[0].problem
    assert count(sqlite_engine, persons) == 0
