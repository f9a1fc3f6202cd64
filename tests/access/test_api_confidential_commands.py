"""Answers to commands and the job list do not show a confidential case to someone without need to know."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from engine.api.main import create_app
from engine.commands import Engine
from tests.access.conftest import deploy

SECRET = "某局长收受礼金线索"


@pytest.fixture
def client(guarded: Engine) -> Iterator[TestClient]:
    with TestClient(create_app(guarded)) as test_client:
        yield test_client


def _user(user: str) -> dict[str, str]:
    return {"X-Caseflow-User": user}


@pytest.fixture
def sealed(guarded: Engine) -> dict[str, Any]:
    deploy(guarded, "sealed_clue_with_job.bpmn")
    return guarded.start(
        key="sealed_clue", business_key="密-1", variables={"case_no": "密-1", "clue": SECRET}, actor="caoyun"
    )


def _deliver(client: TestClient, user: str | None) -> Any:
    return client.post(
        "/api/messages",
        json={"name": "sealed_registered", "correlation_keys": {"case_no": "密-1"}, "variables": {}},
        headers=_user(user) if user else {},
    )


@pytest.mark.parametrize("user", [None, "zhangwei"])
def test_a_message_into_a_confidential_case_answers_without_its_content(
    client: TestClient, sealed: dict[str, Any], user: str | None
) -> None:
    response = _deliver(client, user)
    assert response.status_code == 200, response.text
    assert SECRET not in response.text
    assert response.json()["instances"] == [{"id": sealed["id"], "state": "running", "confidential": True}]


def test_case_supervision_sees_the_answer_in_full(client: TestClient, sealed: dict[str, Any]) -> None:
    response = _deliver(client, "caoyun")
    assert response.status_code == 200, response.text
    (reached,) = response.json()["instances"]
    assert reached["variables"]["clue"] == SECRET


def test_the_confidential_job_is_hidden_from_workers_without_need_to_know(
    client: TestClient, sealed: dict[str, Any]
) -> None:
    _deliver(client, "caoyun")
    assert [j["topic"] for j in client.get("/api/jobs").json()] == []
    assert [j["topic"] for j in client.get("/api/jobs", headers=_user("zhangwei")).json()] == []
    (job,) = client.get("/api/jobs", headers=_user("dengkai")).json()
    assert job["topic"] == "sealed_archive"
    for path, body in (
        (f"/api/jobs/{job['id']}/complete", {"variables": {}}),
        (f"/api/jobs/{job['id']}/fail", {"error_message": "x"}),
    ):
        refused = client.post(path, json=body, headers=_user("zhangwei"))
        assert refused.status_code == 404 and SECRET not in refused.text
    done = client.post(f"/api/jobs/{job['id']}/complete", json={"variables": {}}, headers=_user("dengkai"))
    assert done.status_code == 200, done.text
    assert done.json()["state"] == "completed"
