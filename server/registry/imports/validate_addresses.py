"""Every check on an addresses file (areas, buildings, units) before anything
is written. Codes already in the database, or earlier in the file, are
reused; a row that says something else about them is an error."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

import sqlalchemy as sa

from rentgate.lang import tr
from server.registry.imports import cells, checks, lookup
from server.registry.imports.cells import CellProblem
from server.registry.imports.columns import ADDRESS_FIELDS, Columns, column_name
from server.registry.imports.readers import Cell
from server.registry.imports.report import Problems
from server.rules import CityRules

Tick = Callable[[int], None]
# (level, code field, name field), parents first.
LEVELS = (("district", "district_code", "district"), ("street", "street_code", "street"),
          ("community", "community_code", "community"), ("grid", "grid_code", "grid"))
LEVEL_NAMES = {"district": ("区", "district"), "street": ("街道", "street"), "community": ("社区", "community"),
               "grid": ("网格", "grid")}
# Fields that say which building it is: a different value is another building.
IDENTITY_FIELDS = ("address", "grid_code")
BUILDING_FIELDS = ("address", "grid_code", "landlord_name", "landlord_phone", "is_rental", "pledge_signed_at")
# Which column a building field comes from, for the report.
SOURCE_COLUMN = {"pledge_signed_at": "pledge_signed_on"}


@dataclass(frozen=True)
class AreaPlan:
    row: int
    level: str
    code: str
    name: str
    parent_code: str | None


@dataclass
class BuildingPlan:
    row: int
    code: str
    existing_id: int | None
    # New building: every field given; existing one: only what changes.
    fields: dict[str, Any] = field(default_factory=dict)
    # The row that first gave each field, for errors on later rows.
    given_in: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class UnitPlan:
    row: int
    building_code: str
    number: str
    area_m2: float
    rooms: int
    floor: int | None


@dataclass
class AddressPlan:
    areas: list[AreaPlan] = field(default_factory=list)
    buildings: dict[str, BuildingPlan] = field(default_factory=dict)
    units: list[UnitPlan] = field(default_factory=list)
    units_existing: int = 0


class _Check:
    def __init__(self, conn: sa.Connection, rules: CityRules, columns: Columns, problems: Problems) -> None:
        self.columns = columns
        self.problems = problems
        self.rules = rules
        self.today = datetime.now(rules.zone).date()
        self.db_areas = lookup.all_areas(conn)
        self.db_buildings = lookup.all_buildings(conn)
        self.db_units = lookup.all_units(conn)
        self.plan = AddressPlan()
        self.file_areas: dict[str, AreaPlan] = {}
        self.file_units: dict[tuple[str, str], int] = {}

    def fail(self, row: int, field_name: str, problem: str, value: Any = None) -> None:
        shown = None if value is None else (value if isinstance(value, str) else cells.text(value))
        self.problems.add(row, column_name(self.columns, ADDRESS_FIELDS, field_name), problem, shown)

    def text(self, row: int, values: list[Cell], field_name: str, max_len: int) -> str | None:
        value = cells.text(self.columns.cell(values, field_name))
        try:
            return checks.length(value, max_len)
        except CellProblem as exc:
            self.fail(row, field_name, exc.problem, value)
            return None

    def parse(self, row: int, values: list[Cell], field_name: str, parser: Callable[[Cell], Any]) -> Any:
        cell = self.columns.cell(values, field_name)
        try:
            return parser(cell)
        except CellProblem as exc:
            self.fail(row, field_name, exc.problem, cell)
            return None

    # ------------------------------------------------------------------ one row

    def row(self, row: int, values: list[Cell]) -> None:
        self.areas(row, values)
        if self.problems.failed(row):
            return
        code = self.text(row, values, "building_code", 32)
        if code is None:
            if not self.problems.failed(row):
                self.fail(row, "building_code", cells.missing())
            return
        try:
            checks.code(code)
        except CellProblem as exc:
            self.fail(row, "building_code", exc.problem, code)
            return
        given = self.building_fields(row, values)
        if self.problems.failed(row):
            return
        self.building(row, code, given)
        if not self.problems.failed(row):
            self.unit(row, values, code)

    def areas(self, row: int, values: list[Cell]) -> None:
        parent: tuple[str, str] | None = None  # (level, code) of the level above in this row
        for level, code_field, name_field in LEVELS:
            code = self.text(row, values, code_field, 32)
            name = self.text(row, values, name_field, 100)
            if code is None:
                if name is not None:
                    named = column_name(self.columns, ADDRESS_FIELDS, name_field)
                    self.fail(row, code_field, tr(f"填了“{named}”就必须填这一列的编码", f"is required when \"{named}\" "
                                                  "is given; fill in the code"))
                parent = None
                continue
            try:
                checks.code(code)
            except CellProblem as exc:
                self.fail(row, code_field, exc.problem, code)
                return
            parent_code = parent[1] if parent is not None else None
            self.area(row, level, code_field, name_field, code, name, parent_code)
            if self.problems.failed(row):
                return
            parent = (level, code)

    def area(self, row: int, level: str, code_field: str, name_field: str, code: str, name: str | None,
             parent_code: str | None) -> None:
        known = self.db_areas.get(code)
        where = tr("数据库里", "the database")
        earlier = self.file_areas.get(code)
        if known is None and earlier is not None:
            where = tr(f"第 {earlier.row} 行", f"row {earlier.row}")
        have = ((known.level, known.name, known.parent_code) if known is not None
                else (earlier.level, earlier.name, earlier.parent_code) if earlier is not None else None)
        if have is not None:
            have_level, have_name, have_parent = have
            if have_level != level:
                self.fail(row, code_field, tr(f"{where}的 {code} 是{_level(have_level)}，不是{_level(level)}：请核对编码",
                                              f"{where} has {code} as a {_level(have_level)}, not a "
                                              f"{_level(level)}: check the code"), code)
            elif name is not None and name != have_name:
                self.fail(row, name_field, tr(f"{where}的 {code} 名为“{have_name}”：请核对名称或编码",
                                              f"{where} names {code} \"{have_name}\": check the name or the code"),
                          name)
            elif parent_code is not None and parent_code != have_parent:
                self.fail(row, code_field, tr(
                    f"{where}的 {code} 属于 {have_parent or '（无上级）'}，不是 {parent_code}：请核对上级编码",
                    f"{where} has {code} under {have_parent or 'no parent'}, not {parent_code}: check the codes"),
                    code)
            return
        if name is None:
            self.fail(row, name_field, tr(f"新的{_level(level)} {code} 必须填名称",
                                          f"is required for the new {_level(level)} {code}; fill in its name"))
            return
        index = [lv for lv, _, _ in LEVELS].index(level)
        if index > 0 and parent_code is None:
            above = LEVELS[index - 1]
            self.fail(row, above[1], tr(f"新的{_level(level)} {code} 需要在同一行填上级{_level(above[0])}的编码",
                                        f"the new {_level(level)} {code} needs its {_level(above[0])} code in the "
                                        "same row"))
            return
        plan = AreaPlan(row, level, code, name, parent_code)
        self.file_areas[code] = plan
        self.plan.areas.append(plan)

    def building_fields(self, row: int, values: list[Cell]) -> dict[str, Any]:
        given: dict[str, Any] = {}
        grid_code = cells.text(self.columns.cell(values, "grid_code"))
        if grid_code is not None:
            given["grid_code"] = grid_code
        for name, max_len in (("address", 300), ("landlord_name", 100)):
            value = self.text(row, values, name, max_len)
            if value is not None:
                given[name] = value
        phone = self.parse(row, values, "landlord_phone", lambda c: checks.phone(cells.text(c)))
        if phone is not None:
            given["landlord_phone"] = phone
        rental = self.parse(row, values, "is_rental", cells.flag)
        if rental is not None:
            given["is_rental"] = rental
        signed: date | None = self.parse(row, values, "pledge_signed_on", cells.day)
        if signed is not None:
            if signed > self.today:
                self.fail(row, "pledge_signed_on", cells.future(), signed.isoformat())
            else:
                given["pledge_signed_at"] = datetime(signed.year, signed.month, signed.day, tzinfo=self.rules.zone)
        return given

    def building(self, row: int, code: str, given: dict[str, Any]) -> None:
        plan = self.plan.buildings.get(code)
        if plan is not None:
            # Another row of the same building: it must agree with the rows before.
            merged = {**self._recorded(plan), **plan.fields}
            for name, value in given.items():
                if name in plan.given_in and merged.get(name) != value:
                    self.fail(row, SOURCE_COLUMN.get(name, name), tr(
                        f"第 {plan.given_in[name]} 行给楼栋 {code} 填的是 {_shown(merged.get(name))}：同一栋楼的各行要一致",
                        f"row {plan.given_in[name]} gives {_shown(merged.get(name))} for building {code}: rows of "
                        "one building must agree"), _shown(value))
                    return
            self._merge(row, plan, given)
            return
        existing = self.db_buildings.get(code)
        plan = BuildingPlan(row, code, None if existing is None else int(existing["id"]))
        self._merge(row, plan, given)
        if not self.problems.failed(row):
            self.plan.buildings[code] = plan

    def _recorded(self, plan: BuildingPlan) -> dict[str, Any]:
        if plan.existing_id is None:
            return {}
        existing = self.db_buildings[plan.code]
        return {name: existing[name] for name in BUILDING_FIELDS}

    def _merge(self, row: int, plan: BuildingPlan, given: dict[str, Any]) -> None:
        recorded = self._recorded(plan)
        for name, value in given.items():
            plan.given_in.setdefault(name, row)
            before = recorded.get(name)
            if plan.existing_id is not None and name in IDENTITY_FIELDS and before is not None and before != value:
                self.fail(row, SOURCE_COLUMN.get(name, name), tr(
                    f"数据库里楼栋 {plan.code} 是 {_shown(before)}：请核对楼栋编码，或改成一致",
                    f"the database has {_shown(before)} for building {plan.code}: check the building code, or "
                    "make them agree"), _shown(value))
                return
            if plan.existing_id is None or before != value:
                plan.fields[name] = value

    def unit(self, row: int, values: list[Cell], code: str) -> None:
        number = self.text(row, values, "unit", 32)
        area = self.parse(row, values, "area_m2", cells.positive)
        rooms = self.parse(row, values, "rooms", lambda c: cells.whole(c, minimum=1))
        floor = self.parse(row, values, "floor", lambda c: cells.whole(c, minimum=-10))
        if self.problems.failed(row):
            return
        if area is not None and area > 100_000:
            self.fail(row, "area_m2", tr("不能超过 100000", "must be at most 100000"), area)
        if rooms is not None and rooms > 1000:
            self.fail(row, "rooms", tr("不能超过 1000", "must be at most 1000"), rooms)
        if floor is not None and floor > 200:
            self.fail(row, "floor", tr("不能超过 200", "must be at most 200"), floor)
        if number is None:
            if area is not None or rooms is not None or floor is not None:
                self.fail(row, "unit", tr("填了面积、房间数或楼层，就必须填房号",
                                          "is required when the unit's area, rooms or floor are given"))
            return
        for name, value in (("area_m2", area), ("rooms", rooms)):
            if value is None:
                self.fail(row, name, tr(f"房号 {number} 必须填这一项", f"is required for unit {number}; fill it in"))
        if self.problems.failed(row) or area is None or rooms is None:
            return
        key = (code, number)
        if key in self.file_units:
            self.fail(row, "unit", tr(f"楼栋 {code} 的房号 {number} 在第 {self.file_units[key]} 行已经有了：请删掉重复的一行",
                                      f"unit {number} of building {code} is already in row {self.file_units[key]}: "
                                      "delete the repeated row"), number)
            return
        self.file_units[key] = row
        building_id = self.plan.buildings[code].existing_id
        existing = self.db_units.get((building_id, number)) if building_id is not None else None
        if existing is None:
            self.plan.units.append(UnitPlan(row, code, number, area, rooms, floor))
            return
        for name, have, want in (("area_m2", existing.area_m2, area), ("rooms", existing.rooms, rooms),
                                 ("floor", existing.floor, floor)):
            if want is not None and have != want:
                self.fail(row, name, tr(f"数据库里楼栋 {code} 房号 {number} 是 {_shown(have)}：请改成一致",
                                        f"the database has {_shown(have)} for unit {number} of building {code}: "
                                        "make them agree"), _shown(want))
                return
        self.plan.units_existing += 1


def _shown(value: Any) -> str:
    if isinstance(value, datetime):
        return value.date().isoformat()
    if isinstance(value, bool):
        return tr("是" if value else "否", "yes" if value else "no")
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return tr("（空）", "(empty)") if value is None else str(value)


def _level(level: str) -> str:
    zh, en = LEVEL_NAMES.get(level, (level, level))
    return tr(zh, en)


def validate_addresses(conn: sa.Connection, rules: CityRules, columns: Columns, rows: list[tuple[int, list[Cell]]],
                       *, tick: Tick | None = None) -> tuple[AddressPlan, Problems]:
    problems = Problems()
    check = _Check(conn, rules, columns, problems)
    for done, (row, values) in enumerate(rows, start=1):
        check.row(row, values)
        if tick is not None and done % 500 == 0:
            tick(500)
    if tick is not None:
        tick(len(rows) % 500)
    return check.plan, problems
