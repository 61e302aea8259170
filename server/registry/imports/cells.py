"""Typed values out of cells, whichever way the spreadsheet stored them.
Each parser raises ``CellProblem`` with a sentence for the error report."""

from __future__ import annotations

import re
from datetime import date, datetime

from server.registry.imports.readers import Cell


class CellProblem(ValueError):
    def __init__(self, problem: str) -> None:
        super().__init__(problem)
        self.problem = problem


_DATE_FORMS = (
    re.compile(r"(\d{4})-(\d{1,2})-(\d{1,2})"),
    re.compile(r"(\d{4})/(\d{1,2})/(\d{1,2})"),
    re.compile(r"(\d{4})(\d{2})(\d{2})"),
    re.compile(r"(\d{4})\.(\d{1,2})\.(\d{1,2})"),
    re.compile(r"(\d{4})年(\d{1,2})月(\d{1,2})日"),
)
# A date written by Excel into CSV as "2026-03-01 00:00:00".
_MIDNIGHT = re.compile(r"\s+0{1,2}:00(:00)?$")
_TRUE = {"是", "yes", "y", "true", "1", "有", "已登记"}
_FALSE = {"否", "no", "n", "false", "0", "无", "未登记"}


def text(cell: Cell) -> str | None:
    """Cell as stripped text; None when blank. Whole numbers that Excel keeps
    as floats (房号 101 → 101.0) come back without the ".0"."""
    if cell is None:
        return None
    if isinstance(cell, float) and cell.is_integer():
        cell = int(cell)
    if isinstance(cell, datetime | date):
        return cell.isoformat()
    value = str(cell).strip()
    return value or None


def day(cell: Cell) -> date | None:
    if cell is None:
        return None
    if isinstance(cell, datetime):
        return cell.date()
    if isinstance(cell, date):
        return cell
    raw = text(cell)
    if raw is None:
        return None
    raw = _MIDNIGHT.sub("", raw)
    for form in _DATE_FORMS:
        match = form.fullmatch(raw)
        if match:
            y, m, d = (int(g) for g in match.groups())
            try:
                return date(y, m, d)
            except ValueError:
                raise CellProblem(f"{raw} is not a real date") from None
    raise CellProblem("not a date: use YYYY-MM-DD, YYYY/MM/DD or YYYYMMDD")


def flag(cell: Cell) -> bool | None:
    if isinstance(cell, bool):
        return cell
    raw = text(cell)
    if raw is None:
        return None
    lowered = raw.lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise CellProblem("must be 是/否, yes/no or 1/0")


def whole(cell: Cell, *, minimum: int) -> int | None:
    raw = text(cell)
    if raw is None:
        return None
    try:
        value = int(raw)
    except ValueError:
        raise CellProblem("must be a whole number") from None
    if value < minimum:
        raise CellProblem(f"must be at least {minimum}")
    return value


def positive(cell: Cell) -> float | None:
    raw = text(cell)
    if raw is None:
        return None
    try:
        value = float(raw)
    except ValueError:
        raise CellProblem("must be a number") from None
    if not value > 0 or value != value or value == float("inf"):
        raise CellProblem("must be more than 0")
    return value
