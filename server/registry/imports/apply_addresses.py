"""Writes a validated addresses plan through the registry's own functions
(server.registry.service): address files are thousands of rows, not
hundreds of thousands, and going through create_area / create_building /
update_building / create_unit keeps every rule and history row in one place.
A refusal there still becomes a row error, and the caller rolls back."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa

from rentgate.lang import tr
from server.registry import service
from server.registry.imports.columns import ADDRESS_FIELDS, Columns, column_name
from server.registry.imports.report import Problems
from server.registry.imports.validate_addresses import SOURCE_COLUMN, AddressPlan
from server.rules import CityRules
from server.web.errors import InvalidInput, RequestError

Tick = Callable[[int], None]
# service.py's field names for the file's columns.
_FIELD_COLUMN = {"number": "unit", "code": "building_code", "parent_code": "building_code", "name": "building_code",
                 **SOURCE_COLUMN}


@dataclass(frozen=True)
class AddressCounts:
    areas_created: int
    buildings_created: int
    buildings_updated: int
    units_created: int
    units_existing: int


def apply_addresses(conn: sa.Connection, now: datetime, actor: str, rules: CityRules, plan: AddressPlan,
                    columns: Columns, problems: Problems, *, tick: Tick | None = None) -> AddressCounts:
    """Everything in the plan, or row errors in ``problems`` (the caller then
    rolls back)."""

    def refused(row: int, exc: RequestError, default_field: str) -> None:
        name = exc.field if isinstance(exc, InvalidInput) else default_field
        column = column_name(columns, ADDRESS_FIELDS, _FIELD_COLUMN.get(name, name))
        # The registry's reasons are in English (they also answer the API);
        # validation catches what a person can fix, so this is rare.
        reason = exc.problem if isinstance(exc, InvalidInput) else str(exc)
        problems.add(row, column, tr(f"登记簿拒绝了这一行：{reason}", f"the registry refused this row: {reason}"))

    for area in plan.areas:
        try:
            service.create_area(conn, now, actor, level=area.level, code=area.code, name=area.name,
                                parent_code=area.parent_code)
        except RequestError as exc:
            refused(area.row, exc, f"{area.level}_code")
    created = updated = 0
    ids: dict[str, int] = {}
    for code, b in plan.buildings.items():
        try:
            if b.existing_id is None:
                body = service.create_building(conn, now, actor, name=b.fields.get("address") or code, code=code,
                                               **b.fields)
                ids[code] = int(body["id"])
                created += 1
            else:
                ids[code] = b.existing_id
                if b.fields:
                    service.update_building(conn, now, actor, b.existing_id, **b.fields)
                    updated += 1
        except RequestError as exc:
            refused(b.row, exc, "building_code")
    if tick is not None:
        tick(len(plan.areas) + len(plan.buildings))
    units_created = 0
    for unit in plan.units:
        if unit.building_code not in ids:
            continue
        try:
            service.create_unit(conn, now, actor, rules, building_id=ids[unit.building_code], number=unit.number,
                                area_m2=unit.area_m2, rooms=unit.rooms, floor=unit.floor)
            units_created += 1
        except RequestError as exc:
            refused(unit.row, exc, "unit")
        if tick is not None:
            tick(1)
    return AddressCounts(len(plan.areas), created, updated, units_created, plan.units_existing)
