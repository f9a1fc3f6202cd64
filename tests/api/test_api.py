"""The native HTTP API on SQLite and PostgreSQL: every path's happy path, status codes, shapes and errors."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.api.conftest import CASE_MODEL, assert_error, deploy, open_tasks, start
from tests.bpmn_util import one_user_task

REQUIRED_PATHS = {
    "/api/deployments": {"post"},
    "/api/process-definitions": {"get"},
    "/api/process-definitions/{definition_id}/xml": {"get"},
    "/api/process-definitions/key/{key}/start": {"post"},
    "/api/process-instances": {"get"},
    "/api/process-instances/{instance_id}": {"get", "delete"},
    "/api/tasks": {"get"},
    "/api/tasks/{task_id}/claim": {"post"},
    "/api/tasks/{task_id}/unclaim": {"post"},
    "/api/tasks/{task_id}/complete": {"post"},
    "/api/messages": {"post"},
    "/api/incidents": {"get"},
    "/api/incidents/{incident_id}/retry": {"post"},
    "/api/process-instances/{instance_id}/audit": {"get"},
    "/api/audit/verify": {"get"},
}


def _case(client: TestClient, business_key: str = "C-1", divisor: int = 2) -> dict[str, Any]:
    return start(
        client,
        business_key=business_key,
        variables={"case_no": business_key, "amount": 10, "divisor": divisor},
    )


def _task_of(client: TestClient, instance_id: str) -> dict[str, Any]:
    tasks = open_tasks(client, instance_id=instance_id)
    assert len(tasks) == 1, tasks
    return tasks[0]


# ------------------------------------------------------------------------------------------- definitions
def test_deploy_answers_201_with_the_definitions(client: TestClient) -> None:
    response = client.post(
        "/api/deployments",
        files=[("files", ("case.bpmn", CASE_MODEL, "application/xml"))],
        data={"name": "移送流程"},
    )
    assert response.status_code == 201, response.text
    body = response.json()
    assert isinstance(body["id"], str) and body["id"]
    assert body["name"] == "移送流程"
    assert body["created"] is True
    [definition] = body["definitions"]
    assert definition["key"] == "case_transfer"
    assert definition["version"] == 1
    assert definition["id"].startswith("case_transfer:1:")


def test_changed_model_becomes_version_2_and_both_are_listed(client: TestClient) -> None:
    first = deploy(client, ("one.bpmn", one_user_task()))["definitions"][0]
    same = client.post(
        "/api/deployments", files=[("files", ("one.bpmn", one_user_task(), "application/xml"))]
    )
    assert same.status_code == 201
    assert same.json()["created"] is False
    assert same.json()["definitions"][0]["id"] == first["id"]
    second = deploy(client, ("one.bpmn", one_user_task(groups="head")))["definitions"][0]
    assert (second["key"], second["version"]) == ("one_task", 2)

    listed = client.get("/api/process-definitions", params={"key": "one_task"})
    assert listed.status_code == 200
    assert [(d["id"], d["version"]) for d in listed.json()] == [(first["id"], 1), (second["id"], 2)]
    latest = client.get("/api/process-definitions", params={"key": "one_task", "latest": "true"}).json()
    assert [d["version"] for d in latest] == [2]
    assert client.get("/api/process-definitions", params={"key": "nothing"}).json() == []

    # A new instance runs the latest version; the old version's XML is still served as deployed.
    started = start(client, "one_task")
    assert started["definition_id"] == second["id"]
    xml = client.get(f"/api/process-definitions/{first['id']}/xml")
    assert xml.status_code == 200
    assert xml.headers["content-type"].startswith("application/xml")
    assert xml.content == one_user_task()


# --------------------------------------------------------------------------------------- the whole case
def test_a_case_through_every_path(client: TestClient, deployed: dict[str, Any]) -> None:
    started = _case(client, divisor=0)
    instance_id = started["id"]
    assert started["state"] == "running"
    assert started["business_key"] == "C-1"
    assert started["activities"] == ["review"]
    assert started["variables"] == {"case_no": "C-1", "amount": 10, "divisor": 0}

    # Lists filter by key, business key and state.
    assert [
        i["id"] for i in client.get("/api/process-instances", params={"key": "case_transfer"}).json()
    ] == [instance_id]
    assert [i["id"] for i in client.get("/api/process-instances", params={"business_key": "C-1"}).json()] == [
        instance_id
    ]
    assert client.get("/api/process-instances", params={"state": "completed"}).json() == []
    detail = client.get(f"/api/process-instances/{instance_id}")
    assert detail.status_code == 200
    body = detail.json()
    assert {k: body[k] for k in ("id", "state", "activities", "variables")} == {
        "id": instance_id,
        "state": "running",
        "activities": ["review"],
        "variables": {"case_no": "C-1", "amount": 10, "divisor": 0},
    }

    # Tasks: by group, claim, by assignee, unclaim, claim again, complete.
    [task] = open_tasks(client, candidate_group="officer")
    assert task["instance_id"] == instance_id
    assert (task["element_id"], task["name"], task["assignee"]) == ("review", "审核移送材料", None)
    assert open_tasks(client, candidate_group="head") == []
    claimed = client.post(f"/api/tasks/{task['id']}/claim", json={"user": "zhang.san"})
    assert claimed.status_code == 200
    assert claimed.json() == {"id": task["id"], "assignee": "zhang.san"}
    assert [t["id"] for t in open_tasks(client, assignee="zhang.san")] == [task["id"]]
    unclaimed = client.post(f"/api/tasks/{task['id']}/unclaim")
    assert unclaimed.status_code == 200
    assert unclaimed.json()["assignee"] is None
    assert open_tasks(client, assignee="zhang.san") == []
    assert client.post(f"/api/tasks/{task['id']}/claim", json={"user": "li.si"}).status_code == 200
    completed = client.post(f"/api/tasks/{task['id']}/complete", json={"variables": {"checked": True}})
    assert completed.status_code == 200, completed.text
    assert completed.json()["state"] == "running"
    assert completed.json()["activities"] == ["wait_docs"]
    assert open_tasks(client, instance_id=instance_id) == []

    # The message reaches the waiting instance; the script divides by zero: an incident.
    delivered = client.post(
        "/api/messages",
        json={"name": "docs_received", "correlation_keys": {"case_no": "C-1"}, "variables": {"pages": 3}},
    )
    assert delivered.status_code == 200, delivered.text
    [moved] = delivered.json()["instances"]
    assert moved["id"] == instance_id
    assert moved["state"] == "incident"
    incidents = client.get("/api/incidents")
    assert incidents.status_code == 200
    [incident] = incidents.json()
    assert (incident["instance_id"], incident["element_id"], incident["state"]) == (
        instance_id,
        "compute",
        "open",
    )
    assert "division by zero" in incident["message"]

    retried = client.post(f"/api/incidents/{incident['id']}/retry", json={"variables": {"divisor": 2}})
    assert retried.status_code == 200, retried.text
    assert retried.json()["state"] == "resolved"
    assert client.get("/api/incidents").json() == []
    final = client.get(f"/api/process-instances/{instance_id}").json()
    assert final["state"] == "completed"
    assert final["variables"]["ratio"] == 5.0
    assert final["variables"]["pages"] == 3

    trail = client.get(f"/api/process-instances/{instance_id}/audit")
    assert trail.status_code == 200
    commands = [r["command"] for r in trail.json()]
    assert commands == ["start", "claim", "unclaim", "claim", "complete", "correlate", "incident", "retry"]
    assert [r["seq"] for r in trail.json()] == list(range(1, len(commands) + 1))
    verify = client.get("/api/audit/verify")
    assert verify.status_code == 200
    assert verify.json()["ok"] is True
    assert verify.json()["problems"] == []
    assert verify.json()["records_checked"] >= len(commands)


def test_cancel_answers_the_cancelled_instance_then_409(client: TestClient, deployed: dict[str, Any]) -> None:
    instance_id = _case(client)["id"]
    task_id = _task_of(client, instance_id)["id"]
    cancelled = client.delete(f"/api/process-instances/{instance_id}", params={"reason": "撤回"})
    assert cancelled.status_code == 200, cancelled.text
    assert cancelled.json()["state"] == "cancelled"
    assert client.get(f"/api/process-instances/{instance_id}").json()["state"] == "cancelled"
    assert [i["id"] for i in client.get("/api/process-instances", params={"state": "cancelled"}).json()] == [
        instance_id
    ]
    assert open_tasks(client, instance_id=instance_id) == []
    assert_error(client.delete(f"/api/process-instances/{instance_id}"), 409, "instance_not_running")
    assert_error(client.post(f"/api/tasks/{task_id}/complete", json={}), 409, "task_not_open")


def test_jobs_are_listed_and_completed_by_a_worker(client: TestClient, deployed: dict[str, Any]) -> None:
    instance_id = start(client, "archive_case")["id"]
    jobs = client.get("/api/jobs", params={"topic": "archive"})
    assert jobs.status_code == 200
    [job] = jobs.json()
    assert (job["instance_id"], job["element_id"], job["topic"]) == (instance_id, "archive", "archive")
    done = client.post(f"/api/jobs/{job['id']}/complete", json={"variables": {"archived": True}})
    assert done.status_code == 200, done.text
    assert done.json()["state"] == "completed"
    assert client.get("/api/jobs").json() == []


def test_message_buffered_with_ttl_then_delivered(client: TestClient, deployed: dict[str, Any]) -> None:
    buffered = client.post(
        "/api/messages",
        json={
            "name": "docs_received",
            "correlation_keys": {"case_no": "C-9"},
            "message_id": "m-1",
            "ttl_seconds": 3600,
        },
    )
    assert buffered.status_code == 200, buffered.text
    assert buffered.json()["buffered"] is True
    instance_id = _case(client, "C-9")["id"]
    task_id = _task_of(client, instance_id)["id"]
    done = client.post(f"/api/tasks/{task_id}/complete", json={})
    assert done.status_code == 200
    assert done.json()["state"] == "completed"  # the buffered message was waiting for it


# ---------------------------------------------------------------------------------------------- conflicts
def test_claim_conflicts_and_completing_twice_are_409(client: TestClient, deployed: dict[str, Any]) -> None:
    task_id = _task_of(client, _case(client)["id"])["id"]
    assert client.post(f"/api/tasks/{task_id}/claim", json={"user": "zhang.san"}).status_code == 200
    assert (
        client.post(f"/api/tasks/{task_id}/claim", json={"user": "zhang.san"}).status_code == 200
    )  # idempotent
    body = assert_error(
        client.post(f"/api/tasks/{task_id}/claim", json={"user": "li.si"}), 409, "task_claimed", "zhang.san"
    )
    assert body["assignee"] == "zhang.san"
    assert_error(client.post(f"/api/tasks/{task_id}/complete", json={"user": "li.si"}), 409, "task_claimed")
    assert client.post(f"/api/tasks/{task_id}/complete", json={"user": "zhang.san"}).status_code == 200
    assert_error(client.post(f"/api/tasks/{task_id}/complete", json={}), 409, "task_not_open", task_id)
    assert_error(client.post(f"/api/tasks/{task_id}/claim", json={"user": "zhang.san"}), 409, "task_not_open")
    assert_error(client.post(f"/api/tasks/{task_id}/unclaim"), 409, "task_not_open")


def test_a_message_to_nobody_is_409(client: TestClient, deployed: dict[str, Any]) -> None:
    _case(client)  # waits in review, not for the message
    assert_error(
        client.post("/api/messages", json={"name": "docs_received", "correlation_keys": {"case_no": "C-1"}}),
        409,
        "message_not_correlated",
        "docs_received",
    )


def test_retrying_a_resolved_incident_is_409(client: TestClient, deployed: dict[str, Any]) -> None:
    instance_id = _case(client, divisor=0)["id"]
    client.post(f"/api/tasks/{_task_of(client, instance_id)['id']}/complete", json={})
    client.post("/api/messages", json={"name": "docs_received", "correlation_keys": {"case_no": "C-1"}})
    [incident] = client.get("/api/incidents", params={"instance_id": instance_id}).json()
    assert (
        client.post(f"/api/incidents/{incident['id']}/retry", json={"variables": {"divisor": 5}}).status_code
        == 200
    )
    assert_error(client.post(f"/api/incidents/{incident['id']}/retry"), 409, "task_not_open")


# ----------------------------------------------------------------------------------------- unknown ids: 404
UNKNOWN_ID_CALLS: list[tuple[str, str, dict[str, Any] | None]] = [
    ("GET", "/api/process-definitions/{id}/xml", None),
    ("POST", "/api/process-definitions/key/{id}/start", {}),
    ("POST", "/api/process-definitions/{id}/start", {}),
    ("GET", "/api/process-instances/{id}", None),
    ("DELETE", "/api/process-instances/{id}", None),
    ("GET", "/api/process-instances/{id}/audit", None),
    ("GET", "/api/tasks/{id}", None),
    ("POST", "/api/tasks/{id}/claim", {"user": "zhang.san"}),
    ("POST", "/api/tasks/{id}/unclaim", None),
    ("POST", "/api/tasks/{id}/assign", {"user": "zhang.san"}),
    ("POST", "/api/tasks/{id}/complete", {}),
    ("POST", "/api/incidents/{id}/retry", {}),
    ("POST", "/api/jobs/{id}/complete", {}),
    ("POST", "/api/jobs/{id}/fail", {"error_message": "boom"}),
]


@pytest.mark.parametrize(
    ("method", "template", "body"), UNKNOWN_ID_CALLS, ids=[f"{m} {t}" for m, t, _ in UNKNOWN_ID_CALLS]
)
def test_unknown_ids_are_404_json(
    client: TestClient, deployed: dict[str, Any], method: str, template: str, body: dict[str, Any] | None
) -> None:
    unknown = "0f0f0f0f-0000-4000-8000-000000000000"
    response = client.request(method, template.format(id=unknown), json=body)
    assert_error(response, 404, "not_found", unknown)


def test_unknown_path_and_method_are_json(client: TestClient) -> None:
    assert_error(client.get("/api/nothing-here"), 404, "not_found", "/api/nothing-here")
    assert_error(client.put("/api/messages", json={}), 405, "method_not_allowed", "PUT")


# ---------------------------------------------------------------------------------------- wrong types: 422
@pytest.mark.parametrize("variables", [[1, 2], "text", 42, True], ids=["list", "string", "number", "bool"])
def test_variables_that_are_not_an_object_are_422(
    client: TestClient, deployed: dict[str, Any], variables: Any
) -> None:
    instance_id = _case(client)["id"]
    task_id = _task_of(client, instance_id)["id"]
    calls = [
        ("/api/process-definitions/key/case_transfer/start", {"variables": variables}),
        (f"/api/tasks/{task_id}/complete", {"variables": variables}),
        ("/api/messages", {"name": "docs_received", "variables": variables}),
        ("/api/messages", {"name": "docs_received", "correlation_keys": variables}),
    ]
    for path, body in calls:
        problem = assert_error(client.post(path, json=body), 422, "invalid_request")
        assert problem["problems"][0]["field"] in ("variables", "correlation_keys"), problem


def test_field_rules_are_422_naming_the_field(client: TestClient, deployed: dict[str, Any]) -> None:
    task_id = _task_of(client, _case(client)["id"])["id"]
    assert_error(
        client.post("/api/messages", json={"name": "docs_received", "ttl_seconds": -1}),
        422,
        "invalid_request",
        "ttl_seconds",
    )
    assert_error(
        client.post("/api/messages", json={"name": "docs_received", "ttl_seconds": "soon"}),
        422,
        "invalid_request",
        "ttl_seconds",
    )
    assert_error(client.post("/api/messages", json={"variables": {}}), 422, "invalid_request", "name")
    assert_error(client.post(f"/api/tasks/{task_id}/claim", json={}), 422, "invalid_request", "user")
    assert_error(
        client.post(f"/api/tasks/{task_id}/claim", json={"user": ""}), 422, "invalid_request", "user"
    )
    assert_error(client.post(f"/api/tasks/{task_id}/claim", json={"user": 7}), 422, "invalid_request", "user")
    assert_error(
        client.post("/api/process-definitions/key/case_transfer/start", json={"business_key": 12}),
        422,
        "invalid_request",
        "business_key",
    )
    assert_error(
        client.get("/api/process-instances", params={"state": "sleeping"}), 422, "invalid_request", "state"
    )
    assert_error(client.get("/api/tasks", params={"limit": 0}), 422, "invalid_request", "limit")


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/api/process-definitions/key/case_transfer/start", {"variables": {}, "priority": 1}),
        ("/api/messages", {"name": "docs_received", "urgent": True}),
        ("/api/tasks/{task}/claim", {"user": "zhang.san", "force": True}),
        ("/api/tasks/{task}/complete", {"variables": {}, "skip": True}),
        ("/api/incidents/{task}/retry", {"variables": {}, "all": True}),
    ],
    ids=["start", "message", "claim", "complete", "retry"],
)
def test_unknown_fields_are_422(
    client: TestClient, deployed: dict[str, Any], path: str, body: dict[str, Any]
) -> None:
    task_id = _task_of(client, _case(client)["id"])["id"]
    extra = next(k for k in body if k not in ("variables", "name", "user"))
    assert_error(client.post(path.format(task=task_id), json=body), 422, "invalid_request", extra)


# ---------------------------------------------------------------------------------------------- documents
def test_openapi_documents_every_required_path(client: TestClient) -> None:
    spec = client.get("/openapi.json")
    assert spec.status_code == 200
    paths = spec.json()["paths"]
    for path, methods in REQUIRED_PATHS.items():
        assert path in paths, path
        assert methods <= set(paths[path]), (path, set(paths[path]))
    errors = paths["/api/tasks/{task_id}/claim"]["post"]["responses"]
    assert {"404", "409", "422"} <= set(errors)
    docs = client.get("/docs")
    assert docs.status_code == 200
    assert "text/html" in docs.headers["content-type"]
    assert client.get("/api/health").json() == {"status": "ok"}


def test_readiness_asks_the_database(client: TestClient) -> None:
    assert client.get("/api/ready").json() == {"status": "ready", "database": "ok"}


def test_readiness_is_503_while_the_database_is_unreachable() -> None:
    from engine.api.main import create_app
    from engine.commands import Engine
    from engine.store.db import create_db_engine

    unreachable = Engine(create_db_engine("postgresql+psycopg://nobody@127.0.0.1:1/none"))
    with TestClient(create_app(unreachable)) as down:
        response = down.get("/api/ready")
        assert down.get("/api/health").status_code == 200
    assert response.status_code == 503, response.text
    assert response.json()["error"] == "unavailable"
