"""Deadlines on the business calendar through the engine (SQLite and PostgreSQL, injected clock).

Given a model whose timer or user task declares ``caseflow:calendar``, when an instance reaches it at a chosen
moment, then the due time stored for the timer / shown on the task is the one the calendar rule gives, the timer
does not fire one second before it and fires at it, and a deadline past the known holiday arrangement is flagged
on the task and on the instance.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from engine.api.main import create_app
from engine.calendar import SHANGHAI, load_calendar
from engine.commands import Engine, EngineConfig
from engine.errors import InvalidModel
from engine.store.db import create_db_engine
from engine.store.migrate import migrate
from tests.bpmn_util import chain, flow, process
from tests.conftest import ManualClock
from tests.constructs.support_b import incidents, one_task, step, tasks, timer_dues, utc

NOTE_2027 = "期限超出已知节假日安排（2027 年），按周一至周五推算，请核对"


def beijing(day: str, hour: int = 10) -> datetime:
    moment = datetime.fromisoformat(day).replace(hour=hour, tzinfo=SHANGHAI)
    return moment.astimezone(UTC)


def end_of(day: str) -> datetime:
    """24:00 Beijing of the day, in UTC."""
    return (datetime.fromisoformat(day).replace(tzinfo=SHANGHAI) + timedelta(days=1)).astimezone(UTC)


def _timer(value: str) -> str:
    return f"<bpmn:timerEventDefinition><bpmn:timeDuration>{value}</bpmn:timeDuration></bpmn:timerEventDefinition>"


def waiting_model(calendar: str, value: str, pid: str = "wait_cal") -> bytes:
    return process(
        pid,
        f"""
  <bpmn:startEvent id="start"/>
  <bpmn:intermediateCatchEvent id="wait" name="期限届满" caseflow:calendar="{calendar}">
    <bpmn:documentation>行政处罚法 第八十五条：“三日”指工作日</bpmn:documentation>
    {_timer(value)}
  </bpmn:intermediateCatchEvent>
  <bpmn:userTask id="after" name="期满处理" camunda:candidateGroups="officer"/>
  <bpmn:endEvent id="end"/>
  {chain("start", "wait", "after", "end")}""",
    )


def escalation_model(value: str, calendar: str = "working_days", pid: str = "ack_cal") -> bytes:
    """督办: a non-interrupting boundary timer on the receiver's acknowledgement leads to a supervision task."""
    return process(
        pid,
        f"""
  <bpmn:startEvent id="start"/>
  <bpmn:userTask id="acknowledge" name="接收确认" camunda:candidateGroups="urban_management:officer"/>
  <bpmn:boundaryEvent id="overdue" name="逾期未确认" attachedToRef="acknowledge" cancelActivity="false"
      caseflow:calendar="{calendar}">
    <bpmn:documentation>[U] 参数，实践值 2 个工作日</bpmn:documentation>
    {_timer(value)}
  </bpmn:boundaryEvent>
  <bpmn:userTask id="supervise" name="司法局督办：逾期未确认" camunda:candidateGroups="justice_bureau:supervisor"/>
  <bpmn:endEvent id="end"/>
  <bpmn:endEvent id="end_supervised"/>
  {chain("start", "acknowledge", "end")}
  {chain("overdue", "supervise", "end_supervised")}""",
    )


def due_date_model(value: str = "P5D", calendar: str = "working_days", pid: str = "decide_cal") -> bytes:
    return process(
        pid,
        f"""
  <bpmn:startEvent id="start"/>
  <bpmn:userTask id="decide" name="作出决定" camunda:candidateGroups="market_regulation:officer"
      camunda:dueDate="{value}" caseflow:calendar="{calendar}"/>
  <bpmn:endEvent id="end"/>
  {chain("start", "decide", "end")}""",
    )


def gateway_model() -> bytes:
    """Payment within 15 days (行政处罚法 第六十七条, calendar days) or enforcement."""
    return process(
        "pay_cal",
        f"""
  <bpmn:startEvent id="start"/>
  <bpmn:eventBasedGateway id="gw"/>
  <bpmn:intermediateCatchEvent id="paid" name="缴纳罚款">
    <bpmn:messageEventDefinition messageRef="msg_paid"/>
  </bpmn:intermediateCatchEvent>
  <bpmn:intermediateCatchEvent id="payment_due" name="十五日期满" caseflow:calendar="calendar_days">
    {_timer("P15D")}
  </bpmn:intermediateCatchEvent>
  <bpmn:userTask id="enforce" name="申请强制执行" camunda:candidateGroups="officer"/>
  <bpmn:endEvent id="end_paid"/>
  <bpmn:endEvent id="end_enforced"/>
  {chain("start", "gw")}
  {flow("f_gw_paid", "gw", "paid")}
  {flow("f_gw_due", "gw", "payment_due")}
  {chain("paid", "end_paid")}
  {chain("payment_due", "enforce", "end_enforced")}""",
        extra='<bpmn:message id="msg_paid" name="fine_paid" caseflow:correlationKeys="case_no"/>',
    )


