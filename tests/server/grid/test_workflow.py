"""The task state machine on its own: the table, who may take each action,
what each needs, four-eyes, and (property) that no sequence of actions by
anyone escapes the table or leaves 归档."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from server.db.models import TASK_STATES
from server.grid.errors import GridError, GridInputError, IllegalTransition, NotPermitted
from server.grid.workflow import (
    ACTIONS,
    TRANSITIONS,
    Actor,
    Candidate,
    Request,
    Step,
    TaskFacts,
    allowed_actions,
    plan,
)

GRID = 7
ADMIN = Actor(1, "admin")
OTHER_ADMIN = Actor(2, "admin")
CHEN = Actor(10, "coordinator", frozenset({GRID}))
LI = Actor(11, "coordinator", frozenset({GRID}))
STRANGER = Actor(12, "coordinator", frozenset({99}))
LANDLORD = Actor(20, "landlord")
PEOPLE = (ADMIN, OTHER_ADMIN, CHEN, LI, STRANGER, LANDLORD)


def candidate(actor: Actor) -> Candidate:
    return Candidate(actor.user_id, actor.role, actor.grid_ids)


def task(state: str, assignee: int | None = None, handled_by: int | None = None) -> TaskFacts:
    return TaskFacts(state, GRID, assignee, handled_by)


def test_the_table_covers_the_six_steps_and_nothing_leaves_archived() -> None:
    assert TASK_STATES == ("reported", "dispatched", "handled", "verified", "evaluated", "archived")
    assert {t.target for t in TRANSITIONS.values()} | {"reported"} == set(TASK_STATES)
    assert all("archived" not in t.sources for t in TRANSITIONS.values())
    assert all(set(t.sources) <= set(TASK_STATES) for t in TRANSITIONS.values())


def test_the_happy_path_through_all_six_steps() -> None:
    steps = [
        plan("dispatch", task("reported"), ADMIN, Request(assignee=candidate(CHEN))),
        plan("handle", task("dispatched", CHEN.user_id), CHEN, Request(note="talked to the landlord")),
        plan("verify", task("handled", CHEN.user_id, CHEN.user_id), LI, Request()),
        plan("evaluate", task("verified", CHEN.user_id, CHEN.user_id), ADMIN,
             Request(evaluation="good", note="quick")),
        plan("archive", task("evaluated", CHEN.user_id, CHEN.user_id), ADMIN, Request()),
    ]
    assert [(s.from_state, s.to_state) for s in steps] == [
        ("reported", "dispatched"), ("dispatched", "handled"), ("handled", "verified"), ("verified", "evaluated"),
        ("evaluated", "archived")]
    assert steps[0].assignee_user_id == CHEN.user_id and steps[3].evaluation == "good"


def test_dispatch_needs_an_assignee_of_the_tasks_grid() -> None:
    with pytest.raises(GridInputError, match="assignee: is required"):
        plan("dispatch", task("reported"), ADMIN, Request())
    with pytest.raises(GridInputError, match="not a coordinator of the task's grid"):
        plan("dispatch", task("reported"), ADMIN, Request(assignee=candidate(STRANGER)))
    with pytest.raises(GridInputError, match="coordinator or an administrator"):
        plan("dispatch", task("reported"), ADMIN, Request(assignee=candidate(LANDLORD)))
    with pytest.raises(GridInputError, match="disabled"):
        plan("dispatch", task("reported"), ADMIN, Request(assignee=Candidate(10, "coordinator", frozenset({GRID}),
                                                                             disabled=True)))
    # An administrator may take any task, also one without a grid.
    step = plan("dispatch", TaskFacts("reported", None, None), ADMIN, Request(assignee=candidate(OTHER_ADMIN)))
    assert step.assignee_user_id == OTHER_ADMIN.user_id
    with pytest.raises(NotPermitted):
        plan("dispatch", task("reported"), CHEN, Request(assignee=candidate(LI)))


def test_a_coordinator_claims_only_in_their_grid() -> None:
    assert plan("claim", task("reported"), CHEN, Request()).assignee_user_id == CHEN.user_id
    with pytest.raises(NotPermitted, match="grid"):
        plan("claim", task("reported"), STRANGER, Request())
    with pytest.raises(NotPermitted):
        plan("claim", task("reported"), LANDLORD, Request())


def test_only_the_assignee_handles_and_must_say_what_was_done() -> None:
    with pytest.raises(NotPermitted, match="assignee"):
        plan("handle", task("dispatched", CHEN.user_id), LI, Request(note="x"))
    with pytest.raises(NotPermitted, match="assignee"):
        plan("handle", task("dispatched", CHEN.user_id), ADMIN, Request(note="x"))
    with pytest.raises(GridInputError, match="note: is required"):
        plan("handle", task("dispatched", CHEN.user_id), CHEN, Request(note="   "))
    with pytest.raises(GridInputError, match="at most 2000"):
        plan("handle", task("dispatched", CHEN.user_id), CHEN, Request(note="x" * 2001))


def test_four_eyes_applies_to_administrators_too() -> None:
    handled_by_admin = task("handled", ADMIN.user_id, ADMIN.user_id)
    for action in ("verify", "reject"):
        with pytest.raises(NotPermitted, match="four-eyes"):
            plan(action, handled_by_admin, ADMIN, Request(note="why"))
    assert plan("verify", handled_by_admin, OTHER_ADMIN, Request()).to_state == "verified"
    with pytest.raises(NotPermitted, match="four-eyes"):
        plan("evaluate", task("verified", ADMIN.user_id, ADMIN.user_id), ADMIN, Request(evaluation="good", note="n"))
    handled_by_chen = task("handled", CHEN.user_id, CHEN.user_id)
    with pytest.raises(NotPermitted, match="four-eyes"):
        plan("verify", handled_by_chen, CHEN, Request())
    with pytest.raises(NotPermitted, match="grid"):
        plan("verify", handled_by_chen, STRANGER, Request())


def test_reject_sends_the_task_back_for_rework_with_a_reason() -> None:
    with pytest.raises(GridInputError, match="note"):
        plan("reject", task("handled", CHEN.user_id, CHEN.user_id), LI, Request())
    step = plan("reject", task("handled", CHEN.user_id, CHEN.user_id), LI, Request(note="nobody was there"))
    assert (step.to_state, step.assignee_user_id, step.new_deadline) == ("dispatched", CHEN.user_id, True)


def test_evaluate_needs_a_grade_and_a_note_and_dismiss_a_reason() -> None:
    verified = task("verified", CHEN.user_id, CHEN.user_id)
    with pytest.raises(GridInputError, match="evaluation"):
        plan("evaluate", verified, ADMIN, Request(evaluation="superb", note="n"))
    with pytest.raises(GridInputError, match="note"):
        plan("evaluate", verified, ADMIN, Request(evaluation="poor"))
    with pytest.raises(NotPermitted):
        plan("evaluate", verified, LI, Request(evaluation="good", note="n"))
    with pytest.raises(GridInputError, match="reason"):
        plan("dismiss", task("reported"), ADMIN, Request(reason="bored"))
    step = plan("dismiss", task("reported"), ADMIN, Request(reason="duplicate", note="same as #4"))
    assert (step.to_state, step.note) == ("archived", "duplicate: same as #4")
    with pytest.raises(NotPermitted):
        plan("dismiss", task("reported"), CHEN, Request(reason="duplicate"))


def test_reassign_hands_over_without_new_time() -> None:
    dispatched = task("dispatched", CHEN.user_id)
    step = plan("reassign", dispatched, CHEN, Request(assignee=candidate(LI)))
    assert (step.to_state, step.assignee_user_id, step.new_deadline) == ("dispatched", LI.user_id, False)
    with pytest.raises(GridInputError, match="already has"):
        plan("reassign", dispatched, ADMIN, Request(assignee=candidate(CHEN)))
    with pytest.raises(NotPermitted):
        plan("reassign", dispatched, LI, Request(assignee=candidate(LI)))


def test_unknown_and_illegal_actions_say_so() -> None:
    with pytest.raises(IllegalTransition, match="unknown action 'teleport'"):
        plan("teleport", task("reported"), ADMIN, Request())
    with pytest.raises(IllegalTransition, match="'handle' is not allowed when the task is 'reported'"):
        plan("handle", task("reported"), ADMIN, Request(note="x"))
    for action in ACTIONS:
        with pytest.raises(IllegalTransition):
            plan(action, task("archived", CHEN.user_id, CHEN.user_id), ADMIN,
                 Request(assignee=candidate(LI), note="n", evaluation="good", reason="duplicate"))


def test_allowed_actions_are_the_buttons_a_person_gets() -> None:
    assert allowed_actions(task("reported"), ADMIN) == ["dispatch", "claim", "dismiss"]
    assert allowed_actions(task("reported"), CHEN) == ["claim"]
    assert allowed_actions(task("reported"), STRANGER) == []
    assert allowed_actions(task("dispatched", CHEN.user_id), CHEN) == ["reassign", "handle"]
    assert allowed_actions(task("handled", CHEN.user_id, CHEN.user_id), CHEN) == []
    assert allowed_actions(task("handled", CHEN.user_id, CHEN.user_id), LI) == ["verify", "reject"]
    assert allowed_actions(task("archived"), ADMIN) == []


# --------------------------------------------------------------------------- property

LEGAL = {(s, a, t.target) for a, t in TRANSITIONS.items() for s in t.sources}
attempts = st.lists(st.tuples(st.sampled_from((*ACTIONS, "reopen", "delete")), st.sampled_from(PEOPLE),
                              st.sampled_from(PEOPLE), st.sampled_from((None, "", "done", "x" * 2001)),
                              st.sampled_from((None, *("good", "adequate", "poor", "meh"))),
                              st.sampled_from((None, "duplicate", "no_action_needed", "other"))),
                    max_size=40)


@settings(max_examples=200, deadline=None)
@given(attempts)
def test_no_sequence_of_actions_escapes_the_table(sequence: list[tuple[str, Actor, Actor, str | None, str | None,
                                                                       str | None]]) -> None:
    facts = task("reported")
    for action, actor, other, note, evaluation, reason in sequence:
        before = facts
        try:
            step: Step = plan(action, facts, actor, Request(candidate(other), note, evaluation, reason))
        except GridError:
            continue  # refused: nothing changes
        assert (before.state, action, step.to_state) in LEGAL
        assert before.state != "archived"
        assert action in allowed_actions(before, actor)
        if step.to_state in ("dispatched", "handled", "verified", "evaluated"):
            assert step.assignee_user_id is not None
        handled_by = actor.user_id if action == "handle" else before.handled_by
        facts = TaskFacts(step.to_state, GRID, step.assignee_user_id, handled_by)
        if action in ("verify", "reject", "evaluate"):
            assert actor.user_id != before.handled_by
    if facts.state == "archived":
        assert allowed_actions(facts, ADMIN) == []
