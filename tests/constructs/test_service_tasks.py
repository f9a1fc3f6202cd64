"""Service tasks as jobs, through commands, on SQLite and PostgreSQL.

``camunda:type="external" camunda:topic``, ``caseflow:topic`` and a plain ``serviceTask`` (topic = its id) all
make the instance wait with a job. The instance is saved and reloaded while it waits (trap 5: a plain service
task must serialize). A worker completes the job with result variables, or fails it; at zero retries the
worker's real error text becomes the incident (trap 6: never masked as NameError), and retrying the incident
gives the job its retries back.
"""

from __future__ import annotations

from typing import Any

import pytest

from engine.commands import Engine
from engine.errors import NotFound
from tests.conftest import ManualClock
from tests.constructs.support_b import (
    deploy_b,
    incidents,
    instance,
    jobs,
    one_task,
    step,
)

JOBS = "证照核验_外部任务.bpmn"


def _start(engine: Engine, **variables: Any) -> str:
    deploy_b(engine, JOBS)
    started = engine.start(
        key="licence_jobs", business_key="XK-2026-500", variables={"licence_no": "JY-3301-0042", **variables}
    )
    view = step(engine, started)
    assert view["state"] == "running"
    assert view["activities"] == ["verify"]
    return str(started["id"])


def _job(engine: Engine, iid: str) -> dict[str, Any]:
    [found] = [j for j in jobs(engine) if j["instance_id"] == iid]
    return found


def test_each_service_task_waits_as_a_job_and_continues_with_the_worker_result(engine: Engine) -> None:
    iid = _start(engine)
    job = _job(engine, iid)
    assert job["element_id"] == "verify" and job["topic"] == "licence-verify"
    assert job["retries"] == 3 and job["error_message"] is None
    assert jobs(engine, topic="licence-verify") == [job]
    view = instance(engine, iid)
    assert view["waiting_for"]["jobs"] == [
        {"id": job["id"], "element_id": "verify", "topic": "licence-verify", "retries": 3}
    ]
    assert view["tasks"] == []

    done = engine.complete_job(job["id"], {"licence_valid": True, "holder": "张三"}, actor="worker:verify")
    view = step(engine, done)
    assert view["activities"] == ["notify"]
    assert view["variables"]["licence_valid"] is True and view["variables"]["holder"] == "张三"
    notify = _job(engine, iid)
    assert notify["element_id"] == "notify" and notify["topic"] == "sms-notify"  # caseflow:topic
    assert jobs(engine, topic="licence-verify") == []  # a completed job is gone

    done = engine.complete_job(notify["id"], {"sms_id": "SMS-77"})
    view = step(engine, done)
    archive = _job(engine, iid)
    assert archive["element_id"] == "archive" and archive["topic"] == "archive"  # plain: topic = its id
    assert view["activities"] == ["archive"]

    done = engine.complete_job(archive["id"], {"archived": True})
    view = step(engine, done)
    assert view["activities"] == ["decide"]
    assert jobs(engine) == []
    assert view["variables"] == {
        "licence_no": "JY-3301-0042",
        "licence_valid": True,
        "holder": "张三",
        "sms_id": "SMS-77",
        "archived": True,
    }
    decided = engine.complete(one_task(engine, iid, "decide")["id"], {"granted": True}, user="officer.1")
    assert step(engine, decided)["state"] == "completed"


def test_a_completed_job_cannot_be_completed_again(engine: Engine) -> None:
    iid = _start(engine)
    job = _job(engine, iid)
    engine.complete_job(job["id"], {"licence_valid": True})
    with pytest.raises(NotFound):
        engine.complete_job(job["id"], {"licence_valid": False})
    view = step(engine, iid)
    assert view["activities"] == ["notify"] and view["variables"]["licence_valid"] is True