def fires_exactly_at(engine: Engine, clock: ManualClock, due: datetime) -> None:
    clock.set(due - timedelta(seconds=1))
    assert engine.fire_due_timers() == 0
    clock.set(due)
    assert engine.fire_due_timers() == 1


def flags(engine: Engine, instance_id: str) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = step(engine, instance_id)["flags"]
    return found


# -------------------------------------------------------------------------------------------- timers
def test_working_day_timer_spanning_national_day(engine: Engine, clock: ManualClock) -> None:
    # Wednesday 2026-09-30 16:00: 10-01..07 off; 10-08 (1), 10-09 (2), Saturday 10-10 (3, adjusted).
    engine.deploy([("wait.bpmn", waiting_model("working_days", "P3D"))])
    clock.set(beijing("2026-09-30", 16))
    started = engine.start(key="wait_cal", business_key="GQ-1")
    due = end_of("2026-10-10")
    assert timer_dues(engine, started["id"]) == [("wait", due)]
    assert flags(engine, started["id"]) == []
    fires_exactly_at(engine, clock, due)
    assert [t["element_id"] for t in tasks(engine, started["id"])] == ["after"]


def test_boundary_timer_landing_on_an_adjusted_saturday_escalates(engine: Engine, clock: ManualClock) -> None:
    # Thursday 2026-10-08 + 2 working days: Friday 10-09, Saturday 10-10 (an adjusted working day).
    engine.deploy([("ack.bpmn", escalation_model("P2D"))])
    clock.set(beijing("2026-10-08", 9))
    started = engine.start(key="ack_cal", business_key="ACK-1")
    due = end_of("2026-10-10")
    assert timer_dues(engine, started["id"]) == [("overdue", due)]
    # No dueDate on the task: it shows the deadline of its boundary timer.
    task = one_task(engine, started["id"], "acknowledge")
    assert utc(task["due_at"]) == due and task["deadline_note"] is None
    fires_exactly_at(engine, clock, due)
    assert sorted(t["element_id"] for t in tasks(engine, started["id"])) == ["acknowledge", "supervise"]
    supervise = one_task(engine, started["id"], "supervise")
    assert supervise["candidate_groups"] == ["justice_bureau:supervisor"]
    trail = [r for r in engine_audit(engine, started["id"]) if r["command"] == "timer"]
    assert [r["element_id"] for r in trail] == ["overdue"]


def test_boundary_timer_with_a_computed_number_of_working_days(engine: Engine, clock: ManualClock) -> None:
    engine.deploy([("ack.bpmn", escalation_model("${ack_days}"))])
    clock.set(beijing("2026-09-29", 15))
    started = engine.start(key="ack_cal", business_key="ACK-2", variables={"ack_days": "P5D"})
    # 09-30 (1), 10-08 (2), 10-09 (3), 10-10 (4), Monday 10-12 (5).
    assert timer_dues(engine, started["id"]) == [("overdue", end_of("2026-10-12"))]


def test_a_computed_duration_the_calendar_cannot_count_is_an_incident(
    engine: Engine, clock: ManualClock
) -> None:
    engine.deploy([("ack.bpmn", escalation_model("${ack_days}"))])
    started = engine.start(key="ack_cal", business_key="ACK-3", variables={"ack_days": "PT3H"})
    found = incidents(engine, started["id"])
    assert len(found) == 1 and found[0]["element_id"] == "overdue"
    assert "working days" in found[0]["message"]


def test_calendar_days_on_an_event_based_gateway_move_off_the_holiday(
    engine: Engine, clock: ManualClock
) -> None:
    # 09-22 + 15 days = 10-07, a holiday: the period ends at 24:00 of 10-08.
    engine.deploy([("pay.bpmn", gateway_model())])
    clock.set(beijing("2026-09-22", 11))
    started = engine.start(key="pay_cal", business_key="PAY-1", variables={"case_no": "PAY-1"})
    due = end_of("2026-10-08")
    assert timer_dues(engine, started["id"]) == [("payment_due", due)]
    fires_exactly_at(engine, clock, due)
    assert [t["element_id"] for t in tasks(engine, started["id"])] == ["enforce"]


