"""Property-based fuzzing of every operation in /openapi.json: valid and invalid input alike, never a 5xx.

SQLite only (speed). A deployed model, a running case with an open task, a job and an incident are seeded, and
path parameters are drawn from those real ids as well as from generated ones, so that requests also reach the
code behind a found record. Examples are bounded and derandomized so the run is stable and quick.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error

from engine.api.main import create_app
from engine.commands import Engine
from engine.store.db import create_db_engine
from tests.api.conftest import CASE_MODEL, JOB_MODEL, deploy, open_tasks, start

# Real ids by path parameter name, filled by the fixture before any example is generated.
SEEDED: dict[str, list[str]] = {}


@schemathesis.hook
def flatmap_path_parameters(context: Any, path_parameters: dict[str, Any] | None) -> st.SearchStrategy[Any]:
    if not path_parameters:
        return st.just(path_parameters)
    choices = {
        name: st.sampled_from([value, *SEEDED[name]]) if SEEDED.get(name) else st.just(value)
        for name, value in path_parameters.items()
    }
    return st.fixed_dictionaries(choices)


def _seed(engine: Engine) -> None:
    app = create_app(engine)
    with TestClient(app) as client:
        deployed = deploy(client, ("case.bpmn", CASE_MODEL), ("archive.bpmn", JOB_MODEL))
        running = start(client, business_key="C-1", variables={"case_no": "C-1", "amount": 1, "divisor": 1})
        failing = start(client, business_key="C-2", variables={"case_no": "C-2", "amount": 1, "divisor": 0})
        [task] = open_tasks(client, instance_id=failing["id"])
        assert client.post(f"/api/tasks/{task['id']}/complete", json={}).status_code == 200
        assert (
            client.post(
                "/api/messages", json={"name": "docs_received", "correlation_keys": {"case_no": "C-2"}}
            ).status_code
            == 200
        )
        start(client, "archive_case")
        tasks = open_tasks(client, instance_id=running["id"])
        incidents = client.get("/api/incidents").json()
        jobs = client.get("/api/jobs").json()
    assert tasks and incidents and jobs
    SEEDED.clear()
    SEEDED.update(
        {
            "key": [d["key"] for d in deployed["definitions"]],
            "definition_id": [d["id"] for d in deployed["definitions"]],
            "instance_id": [running["id"], failing["id"]],
            "task_id": [t["id"] for t in tasks],
            "incident_id": [i["id"] for i in incidents],
            "job_id": [j["id"] for j in jobs],
        }
    )


# The schema is read at import (schemathesis' lazy fixture loader fails under this pytest); requests go to
# whichever engine the fixture below installs, so every operation still gets its own fresh, seeded database.
APP = create_app(Engine(create_db_engine("sqlite://")))
schema = schemathesis.openapi.from_asgi("/openapi.json", APP)


@pytest.fixture(autouse=True)
def seeded_engine(sqlite_engine: Engine) -> Iterator[Engine]:
    APP.state.engine = sqlite_engine
    _seed(sqlite_engine)
    yield sqlite_engine
    SEEDED.clear()


@schema.parametrize()
@settings(
    max_examples=25, deadline=None, derandomize=True, database=None, suppress_health_check=list(HealthCheck)
)
def test_no_operation_answers_a_server_error(case: Any) -> None:
    response = case.call()
    case.validate_response(response, checks=[not_a_server_error])
    if response.status_code >= 400:
        body = response.json()
        assert isinstance(body.get("error"), str) and isinstance(body.get("message"), str), body
