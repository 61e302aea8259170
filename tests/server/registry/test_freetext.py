"""The free-text rule (server/registry/freetext.py) over the whole of Unicode,
and a guard that every text field of the registry's request bodies is
bounded and checked, so a field added later cannot skip the rule."""

from __future__ import annotations

import unicodedata
from typing import Any

import pytest
from pydantic import BaseModel, ValidationError

from server.registry import api_input, freetext


def _all_characters() -> list[str]:
    return [chr(c) for c in range(0x110000)]


def test_every_control_format_and_separator_character_is_refused_but_the_shaping_ones() -> None:
    kept_format = []
    for char in _all_characters():
        category = unicodedata.category(char)
        if category in ("Cc", "Cs", "Zl", "Zp"):
            assert freetext.hidden_character(f"a{char}b") is not None, hex(ord(char))
        elif category == "Cf":
            if freetext.hidden_character(f"a{char}b") is None:
                kept_format.append(char)
    assert kept_format == ["\u180e", "\u200c", "\u200d"]


def test_the_direction_changers_the_issue_names_are_refused_with_their_code_point() -> None:
    for code in (*range(0x202A, 0x202F), *range(0x2066, 0x206A)):
        problem = freetext.hidden_character(f"name{chr(code)}")
        assert problem is not None and f"U+{code:04X}" in problem and "direction" in problem


def test_ordinary_text_of_any_script_passes() -> None:
    for text in ("陈大文", "Tangxia Rd 12", "普君北路 12 号 3 栋", "Nguyễn Văn An", "ئابدۇللا", "王\ue000明",
                 "O'Brien-Smith", "👨\u200d👩\u200d👧 家"):
        assert freetext.hidden_character(text) is None and freetext.has_substance(text)
    assert not freetext.has_substance("-\u200d-") and not freetext.has_substance("😀")


def test_compatible_forms_are_ascii_for_what_identifies() -> None:
    assert freetext.compatible("\u3000Ｂ－１２\u3000") == "B-12"
    assert freetext.compatible("٣٠١") == "٣٠١"  # other scripts' digits are not mapped


# Identity numbers are bounded in the body and then refused or normalised by
# parse_id_number in the route, with its own reasons (test_idnumber.py,
# test_api_text_input.py).
CHECKED_IN_THE_ROUTE = {"id_number"}


def _branches(schema: dict[str, Any]) -> list[dict[str, Any]]:
    return list(schema.get("anyOf", [schema]))


def _text_fields(model: type[BaseModel]) -> dict[str, bool]:
    """Text fields by name (from the JSON Schema, so optional and annotated
    ones are found alike): True for a list of texts."""
    found = {}
    for name, schema in model.model_json_schema()["properties"].items():
        if name in CHECKED_IN_THE_ROUTE:
            continue
        for branch in _branches(schema):
            if branch.get("type") == "string" and "enum" not in branch and "const" not in branch:
                found[name] = False
            elif branch.get("type") == "array" and branch.get("items", {}).get("type") == "string":
                found[name] = True
    return found


def _bodies() -> list[type[api_input.Body]]:
    return [value for value in vars(api_input).values()
            if isinstance(value, type) and issubclass(value, api_input.Body) and value is not api_input.Body]


@pytest.mark.parametrize("model", _bodies(), ids=lambda m: m.__name__)
def test_every_text_field_of_every_body_is_bounded_and_refuses_hidden_characters(
        model: type[api_input.Body]) -> None:
    """Each text field given 5000 characters, then a right-to-left override:
    refused, whether by its bound, its shape or the free-text rule."""
    fields = _text_fields(model)
    assert fields or model in (api_input.ConfirmIn, api_input.LookupIn)
    for name, is_list in fields.items():
        for value in ("x" * 5000, "\u202e" + "1" * 20):
            probe: object = [value] if is_list else value
            with pytest.raises(ValidationError) as info:
                model.model_validate({name: probe})
            assert any(e["loc"][0] == name for e in info.value.errors()), (model.__name__, name, value[:3])