def test_hours_are_elapsed_time_through_the_holiday(engine: Engine, clock: ManualClock) -> None:
    engine.deploy([("wait.bpmn", waiting_model("hours", "PT24H"))])
    clock.set(beijing("2026-09-30", 16))
    started = engine.start(key="wait_cal", business_key="H-1")
    due = beijing("2026-10-01", 16)
    assert timer_dues(engine, started["id"]) == [("wait", due)]
    fires_exactly_at(engine, clock, due)


# ----------------------------------------------------------------------------------------- due dates
def test_user_task_due_date_in_working_days(engine: Engine, clock: ManualClock) -> None:
    engine.deploy([("decide.bpmn", due_date_model("P5D"))])
    clock.set(beijing("2026-09-29", 15))
    started = engine.start(key="decide_cal", business_key="D-1")
    task = one_task(engine, started["id"], "decide")
    assert utc(task["due_at"]) == end_of("2026-10-12")
    assert task["deadline_note"] is None


def test_user_task_due_date_without_calendar_keeps_elapsed_time(engine: Engine, clock: ManualClock) -> None:
    model = process(
        "plain_due",
        f"""
  <bpmn:startEvent id="start"/>
  <bpmn:userTask id="decide" name="作出决定" camunda:candidateGroups="officer" camunda:dueDate="P5D"/>
  <bpmn:endEvent id="end"/>
  {chain("start", "decide", "end")}""",
    )
    engine.deploy([("plain.bpmn", model)])
    clock.set(beijing("2026-09-29", 15))
    started = engine.start(key="plain_due")
    assert utc(one_task(engine, started["id"], "decide")["due_at"]) == beijing("2026-10-04", 15)


# ------------------------------------------------------------------------------- past the known data
def test_a_due_date_past_the_known_data_is_flagged_on_task_and_instance(
    engine: Engine, clock: ManualClock
) -> None:
    # Monday 2026-12-28 + 5: 12-29, 12-30, 12-31, Friday 2027-01-01 (a guess), Monday 01-04.
    engine.deploy([("decide.bpmn", due_date_model("P5D"))])
    clock.set(beijing("2026-12-28", 10))
    started = engine.start(key="decide_cal", business_key="D-2")
    task = one_task(engine, started["id"], "decide")
    assert utc(task["due_at"]) == end_of("2027-01-04")
    assert task["deadline_note"] == NOTE_2027
    assert flags(engine, started["id"]) == [
        {
            "kind": "deadline_estimated",
            "element_id": "decide",
            "due_at": end_of("2027-01-04").astimezone(SHANGHAI).isoformat(),
            "note": NOTE_2027,
        }
    ]
    # The flag stays after the task is done: that deadline was an estimate.
    engine.complete(task["id"], {}, user="officer1")
    view = step(engine, started["id"])
    assert view["state"] == "completed" and [f["element_id"] for f in view["flags"]] == ["decide"]


def test_a_timer_past_the_known_data_is_flagged_and_fires_at_the_estimate(
    engine: Engine, clock: ManualClock
) -> None:
    # Wednesday 2026-12-30 + 3: 12-31 (1), Friday 2027-01-01 (2, a guess), Monday 01-04 (3).
    engine.deploy([("ack.bpmn", escalation_model("P3D"))])
    clock.set(beijing("2026-12-30", 10))
    started = engine.start(key="ack_cal", business_key="ACK-4")
    due = end_of("2027-01-04")
    assert timer_dues(engine, started["id"]) == [("overdue", due)]
    task = one_task(engine, started["id"], "acknowledge")
    assert utc(task["due_at"]) == due and task["deadline_note"] == NOTE_2027
    assert sorted(f["element_id"] for f in flags(engine, started["id"])) == ["acknowledge", "overdue"]
    fires_exactly_at(engine, clock, due)
    assert sorted(f["element_id"] for f in flags(engine, started["id"])) == ["acknowledge", "overdue"]


def test_flags_and_notes_are_served_by_the_api(engine: Engine, clock: ManualClock) -> None:
    engine.deploy([("decide.bpmn", due_date_model("P5D"))])
    clock.set(beijing("2026-12-28", 10))
    started = engine.start(key="decide_cal", business_key="D-3")
    with TestClient(create_app(engine)) as client:
        listed = client.get("/api/tasks", params={"instance_id": started["id"]})
        assert listed.status_code == 200
        (task,) = [t for t in listed.json() if t["instance_id"] == started["id"]]
        assert task["deadline_note"] == NOTE_2027
        assert client.get(f"/api/tasks/{task['id']}").json()["deadline_note"] == NOTE_2027
        detail = client.get(f"/api/process-instances/{started['id']}").json()
        assert [f["note"] for f in detail["flags"]] == [NOTE_2027]


