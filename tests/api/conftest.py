"""API fixtures: a TestClient over the app on SQLite and PostgreSQL, small models, a database snapshot."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from engine.api.main import create_app
from engine.commands import Engine
from engine.store.db import read_only
from engine.store.tables import metadata
from tests.bpmn_util import chain, process

# A case handed over between departments: review, wait for the documents, compute, done.
CASE_MODEL = process(
    "case_transfer",
    """
  <bpmn:startEvent id="start"/>
  <bpmn:userTask id="review" name="审核移送材料" camunda:candidateGroups="officer"/>
  <bpmn:intermediateCatchEvent id="wait_docs" name="等待补充材料">
    <bpmn:messageEventDefinition messageRef="msg_docs"/>
  </bpmn:intermediateCatchEvent>
  <bpmn:scriptTask id="compute" name="计算比例" scriptFormat="python">
    <bpmn:script>ratio = amount / divisor</bpmn:script>
  </bpmn:scriptTask>
  <bpmn:endEvent id="end"/>
  """
    + chain("start", "review", "wait_docs", "compute", "end"),
    extra='<bpmn:message id="msg_docs" name="docs_received" caseflow:correlationKeys="case_no"/>',
    name="案件移送",
)

# A service task done by an external worker (a job).
JOB_MODEL = process(
    "archive_case",
    """
  <bpmn:startEvent id="start"/>
  <bpmn:serviceTask id="archive" name="归档" camunda:type="external" camunda:topic="archive"/>
  <bpmn:endEvent id="end"/>
  """
    + chain("start", "archive", "end"),
)

Snapshot = dict[str, list[str]]


@pytest.fixture
def client(engine: Engine) -> Iterator[TestClient]:
    """The app over the parametrized engine (SQLite and PostgreSQL); an unexpected 500 fails the test."""
    with TestClient(create_app(engine)) as test_client:
        yield test_client


def deploy(client: TestClient, *models: tuple[str, bytes]) -> dict[str, Any]:
    response = client.post(
        "/api/deployments", files=[("files", (name, content, "application/xml")) for name, content in models]
    )
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


def start(client: TestClient, key: str = "case_transfer", **body: Any) -> dict[str, Any]:
    response = client.post(f"/api/process-definitions/key/{key}/start", json=body)
    assert response.status_code == 201, response.text
    result: dict[str, Any] = response.json()
    return result


def open_tasks(client: TestClient, **params: str) -> list[dict[str, Any]]:
    response = client.get("/api/tasks", params=params)
    assert response.status_code == 200, response.text
    tasks: list[dict[str, Any]] = response.json()
    return tasks


@pytest.fixture
def deployed(client: TestClient) -> dict[str, Any]:
    """Both models deployed once."""
    return deploy(client, ("case.bpmn", CASE_MODEL), ("archive.bpmn", JOB_MODEL))


def _row_text(row: Any) -> str:
    return json.dumps(
        list(row), sort_keys=True, default=lambda v: v.hex() if isinstance(v, bytes) else str(v)
    )


def take_snapshot(engine: Engine) -> Snapshot:
    """Every row of every table the engine owns, as sorted text (for before/after comparisons)."""
    with read_only(engine.db) as conn:
        return {
            name: sorted(_row_text(row) for row in conn.execute(select(table)))
            for name, table in sorted(metadata.tables.items())
        }


@pytest.fixture
def db_snapshot(engine: Engine) -> Callable[[], Snapshot]:
    """Call it before and after: equal snapshots mean nothing stored changed."""
    return lambda: take_snapshot(engine)


def assert_error(response: Any, status: int, code: str | None = None, *mentions: str) -> dict[str, Any]:
    """A clear error: the status, JSON {error, message}, and the message naming what was wrong."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body: dict[str, Any] = response.json()
    assert isinstance(body.get("error"), str) and body["error"], body
    assert isinstance(body.get("message"), str) and body["message"], body
    if code is not None:
        assert body["error"] == code, body
    for text in mentions:
        assert text in body["message"], (text, body)
    return body
