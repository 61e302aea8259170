"""Tasks in the database: the six steps with deadlines and a full trail,
who sees what, the lists with keyset paging, and two concurrent actions on
one task (one wins, the other gets a clear refusal)."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
import sqlalchemy as sa

from server.db.models import task_events
from server.grid import service
from server.grid.errors import GridConflict, GridInputError, IllegalTransition, NotPermitted
from server.grid.workflow import Actor
from server.web.transactions import write_transaction
from tests.server.grid.scene import T0, Scene, at


def test_a_task_runs_the_six_steps_with_deadlines_and_a_full_trail(scene: Scene) -> None:
    task_id = scene.task()
    assert scene.row(task_id)["due_at"] == at(1)  # 上报: one day to dispatch
    chen, li = scene.users["chen"], scene.users["li"]
    scene.act("admin", task_id, "dispatch", at(0.5), assignee_user_id=chen.id, note="please look")
    assert (scene.row(task_id)["state"], scene.row(task_id)["due_at"]) == ("dispatched", at(3.5))
    scene.act("chen", task_id, "handle", at(1), note="met the tenants, two moved out")
    scene.act("li", task_id, "verify", at(2), note="checked the list")
    scene.act("admin", task_id, "evaluate", at(3), evaluation="adequate", note="slow but right")
    done = scene.act("admin", task_id, "archive", at(4))
    assert done["state"] == "archived" and done["closed_at"] == at(4) and done["due_at"] is None
    assert done["evaluation"] == "adequate" and done["evaluation_note"] == "slow but right"
    with scene.engine.connect() as conn:
        trail = service.trail(conn, task_id)
    assert [(e["action"], e["from_state"], e["to_state"]) for e in trail] == [
        ("reported", None, "reported"), ("dispatch", "reported", "dispatched"), ("handle", "dispatched", "handled"),
        ("verify", "handled", "verified"), ("evaluate", "verified", "evaluated"), ("archive", "evaluated", "archived")]
    assert [e["actor_name"] for e in trail[1:]] == ["admin", "chen", "li", "admin", "admin"]
    assert trail[1]["assignee_name"] == "chen" and trail[1]["note"] == "please look"
    assert [e["due_at"] for e in trail] == [at(1), at(3.5), at(3), at(5), at(10), None]
    assert trail[2]["assignee_user_id"] == chen.id and li.id not in {e["assignee_user_id"] for e in trail}
    with pytest.raises(IllegalTransition):
        scene.act("admin", task_id, "dispatch", at(5), assignee_user_id=chen.id)


def test_rework_and_four_eyes_in_the_database(sqlite_scene: Scene) -> None:
    scene = sqlite_scene
    task_id = scene.task()
    scene.act("chen", task_id, "claim")
    scene.act("chen", task_id, "handle", note="done")
    with pytest.raises(NotPermitted, match="four-eyes"):
        scene.act("chen", task_id, "verify")
    back = scene.act("li", task_id, "reject", at(1), note="the door was not checked")
    assert (back["state"], back["assignee_user_id"], back["due_at"]) == ("dispatched", scene.users["chen"].id, at(4))
    # Handed over: li does the rework, so li may no longer check it, chen now may.
    scene.act("chen", task_id, "reassign", at(1), assignee_user_id=scene.users["li"].id)
    assert scene.row(task_id)["due_at"] == at(4)  # a hand-over keeps the deadline
    scene.act("li", task_id, "handle", at(2), note="checked the door too")
    with pytest.raises(NotPermitted, match="four-eyes"):
        scene.act("li", task_id, "verify", at(2))
    assert scene.act("chen", task_id, "verify", at(2))["state"] == "verified"


def test_coordinators_see_and_act_on_their_grids_only(sqlite_scene: Scene) -> None:
    scene = sqlite_scene
    mine, theirs = scene.task("G1-101"), scene.task("G2-101")
    with pytest.raises(NotPermitted):
        scene.act("chen", theirs, "claim")
    with scene.engine.connect() as conn:
        with pytest.raises(NotPermitted):
            service.task_detail(conn, T0, scene.auth("chen"), theirs)
        detail = service.task_detail(conn, T0, scene.auth("chen"), mine)
        assert detail["allowed_actions"] == ["claim"] and detail["unit_number"] == "101"
        assert detail["grid_code"] == "G1" and detail["building_name"] == "楼G1"
        admin_view = service.task_detail(conn, T0, scene.auth("admin"), mine)
        assert admin_view["allowed_actions"] == ["dispatch", "claim", "dismiss"]
        assert {c["username"] for c in admin_view["assignable"]} == {"chen", "li"}
        listed, _ = service.list_tasks(conn, T0, service.actor_facts(conn, scene.auth("chen")), service.TaskQuery())
        assert [t["id"] for t in listed] == [mine]
        assert service.list_tasks(conn, T0, service.actor_facts(conn, scene.auth("landlord")),
                                  service.TaskQuery()) == ([], None)
    # Assigned across grids by an administrator: the assignee sees it too.
    scene.act("admin", theirs, "dispatch", assignee_user_id=scene.users["admin2"].id)
    with pytest.raises(NotPermitted):
        scene.act("chen", theirs, "handle", note="x")


def test_lists_filter_page_and_find_overdue_tasks(scene: Scene) -> None:
    ids = [scene.task("G1-101" if n % 2 else "G1-102", now=at(n)) for n in range(7)]
    other = scene.task("G2-101", now=at(0))
    scene.act("admin", ids[0], "dispatch", at(0.2), assignee_user_id=scene.users["chen"].id)
    scene.act("admin", ids[1], "dismiss", at(0.2), reason="duplicate")
    now = at(6.5)
    with scene.engine.connect() as conn:
        admin_facts = service.actor_facts(conn, scene.auth("admin"))
        chen_facts = service.actor_facts(conn, scene.auth("chen"))

        def page(actor: Actor, **query: object) -> tuple[list[int], str | None]:
            items, cursor = service.list_tasks(conn, now, actor, service.TaskQuery(**query))  # type: ignore[arg-type]
            return [t["id"] for t in items], cursor

        first, cursor = page(admin_facts, limit=3)
        assert first == sorted([other, *ids], reverse=True)[:3]
        seen = list(first)
        while cursor is not None:
            more, cursor = page(admin_facts, limit=3, cursor=cursor)
            seen += more
        assert seen == sorted([other, *ids], reverse=True)
        assert page(admin_facts, grid_id=scene.grids["G2"])[0] == [other]
        assert page(admin_facts, state="archived")[0] == [ids[1]]
        assert page(admin_facts, assignee_user_id=scene.users["chen"].id)[0] == [ids[0]]
        assert page(admin_facts, unit_id=scene.units["G1-102"], state="open")[0] == [ids[6], ids[4], ids[2], ids[0]]
        # Overdue: the step's deadline has passed and the task is not archived.
        late = [i for i in [other, *ids] if i != ids[1] and scene.row(i)["due_at"] < now]
        overdue, _ = page(admin_facts, overdue=True, sort="due")
        assert overdue == sorted(late, key=lambda i: (scene.row(i)["due_at"], i))
        assert ids[6] not in overdue
        # Deadline order pages too.
        head, cursor = page(admin_facts, sort="due", state="open", limit=2)
        rest, _ = page(admin_facts, sort="due", state="open", limit=50, cursor=cursor)
        everything, _ = page(admin_facts, sort="due", state="open", limit=50)
        assert head + rest == everything and len(everything) == 7
        assert page(chen_facts, overdue=True)[0] == sorted([i for i in late if i != other], reverse=True)
        counts = service.counts_by_state(conn, now, scene.users["chen"].id)
        assert counts == {"dispatched": 1, "overdue": 1}


def test_bad_list_parameters_are_input_errors(sqlite_scene: Scene) -> None:
    with sqlite_scene.engine.connect() as conn:
        actor = service.actor_facts(conn, sqlite_scene.auth("admin"))
        for query, field in ((service.TaskQuery(state="lost"), "state"), (service.TaskQuery(sort="up"), "sort"),
                             (service.TaskQuery(limit=0), "limit"),
                             (service.TaskQuery(sort="due", cursor="yesterday"), "cursor")):
            with pytest.raises(GridInputError) as err:
                service.list_tasks(conn, T0, actor, query)
            assert err.value.field == field


def test_two_concurrent_actions_on_one_task_do_not_both_win(scene: Scene) -> None:
    """Connection A takes the task and holds its transaction open; B tries
    the same action meanwhile. B must wait for A and then be refused as
    illegal from the new state, not overwrite A."""
    task_id = scene.task()
    chen, li = scene.auth("chen"), scene.auth("li")
    a_done, b_started = threading.Event(), threading.Event()
    outcome: dict[str, object] = {}

    def second() -> None:
        b_started.set()
        try:
            with write_transaction(scene.engine) as conn:
                service.apply_action(conn, T0, scene.rules, li, task_id, "claim", service.ActionInput())
            outcome["b"] = "won"
        except (IllegalTransition, GridConflict) as exc:
            outcome["b"] = exc

    with write_transaction(scene.engine) as conn:
        service.apply_action(conn, T0, scene.rules, chen, task_id, "claim", service.ActionInput())
        worker = threading.Thread(target=second)
        worker.start()
        b_started.wait(5)
        worker.join(0.3)  # B is blocked on the row lock (or SQLite's write lock) while A is open
        assert worker.is_alive()
        a_done.set()
    worker.join(10)
    assert isinstance(outcome["b"], IllegalTransition)
    assert scene.row(task_id)["assignee_user_id"] == chen.id
    with scene.engine.connect() as conn:
        claims = conn.execute(sa.select(sa.func.count()).select_from(task_events).where(
            task_events.c.task_id == task_id, task_events.c.action == "claim")).scalar_one()
    assert claims == 1


def test_dispatching_an_escalated_task_clears_its_flag(sqlite_scene: Scene) -> None:
    from server.grid.cases import escalate_case

    scene = sqlite_scene
    case_id = scene.case()
    with write_transaction(scene.engine) as conn:
        task_id = escalate_case(conn, T0, "user:1", scene.rules, case_id, "urgent")
    assert scene.row(task_id)["escalated_at"] == T0
    scene.act("admin", task_id, "dispatch", T0 + timedelta(hours=1), assignee_user_id=scene.users["chen"].id)
    assert scene.row(task_id)["escalated_at"] is None
