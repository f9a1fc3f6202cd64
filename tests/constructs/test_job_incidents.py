"""A job whose worker gave up keeps its instance in incident until the job is retried or completed."""

from __future__ import annotations

from engine.commands import Engine
from engine.store import queries
from engine.store.db import read_only
from tests.bpmn_util import chain, process

MODEL = process(
    "checked",
    """
  <bpmn:startEvent id="start"/>
  <bpmn:serviceTask id="check_licence" name="核验许可证" camunda:type="external" camunda:topic="licence"/>
  <bpmn:userTask id="review" name="审核"/>
  <bpmn:endEvent id="end"/>
  """
    + chain("start", "check_licence", "review", "end"),
)


def _state(engine: Engine, instance_id: str) -> tuple[str, list[dict[str, object]]]:
    with read_only(engine.db) as conn:
        inst = queries.instance(conn, instance_id)
    return str(inst["state"]), list(inst["incidents"])


def test_completing_a_failed_job_resolves_its_incident(engine: Engine) -> None:
    engine.deploy([("checked.bpmn", MODEL)])
    started = engine.start(key="checked")
    with read_only(engine.db) as conn:
        (job,) = queries.jobs(conn, "licence")
    result = engine.fail_job(job["id"], "licence registry unreachable", retries=0)
    state, incidents = _state(engine, started["id"])
    assert state == "incident"
    assert [i["message"] for i in incidents] == ["licence registry unreachable"]
    assert result["incident_id"] == incidents[0]["id"]

    done = engine.complete_job(job["id"], {"licence_valid": True})
    assert done["state"] == "running"
    state, incidents = _state(engine, started["id"])
    assert state == "running" and incidents == []


def test_retrying_a_failed_job_restores_its_retries(engine: Engine) -> None:
    engine.deploy([("checked.bpmn", MODEL)])
    started = engine.start(key="checked")
    with read_only(engine.db) as conn:
        (job,) = queries.jobs(conn, "licence")
    engine.fail_job(job["id"], "timeout", retries=0)
    state, incidents = _state(engine, started["id"])
    assert state == "incident"
    retried = engine.retry_incident(str(incidents[0]["id"]))
    assert retried["state"] == "resolved"
    state, incidents = _state(engine, started["id"])
    assert state == "running" and incidents == []
    with read_only(engine.db) as conn:
        (again,) = queries.jobs(conn, "licence")
    assert again["retries"] == engine.config.job_retries
