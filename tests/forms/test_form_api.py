"""Forms over HTTP: GET /api/tasks/{id}/form, the definition's forms, and the 422 a wrong completion gets."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from engine.api.main import create_app
from engine.commands import Engine
from tests.api.conftest import Snapshot, assert_error, deploy, open_tasks, start, take_snapshot
from tests.forms.support import GOOD, form_model


@pytest.fixture
def client(engine: Engine) -> Iterator[TestClient]:
    with TestClient(create_app(engine)) as test_client:
        yield test_client


@pytest.fixture
def db_snapshot(engine: Engine) -> Callable[[], Snapshot]:
    return lambda: take_snapshot(engine)


@pytest.fixture
def case(client: TestClient) -> dict[str, Any]:
    deployed = deploy(client, ("decision.bpmn", form_model()))
    started = start(client, "penalty_decision", business_key="HB-1", variables={"case_no": "HB-2026-001"})
    [task] = open_tasks(client, instance_id=started["id"])
    return {"definition": deployed["definitions"][0]["id"], "instance": started["id"], "task": task["id"]}


def test_the_form_lists_fields_with_types_constraints_options_defaults_and_current_values(
    client: TestClient, case: dict[str, Any]
) -> None:
    response = client.get(f"/api/tasks/{case['task']}/form")
    assert response.status_code == 200, response.text
    form = response.json()
    assert {k: form[k] for k in ("task_id", "instance_id", "element_id", "name", "form_key", "has_form")} == {
        "task_id": case["task"],
        "instance_id": case["instance"],
        "element_id": "decide",
        "name": "作出处理决定",
        "form_key": None,
        "has_form": True,
    }
    fields = {f["id"]: f for f in form["fields"]}
    assert list(fields) == [
        "case_no",
        "summary",
        "fine_amount",
        "ratio",
        "approved",
        "decided_on",
        "decision",
    ]
    assert fields["case_no"] == {
        "id": "case_no",
        "label": "案件编号",
        "type": "string",
        "required": False,
        "readonly": True,
        "default": None,
        "value": "HB-2026-001",
        "options": None,
        "constraints": {},
        "multiline": False,
        "properties": {},
    }
    assert fields["summary"]["constraints"] == {"minlength": 5, "maxlength": 200}
    assert fields["summary"]["multiline"] and fields["summary"]["properties"] == {
        "placeholder": "简要说明违法事实"
    }
    assert fields["summary"]["required"] and fields["summary"]["value"] is None
    assert (fields["fine_amount"]["type"], fields["fine_amount"]["default"]) == ("long", 0)
    assert fields["fine_amount"]["constraints"] == {"min": 0, "max": 200000}
    assert fields["decided_on"]["constraints"] == {"min": "2020-01-01", "max": "2030-12-31"}
    assert fields["decision"]["options"] == [
        {"id": "penalty", "name": "给予行政处罚"},
        {"id": "no_penalty", "name": "不予行政处罚"},
    ]
    assert fields["decision"]["default"] == "penalty"


def test_a_task_without_form_data_answers_an_empty_form(client: TestClient, case: dict[str, Any]) -> None:
    assert client.post(f"/api/tasks/{case['task']}/complete", json={"variables": GOOD}).status_code == 200
    [notify] = open_tasks(client, instance_id=case["instance"])
    form = client.get(f"/api/tasks/{notify['id']}/form").json()
    assert (form["element_id"], form["has_form"], form["fields"]) == ("notify", False, [])


def test_a_completed_case_still_shows_the_form_with_the_submitted_values(
    client: TestClient, case: dict[str, Any]
) -> None:
    assert client.post(f"/api/tasks/{case['task']}/complete", json={"variables": GOOD}).status_code == 200
    [notify] = open_tasks(client, instance_id=case["instance"])
    assert client.post(f"/api/tasks/{notify['id']}/complete", json={"variables": {}}).status_code == 200
    assert client.get(f"/api/process-instances/{case['instance']}").json()["state"] == "completed"
    form = client.get(f"/api/tasks/{case['task']}/form").json()
    values = {f["id"]: f["value"] for f in form["fields"]}
    assert values == {**GOOD, "case_no": "HB-2026-001"}


def test_the_form_of_an_unknown_task_is_a_404(client: TestClient) -> None:
    assert_error(client.get("/api/tasks/no-such-task/form"), 404, "not_found", "no-such-task")


def test_a_wrong_completion_is_a_422_naming_each_field_and_changes_nothing(
    client: TestClient, case: dict[str, Any], db_snapshot: Callable[[], Snapshot]
) -> None:
    before = db_snapshot()
    variables = {**GOOD, "fine_amount": "abc", "approved": "yes", "decided_on": "2026/10/08", "foo": 1}
    del variables["summary"]
    response = client.post(f"/api/tasks/{case['task']}/complete", json={"variables": variables})
    body = assert_error(response, 422, "invalid_form", "作出处理决定", "fine_amount", "approved")
    assert body["task_id"] == case["task"]
    assert body["fields"] == [
        {
            "field": "foo",
            "label": "",
            "problem": "unknown_field",
            "message": "'foo' is not a field of this form",
        },
        {
            "field": "summary",
            "label": "案情摘要",
            "problem": "required",
            "message": "案情摘要 (summary): is required",
        },
        {
            "field": "fine_amount",
            "label": "罚款金额（元）",
            "problem": "wrong_type",
            "message": "罚款金额（元） (fine_amount): expected a whole number, got text",
        },
        {
            "field": "approved",
            "label": "是否批准",
            "problem": "wrong_type",
            "message": "是否批准 (approved): expected true or false, got text",
        },
        {
            "field": "decided_on",
            "label": "决定日期",
            "problem": "wrong_type",
            "message": "决定日期 (decided_on): expected a date as YYYY-MM-DD",
        },
    ]
    assert db_snapshot() == before


def test_a_correct_completion_moves_the_case_on(client: TestClient, case: dict[str, Any]) -> None:
    response = client.post(f"/api/tasks/{case['task']}/complete", json={"variables": GOOD, "user": "head"})
    assert response.status_code == 200, response.text
    assert response.json()["variables"] == {**GOOD, "case_no": "HB-2026-001"}
    assert [t["element_id"] for t in open_tasks(client, instance_id=case["instance"])] == ["notify"]


def test_the_definition_lists_the_form_of_each_user_task(client: TestClient, case: dict[str, Any]) -> None:
    response = client.get(f"/api/process-definitions/{case['definition']}/forms")
    assert response.status_code == 200, response.text
    forms = {f["element_id"]: f for f in response.json()}
    assert set(forms) == {"decide", "notify"}
    assert forms["decide"]["process_id"] == "penalty_decision" and forms["decide"]["has_form"]
    assert [f["id"] for f in forms["decide"]["fields"]][:2] == ["case_no", "summary"]
    assert all(f["value"] is None for f in forms["decide"]["fields"])
    assert forms["notify"]["fields"] == [] and not forms["notify"]["has_form"]
    assert_error(client.get("/api/process-definitions/nope/forms"), 404, "not_found", "nope")


def test_a_bad_form_is_refused_at_deploy_over_http(client: TestClient) -> None:
    bad = form_model().replace(b'type="boolean"', b'type="yesno"')
    response = client.post("/api/deployments", files=[("files", ("decision.bpmn", bad, "application/xml"))])
    assert_error(response, 400, "invalid_model", "decision.bpmn", "element 'decide'", "'approved'", "'yesno'")


def test_the_form_endpoints_are_in_the_openapi_document(client: TestClient) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    assert "get" in paths["/api/tasks/{task_id}/form"]
    assert "get" in paths["/api/process-definitions/{definition_id}/forms"]
