"""The per-row error report: row number as the spreadsheet shows it, the
column as the file names it, the problem with what to do about it, and the
value (identity numbers masked, always)."""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path

from rentgate.lang import tr


def report_header() -> tuple[str, str, str, str]:
    """The report's columns in the command's language (it is opened in Excel
    by the person who fixes the file; no program reads it back)."""
    return (tr("行号", "row"), tr("列", "column"), tr("问题和改法", "problem and what to do"), tr("值", "value"))


@dataclass(frozen=True)
class RowError:
    row: int
    column: str
    problem: str
    value: str = ""


@dataclass
class Problems:
    """Row errors collected while validating; ``failed`` tells whether a row
    already has one (later checks that depend on it are skipped)."""

    errors: list[RowError] = field(default_factory=list)
    _failed_rows: set[int] = field(default_factory=set)

    def add(self, row: int, column: str, problem: str, value: str | None = None) -> None:
        self.errors.append(RowError(row, column, problem, value or ""))
        self._failed_rows.add(row)

    def failed(self, row: int) -> bool:
        return row in self._failed_rows

    @property
    def failed_rows(self) -> int:
        return len(self._failed_rows)

    def sorted(self) -> list[RowError]:
        return sorted(self.errors, key=lambda e: e.row)


def write_report(path: Path, errors: list[RowError]) -> None:
    # utf-8-sig: Excel opens it with the Chinese column names intact.
    with path.open("w", encoding="utf-8-sig", newline="") as out:
        writer = csv.writer(out)
        writer.writerow(report_header())
        for e in errors:
            writer.writerow((e.row, e.column, e.problem, e.value))


def error_line(e: RowError) -> str:
    """One row error as a sentence for the terminal."""
    if e.value:
        return tr(f"第 {e.row} 行，{e.column}：{e.problem}（{e.value}）", f"row {e.row}, {e.column}: {e.problem} ({e.value})")
    return tr(f"第 {e.row} 行，{e.column}：{e.problem}", f"row {e.row}, {e.column}: {e.problem}")
