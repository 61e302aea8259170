"""Rows out of CSV and Excel (.xlsx) files, each with the row number a person
sees in the spreadsheet (the header is row 1), cells as the file holds them:
text from CSV, and text, numbers or dates from Excel."""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path

from server.registry.imports.errors import UnusableInput

Cell = str | int | float | date | datetime | None
# Chinese offices export CSV from Excel as GB18030 (GBK) as often as UTF-8.
_ENCODINGS = ("utf-8-sig", "gb18030")


@dataclass(frozen=True)
class Sheet:
    headers: list[str]
    # (row number in the file, cells); rows with no value at all are left out.
    rows: list[tuple[int, list[Cell]]]


def read_sheet(path: Path, *, sheet: str | None = None) -> Sheet:
    suffix = path.suffix.lower()
    if suffix in (".csv", ".txt"):
        if sheet is not None:
            raise UnusableInput("--sheet only applies to .xlsx files")
        return _read_csv(path)
    if suffix in (".xlsx", ".xlsm"):
        return _read_xlsx(path, sheet)
    if suffix == ".xls":
        raise UnusableInput(f"{path.name}: the old .xls format is not read; save it as .xlsx or .csv")
    raise UnusableInput(f"{path.name}: unknown file format {suffix or '(no extension)'}; use .csv or .xlsx")


def _blank(cell: Cell) -> bool:
    return cell is None or (isinstance(cell, str) and not cell.strip())


def _read_csv(path: Path) -> Sheet:
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise UnusableInput(f"{path}: {exc.strerror or exc}") from exc
    text = _decode(raw, path.name)
    try:
        dialect: type[csv.Dialect] | csv.Dialect = csv.Sniffer().sniff(text[:4096], delimiters=",;\t")
    except csv.Error:
        dialect = csv.excel
    reader = csv.reader(io.StringIO(text, newline=""), dialect)
    try:
        headers = next(reader)
    except StopIteration:
        raise UnusableInput(f"{path.name}: the file is empty") from None
    except csv.Error as exc:
        raise UnusableInput(f"{path.name}: not a readable CSV file: {exc}") from exc
    rows: list[tuple[int, list[Cell]]] = []
    try:
        for record in reader:
            # line_num counts physical lines, so a quoted field over two
            # lines still gives the row number Excel shows for the record.
            number = reader.line_num
            cells: list[Cell] = list(record)
            if not all(_blank(c) for c in cells):
                rows.append((number, cells))
    except csv.Error as exc:
        raise UnusableInput(f"{path.name} line {reader.line_num}: {exc}") from exc
    return Sheet([h.strip() for h in headers], rows)


def _decode(raw: bytes, name: str) -> str:
    for encoding in _ENCODINGS:
        try:
            return raw.decode(encoding)
        except UnicodeDecodeError:
            continue
    raise UnusableInput(f"{name}: text is neither UTF-8 nor GB18030")


def _read_xlsx(path: Path, sheet: str | None) -> Sheet:
    import openpyxl  # only the import command needs it
    from openpyxl.utils.exceptions import InvalidFileException

    try:
        book = openpyxl.load_workbook(path, read_only=True, data_only=True)
    except (OSError, InvalidFileException, KeyError, ValueError) as exc:
        raise UnusableInput(f"{path.name}: not a readable .xlsx file: {exc}") from exc
    try:
        if sheet is not None and sheet not in book.sheetnames:
            raise UnusableInput(f"{path.name}: no sheet {sheet!r}; it has {', '.join(book.sheetnames)}")
        ws = book[sheet] if sheet is not None else book.worksheets[0]
        values = ws.iter_rows(values_only=True)
        headers = next(values, None)
        if headers is None:
            raise UnusableInput(f"{path.name}: sheet {ws.title!r} is empty")
        rows: list[tuple[int, list[Cell]]] = []
        for number, record in enumerate(values, start=2):
            cells = [_cell(v) for v in record]
            if not all(_blank(c) for c in cells):
                rows.append((number, cells))
        return Sheet(["" if h is None else str(h).strip() for h in headers], rows)
    finally:
        book.close()


def _cell(value: object) -> Cell:
    if value is None or isinstance(value, str | int | float | date | datetime):
        return value
    return str(value)
