"""Timers through commands, with the injected clock: bare ISO 8601 as Camunda writes it and expressions.

Covered: timer start events (date, duration, cycle R3), intermediate timer catch events, interrupting and
non-interrupting (cycle) boundary timers, and timer values that are no valid time (an incident naming the
element; a retry with fixed variables arms the timer). After every command the stored snapshot must load and
dump back to the same document.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from engine.commands import Engine
from engine.errors import InvalidModel
from tests.bpmn_util import chain, process
from tests.conftest import ManualClock
from tests.constructs.support_b import (
    cancelled_elements,
    deploy_b,
    incidents,
    instance,
    instances,
    one_task,
    open_elements,
    start_timers,
    step,
    tasks,
    timer_dues,
)

T0 = datetime(2026, 3, 2, 1, 0, tzinfo=UTC)  # the clock fixture's start


def _timer(kind: str, value: str) -> str:
    return f"<bpmn:timerEventDefinition><bpmn:{kind}>{value}</bpmn:{kind}></bpmn:timerEventDefinition>"


def _waiting_process(pid: str, kind: str, value: str) -> bytes:
    return process(
        pid,
        f"""
  <bpmn:startEvent id="start"/>
  <bpmn:intermediateCatchEvent id="wait" name="等待期满">{_timer(kind, value)}</bpmn:intermediateCatchEvent>
  <bpmn:userTask id="after" name="期满处理" camunda:candidateGroups="officer"/>
  <bpmn:endEvent id="end"/>
  {chain("start", "wait", "after", "end")}""",
    )


def _timer_start_process(pid: str, kind: str, value: str) -> bytes:
    return process(
        pid,
        f"""
  <bpmn:startEvent id="tick" name="定时启动">{_timer(kind, value)}</bpmn:startEvent>
  <bpmn:userTask id="inspect" name="例行检查" camunda:candidateGroups="inspector"/>
  <bpmn:endEvent id="end"/>
  {chain("tick", "inspect", "end")}""",
    )


# ------------------------------------------------------------------------------ intermediate catch events
INTERMEDIATE = [
    pytest.param("timeDuration", "PT5M", {}, T0 + timedelta(minutes=5), id="PT5M"),
    pytest.param("timeDuration", "P3D", {}, T0 + timedelta(days=3), id="P3D"),
    pytest.param(
        "timeDate",
        "2027-01-01T00:00:00+08:00",
        {},
        datetime(2026, 12, 31, 16, 0, tzinfo=UTC),
        id="date-with-offset",
    ),
    # A cycle on an event a token passes once fires once, at its first due time (as in Camunda).
    pytest.param("timeCycle", "R3/PT10M", {}, T0 + timedelta(minutes=10), id="R3/PT10M"),
    pytest.param(
        "timeDuration", "${deadline}", {"deadline": "PT2H"}, T0 + timedelta(hours=2), id="expression-duration"
    ),
    pytest.param(
        "timeDate",
        "${deadline}",
        {"deadline": "2026-03-05T09:00:00+08:00"},
        datetime(2026, 3, 5, 1, 0, tzinfo=UTC),
        id="expression-date",
    ),
    pytest.param(
        "timeDuration",
        "'PT' + str(minutes) + 'M'",
        {"minutes": 45},
        T0 + timedelta(minutes=45),
        id="expression-built",
    ),
    pytest.param(
        "timeCycle", "${cycle}", {"cycle": "R2/PT1H"}, T0 + timedelta(hours=1), id="expression-cycle"
    ),
]


@pytest.mark.parametrize(("kind", "value", "variables", "due"), INTERMEDIATE)
def test_intermediate_timer_waits_until_due(
    engine: Engine, clock: ManualClock, kind: str, value: str, variables: dict[str, Any], due: datetime
) -> None:
    engine.deploy([("wait.bpmn", _waiting_process("wait_timer", kind, value))])
    started = engine.start(key="wait_timer", business_key="T-1", variables=variables)
    view = step(engine, started)
    assert view["state"] == "running"
    assert view["activities"] == ["wait"]
    assert timer_dues(engine, started["id"]) == [("wait", due)]
    assert view["tasks"] == []

    # Nothing fires before the due time, not even one second before it.
    clock.set(due - timedelta(seconds=1))
    assert engine.fire_due_timers() == 0
    view = step(engine, started)
    assert view["activities"] == ["wait"] and view["tasks"] == []
    assert timer_dues(engine, started["id"]) == [("wait", due)]

    clock.set(due)
    assert engine.fire_due_timers() == 1
    view = step(engine, started)
    assert view["state"] == "running"
    assert view["activities"] == ["after"]
    assert view["waiting_for"]["timers"] == []
    [after] = view["tasks"]
    assert after["element_id"] == "after" and after["candidate_groups"] == ["officer"]

    # It fired once: later ticks (a cycle's further repetitions included) change nothing.
    clock.advance(days=400)
    assert engine.fire_due_timers() == 0
    assert open_elements(engine, started["id"]) == ["after"]
    done = engine.complete(after["id"], {"handled": True}, user="officer.1")
    assert step(engine, done)["state"] == "completed"


def test_due_time_is_computed_once_when_the_timer_is_reached(engine: Engine, clock: ManualClock) -> None:
    """An expression timer reads its variables when the token arrives, not at the start of the instance."""
    body = f"""
  <bpmn:startEvent id="start"/>
  <bpmn:userTask id="prepare" name="准备"/>
  <bpmn:intermediateCatchEvent id="wait">{_timer("timeDuration", "${deadline}")}</bpmn:intermediateCatchEvent>
  <bpmn:userTask id="after" name="期满处理"/>
  <bpmn:endEvent id="end"/>
  {chain("start", "prepare", "wait", "after", "end")}"""
    engine.deploy([("prep.bpmn", process("prepared_wait", body))])
    started = engine.start(key="prepared_wait", variables={"deadline": "PT1H"})
    step(engine, started)
    clock.advance(minutes=30)
    done = engine.complete(one_task(engine, started["id"], "prepare")["id"], {"deadline": "P1D"})
    step(engine, done)
    # The deadline given with the completion counts, from the moment the timer was reached.
    assert timer_dues(engine, started["id"]) == [("wait", T0 + timedelta(minutes=30, days=1))]
    clock.advance(hours=2)
    assert engine.fire_due_timers() == 0
    assert instance(engine, started["id"])["activities"] == ["wait"]
    clock.set(T0 + timedelta(minutes=30, days=1))
    assert engine.fire_due_timers() == 1
    assert step(engine, started)["activities"] == ["after"]


# ------------------------------------------------------------------------------------ timer start events
@pytest.mark.parametrize(
    ("kind", "value", "due"),
    [
        pytest.param(
            "timeDate", "2027-01-01T00:00:00+08:00", datetime(2026, 12, 31, 16, 0, tzinfo=UTC), id="date"
        ),
        pytest.param("timeDuration", "PT1H", T0 + timedelta(hours=1), id="duration"),
    ],
)
def test_timer_start_event_starts_one_instance_when_due(
    engine: Engine, clock: ManualClock, kind: str, value: str, due: datetime
) -> None:
    deployed = engine.deploy([("tick.bpmn", _timer_start_process("scheduled_once", kind, value))])
    definition_id = deployed["definitions"][0]["id"]
    assert start_timers(engine) == [
        {"definition_id": definition_id, "element_id": "tick", "due_at": due, "cycle": None}
    ]
    assert engine.next_timer_due() == due

    clock.set(due - timedelta(seconds=1))
    assert engine.fire_due_timers() == 0
    assert instances(engine, "scheduled_once") == []

    clock.set(due)
    assert engine.fire_due_timers() == 1
    [started] = instances(engine, "scheduled_once")
    view = step(engine, started["id"])
    assert view["state"] == "running"
    assert view["activities"] == ["inspect"]
    assert [t["element_id"] for t in view["tasks"]] == ["inspect"]
    assert view["waiting_for"]["timers"] == []
    assert start_timers(engine) == []

    clock.advance(days=30)
    assert engine.fire_due_timers() == 0
    assert len(instances(engine, "scheduled_once")) == 1


def test_timer_start_cycle_r3_starts_exactly_three_instances(engine: Engine, clock: ManualClock) -> None:
    engine.deploy([("cycle.bpmn", _timer_start_process("scheduled_cycle", "timeCycle", "R3/PT10M"))])
    [row] = start_timers(engine)
    assert row["due_at"] == T0 + timedelta(minutes=10)
    assert row["cycle"] == {"expression": "R3/PT10M", "remaining": 3}

    clock.advance(minutes=9)
    assert engine.fire_due_timers() == 0
    assert instances(engine, "scheduled_cycle") == []
    for n in (1, 2, 3):
        clock.set(T0 + timedelta(minutes=10 * n))
        assert engine.fire_due_timers() == 1
        started = instances(engine, "scheduled_cycle")
        assert len(started) == n
        for item in started:
            view = step(engine, item["id"])
            assert view["state"] == "running" and view["activities"] == ["inspect"]
        if n < 3:
            assert start_timers(engine)[0]["due_at"] == T0 + timedelta(minutes=10 * (n + 1))
            assert start_timers(engine)[0]["cycle"]["remaining"] == 3 - n
    assert start_timers(engine) == []
    clock.advance(days=1)
    assert engine.fire_due_timers() == 0
    assert len(instances(engine, "scheduled_cycle")) == 3
    assert len(tasks(engine)) == 3


def test_new_version_replaces_the_previous_start_timers(engine: Engine, clock: ManualClock) -> None:
    engine.deploy([("cycle.bpmn", _timer_start_process("scheduled_cycle", "timeCycle", "R3/PT10M"))])
    v2 = engine.deploy([("cycle.bpmn", _timer_start_process("scheduled_cycle", "timeCycle", "R2/PT1H"))])
    [row] = start_timers(engine)
    assert row["definition_id"] == v2["definitions"][0]["id"]
    assert row["due_at"] == T0 + timedelta(hours=1)
    clock.advance(minutes=10)
    assert engine.fire_due_timers() == 0
    clock.advance(minutes=50)
    assert engine.fire_due_timers() == 1
    [started] = instances(engine, "scheduled_cycle")
    assert started["definition_id"] == v2["definitions"][0]["id"]


def test_timer_start_event_with_an_expression_is_refused(engine: Engine) -> None:
    with pytest.raises(InvalidModel) as caught:
        engine.deploy([("tick.bpmn", _timer_start_process("scheduled_expr", "timeDuration", "${delay}"))])
    assert caught.value.status == 400
    assert caught.value.details["element_id"] == "tick"
    assert instances(engine) == [] and start_timers(engine) == []


# --------------------------------------------------------------------------------------- boundary timers
def test_interrupting_boundary_timer_cancels_task_and_escalates(engine: Engine, clock: ManualClock) -> None:
    deploy_b(engine, "许可审查_催办.bpmn")
    started = engine.start(key="licence_review", business_key="XK-2026-001")
    iid = started["id"]
    view = step(engine, started)
    assert open_elements(engine, iid) == ["review"]
    assert timer_dues(engine, iid) == [
        ("overdue", T0 + timedelta(days=3)),
        ("remind", T0 + timedelta(hours=1)),
    ]

    # Two reminders (R2/PT1H), then the cycle is over; the review task stays open.
    clock.advance(hours=1)
    assert engine.fire_due_timers() == 1
    step(engine, iid)
    clock.advance(hours=1)
    assert engine.fire_due_timers() == 1
    view = step(engine, iid)
    assert open_elements(engine, iid) == ["reminder", "reminder", "review"]
    assert timer_dues(engine, iid) == [("overdue", T0 + timedelta(days=3))]

    clock.set(T0 + timedelta(days=3) - timedelta(seconds=1))
    assert engine.fire_due_timers() == 0
    assert "review" in open_elements(engine, iid)

    clock.set(T0 + timedelta(days=3))
    assert engine.fire_due_timers() == 1
    view = step(engine, iid)
    assert view["state"] == "running"
    assert open_elements(engine, iid) == ["escalate", "reminder", "reminder"]
    assert cancelled_elements(engine, iid) == ["review"]
    [cancelled] = tasks(engine, iid, state="cancelled")
    assert cancelled["ended_at"] is not None and cancelled["completed_by"] is None
    escalate = one_task(engine, iid, "escalate")
    assert escalate["candidate_groups"] == ["section_head"] and escalate["name"] == "科长督办"
    assert view["waiting_for"]["timers"] == []

    for item in tasks(engine, iid):
        result = engine.complete(item["id"], {}, user="head.1")
        step(engine, result)
    assert instance(engine, iid)["state"] == "completed"


def test_non_interrupting_cycle_creates_a_reminder_at_each_firing(engine: Engine, clock: ManualClock) -> None:
    deploy_b(engine, "许可审查_催办.bpmn")
    started = engine.start(key="licence_review")
    iid = started["id"]
    step(engine, started)
    review_id = one_task(engine, iid, "review")["id"]

    clock.advance(minutes=59)
    assert engine.fire_due_timers() == 0
    assert open_elements(engine, iid) == ["review"]

    clock.set(T0 + timedelta(hours=1))
    assert engine.fire_due_timers() == 1
    step(engine, iid)
    assert open_elements(engine, iid) == ["reminder", "review"]
    assert one_task(engine, iid, "review")["id"] == review_id  # the same task, still open
    assert timer_dues(engine, iid) == [
        ("overdue", T0 + timedelta(days=3)),
        ("remind", T0 + timedelta(hours=2)),
    ]

    clock.set(T0 + timedelta(hours=2))
    assert engine.fire_due_timers() == 1
    step(engine, iid)
    assert open_elements(engine, iid) == ["reminder", "reminder", "review"]
    assert timer_dues(engine, iid) == [("overdue", T0 + timedelta(days=3))]

    clock.set(T0 + timedelta(hours=3))
    assert engine.fire_due_timers() == 0
    assert open_elements(engine, iid) == ["reminder", "reminder", "review"]

    # Completing the review ends the boundary timers but not the reminders already under way.
    done = engine.complete(review_id, {"approved": True}, user="officer.1")
    view = step(engine, done)
    assert view["state"] == "running"
    assert open_elements(engine, iid) == ["reminder", "reminder"]
    assert cancelled_elements(engine, iid) == []
    assert view["waiting_for"]["timers"] == []
    for item in tasks(engine, iid):
        step(engine, engine.complete(item["id"], {}, user="officer.1"))
    assert instance(engine, iid)["state"] == "completed"


def test_reminder_started_before_completion_survives_and_no_later_reminder_comes(
    engine: Engine, clock: ManualClock
) -> None:
    deploy_b(engine, "许可审查_催办.bpmn")
    started = engine.start(key="licence_review")
    iid = started["id"]
    clock.advance(hours=1)
    assert engine.fire_due_timers() == 1
    step(engine, iid)
    done = engine.complete(one_task(engine, iid, "review")["id"], {}, user="officer.1")
    step(engine, done)
    assert open_elements(engine, iid) == ["reminder"]
    clock.advance(days=5)
    assert engine.fire_due_timers() == 0
    assert open_elements(engine, iid) == ["reminder"]
    assert instance(engine, iid)["state"] == "running"


def test_interrupting_boundary_cycle_fires_once(engine: Engine, clock: ManualClock) -> None:
    body = f"""
  <bpmn:startEvent id="start"/>
  <bpmn:userTask id="work" name="办理"/>
  <bpmn:boundaryEvent id="late" attachedToRef="work">{_timer("timeCycle", "R3/PT1H")}</bpmn:boundaryEvent>
  <bpmn:userTask id="late_work" name="超时处理"/>
  <bpmn:endEvent id="end"/>
  <bpmn:endEvent id="end_late"/>
  {chain("start", "work", "end")}
  {chain("late", "late_work", "end_late")}"""
    engine.deploy([("late.bpmn", process("late_cycle", body))])
    started = engine.start(key="late_cycle")
    iid = started["id"]
    assert timer_dues(engine, iid) == [("late", T0 + timedelta(hours=1))]
    clock.advance(hours=1)
    assert engine.fire_due_timers() == 1
    view = step(engine, iid)
    assert open_elements(engine, iid) == ["late_work"]
    assert cancelled_elements(engine, iid) == ["work"]
    assert view["waiting_for"]["timers"] == []
    clock.advance(hours=5)
    assert engine.fire_due_timers() == 0
    assert open_elements(engine, iid) == ["late_work"]


# ------------------------------------------------------------------------------ invalid timer values
@pytest.mark.parametrize(
    ("variables", "error_type", "fragment"),
    [
        pytest.param({"deadline": "soon"}, "TimerValueError", "'soon'", id="not-a-duration"),
        pytest.param({"deadline": "下周二"}, "TimerValueError", "下周二", id="chinese-text"),
        pytest.param({"deadline": 5}, "TypeError", "int", id="a-number"),
        pytest.param({}, "UnknownVariableError", "deadline", id="missing-variable"),
    ],
)
def test_garbage_timer_value_is_an_incident_and_a_retry_with_fixed_variables_arms_it(
    engine: Engine, clock: ManualClock, variables: dict[str, Any], error_type: str, fragment: str
) -> None:
    engine.deploy([("wait.bpmn", _waiting_process("bad_timer", "timeDuration", "${deadline}"))])
    started = engine.start(key="bad_timer", business_key="T-BAD", variables=variables)
    assert started["state"] == "incident"
    assert started["incident"]["element_id"] == "wait"
    view = step(engine, started)
    assert view["state"] == "incident"
    [incident] = incidents(engine, started["id"])
    assert incident["element_id"] == "wait"
    assert incident["error_type"] == error_type
    assert incident["message"].startswith("timer 'wait'")
    assert fragment in incident["message"]
    assert "NameError" not in incident["message"]
    assert view["waiting_for"]["timers"] == []

    clock.advance(days=10)
    assert engine.fire_due_timers() == 0  # nothing armed, nothing fires

    retried = engine.retry_incident(incident["id"], {"deadline": "PT30M"}, actor="admin")
    assert retried["state"] == "resolved"
    assert retried["instance"]["state"] == "running"
    view = step(engine, started)
    assert view["state"] == "running" and view["incidents"] == []
    due = T0 + timedelta(days=10, minutes=30)
    assert timer_dues(engine, started["id"]) == [("wait", due)]
    assert incidents(engine, started["id"], state="resolved")[0]["id"] == incident["id"]

    clock.set(due)
    assert engine.fire_due_timers() == 1
    view = step(engine, started)
    assert view["activities"] == ["after"]
    assert view["variables"]["deadline"] == "PT30M"


def test_retry_that_is_still_garbage_opens_a_new_incident(engine: Engine) -> None:
    engine.deploy([("wait.bpmn", _waiting_process("bad_timer", "timeDate", "${deadline}"))])
    started = engine.start(key="bad_timer", variables={"deadline": "明天"})
    [first] = incidents(engine, started["id"])
    again = engine.retry_incident(first["id"], {"deadline": "2026-13-45"})
    assert again["instance"]["state"] == "incident"
    view = step(engine, started)
    [second] = incidents(engine, started["id"])
    assert second["id"] != first["id"]
    assert second["element_id"] == "wait" and "2026-13-45" in second["message"]
    fixed = engine.retry_incident(second["id"], {"deadline": "2026-03-02T10:00:00+08:00"})
    assert fixed["instance"]["state"] == "running"
    view = step(engine, started)
    assert timer_dues(engine, started["id"]) == [("wait", datetime(2026, 3, 2, 2, 0, tzinfo=UTC))]
    assert view["incidents"] == []


def test_garbage_boundary_timer_keeps_the_task_and_arms_all_boundaries_after_retry(
    engine: Engine, clock: ManualClock
) -> None:
    body = f"""
  <bpmn:startEvent id="start"/>
  <bpmn:userTask id="work" name="办理"/>
  <bpmn:boundaryEvent id="late" attachedToRef="work">{_timer("timeDuration", "${limit}")}</bpmn:boundaryEvent>
  <bpmn:boundaryEvent id="nag" attachedToRef="work" cancelActivity="false">{_timer("timeCycle", "R/PT1H")}
  </bpmn:boundaryEvent>
  <bpmn:userTask id="late_work" name="超时处理"/>
  <bpmn:userTask id="nag_work" name="催办"/>
  <bpmn:endEvent id="end"/>
  <bpmn:endEvent id="end_late"/>
  <bpmn:endEvent id="end_nag"/>
  {chain("start", "work", "end")}
  {chain("late", "late_work", "end_late")}
  {chain("nag", "nag_work", "end_nag")}"""
    engine.deploy([("b.bpmn", process("bad_boundary", body))])
    started = engine.start(key="bad_boundary", variables={"limit": "三天"})
    iid = started["id"]
    view = step(engine, started)
    assert view["state"] == "incident"
    [incident] = incidents(engine, iid)
    assert incident["element_id"] == "late" and "三天" in incident["message"]

    retried = engine.retry_incident(incident["id"], {"limit": "P3D"})
    assert retried["instance"]["state"] == "running"
    step(engine, iid)
    assert open_elements(engine, iid) == ["work"]
    assert timer_dues(engine, iid) == [("late", T0 + timedelta(days=3)), ("nag", T0 + timedelta(hours=1))]

    clock.advance(hours=1)
    assert engine.fire_due_timers() == 1
    step(engine, iid)
    assert open_elements(engine, iid) == ["nag_work", "work"]
    clock.set(T0 + timedelta(days=3))
    assert engine.fire_due_timers() >= 1  # the late timer, and the hourly reminder due since
    step(engine, iid)
    assert "late_work" in open_elements(engine, iid) and "work" not in open_elements(engine, iid)
    assert cancelled_elements(engine, iid) == ["work"]
    assert timer_dues(engine, iid) == []  # the interruption ended the unbounded reminder cycle too
