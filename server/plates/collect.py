"""Which plates to print: the units of some buildings, a street, a grid or
a list of units, in print order (building code, floor, unit number), each
with its address in Chinese, its grade and its signed URL.

Two steps in the caller's transaction: ``select_units`` reads (one query,
whatever the selection's size), the caller checks the texts against the
font, then ``issue_plates`` gives every unit its plate token (reprinting
returns the same token; ``reissue`` withdraws the old plates first)."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from rentgate.lang import tr
from server.cli_support import level_name
from server.db.models import areas, buildings, plates, units
from server.plates import service
from server.plates.errors import PlateError
from server.plates.keys import Keyring
from server.plates.layout import PlateData

# A unit number already ending in one of these is not given another "房".
_UNIT_SUFFIXES = tuple("房室号間间户")
_CHUNK = 500


class UnknownSelection(PlateError):
    """A building, area or unit that does not exist, or an area of the
    wrong level, or a selection with no units."""


@dataclass(frozen=True)
class Selection:
    buildings: tuple[str, ...] = ()
    street: str | None = None
    grid: str | None = None
    units: tuple[int, ...] = ()

    def describe(self) -> str:
        if self.buildings:
            return tr("楼栋 ", "building ") + ", ".join(self.buildings)
        if self.street:
            return tr(f"街道 {self.street}", f"street {self.street}")
        if self.grid:
            return tr(f"网格 {self.grid}", f"grid {self.grid}")
        return tr("单元 ", "unit ") + ", ".join(str(u) for u in self.units)


@dataclass(frozen=True)
class UnitRow:
    unit_id: int
    building_code: str | None
    floor: int | None
    number: str
    address: str
    grade: str | None


def unit_address(building_address: str | None, building_name: str, number: str) -> str:
    """"越秀区某某街道某某路12号 301房": the building's standard address (its
    name when it has none) and the unit number."""
    place = " ".join((building_address or building_name).split())
    label = " ".join(number.split())
    return f"{place} {label if label.endswith(_UNIT_SUFFIXES) else label + '房'}"


def _natural(text: str) -> tuple[Any, ...]:
    """"2" before "10", "A-9" before "A-10"."""
    return tuple((0, int(part), "") if part.isdigit() else (1, 0, part) for part in re.split(r"(\d+)", text) if part)


def _area(conn: sa.Connection, code: str, level: str) -> int:
    row = conn.execute(sa.select(areas.c.id, areas.c.level).where(areas.c.code == code)).first()
    if row is None:
        raise UnknownSelection(tr(f"没有编码为 {code} 的{level_name(level)}：`rentgate grid list` 列出网格的编码",
                                  f"no area with code {code!r}: `rentgate grid list` shows the grids' codes"))
    if row.level != level:
        raise UnknownSelection(tr(f"{code} 是{level_name(row.level)}，不是{level_name(level)}：请填{level_name(level)}的编码",
                                  f"{code} is {level_name(row.level)}, not {level_name(level)}: give the code of "
                                  f"{level_name(level)}"))
    return int(row.id)


def _where(conn: sa.Connection, selection: Selection) -> sa.ColumnElement[bool]:
    b = buildings.c
    if selection.buildings:
        codes = sorted(set(selection.buildings))
        found = set(conn.execute(sa.select(b.code).where(b.code.in_(codes))).scalars())
        if missing := [c for c in codes if c not in found]:
            raise UnknownSelection(tr(f"没有编码为 {', '.join(missing)} 的楼栋：请检查楼栋编码",
                                      f"no building with code {', '.join(missing)}: check the building codes"))
        return b.code.in_(codes)
    if selection.grid:
        return b.grid_id == _area(conn, selection.grid, "grid")
    if selection.street:
        street_id = _area(conn, selection.street, "street")
        community = areas.alias("community")
        grids = (sa.select(areas.c.id).join(community, community.c.id == areas.c.parent_id)
                 .where(community.c.parent_id == street_id, areas.c.level == "grid"))
        return b.grid_id.in_(grids.scalar_subquery())
    if selection.units:
        return units.c.id.in_(sorted(set(selection.units)))
    raise UnknownSelection(tr("请用 --building、--street、--grid 或 --unit 选择要打印的单元",
                              "choose --building, --street, --grid or --unit"))


def select_units(conn: sa.Connection, selection: Selection) -> list[UnitRow]:
    """The selection's units in print order; UnknownSelection for a code or
    unit that does not exist, or when the selection holds no unit."""
    u, b = units.c, buildings.c
    rows = conn.execute(
        sa.select(u.id, b.code, u.floor, u.number, b.address, b.name, u.grade)
        .select_from(units.join(buildings, buildings.c.id == u.building_id))
        .where(_where(conn, selection))).all()
    if selection.units:
        found = {r.id for r in rows}
        if missing := sorted(set(selection.units) - found):
            raise UnknownSelection(tr(f"没有编号为 {', '.join(str(m) for m in missing)} 的单元：--unit 填单元的编号（id）",
                                      f"no unit {', '.join(str(m) for m in missing)}: --unit takes unit ids"))
    if not rows:
        raise UnknownSelection(tr(f"{selection.describe()} 没有单元，没有门牌可印：先导入地址和单元",
                                  f"{selection.describe()} has no units to print plates for: import its addresses "
                                  "and units first"))
    out = [UnitRow(unit_id=r.id, building_code=r.code, floor=r.floor, number=r.number,
                   address=unit_address(r.address, r.name, r.number), grade=r.grade) for r in rows]
    out.sort(key=lambda r: (r.building_code is None, r.building_code or "", r.floor is None, r.floor or 0,
                            _natural(r.number), r.unit_id))
    return out


def active_plate_count(conn: sa.Connection, unit_ids: Sequence[int]) -> int:
    total = 0
    for start in range(0, len(unit_ids), _CHUNK):
        chunk = list(unit_ids[start:start + _CHUNK])
        total += conn.execute(sa.select(sa.func.count()).select_from(plates)
                              .where(plates.c.unit_id.in_(chunk), plates.c.revoked_at.is_(None))).scalar_one()
    return total


def issue_plates(conn: sa.Connection, now: datetime, keyring: Keyring, rows: Sequence[UnitRow], *, public_url: str,
                 valid_days: int, actor: str, reissue: bool = False) -> list[PlateData]:
    """Each row's plate (issued if need be), in the rows' order."""
    unit_ids = [r.unit_id for r in rows]
    if reissue:
        service.revoke_units(conn, now, unit_ids, actor=actor, reason="reissued")
    tokens = service.ensure_plates(conn, now, keyring, unit_ids, valid_days=valid_days, actor=actor)
    return [PlateData(unit_id=r.unit_id, address=r.address, unit_label=" ".join(r.number.split()), grade=r.grade,
                      url=service.plate_url(public_url, tokens[r.unit_id])) for r in rows]
