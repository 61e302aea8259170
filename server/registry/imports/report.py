"""The per-row error report: row number as the spreadsheet shows it, the
column as the file names it, the problem, and the value (identity numbers
masked, always)."""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path

REPORT_HEADER = ("row", "column", "problem", "value")


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
        writer.writerow(REPORT_HEADER)
        for e in errors:
            writer.writerow((e.row, e.column, e.problem, e.value))
