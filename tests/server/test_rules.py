from __future__ import annotations

from pathlib import Path

import pytest

from server.errors import SettingsError
from server.rules import CityRules, load_rules


def test_defaults_are_the_domain_figures() -> None:
    rules = load_rules(None)
    assert (rules.registration_deadline_days, rules.silence_days, rules.answer_days) == (3, 30, 7)
    assert (rules.area_per_person_m2, rules.persons_per_room) == (5, 2)
    assert rules.patrol_days == {"trusted": 21, "normal": 14, "watch": 7, "strict": 3}


def test_a_city_overrides_some_rules(tmp_path: Path) -> None:
    path = tmp_path / "rules.toml"
    path.write_text('registration_deadline_days = 1\ntimezone = "Asia/Urumqi"\n[grades]\nstrict_from = 12\n',
                    encoding="utf-8")
    rules = load_rules(path)
    assert rules.registration_deadline_days == 1 and rules.silence_days == 30
    assert rules.grades.strict_from == 12 and rules.zone.key == "Asia/Urumqi"


@pytest.mark.parametrize(("text", "named"), [
    ("silence_day = 30\n", "silence_day"),
    ("silence_days = -1\n", "silence_days"),
    ('timezone = "Mars/Olympus"\n', "timezone"),
    ("silence_days = \n", "rules file"),
])
def test_bad_rules_name_the_key(tmp_path: Path, text: str, named: str) -> None:
    path = tmp_path / "rules.toml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(SettingsError, match=named):
        load_rules(path)


def test_capacity_is_the_smaller_of_area_and_rooms() -> None:
    rules = CityRules()
    assert rules.capacity(24, 2) == 4
    assert rules.capacity(14, 3) == 2
    assert rules.capacity(4.9, 1) == 0