def test_a_fresh_engine_completes_the_job_of_a_reloaded_instance(engine: Engine, clock: ManualClock) -> None:
    iid = _start(engine)
    job = _job(engine, iid)
    other = Engine(engine.db, clock, engine.config)  # nothing cached: model and instance come from the db
    done = other.complete_job(job["id"], {"licence_valid": True})
    assert step(other, done)["activities"] == ["notify"]


def test_failing_down_to_zero_retries_opens_an_incident_with_the_worker_error(engine: Engine) -> None:
    iid = _start(engine)
    job = _job(engine, iid)
    error = "ConnectionRefusedError: [Errno 111] 证照库接口拒绝连接 (licence-db:8443)"

    first = engine.fail_job(job["id"], "TimeoutError: 证照库接口 30 秒无响应", actor="worker:verify")
    assert first == {"id": job["id"], "retries": 2, "incident_id": None}
    assert _job(engine, iid)["error_message"] == "TimeoutError: 证照库接口 30 秒无响应"
    view = step(engine, iid)
    assert view["state"] == "running" and view["incidents"] == []

    assert engine.fail_job(job["id"], error)["retries"] == 1
    last = engine.fail_job(job["id"], error)
    assert last["retries"] == 0 and last["incident_id"] is not None
    view = step(engine, iid)
    assert view["state"] == "incident"
    [incident] = incidents(engine, iid)
    assert incident["id"] == last["incident_id"]
    assert incident["error_type"] == "JobFailed"
    assert incident["message"] == error  # the worker's own words, not a masked NameError
    assert "NameError" not in incident["message"]
    assert incident["element_id"] == "verify" and incident["task_id"] == job["id"]
    assert _job(engine, iid)["retries"] == 0

    retried = engine.retry_incident(incident["id"], actor="admin")
    assert retried["state"] == "resolved"
    view = step(engine, iid)
    assert view["state"] == "running" and view["incidents"] == []
    assert _job(engine, iid)["retries"] == 3
    assert _job(engine, iid)["id"] == job["id"]  # the same job waits again

    done = engine.complete_job(job["id"], {"licence_valid": True})
    assert step(engine, done)["activities"] == ["notify"]


def test_fail_job_with_no_retries_left_opens_the_incident_at_once(engine: Engine) -> None:
    iid = _start(engine)
    job = _job(engine, iid)
    result = engine.fail_job(job["id"], "PermissionError: 无权访问证照库", retries=0)
    assert result["retries"] == 0 and result["incident_id"]
    [incident] = incidents(engine, iid)
    assert incident["message"] == "PermissionError: 无权访问证照库"
    assert instance(engine, iid)["state"] == "incident"


def test_run_job_handler_error_text_reaches_the_incident(engine: Engine) -> None:
    iid = _start(engine)
    job = _job(engine, iid)
    seen: list[dict[str, Any]] = []

    def broken(variables: dict[str, Any]) -> dict[str, Any]:
        seen.append(variables)
        raise ValueError("bad licence")

    assert engine.run_job(job["id"], broken)["retries"] == 2
    assert engine.run_job(job["id"], broken)["retries"] == 1
    result = engine.run_job(job["id"], broken)
    assert result["retries"] == 0 and result["incident_id"]
    assert seen[0] == {"licence_no": "JY-3301-0042"}  # the handler reads the instance variables
    view = step(engine, iid)
    assert view["state"] == "incident"
    [incident] = incidents(engine, iid)
    assert "bad licence" in incident["message"]
    assert "ValueError" in incident["message"]
    assert "NameError" not in incident["message"]

    engine.retry_incident(incident["id"])
    assert _job(engine, iid)["retries"] == 3
    assert instance(engine, iid)["state"] == "running"

    def working(variables: dict[str, Any]) -> dict[str, Any]:
        number = variables["licence_no"]
        return {"licence_valid": number.startswith("JY-"), "checked_no": number}

    done = engine.run_job(job["id"], working)
    view = step(engine, done)
    assert view["activities"] == ["notify"]
    assert view["variables"]["licence_valid"] is True and view["variables"]["checked_no"] == "JY-3301-0042"
    assert incidents(engine, iid) == []
