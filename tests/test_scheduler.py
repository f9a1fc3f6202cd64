"""The scheduler: one pass fires due timers, relays the outbox and expires buffered messages.

``run_once`` is driven with the injected ManualClock (no waiting). One threaded test runs the real loop on a
real clock with a timer due about 0.3 s ahead; it waits on a condition for at most 3 s.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select

from engine.commands import Engine, system_clock
from engine.scheduler import Scheduler
from engine.store import queries
from engine.store.db import read_only
from engine.store.tables import buffered_message, outbox
from tests.bpmn_util import chain, process
from tests.conftest import ManualClock
from tests.constructs.support_b import deploy_b, incidents, instance, one_task, step, utc

SENDER = "整改通知_发送.bpmn"
RECEIVER = "整改通知_接收.bpmn"


def _outbox(engine: Engine) -> list[Any]:
    with read_only(engine.db) as conn:
        return list(conn.execute(select(outbox).order_by(outbox.c.id)).all())


def _buffered(engine: Engine) -> list[Any]:
    with read_only(engine.db) as conn:
        return list(conn.execute(select(buffered_message)).all())


def test_run_once_fires_a_timer_and_relays_the_message_it_throws(engine: Engine, clock: ManualClock) -> None:
    deploy_b(engine, SENDER, RECEIVER)
    receiver = engine.start(key="notice_receiver", business_key="R-AJ-9", variables={"case_no": "AJ-9"})
    other = engine.start(key="notice_receiver", business_key="R-AJ-10", variables={"case_no": "AJ-10"})
    sender = engine.start(
        key="notice_sender",
        business_key="S-AJ-9",
        variables={"case_no": "AJ-9", "deadline_days": 15, "inspector": "钱七"},
    )
    scheduler = Scheduler(engine, publish=engine.receive)

    clock.advance(minutes=59)
    assert scheduler.run_once() == 0
    assert step(engine, sender)["activities"] == ["cooling_off"]
    assert _outbox(engine) == []

    clock.advance(minutes=1)
    assert scheduler.run_once() == 2  # one timer fired, one message relayed, in the same pass
    assert step(engine, sender)["state"] == "completed"
    [row] = _outbox(engine)
    assert row.message_name == "整改通知" and row.sent_at is not None and row.attempts == 1
    view = step(engine, receiver)
    assert view["activities"] == ["rectify"]
    assert view["variables"] == {"case_no": "AJ-9", "deadline_days": 15}  # only the declared payload
    assert step(engine, other)["activities"] == ["wait_notice"]  # strict correlation on case_no
    assert one_task(engine, receiver["id"], "rectify")["candidate_groups"] == ["officer"]

    assert scheduler.run_once() == 0  # nothing is done twice
    assert len(_outbox(engine)) == 1


def test_run_once_expires_buffered_messages_into_incidents(engine: Engine, clock: ManualClock) -> None:
    scheduler = Scheduler(engine, publish=engine.receive)
    answer = engine.correlate(
        "催告回执",
        business_key="AJ-404",
        correlation_keys={"case_no": "AJ-404"},
        variables={"signed": True},
        message_id="receipt-404",
        ttl_seconds=600,
    )
    assert answer["buffered"] is True
    assert len(_buffered(engine)) == 1

    clock.advance(seconds=599)
    assert scheduler.run_once() == 0
    assert incidents(engine) == [] and len(_buffered(engine)) == 1

    clock.advance(seconds=1)
    assert scheduler.run_once() == 1
    assert _buffered(engine) == []
    [incident] = incidents(engine)
    assert incident["error_type"] == "MessageExpired" and incident["state"] == "open"
    assert incident["instance_id"] is None
    assert "催告回执" in incident["message"] and "receipt-404" in incident["message"]
    assert scheduler.run_once() == 0
    assert len(incidents(engine)) == 1


def test_relayed_message_nobody_waits_for_expires(engine: Engine, clock: ManualClock) -> None:
    deploy_b(engine, SENDER)  # nobody receives this notice
    sender = engine.start(key="notice_sender", variables={"case_no": "AJ-77", "deadline_days": 3})
    scheduler = Scheduler(engine, publish=engine.receive)
    clock.advance(hours=1)
    assert scheduler.run_once() == 2
    assert step(engine, sender)["state"] == "completed"
    [buffered] = _buffered(engine)
    assert buffered.message_name == "整改通知" and buffered.correlation_keys == {"case_no": "AJ-77"}
    assert utc(buffered.expires_at) == clock() + timedelta(seconds=engine.config.default_message_ttl)
    assert incidents(engine) == []

    clock.advance(seconds=engine.config.default_message_ttl)
    assert scheduler.run_once() == 1
    [incident] = incidents(engine)
    assert incident["error_type"] == "MessageExpired" and "整改通知" in incident["message"]


def _wait_for(condition: Callable[[], bool], timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.02)
    return condition()


def test_scheduler_thread_fires_a_timer_on_time_with_a_real_clock(engine: Engine) -> None:
    real = Engine(engine.db, system_clock, engine.config)
    body = f"""
  <bpmn:startEvent id="start"/>
  <bpmn:intermediateCatchEvent id="soon" name="片刻之后">
    <bpmn:timerEventDefinition><bpmn:timeDate>${{due}}</bpmn:timeDate></bpmn:timerEventDefinition>
  </bpmn:intermediateCatchEvent>
  <bpmn:userTask id="after" name="到期处理"/>
  <bpmn:endEvent id="end"/>
  {chain("start", "soon", "after", "end")}"""
    real.deploy([("soon.bpmn", process("real_timer", body))])
    scheduler = Scheduler(real, publish=real.receive)
    scheduler.start()
    try:
        # far enough ahead that a start on a loaded machine does not already find the timer due
        due = datetime.now(UTC) + timedelta(seconds=1.5)
        started = real.start(key="real_timer", variables={"due": due.isoformat()})
        assert started["activities"] == ["soon"]
        assert utc(instance(real, started["id"])["waiting_for"]["timers"][0]["due_at"]) == due

        fired = _wait_for(lambda: instance(real, started["id"])["activities"] == ["after"], timeout_s=5.0)
        assert fired, f"the timer due at {due.isoformat()} had not fired 3.5 s later ({scheduler.last_error})"
        view = step(real, started)
        [task] = view["tasks"]
        created = utc(task["created_at"])  # stamped by the real clock when the timer fired
        assert due <= created <= due + timedelta(seconds=1), f"fired at {created}, due {due}"
        assert scheduler.last_error is None
    finally:
        scheduler.stop()
    assert scheduler._thread is not None and not scheduler._thread.is_alive()


def test_a_timer_that_cannot_fire_is_postponed_with_an_incident_and_others_still_fire(
    engine: Engine, clock: ManualClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    waiting = process(
        "wait_five",
        """
  <bpmn:startEvent id="start"/>
  <bpmn:intermediateCatchEvent id="wait"><bpmn:timerEventDefinition>
    <bpmn:timeDuration>PT5M</bpmn:timeDuration></bpmn:timerEventDefinition></bpmn:intermediateCatchEvent>
  <bpmn:endEvent id="end"/>
  """
        + chain("start", "wait", "end"),
    )
    engine.deploy([("wait.bpmn", waiting)])
    broken = engine.start(key="wait_five", business_key="BROKEN")
    healthy = engine.start(key="wait_five", business_key="HEALTHY")
    original = engine._fire_instance_timer

    def fire(t: Any) -> None:
        if t.instance_id == broken["id"]:
            raise RuntimeError("disk full")
        original(t)

    monkeypatch.setattr(engine, "_fire_instance_timer", fire)
    clock.advance(minutes=5)
    assert engine.fire_due_timers() == 1
    with read_only(engine.db) as conn:
        assert queries.instance(conn, healthy["id"])["state"] == "completed"
        stuck = queries.instance(conn, broken["id"])
    assert stuck["state"] == "running"
    assert "disk full" in stuck["incidents"][0]["message"]
    (due,) = [t["due_at"] for t in stuck["waiting_for"]["timers"]]
    assert due > clock().isoformat()  # postponed, not retried at every pass
    assert engine.fire_due_timers() == 0
    monkeypatch.setattr(engine, "_fire_instance_timer", original)
    clock.advance(minutes=1)
    assert engine.fire_due_timers() == 1
    with read_only(engine.db) as conn:
        recovered = queries.instance(conn, broken["id"])
    assert recovered["state"] == "completed" and recovered["incidents"] == []
