"""The audit trail: every command leaves a record (who, what, when, which instance and task, which variables
changed), chained by hashes, so that an edited or removed record is found by ``verify`` — through the API and
through ``caseflow audit verify`` (exit code 1)."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import delete, select, update

from engine import cli
from engine.api.main import create_app
from engine.commands import Engine
from engine.store import audit, queries
from engine.store.db import read_only, unit_of_work
from engine.store.tables import audit_record
from tests.api.conftest import CASE_MODEL, JOB_MODEL
from tests.bpmn_util import chain, process
from tests.conftest import ManualClock

TIMER_MODEL = process(
    "wait_an_hour",
    f"""
  <bpmn:startEvent id="start"/>
  <bpmn:intermediateCatchEvent id="hour">
    <bpmn:timerEventDefinition><bpmn:timeDuration>PT1H</bpmn:timeDuration></bpmn:timerEventDefinition>
  </bpmn:intermediateCatchEvent>
  <bpmn:endEvent id="end"/>
  {chain("start", "hour", "end")}""",
)


def _trail(engine: Engine, instance_id: str) -> list[dict[str, Any]]:
    with read_only(engine.db) as conn:
        return queries.audit_trail(conn, instance_id)


def _verify(engine: Engine, stream: str | None = None) -> list[audit.Problem]:
    with read_only(engine.db) as conn:
        _checked, problems = audit.verify(conn, stream)
    return problems


def _open_task(engine: Engine, instance_id: str) -> dict[str, Any]:
    with read_only(engine.db) as conn:
        [task] = queries.tasks(conn, instance_id=instance_id)
    return task


def _case(engine: Engine, case_no: str = "C-1", divisor: int = 2, actor: str = "starter") -> str:
    started = engine.start(
        key="case_transfer",
        business_key=case_no,
        actor=actor,
        variables={"case_no": case_no, "amount": 10, "divisor": divisor},
    )
    return str(started["id"])


@pytest.fixture
def deployed(engine: Engine) -> None:
    engine.deploy(
        [("case.bpmn", CASE_MODEL), ("archive.bpmn", JOB_MODEL), ("timer.bpmn", TIMER_MODEL)],
        actor="modeller",
    )


# ------------------------------------------------------------------------------------ what is recorded
def test_every_command_appends_who_what_when_where(
    engine: Engine, clock: ManualClock, deployed: None
) -> None:
    with read_only(engine.db) as conn:
        system = conn.execute(select(audit_record).where(audit_record.c.stream == audit.SYSTEM_STREAM)).all()
    assert [(r.command, r.actor) for r in system] == [("deploy", "modeller")]
    assert len(system[0].details["definitions"]) == 3

    t0 = clock()
    instance_id = _case(engine, divisor=0)
    task = _open_task(engine, instance_id)
    clock.advance(minutes=1)
    engine.claim(task["id"], "zhang.san")
    clock.advance(minutes=1)
    engine.unclaim(task["id"], actor="head.wang")
    clock.advance(minutes=1)
    engine.assign(task["id"], "li.si", actor="head.wang")
    clock.advance(minutes=1)
    engine.complete(task["id"], {"checked": True}, user="li.si")
    clock.advance(minutes=1)
    engine.correlate(
        "docs_received",
        correlation_keys={"case_no": "C-1"},
        variables={"pages": 3},
        actor="court",
        message_id="msg-1",
    )
    with read_only(engine.db) as conn:
        [incident] = queries.incidents(conn, instance_id=instance_id)
    clock.advance(minutes=1)
    engine.retry_incident(incident["id"], {"divisor": 5}, actor="admin")

    trail = _trail(engine, instance_id)
    summary = [(r["command"], r["actor"], r["task_id"] == task["id"], r["element_id"]) for r in trail]
    assert summary == [
        ("start", "starter", False, None),
        ("claim", "zhang.san", True, "review"),
        ("unclaim", "head.wang", True, "review"),
        ("assign", "head.wang", True, "review"),
        ("complete", "li.si", True, "review"),
        ("correlate", "court", False, "wait_docs"),
        ("incident", None, False, "compute"),
        ("retry", "admin", False, "compute"),
    ]
    minutes = [round((_at(r["at"]) - t0).total_seconds() / 60) for r in trail]
    assert minutes == [0, 1, 2, 3, 4, 5, 5, 6]
    details = [r["details"] for r in trail]
    assert details[0]["changed"] == {"case_no": "C-1", "amount": 10, "divisor": 0}
    assert details[0]["business_key"] == "C-1"
    assert details[1]["assignee"] == "zhang.san"
    assert details[2] == {"assignee": None, "previous": "zhang.san"}
    assert details[3] == {"assignee": "li.si", "previous": None}
    assert details[4]["changed"] == {"checked": True}
    assert details[5]["message"] == "docs_received"
    assert details[5]["message_id"] == "msg-1"
    assert details[5]["changed"] == {"pages": 3}
    assert "division by zero" in details[6]["message"]
    assert details[7]["changed"] == {"divisor": 5, "ratio": 2.0}
    assert details[7]["state"] == "completed"
    assert _verify(engine) == []


def test_jobs_timers_and_cancel_are_recorded(engine: Engine, clock: ManualClock, deployed: None) -> None:
    job_instance = str(engine.start(key="archive_case", actor="clerk")["id"])
    with read_only(engine.db) as conn:
        [job] = queries.jobs(conn)
    engine.fail_job(job["id"], "archive offline", actor="worker-1")
    engine.complete_job(job["id"], {"archived": True}, actor="worker-1")
    assert [(r["command"], r["actor"]) for r in _trail(engine, job_instance)] == [
        ("start", "clerk"),
        ("fail_job", "worker-1"),
        ("complete_job", "worker-1"),
    ]
    assert _trail(engine, job_instance)[1]["details"] == {"error": "archive offline", "retries": 2}
    assert _trail(engine, job_instance)[2]["details"]["changed"] == {"archived": True}

    timer_instance = str(engine.start(key="wait_an_hour")["id"])
    clock.advance(hours=1, seconds=1)
    assert engine.fire_due_timers() == 1
    timer_trail = _trail(engine, timer_instance)
    assert [(r["command"], r["element_id"]) for r in timer_trail] == [("start", None), ("timer", "hour")]
    assert timer_trail[1]["details"]["state"] == "completed"

    cancelled = _case(engine, "C-2")
    engine.cancel(cancelled, actor="head.wang", reason="重复立案")
    last = _trail(engine, cancelled)[-1]
    assert (last["command"], last["actor"], last["details"]["reason"]) == ("cancel", "head.wang", "重复立案")
    assert _verify(engine) == []


def test_refused_commands_leave_no_record(engine: Engine, deployed: None) -> None:
    instance_id = _case(engine)
    task = _open_task(engine, instance_id)
    engine.claim(task["id"], "zhang.san")
    before = _trail(engine, instance_id)
    for attempt in (
        lambda: engine.claim(task["id"], "li.si"),
        lambda: engine.complete(task["id"], {"__class__": 1}),
        lambda: engine.complete(task["id"], {}, user="li.si"),
        lambda: engine.correlate("docs_received", correlation_keys={"case_no": "C-1"}),
    ):
        with pytest.raises(Exception) as raised:
            attempt()
        assert getattr(raised.value, "status", 500) in (409, 422)
    assert _trail(engine, instance_id) == before


def _at(text: str) -> Any:
    from datetime import datetime

    return datetime.fromisoformat(text)


# ------------------------------------------------------------------------------------------ tampering
@pytest.fixture
def trail(engine: Engine, deployed: None) -> tuple[str, list[dict[str, Any]]]:
    """A case with a few records, and a second case that nobody touches."""
    instance_id = _case(engine)
    task = _open_task(engine, instance_id)
    engine.claim(task["id"], "zhang.san")
    engine.complete(task["id"], {"checked": True})
    _case(engine, "C-2")
    records = _trail(engine, instance_id)
    assert len(records) == 3
    return instance_id, records


def _api_verify(engine: Engine) -> dict[str, Any]:
    with TestClient(create_app(engine)) as client:
        response = client.get("/api/audit/verify")
    assert response.status_code == 200
    body: dict[str, Any] = response.json()
    return body


def _cli_verify(engine: Engine, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> int:
    url = engine.db.url.render_as_string(hide_password=False)
    if engine.db.dialect.name == "postgresql":
        with engine.db.connect() as conn:
            schema = conn.exec_driver_sql("select current_schema()").scalar()
        url += f"?options=-csearch_path%3D{schema}"
    monkeypatch.setenv("CASEFLOW_DATABASE_URL", url)
    monkeypatch.setenv("CASEFLOW_ENV", "test")
    capsys.readouterr()
    code = cli.main(["audit", "verify"])
    printed = capsys.readouterr().out
    assert ('"ok": true' in printed) == (code == 0), printed
    return code


def test_a_fresh_trail_verifies(
    engine: Engine,
    trail: tuple[str, list[dict[str, Any]]],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    body = _api_verify(engine)
    assert body["ok"] is True
    assert body["problems"] == []
    assert body["records_checked"] == 3 + 1 + 1  # the case, the other case, the deployment
    assert _cli_verify(engine, monkeypatch, capsys) == 0


def test_an_edited_record_is_reported(
    engine: Engine,
    trail: tuple[str, list[dict[str, Any]]],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    instance_id, _records = trail
    with unit_of_work(engine.db) as conn:
        conn.execute(
            update(audit_record)
            .where(audit_record.c.stream == instance_id, audit_record.c.seq == 2)
            .values(details={"assignee": "somebody.else"})
        )
    body = _api_verify(engine)
    assert body["ok"] is False
    assert [(p["stream"], p["seq"]) for p in body["problems"]] == [(instance_id, 2)]
    assert "edited" in body["problems"][0]["problem"]
    assert _cli_verify(engine, monkeypatch, capsys) == 1
    # The other case is still fine on its own.
    other = next(i["id"] for i in _instances(engine) if i["id"] != instance_id)
    assert _verify(engine, other) == []


def test_an_edited_actor_is_reported(engine: Engine, trail: tuple[str, list[dict[str, Any]]]) -> None:
    instance_id, _records = trail
    with unit_of_work(engine.db) as conn:
        conn.execute(
            update(audit_record)
            .where(audit_record.c.stream == instance_id, audit_record.c.seq == 1)
            .values(actor="nobody")
        )
    assert [(p.stream, p.seq) for p in _verify(engine)] == [(instance_id, 1)]


def test_a_rewritten_record_with_a_recomputed_hash_is_reported(
    engine: Engine, trail: tuple[str, list[dict[str, Any]]]
) -> None:
    """An editor who also recomputes the record's own hash still breaks the chain (or the head)."""
    instance_id, _records = trail
    for seq in (2, 3):
        with unit_of_work(engine.db) as conn:
            row = conn.execute(
                select(audit_record).where(audit_record.c.stream == instance_id, audit_record.c.seq == seq)
            ).one()
            details = {**row.details, "forged": True}
            digest = audit.record_hash(
                row.stream,
                row.seq,
                row.at,
                row.actor,
                row.command,
                row.task_id,
                row.element_id,
                details,
                row.prev_hash,
            )
            conn.execute(
                update(audit_record).where(audit_record.c.id == row.id).values(details=details, hash=digest)
            )
        problems = _verify(engine, instance_id)
        assert problems, f"rewriting record {seq} went unnoticed"
        assert all(p.stream == instance_id for p in problems)


