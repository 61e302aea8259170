"""Typed values out of cells, whichever way the spreadsheet stored them.
Each parser raises ``CellProblem`` with a sentence for the error report, in
the command's language: what is wrong and what to write instead."""

from __future__ import annotations

import re
from datetime import date, datetime

from rentgate.lang import tr
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


def missing() -> str:
    return tr("必填，请补上", "is required; fill it in")


def future() -> str:
    return tr("是将来的日期，请核对", "is in the future; check the date")


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
                raise CellProblem(tr(f"{raw} 不是真实存在的日期，请核对年月日",
                                      f"{raw} is not a real date; check the year, month and day")) from None
    raise CellProblem(tr("不是日期，请写成 2025-06-01、2025/06/01 或 20250601 这样的格式",
                          "not a date; write it as 2025-06-01, 2025/06/01 or 20250601"))


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
    raise CellProblem(tr("请填 是 或 否（也可填 1 或 0）", "write yes or no (or 是/否, 1/0)"))


def whole(cell: Cell, *, minimum: int) -> int | None:
    raw = text(cell)
    if raw is None:
        return None
    try:
        value = int(raw)
    except ValueError:
        raise CellProblem(tr("请填整数", "write a whole number")) from None
    if value < minimum:
        raise CellProblem(tr(f"不能小于 {minimum}", f"must be at least {minimum}"))
    return value


def positive(cell: Cell) -> float | None:
    raw = text(cell)
    if raw is None:
        return None
    try:
        value = float(raw)
    except ValueError:
        raise CellProblem(tr("请填数字，例如 20 或 35.5", "write a number, such as 20 or 35.5")) from None
    if not value > 0 or value != value or value == float("inf"):
        raise CellProblem(tr("必须大于 0", "must be more than 0"))
    return value
