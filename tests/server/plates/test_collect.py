"""Choosing what to print, on SQLite and PostgreSQL: buildings, a street,
a grid or units, in print order, with the Chinese address, the grade and a
URL whose token is the unit's plate."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from server.db.models import plates
from server.plates import collect, service
from server.plates.collect import Selection, UnknownSelection, unit_address
from server.plates.keys import Keyring
from tests.server.plates.conftest import english
from tests.server.plates.world import NOW, build


@pytest.fixture(autouse=True)
def in_english(monkeypatch: pytest.MonkeyPatch) -> None:
    """These tests match the English wording; test_cli.py checks the
    Chinese default."""
    english(monkeypatch)


KEYRING = Keyring(keys={"k1": bytes(32)}, current_id="k1")


def numbers(rows: list[collect.UnitRow]) -> list[tuple[str | None, str]]:
    return [(r.building_code, r.number) for r in rows]


def test_selections_in_print_order_with_addresses_and_plates(engine: sa.Engine) -> None:
    world = build(engine)
    with engine.begin() as conn:
        street = collect.select_units(conn, Selection(street="S1"))
        # Building code, then floor, then the number as a person counts it.
        assert numbers(street) == [("B1", "301"), ("B2", "2"), ("B2", "10"), ("B2", "102"), ("B2", "201"),
                                   ("B3", "101室"), ("B3", "A-1203")]
        assert numbers(collect.select_units(conn, Selection(grid="G2"))) == [("B3", "101室"), ("B3", "A-1203")]
        assert numbers(collect.select_units(conn, Selection(buildings=("B2", "B1", "B2")))) == numbers(street)[:5]
        unit_ids = (world.unit("B9", "1"), world.unit("B1", "301"))
        assert numbers(collect.select_units(conn, Selection(units=unit_ids))) == [("B1", "301"), ("B9", "1")]

        by_number = {r.number: r for r in street}
        assert by_number["2"].address == "越秀区北京街道盐运西路12号 2房"
        assert by_number["101室"].address == "B3楼 101室"  # no address: the building's name; no second 房
        assert (by_number["301"].grade, by_number["102"].grade) == ("strict", None)

        printed = collect.issue_plates(conn, NOW, KEYRING, street, public_url="https://r.example.cn/",
                                       valid_days=1826, actor="t")
        assert [p.unit_id for p in printed] == [r.unit_id for r in street]
        for plate, row in zip(printed, street, strict=True):
            assert plate.url.startswith("https://r.example.cn/p/k1.")
            assert service.resolve(conn, KEYRING, plate.url.rsplit("/", 1)[1], NOW).unit_id == row.unit_id
            assert (plate.address, plate.unit_label, plate.grade) == (row.address, row.number, row.grade)
        assert collect.active_plate_count(conn, [r.unit_id for r in street]) == len(street)

        again = collect.issue_plates(conn, NOW, KEYRING, street, public_url="https://r.example.cn",
                                     valid_days=1826, actor="t")
        assert again == printed  # reprinting: the same codes
        fresh = collect.issue_plates(conn, NOW, KEYRING, street[:2], public_url="https://r.example.cn",
                                     valid_days=1826, actor="t", reissue=True)
        assert all(f.url != p.url for f, p in zip(fresh, printed, strict=False))
        assert conn.execute(sa.select(sa.func.count()).select_from(plates)
                            .where(plates.c.revoked_reason == "reissued")).scalar_one() == 2


@pytest.mark.parametrize(("selection", "problem"), [
    (Selection(street="G1"), "G1 is a grid, not a street"),
    (Selection(grid="S1"), "S1 is a street, not a grid"),
    (Selection(grid="NOPE"), "no area with code 'NOPE'"),
    (Selection(buildings=("B1", "X1", "X2")), "no building with code X1, X2"),
    (Selection(units=(1, 99999)), "no unit 99999"),
    (Selection(), "choose --building"),
])
def test_unknown_selections_are_named(sqlite_engine: sa.Engine, selection: Selection, problem: str) -> None:
    build(sqlite_engine)
    with sqlite_engine.connect() as conn, pytest.raises(UnknownSelection, match=problem):
        collect.select_units(conn, selection)


def test_a_selection_without_units(sqlite_engine: sa.Engine) -> None:
    from server.registry import service as registry

    build(sqlite_engine)
    with sqlite_engine.begin() as conn:
        registry.create_area(conn, NOW, "t", level="grid", code="G3", name="三网格", parent_code="C1")
        with pytest.raises(UnknownSelection, match="grid G3 has no units"):
            collect.select_units(conn, Selection(grid="G3"))


def test_unit_address() -> None:
    assert unit_address("越秀区北京街道盐运西路12号", "楼", "301") == "越秀区北京街道盐运西路12号 301房"
    assert unit_address(" 越秀区  某路1号 ", "楼", "2号") == "越秀区 某路1号 2号"
    assert unit_address(None, "幸福楼", "B-2") == "幸福楼 B-2房"