def test_deleting_the_last_record_is_reported(
    engine: Engine,
    trail: tuple[str, list[dict[str, Any]]],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    instance_id, records = trail
    with unit_of_work(engine.db) as conn:
        conn.execute(
            delete(audit_record).where(
                audit_record.c.stream == instance_id, audit_record.c.seq == len(records)
            )
        )
    body = _api_verify(engine)
    assert body["ok"] is False
    [problem] = body["problems"]
    assert problem["stream"] == instance_id
    assert "removed" in problem["problem"]
    assert _cli_verify(engine, monkeypatch, capsys) == 1


def test_deleting_a_middle_record_is_reported(
    engine: Engine,
    trail: tuple[str, list[dict[str, Any]]],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    instance_id, _records = trail
    with unit_of_work(engine.db) as conn:
        conn.execute(
            delete(audit_record).where(audit_record.c.stream == instance_id, audit_record.c.seq == 2)
        )
    problems = _verify(engine)
    assert problems
    assert {p.stream for p in problems} == {instance_id}
    assert any("missing" in p.problem for p in problems)
    assert _cli_verify(engine, monkeypatch, capsys) == 1


def test_deleting_a_whole_trail_or_a_deployment_record_is_reported(
    engine: Engine, trail: tuple[str, list[dict[str, Any]]]
) -> None:
    instance_id, _records = trail
    with unit_of_work(engine.db) as conn:
        conn.execute(delete(audit_record).where(audit_record.c.stream == instance_id))
        conn.execute(delete(audit_record).where(audit_record.c.stream == audit.SYSTEM_STREAM))
    streams = {p.stream for p in _verify(engine)}
    assert streams == {instance_id, audit.SYSTEM_STREAM}


def _instances(engine: Engine) -> list[dict[str, Any]]:
    with read_only(engine.db) as conn:
        return queries.instances(conn)
