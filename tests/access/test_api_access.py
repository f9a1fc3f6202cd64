"""The API over an engine with the demo users directory: 401 for unknown users, 403 for refused claims,
404 for confidential cases outside need-to-know, and the read trail of case supervision."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from engine.api.main import create_app
from engine.commands import Engine
from tests.access.conftest import FIXTURES
from tests.api.conftest import assert_error


@pytest.fixture
def client(guarded: Engine) -> Iterator[TestClient]:
    with TestClient(create_app(guarded)) as test_client:
        yield test_client


def as_user(user: str) -> dict[str, str]:
    return {"X-Caseflow-User": user}


def deploy(client: TestClient, name: str) -> None:
    content = (FIXTURES / name).read_bytes()
    response = client.post("/api/deployments", files=[("files", (name, content, "application/xml"))])
    assert response.status_code == 201, response.text


def start(client: TestClient, key: str, user: str, **variables: Any) -> dict[str, Any]:
    response = client.post(
        f"/api/process-definitions/key/{key}/start",
        json={"business_key": variables.get("case_no"), "variables": variables},
        headers=as_user(user),
    )
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


@pytest.fixture
def cases(client: TestClient) -> dict[str, dict[str, Any]]:
    deploy(client, "enforcement_case.bpmn")
    deploy(client, "discipline_clue.bpmn")
    ordinary = start(client, "enforcement_case", "zhaomin", agency="market_regulation", case_no="罚-1")
    clue = start(
        client,
        "discipline_clue",
        "zhaomin",
        agency="market_regulation",
        case_no="线索-1",
        receiver="discipline_commission",
    )
    return {"ordinary": ordinary, "clue": clue}


def ids(response: Any) -> set[str]:
    assert response.status_code == 200, response.text
    return {item.get("instance_id", item.get("id")) for item in response.json()}


def test_claim_answers_403_naming_the_requirement(client: TestClient, cases: dict[str, Any]) -> None:
    [task] = cases["ordinary"]["tasks"]
    refused = client.post(
        f"/api/tasks/{task['id']}/claim", json={"user": "liuyang"}, headers=as_user("liuyang")
    )
    assert_error(refused, 403, "forbidden", "certified_officer")
    expired = client.post(f"/api/tasks/{task['id']}/claim", json={"user": "wangqiang"})
    assert_error(expired, 403, "forbidden", "expired on 2025-12-31")
    claimed = client.post(
        f"/api/tasks/{task['id']}/claim", json={"user": "zhangwei"}, headers=as_user("zhangwei")
    )
    assert claimed.status_code == 200 and claimed.json()["assignee"] == "zhangwei"


def test_unknown_user_header_is_401(client: TestClient, cases: dict[str, Any]) -> None:
    assert_error(client.get("/api/tasks", headers=as_user("mallory")), 401, "unknown_user", "mallory")
    [task] = cases["ordinary"]["tasks"]
    response = client.post(
        f"/api/tasks/{task['id']}/claim", json={"user": "zhangwei"}, headers=as_user("mallory")
    )
    assert_error(response, 401, "unknown_user")


def test_lists_and_searches_hide_the_clue(client: TestClient, cases: dict[str, Any]) -> None:
    ordinary, clue = cases["ordinary"]["id"], cases["clue"]["id"]
    for headers in ({}, as_user("sunlei"), as_user("chenjing")):
        assert ids(client.get("/api/tasks", headers=headers)) == {ordinary}
        assert ids(client.get("/api/process-instances", headers=headers)) == {ordinary}
        assert ids(client.get("/api/process-instances?business_key=线索-1", headers=headers)) == set()
        assert ids(client.get(f"/api/tasks?instance_id={clue}", headers=headers)) == set()
    for user in ("zhangwei", "caoyun"):
        assert ids(client.get("/api/tasks", headers=as_user(user))) == {ordinary, clue}
        assert ids(client.get("/api/process-instances", headers=as_user(user))) == {ordinary, clue}


def test_other_agencies_audit_view_is_404_and_supervision_reads_are_logged(
    client: TestClient, cases: dict[str, Any]
) -> None:
    clue = cases["clue"]["id"]
    [task] = cases["clue"]["tasks"]
    for path in (
        f"/api/process-instances/{clue}",
        f"/api/process-instances/{clue}/audit",
        f"/api/tasks/{task['id']}",
    ):
        for headers in ({}, as_user("sunlei")):
            assert_error(client.get(path, headers=headers), 404, "not_found", "does not exist")
    assert_error(client.delete(f"/api/process-instances/{clue}", headers=as_user("sunlei")), 404, "not_found")

    detail = client.get(f"/api/process-instances/{clue}", headers=as_user("caoyun"))
    assert detail.status_code == 200 and detail.json()["variables"]["case_no"] == "线索-1"
    trail = client.get(f"/api/process-instances/{clue}/audit", headers=as_user("caoyun")).json()
    reads = [(r["actor"], r["details"]["what"]) for r in trail if r["command"] == "read"]
    assert reads == [("caoyun", "instance"), ("caoyun", "audit")]
    verified = client.get(f"/api/audit/verify?instance_id={clue}").json()
    assert verified["ok"] is True


def test_ordinary_cases_stay_open_to_every_reader(client: TestClient, cases: dict[str, Any]) -> None:
    ordinary = cases["ordinary"]["id"]
    assert client.get(f"/api/process-instances/{ordinary}").status_code == 200
    assert (
        client.get(f"/api/process-instances/{ordinary}/audit", headers=as_user("sunlei")).status_code == 200
    )


def test_a_confidential_task_form_is_need_to_know_and_logged(
    client: TestClient, cases: dict[str, Any]
) -> None:
    [task] = cases["clue"]["tasks"]
    path = f"/api/tasks/{task['id']}/form"
    assert_error(client.get(path, headers=as_user("sunlei")), 404, "not_found")
    assert client.get(path, headers=as_user("zhangwei")).status_code == 200
    trail = client.get(
        f"/api/process-instances/{cases['clue']['id']}/audit", headers=as_user("caoyun")
    ).json()
    assert [(r["actor"], r["details"]["what"]) for r in trail if r["command"] == "read"] == [
        ("zhangwei", "form"),
        ("caoyun", "audit"),
    ]
