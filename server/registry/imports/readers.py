"""Rows out of CSV and Excel (.xlsx) files, each with the row number a person
sees in the spreadsheet (the header is row 1), cells as the file holds them:
text from CSV, and text, numbers or dates from Excel."""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path

from rentgate.lang import tr
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
            raise UnusableInput(tr("--sheet 只用于 .xlsx 文件，CSV 文件只有一张表，请去掉 --sheet",
                                  "--sheet only applies to .xlsx files; a CSV file has one sheet, leave --sheet out"))
        return _read_csv(path)
    if suffix in (".xlsx", ".xlsm"):
        return _read_xlsx(path, sheet)
    if suffix == ".xls":
        raise UnusableInput(tr(f"{path.name}：不能读取旧的 .xls 格式，请在 Excel 里“另存为” .xlsx 或 .csv",
                                 f"{path.name}: the old .xls format is not read; in Excel use Save As .xlsx or .csv"))
    raise UnusableInput(tr(f"{path.name}：不认识的文件格式 {suffix or '（没有扩展名）'}，请用 .csv 或 .xlsx",
                             f"{path.name}: unknown file format {suffix or '(no extension)'}; use .csv or .xlsx"))


def _blank(cell: Cell) -> bool:
    return cell is None or (isinstance(cell, str) and not cell.strip())


def _read_csv(path: Path) -> Sheet:
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise UnusableInput(tr(f"{path}：读不了这个文件（{exc.strerror or exc}）",
                                 f"{path}: cannot read the file ({exc.strerror or exc})")) from exc
    text = _decode(raw, path.name)
    try:
        dialect: type[csv.Dialect] | csv.Dialect = csv.Sniffer().sniff(text[:4096], delimiters=",;\t")
    except csv.Error:
        dialect = csv.excel
    reader = csv.reader(io.StringIO(text, newline=""), dialect)
    try:
        headers = next(reader)
    except StopIteration:
        raise UnusableInput(tr(f"{path.name}：文件是空的，第 1 行应是列名", f"{path.name}: the file is empty; row 1 should hold "
                                 "the column names")) from None
    except csv.Error as exc:
        raise UnusableInput(tr(f"{path.name}：不是能读取的 CSV 文件（{exc}），请从 Excel 重新导出",
                                 f"{path.name}: not a readable CSV file ({exc}); export it from Excel again")) from exc
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
        raise UnusableInput(tr(f"{path.name} 第 {reader.line_num} 行：{exc}，请从 Excel 重新导出",
                                 f"{path.name} line {reader.line_num}: {exc}; export it from Excel again")) from exc
    return Sheet([h.strip() for h in headers], rows)


def _decode(raw: bytes, name: str) -> str:
    for encoding in _ENCODINGS:
        try:
            return raw.decode(encoding)
        except UnicodeDecodeError:
            continue
    raise UnusableInput(tr(f"{name}：文字编码既不是 UTF-8 也不是 GB18030，请在 Excel 里另存为“CSV UTF-8”",
                          f"{name}: the text is neither UTF-8 nor GB18030; in Excel save it as \"CSV UTF-8\""))


def _read_xlsx(path: Path, sheet: str | None) -> Sheet:
    import openpyxl  # only the import command needs it
    from openpyxl.utils.exceptions import InvalidFileException

    try:
        book = openpyxl.load_workbook(path, read_only=True, data_only=True)
    except (OSError, InvalidFileException, KeyError, ValueError) as exc:
        raise UnusableInput(tr(f"{path.name}：不是能读取的 .xlsx 文件（{exc}），请用 Excel 打开后重新保存",
                                 f"{path.name}: not a readable .xlsx file ({exc}); open it in Excel and save it again"))\
            from exc
    try:
        if sheet is not None and sheet not in book.sheetnames:
            raise UnusableInput(tr(f"{path.name}：没有名为“{sheet}”的工作表，文件里有：{'、'.join(book.sheetnames)}",
                                     f"{path.name}: no sheet \"{sheet}\"; it has {', '.join(book.sheetnames)}"))
        ws = book[sheet] if sheet is not None else book.worksheets[0]
        values = ws.iter_rows(values_only=True)
        headers = next(values, None)
        if headers is None:
            raise UnusableInput(tr(f"{path.name}：工作表“{ws.title}”是空的，第 1 行应是列名",
                                     f"{path.name}: sheet \"{ws.title}\" is empty; row 1 should hold the column names"))
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