# ------------------------------------------------------------------------------ a year from a local file
SYNTHETIC_2027 = """\
year: 2027
source: synthetic test arrangement (not the official 2027 notice)
holidays:
  - {name: 元旦, from: 2027-01-01, to: 2027-01-03}
workdays:
  - {name: 元旦, date: 2027-01-09}
"""


@pytest.fixture
def engine_2027(db_url: tuple[str, str | None], clock: ManualClock, tmp_path: Path) -> Iterator[Engine]:
    folder = tmp_path / "calendar"
    folder.mkdir()
    (folder / "2027.yaml").write_text(SYNTHETIC_2027, encoding="utf-8")
    url, schema = db_url
    db = create_db_engine(url, schema=schema)
    migrate(db)
    yield Engine(db, clock, EngineConfig(timezone=UTC, calendar=load_calendar(folder)))
    db.dispose()


def test_a_local_file_makes_the_year_known(engine_2027: Engine, clock: ManualClock) -> None:
    # 12-29, 12-30, 12-31, (01-01 off by the file), 01-04, 01-05.
    engine_2027.deploy([("decide.bpmn", due_date_model("P5D"))])
    clock.set(beijing("2026-12-28", 10))
    started = engine_2027.start(key="decide_cal", business_key="D-4")
    task = one_task(engine_2027, started["id"], "decide")
    assert utc(task["due_at"]) == end_of("2027-01-05")
    assert task["deadline_note"] is None
    assert flags(engine_2027, started["id"]) == []


def test_a_local_adjusted_saturday_counts(engine_2027: Engine, clock: ManualClock) -> None:
    # Friday 2027-01-08 + 1: Saturday 01-09 is a working day by the file.
    engine_2027.deploy([("wait.bpmn", waiting_model("working_days", "P1D"))])
    clock.set(beijing("2027-01-08", 10))
    started = engine_2027.start(key="wait_cal")
    due = end_of("2027-01-09")
    assert timer_dues(engine_2027, started["id"]) == [("wait", due)]
    fires_exactly_at(engine_2027, clock, due)


# ------------------------------------------------------------------------------------------ refusals
REFUSED = [
    pytest.param(waiting_model("business_days", "P3D"), "wait", "is not one of", id="unknown-kind"),
    pytest.param(waiting_model("working_days", "PT3H"), "wait", "working days", id="hours-as-working-days"),
    pytest.param(
        waiting_model("calendar_days", "P1DT2H"), "wait", "calendar days", id="time-in-calendar-days"
    ),
    pytest.param(escalation_model("P2D", calendar="weekdays"), "overdue", "is not one of", id="boundary"),
    pytest.param(due_date_model("P5D", calendar="workdays"), "decide", "is not one of", id="user-task"),
    pytest.param(due_date_model("PT4H"), "decide", "working days", id="user-task-hours"),
    pytest.param(
        process(
            "no_due",
            f"""<bpmn:startEvent id="start"/>
  <bpmn:userTask id="decide" name="作出决定" caseflow:calendar="working_days"/>
  <bpmn:endEvent id="end"/>{chain("start", "decide", "end")}""",
        ),
        "decide",
        "has none",
        id="user-task-without-due-date",
    ),
    pytest.param(
        process(
            "on_date",
            f"""<bpmn:startEvent id="start"/>
  <bpmn:intermediateCatchEvent id="wait" caseflow:calendar="working_days">
    <bpmn:timerEventDefinition><bpmn:timeDate>2027-01-01</bpmn:timeDate></bpmn:timerEventDefinition>
  </bpmn:intermediateCatchEvent>
  <bpmn:endEvent id="end"/>{chain("start", "wait", "end")}""",
        ),
        "wait",
        "applies to a timeDuration",
        id="time-date",
    ),
    pytest.param(
        process(
            "on_start",
            f"""<bpmn:startEvent id="tick" caseflow:calendar="working_days">{_timer("P1D")}</bpmn:startEvent>
  <bpmn:endEvent id="end"/>{chain("tick", "end")}""",
        ),
        "tick",
        "not to a timeDuration on a startEvent",
        id="start-event",
    ),
]


@pytest.mark.parametrize(("model", "element", "message"), REFUSED)
def test_a_bad_calendar_is_refused_at_deploy_naming_the_element(
    sqlite_engine: Engine, model: bytes, element: str, message: str
) -> None:
    with pytest.raises(InvalidModel) as caught:
        sqlite_engine.deploy([("bad.bpmn", model)])
    assert f"element '{element}'" in caught.value.message
    assert message in caught.value.message


def engine_audit(engine: Engine, instance_id: str) -> list[dict[str, Any]]:
    from engine.store import queries
    from engine.store.db import read_only

    with read_only(engine.db) as conn:
        return queries.audit_trail(conn, instance_id)
