"""Header mapping: each field has its Chinese and English names; headers
match whatever their case, spaces, underscores or full-width brackets."""

from __future__ import annotations

import re
from dataclasses import dataclass

from rentgate.lang import tr
from server.registry.imports.errors import UnusableInput
from server.registry.imports.readers import Cell


@dataclass(frozen=True)
class Field:
    name: str
    chinese: str
    required: bool = False


ADDRESS_FIELDS = (
    Field("district", "区"), Field("district_code", "区编码"),
    Field("street", "街道"), Field("street_code", "街道编码"),
    Field("community", "社区"), Field("community_code", "社区编码"),
    Field("grid", "网格"), Field("grid_code", "网格编码"),
    Field("building_code", "楼栋编码", required=True), Field("address", "地址"),
    Field("landlord_name", "房东"), Field("landlord_phone", "房东电话"),
    Field("is_rental", "出租登记"), Field("pledge_signed_on", "责任书签订日期"),
    Field("unit", "房号"), Field("floor", "楼层"), Field("area_m2", "面积"), Field("rooms", "房间数"),
)

REGISTRATION_FIELDS = (
    Field("id_number", "身份证号", required=True), Field("name", "姓名", required=True),
    Field("phone", "电话"), Field("origin", "户籍地"),
    Field("building_code", "楼栋编码", required=True), Field("unit", "房号", required=True),
    Field("arrived_on", "入住日期", required=True), Field("departed_on", "离开日期"),
    Field("card", "卡号"), Field("source", "来源"),
)

# Spreadsheet headers often carry a unit in brackets: 面积(m²), 面积（平方米）.
_BRACKETED = re.compile(r"[（(\[【].*?[）)\]】]")


def _key(header: str) -> str:
    text = _BRACKETED.sub("", header).strip().lower()
    return re.sub(r"[\s_\-\u3000]+", "", text)


@dataclass(frozen=True)
class Columns:
    """Where each known field is in a row, and the header the file gave it
    (the error report names columns as the file does)."""

    index: dict[str, int]
    header: dict[str, str]
    ignored: list[str]

    def has(self, name: str) -> bool:
        return name in self.index

    def cell(self, cells: list[Cell], name: str) -> Cell:
        position = self.index.get(name)
        if position is None or position >= len(cells):
            return None
        return cells[position]


def map_headers(headers: list[str], fields: tuple[Field, ...]) -> Columns:
    lookup: dict[str, Field] = {}
    for f in fields:
        lookup[_key(f.name)] = f
        lookup[_key(f.chinese)] = f
    index: dict[str, int] = {}
    header: dict[str, str] = {}
    ignored: list[str] = []
    for position, text in enumerate(headers):
        field = lookup.get(_key(text)) if text else None
        if field is None:
            if text:
                ignored.append(text)
            continue
        if field.name in index:
            raise UnusableInput(tr(f"“{header[field.name]}”和“{text}”两列是同一个意思，请删掉其中一列",
                                   f"the columns \"{header[field.name]}\" and \"{text}\" mean the same; delete one"))
        index[field.name] = position
        header[field.name] = text
    missing = [f"{f.chinese}/{f.name}" for f in fields if f.required and f.name not in index]
    if missing:
        raise UnusableInput(tr(f"缺少必填的列：{'、'.join(missing)}。请在第 1 行加上这些列名（中文或英文都可以）",
                               f"missing required column{'s' if len(missing) > 1 else ''}: {', '.join(missing)}. "
                               "Add them to row 1 (Chinese or English names)"))
    return Columns(index, header, ignored)


def column_name(columns: Columns, fields: tuple[Field, ...], name: str) -> str:
    """The file's header for a field, or its Chinese/English name when the
    file lacks that column."""
    if name in columns.header:
        return columns.header[name]
    for f in fields:
        if f.name == name:
            return f"{f.chinese}/{f.name}"
    return name
