"""Grades and the four rates on a small hand-made district with known answers."""

from __future__ import annotations

import sqlalchemy as sa

from server.db.models import history, units
from server.reconcile.rates import compute_rates, rate_history
from tests.server.reconcile.world import World, day


def _district(world: World) -> dict[str, int]:
    b1 = world.building("B1", grid="G1", pledge=True)
    u1 = world.unit(b1)
    world.register(world.person(), u1, card="P1")
    world.register(world.person(), u1)
    p3 = world.person()
    world.card(u1, "P3", person_id=p3)
    world.reads(b1, "P3", 0, 2)  # unregistered occupant of U1
    b2 = world.building("B2", grid="G2")  # rental, no pledge
    u2 = world.unit(b2)
    world.register(world.person(), u2)
    b3 = world.building("B3", grid="G2", rental=False)
    u3 = world.unit(b3)
    world.register(world.person(), u3)
    p6 = world.person()
    world.register(p6, u3)  # registered at U3 ...
    world.card(u2, "P6", person_id=p6)
    world.reads(b2, "P6", 0, 3)  # ... lives at U2
    world.sweep(day(4))
    return {"u1": u1, "u2": u2, "u3": u3, "p3": p3, "b1": b1}


def _grades(world: World) -> dict[int, tuple[str, int]]:
    with world.engine.connect() as conn:
        return {r.id: (r.grade, r.grade_score) for r in conn.execute(sa.select(units.c.id, units.c.grade,
                                                                                units.c.grade_score))}


def test_the_four_rates_per_grid_and_rolled_up(world: World) -> None:
    _district(world)
    with world.engine.connect() as conn:
        rates = compute_rates(conn, world.rules, day(4))

    def ratios(code: str) -> dict[str, tuple[int, int]]:
        r = rates[code]
        return {k: (getattr(r, k).numerator, getattr(r, k).denominator)
                for k in ("registration", "rental", "consistency", "pledge")}

    assert ratios("G1") == {"registration": (2, 3), "rental": (1, 1), "consistency": (2, 2), "pledge": (1, 1)}
    assert ratios("G2") == {"registration": (3, 3), "rental": (1, 2), "consistency": (2, 3), "pledge": (0, 1)}
    for code in ("C", "S", "D"):
        assert ratios(code) == {"registration": (5, 6), "rental": (2, 3), "consistency": (4, 5),
                                "pledge": (1, 2)}
    assert rates["G1"].parent_code == "C" and rates["D"].parent_code is None
    assert abs((rates["D"].registration.value or 0) - 5 / 6) < 1e-9


def test_grades_follow_the_scoring_table_and_change_with_the_facts(world: World) -> None:
    ids = _district(world)
    grades = _grades(world)
    assert grades[ids["u1"]] == ("normal", 4)  # unregistered occupant 4
    assert grades[ids["u2"]] == ("normal", 5)  # address mismatch 2 + pledge missing 3
    assert grades[ids["u3"]] == ("trusted", 0)  # not a rental, nothing open
    world.register(ids["p3"], ids["u1"], at=day(4))
    world.sweep(day(5))
    assert _grades(world)[ids["u1"]] == ("trusted", 1)  # one closed case in the history window
    with world.engine.connect() as conn:
        changes = conn.execute(sa.select(history.c.changes).where(
            history.c.entity == "unit", history.c.entity_id == ids["u1"]).order_by(history.c.id)).scalars().all()
    assert [c["grade"] for c in changes] == [[None, "normal"], ["normal", "trusted"]]


def test_overcrowded_and_unregistered_unit_is_strict(world: World) -> None:
    b = world.building(grid="G1")
    u = world.unit(b, capacity=1)
    world.register(world.person(), u)
    world.card(u, "X1", person_id=world.person())
    world.reads(b, "X1", 0, 2)
    world.sweep(day(4))
    # overcrowding 6 + unregistered occupant 4 + pledge missing 3 = 13
    assert _grades(world)[u] == ("strict", 13)


def test_the_sweep_keeps_one_snapshot_per_area_and_day(world: World) -> None:
    _district(world)
    world.sweep(day(4.1))
    world.sweep(day(5))
    with world.engine.connect() as conn:
        trend = rate_history(conn, "D", 30, today=day(5).date())
    assert [t["day"] for t in trend] == [day(4).date().isoformat(), day(5).date().isoformat()]
    assert trend[0]["registration"]["numerator"] == 5 and trend[0]["registration"]["denominator"] == 6


def test_an_unknown_card_raises_every_unit_of_its_building_without_waiting_for_the_sweep(world: World) -> None:
    """Unknown-credential points count for the whole building: when the
    incremental path opens such a case, every unit of the building is
    regraded at once, not only the units whose cards were read."""
    b = world.building(grid="G1", pledge=True)
    quiet, busy = world.unit(b, "101"), world.unit(b, "102")
    world.register(world.person(), busy, card="K1")
    other = world.unit(world.building("B2", grid="G1", pledge=True))
    world.sweep(day(0))
    assert {u: _grades(world)[u] for u in (quiet, busy, other)} == {u: ("trusted", 0) for u in (quiet, busy, other)}
    world.read(b, "K1", day(1))
    world.read(b, "NOBODY-ISSUED-THIS", day(1))
    world.reconciler.catch_up(day(1))
    assert [c["kind"] for c in world.open_cases()] == ["unknown_credential"]
    points = world.rules.grades.points_unknown_credential
    assert _grades(world)[quiet] == ("trusted", points)
    assert _grades(world)[busy] == ("trusted", points)
    assert _grades(world)[other] == ("trusted", 0)
