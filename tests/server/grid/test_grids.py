"""Grids and their coordinators: assignment (CLI and functions), the scope
it gives a coordinator (can_manage_building, can_work_unit), the patrol
schedule by grade and the workload against the staffing ratio."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
import sqlalchemy as sa

from rentgate.cli import main
from server.auth.policy import can_manage_building
from server.db.models import history, units
from server.grid import grids, schedule, workload
from server.grid.errors import GridInputError, GridNotFound
from server.grid.scope import can_work_grid, can_work_unit
from server.web.transactions import write_transaction
from tests.server.grid.scene import T0, Scene, at


def _cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, dict[str, object] | str]:
    code = main(["grid", *args])
    out, err = capsys.readouterr()
    if code != 0:
        return code, err
    return code, json.loads(out.strip().splitlines()[-1]) if "--json" in args else out


def _english(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, dict[str, object] | str]:
    code = main(["--lang", "en", "grid", *args])
    out, err = capsys.readouterr()
    return (code, err) if code != 0 else (code, out)


def test_the_grid_command_assigns_lists_and_unassigns(sqlite_scene: Scene, sqlite_url: str,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    url = ("--database-url", sqlite_url)
    code, doc = _cli(capsys, "assign", "--grid", "G3", "--user", "wang", "--json", *url)
    assert code == 0 and doc == {"grid": "G3", "grid_id": sqlite_scene.grids["G3"], "user": "wang",
                                 "user_id": sqlite_scene.users["wang"].id, "created": True}
    assert _cli(capsys, "assign", "--grid", "G3", "--user", "wang", *url) == (0, "wang 已经负责网格 G3\n")
    code, listing = _cli(capsys, "list", "--json", *url)
    assert code == 0 and isinstance(listing, dict)
    assert [(g["code"], [c["username"] for c in g["coordinators"]]) for g in listing["grids"]] == [  # type: ignore[attr-defined]
        ("G1", ["chen", "li"]), ("G2", ["wang"]), ("G3", ["wang"])]
    code, text = _cli(capsys, "list", "--grid", "G3", *url)
    assert code == 0 and text == "G3  网格G3: wang\n"
    assert _cli(capsys, "unassign", "--grid", "G3", "--user", "wang", *url) == (0, "wang 不再负责网格 G3\n")
    code, err = _cli(capsys, "unassign", "--grid", "G3", "--user", "wang", *url)
    assert code == 2 and "wang 本来就不负责网格 G3" in str(err)
    code, err = _cli(capsys, "assign", "--grid", "C", "--user", "wang", *url)
    assert code == 2 and "C 是社区，不是网格" in str(err)
    code, err = _cli(capsys, "assign", "--grid", "G3", "--user", "admin", *url)
    assert err == "rentgate grid assign: 用户 admin 是管理员，只有网格员可以分配到网格\n"
    code, err = _cli(capsys, "assign", "--grid", "G9", "--user", "wang", *url)
    assert code == 2 and "没有编码为 G9 的网格" in str(err)
    # In English, in words: no user id, no field name, "an administrator".
    code, err = _english(capsys, "assign", "--grid", "G3", "--user", "admin", *url)
    assert (code, err) == (2, "rentgate grid assign: admin is an administrator; only coordinators can be assigned "
                              "to a grid\n")
    code, err = _english(capsys, "assign", "--grid", "C", "--user", "ghost", *url)
    assert (code, err) == (2, "rentgate grid assign: C is a community, not a grid: give a grid's code\n")
    code, err = _english(capsys, "assign", "--grid", "G3", "--user", "ghost", *url)
    assert code == 2 and "there is no user ghost" in str(err)


def test_assignments_are_in_the_history_and_checked(scene: Scene) -> None:
    with write_transaction(scene.engine) as conn:
        assert grids.assign(conn, T0, "user:1", scene.grids["G3"], scene.users["li"].id) is True
        grids.unassign(conn, T0, "user:1", scene.grids["G3"], scene.users["li"].id)
        with pytest.raises(GridInputError, match="is an administrator; only coordinators"):
            grids.assign(conn, T0, "user:1", scene.grids["G3"], scene.users["admin"].id)
        with pytest.raises(GridNotFound):
            grids.coordinators_of(conn, 999_999)
        rows = [(r[0], r[1]) for r in conn.execute(sa.select(history.c.action, history.c.changes).where(
            history.c.entity == "grid", history.c.entity_id == scene.grids["G3"]).order_by(history.c.id))]
    assert rows == [("coordinator_assigned", {"user_id": scene.users["li"].id}),
                    ("coordinator_unassigned", {"user_id": scene.users["li"].id})]


def test_a_coordinator_works_the_buildings_and_units_of_their_grids_only(scene: Scene) -> None:
    chen, wang, admin, landlord = (scene.auth(n) for n in ("chen", "wang", "admin", "landlord"))
    with scene.engine.connect() as conn:
        assert can_manage_building(conn, chen, scene.buildings["G1"])
        assert not can_manage_building(conn, chen, scene.buildings["G2"])
        assert can_manage_building(conn, wang, scene.buildings["G2"])
        assert can_manage_building(conn, admin, scene.buildings["G3"])
        assert not can_manage_building(conn, landlord, scene.buildings["G1"])
        assert can_work_unit(conn, chen, scene.units["G1-102"]) and not can_work_unit(conn, chen, scene.units["G2-101"])
        assert can_work_unit(conn, admin, scene.units["G3-101"]) and not can_work_unit(conn, admin, 999_999)
        assert not can_work_unit(conn, landlord, scene.units["G1-101"])
        assert can_work_grid(conn, chen, scene.grids["G1"]) and not can_work_grid(conn, chen, scene.grids["G2"])


def test_the_patrol_schedule_by_grade_most_overdue_first(scene: Scene) -> None:
    now = at(30)
    plan = {"G1-101": ("strict", at(25)),   # due at 28: 2 days late
            "G1-102": ("trusted", at(5)),   # due at 26: 4 days late
            "G2-101": ("watch", at(24)),    # due at 31: on time
            "G2-102": (None, None),         # never: created at 0, due at 14 (as normal): 16 days late
            "G3-101": ("normal", at(20)),   # due at 34: on time
            "G3-102": ("trusted", None)}    # created at 0, due at 21: 9 days late
    with write_transaction(scene.engine) as conn:
        for unit, (grade, last) in plan.items():
            conn.execute(sa.update(units).where(units.c.id == scene.units[unit]).values(grade=grade,
                                                                                          last_patrol_at=last))
    with scene.engine.connect() as conn:
        rows, total = schedule.overdue_units(conn, now, scene.rules)
        assert total == 4
        assert [(scene_unit(scene, r["unit_id"]), r["days_overdue"]) for r in rows] == [
            ("G2-102", 16.0), ("G3-102", 9.0), ("G1-102", 4.0), ("G1-101", 2.0)]
        assert rows[0]["due_at"] == at(14) and rows[0]["interval_days"] == 14
        page, _ = schedule.overdue_units(conn, now, scene.rules, limit=2, offset=2)
        assert [scene_unit(scene, r["unit_id"]) for r in page] == ["G1-102", "G1-101"]
        mine, n = schedule.overdue_units(conn, now, scene.rules, grid_ids={scene.grids["G1"]})
        assert n == 2 and {r["grid_code"] for r in mine} == {"G1"}
        assert schedule.overdue_units(conn, now, scene.rules, grid_ids=set()) == ([], 0)
        assert schedule.overdue_by_grid(conn, now, scene.rules) == {scene.grids["G1"]: 2, scene.grids["G2"]: 1,
                                                                     scene.grids["G3"]: 1}
    assert schedule.next_patrol_due(scene.rules, None, None, T0) == T0 + timedelta(days=14)


def scene_unit(scene: Scene, unit_id: int) -> str:
    return next(name for name, ident in scene.units.items() if ident == unit_id)


def test_workload_against_the_staffing_ratio(scene: Scene) -> None:
    rules = scene.rules.model_copy(update={"residents_per_coordinator": 2})
    for unit, n in (("G1-101", 3), ("G1-102", 2), ("G2-101", 3), ("G3-101", 1)):
        for _ in range(n):
            scene.resident(unit)
    scene.resident("G1-101", status="ended")
    late = scene.task("G1-101")
    scene.act("chen", late, "claim")
    scene.task("G2-101", now=at(100))
    with scene.engine.connect() as conn:
        doc = workload.workload(conn, at(50), rules)
    by_code = {g["code"]: g for g in doc["grids"]}
    assert {k: by_code["G1"][k] for k in ("residents", "coordinators", "needed", "shortfall",
                                          "residents_per_coordinator", "load", "status", "open_tasks",
                                          "unassigned_tasks", "overdue_tasks")} == {
        "residents": 5, "coordinators": 2, "needed": 3, "shortfall": 1, "residents_per_coordinator": 2.5,
        "load": 1.25, "status": "over", "open_tasks": 1, "unassigned_tasks": 0, "overdue_tasks": 1}
    assert (by_code["G2"]["status"], by_code["G2"]["needed"], by_code["G2"]["overdue_tasks"]) == ("over", 2, 0)
    assert (by_code["G3"]["status"], by_code["G3"]["shortfall"]) == ("unstaffed", 1)
    people = {p["username"]: p for p in doc["coordinators"]}
    assert people["chen"]["residents"] == 2.5 and people["chen"]["open_tasks"] == 1
    assert people["chen"]["overdue_tasks"] == 1 and people["chen"]["grids"] == ["G1"]
    assert people["wang"]["residents"] == 3 and people["wang"]["status"] == "over"
    assert people["chen"]["overdue_patrols"] == 2  # never patrolled since T0
