"""A small street for the plate tests, made through the registry functions:
district D1 > street S1 > community C1 > grids G1, G2, and a second street
S2. Building B2 (grid G1) has units on floors 1 and 2 (numbers chosen so that
text order and print order differ), B1 (grid G1) one unit, B3 (grid G2) two,
B9 in street S2 one. Grades cover all four and none."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime

import sqlalchemy as sa

from server.db.models import units
from server.registry import service
from server.rules import CityRules
from server.web.transactions import write_transaction

ACTOR = "test:plates"
NOW = datetime(2025, 3, 1, 9, 0, tzinfo=UTC)


@dataclass
class World:
    # (building code, unit number) -> unit id
    units: dict[tuple[str, str], int] = field(default_factory=dict)

    def unit(self, building: str, number: str) -> int:
        return self.units[(building, number)]


# building code, grid, address, [(number, floor, grade)]
LAYOUT = (
    ("B2", "G1", "越秀区北京街道盐运西路12号", [("10", 1, "trusted"), ("2", 1, "normal"), ("201", 2, "watch"),
                                                ("102", 1, None)]),
    ("B1", "G1", "越秀区北京街道盐运西路8号", [("301", 3, "strict")]),
    ("B3", "G2", None, [("A-1203", 12, None), ("101室", 1, "trusted")]),
    ("B9", "G9", "越秀区东山街道署前路1号", [("1", 1, None)]),
)


def build(engine: sa.Engine) -> World:
    rules = CityRules()
    world = World()
    with write_transaction(engine) as conn:
        for level, code, name, parent in (("district", "D1", "越秀区", None), ("street", "S1", "北京街", "D1"),
                                          ("community", "C1", "盐运西社区", "S1"), ("grid", "G1", "一网格", "C1"),
                                          ("grid", "G2", "二网格", "C1"), ("street", "S2", "东山街", "D1"),
                                          ("community", "C9", "署前社区", "S2"), ("grid", "G9", "九网格", "C9")):
            service.create_area(conn, NOW, ACTOR, level=level, code=code, name=name, parent_code=parent)
        for code, grid, address, unit_list in LAYOUT:
            building = service.create_building(conn, NOW, ACTOR, name=f"{code}楼", code=code, address=address,
                                               grid_code=grid)
            for number, floor, grade in unit_list:
                unit = service.create_unit(conn, NOW, ACTOR, rules, building_id=building["id"], number=number,
                                           area_m2=30.0, rooms=2, floor=floor)
                if grade:
                    conn.execute(sa.update(units).where(units.c.id == unit["id"]).values(grade=grade))
                world.units[(code, number)] = unit["id"]
    return world
