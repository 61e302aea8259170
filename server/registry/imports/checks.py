"""Field rules shared by both imports, with the registry's own shapes of
codes, phones and card numbers (server/registry/service.py), so that a row
passing here is one the registry functions accept; apply.py still turns any
refusal into a row error."""

from __future__ import annotations

from server.registry.imports.cells import CellProblem
from server.registry.service import CODE, EM4100, PHONE


def code(value: str) -> str:
    if not CODE.fullmatch(value):
        raise CellProblem("a code is 1-32 letters, digits, '.', '_' or '-'")
    return value


def phone(value: str | None) -> str | None:
    if value is not None and (len(value) > 20 or not PHONE.fullmatch(value)):
        raise CellProblem("not a phone number (digits, optionally + - and spaces)")
    return value


def length(value: str | None, max_len: int) -> str | None:
    if value is not None and len(value) > max_len:
        raise CellProblem(f"longer than {max_len} characters")
    return value


def em4100(value: str) -> str:
    card = value.replace(" ", "").upper()
    if not EM4100.fullmatch(card):
        raise CellProblem("an EM4100 card number is 10 hexadecimal digits")
    return card
