"""Completing a task with a form: every kind of wrong input is refused with the fields named, nothing stored
changes, and a correct submission is stored with JSON types. Tasks without a form are not checked."""

from __future__ import annotations

from typing import Any

import pytest

from engine.commands import Engine
from engine.errors import InvalidForm, InvalidVariables
from tests.bpmn_util import chain, process
from tests.constructs.support import instance, only_task, tasks
from tests.forms.support import GOOD, constraint, constraints, field, form_model, user_task


@pytest.fixture
def case(engine: Engine) -> dict[str, Any]:
    """A running case waiting at the decision; ``task`` is its id."""
    engine.deploy([("decision.bpmn", form_model())])
    started = engine.start(key="penalty_decision", variables={"case_no": "HB-2026-001"}, actor="clerk")
    return {"instance": started["id"], "task": only_task(engine, started["id"])["id"]}


def _refused(engine: Engine, case: dict[str, Any], variables: dict[str, Any]) -> dict[str, dict[str, str]]:
    before = instance(engine, case["instance"])
    with pytest.raises(InvalidForm) as refused:
        engine.complete(case["task"], variables, user="head")
    error = refused.value
    assert (error.status, error.code) == (422, "invalid_form")
    assert "作出处理决定" in error.message
    body = error.to_dict()
    assert body["task_id"] == case["task"]
    problems = {p["field"]: p for p in body["fields"]}
    assert len(problems) == len(body["fields"])
    for name, problem in problems.items():
        assert set(problem) == {"field", "label", "problem", "message"}
        assert name in error.message and name in problem["message"]
        if problem["label"]:
            assert problem["label"] in problem["message"]
    # Nothing moved: the same task is open and the variables are as they were.
    assert instance(engine, case["instance"]) == before
    assert only_task(engine, case["instance"])["element_id"] == "decide"
    return problems


def _one_problem(engine: Engine, case: dict[str, Any], **changes: Any) -> dict[str, str]:
    variables = {**GOOD, **changes}
    for name in [n for n, v in changes.items() if v is _ABSENT]:
        del variables[name]
    problems = _refused(engine, case, variables)
    assert len(problems) == 1, problems
    return next(iter(problems.values()))


_ABSENT = object()

WRONG = {
    "required missing": ("approved", _ABSENT, "required", "是否批准 (approved): is required"),
    "required null": ("decision", None, "required", "处理决定 (decision): is required"),
    "required blank text": ("summary", "   ", "required", "案情摘要 (summary): is required"),
    "text for a long": ("fine_amount", "abc", "wrong_type", "expected a whole number, got text"),
    "digits as text for a long": ("fine_amount", "5000", "wrong_type", "expected a whole number, got text"),
    "fraction for a long": ("fine_amount", 1.5, "wrong_type", "got a number with a fraction"),
    "boolean for a long": ("fine_amount", True, "wrong_type", "got true/false"),
    "long beyond 64 bits": ("fine_amount", 2**63, "wrong_type", "range of a long"),
    "text for a decimal": ("ratio", "0.5", "wrong_type", "expected a number, got text"),
    "text for a boolean": ("approved", "true", "wrong_type", "expected true or false, got text"),
    "number for a boolean": ("approved", 1, "wrong_type", "expected true or false, got a whole number"),
    "non-ISO date": ("decided_on", "08/10/2026", "wrong_type", "YYYY-MM-DD"),
    "date with a time": ("decided_on", "2026-10-08T09:00:00", "wrong_type", "YYYY-MM-DD"),
    "impossible date": ("decided_on", "2026-02-30", "wrong_type", "not a date in the calendar"),
    "number for a date": ("decided_on", 20261008, "wrong_type", "got a whole number"),
    "enum value not an option": (
        "decision",
        "warning",
        "not_an_option",
        "not one of the options (penalty, no_penalty)",
    ),
    "enum option name instead of id": ("decision", "给予行政处罚", "not_an_option", "not one of the options"),
    "list for text": ("summary", ["a"], "wrong_type", "expected text, got a list"),
    "text too short": ("summary", "太短", "too_short", "at least 5 characters"),
    "text too long": ("summary", "长" * 201, "too_long", "at most 200 characters"),
    "long below min": ("fine_amount", -1, "too_small", "at least 0"),
    "long above max": ("fine_amount", 200001, "too_large", "at most 200000"),
    "decimal above max": ("ratio", 1.51, "too_large", "at most 1.5"),
    "date before min": ("decided_on", "2019-12-31", "too_small", "at least 2020-01-01"),
    "date after max": ("decided_on", "2031-01-01", "too_large", "at most 2030-12-31"),
    "readonly changed": ("case_no", "HB-2026-999", "read_only", "案件编号 (case_no): is read-only"),
    "unknown field": ("head_approved", True, "unknown_field", "'head_approved' is not a field of this form"),
}


@pytest.mark.parametrize(("name", "value", "problem", "text"), WRONG.values(), ids=WRONG.keys())
def test_each_wrong_field_is_refused_with_its_name_label_and_reason(
    engine: Engine, case: dict[str, Any], name: str, value: Any, problem: str, text: str
) -> None:
    found = _one_problem(engine, case, **{name: value})
    assert found["field"] == name and found["problem"] == problem
    assert text in found["message"], found


def test_secret_values_are_not_quoted_back(engine: Engine, case: dict[str, Any]) -> None:
    found = _one_problem(engine, case, fine_amount="举报人：张三 13800000000")
    assert "张三" not in found["message"]


def test_every_wrong_field_is_named_at_once(engine: Engine, case: dict[str, Any]) -> None:
    problems = _refused(engine, case, {"fine_amount": "abc", "decision": "warning", "extra": 1})
    assert {name: p["problem"] for name, p in problems.items()} == {
        "summary": "required",
        "approved": "required",
        "decision": "not_an_option",
        "fine_amount": "wrong_type",
        "extra": "unknown_field",
    }
    assert problems["approved"]["label"] == "是否批准" and problems["extra"]["label"] == ""


def test_an_empty_submission_names_every_required_field(engine: Engine, case: dict[str, Any]) -> None:
    problems = _refused(engine, case, {})
    assert sorted(problems) == ["approved", "decision", "summary"]


def test_a_correct_submission_is_stored_with_json_types_and_the_case_moves_on(
    engine: Engine, case: dict[str, Any]
) -> None:
    engine.complete(case["task"], {**GOOD, "fine_amount": 5000.0, "case_no": "HB-2026-001"}, user="head")
    variables = instance(engine, case["instance"])["variables"]
    assert variables == {**GOOD, "case_no": "HB-2026-001"}
    assert type(variables["fine_amount"]) is int and type(variables["approved"]) is bool
    assert only_task(engine, case["instance"])["element_id"] == "notify"


def test_optional_fields_may_be_left_out_or_cleared(engine: Engine, case: dict[str, Any]) -> None:
    required = {"summary": "未按规定公示价格", "approved": False, "decision": "no_penalty"}
    engine.complete(case["task"], {**required, "ratio": None}, user="head")
    variables = instance(engine, case["instance"])["variables"]
    assert variables == {**required, "ratio": None, "case_no": "HB-2026-001"}
    assert "fine_amount" not in variables  # a default is what the form shows, not a value stored unasked


def test_a_task_without_a_form_takes_any_variables(engine: Engine, case: dict[str, Any]) -> None:
    engine.complete(case["task"], GOOD, user="head")
    notify = only_task(engine, case["instance"])
    engine.complete(notify["id"], {"anything": [1, {"nested": "值"}], "fine_amount": "not checked"})
    assert instance(engine, case["instance"])["state"] == "completed"


def test_an_empty_form_data_refuses_every_variable(engine: Engine) -> None:
    engine.deploy([("decision.bpmn", form_model("<camunda:formData/>"))])
    started = engine.start(key="penalty_decision")
    task_id = only_task(engine, started["id"])["id"]
    with pytest.raises(InvalidForm):
        engine.complete(task_id, {"note": "x"})
    engine.complete(task_id, {})
    assert only_task(engine, started["id"])["element_id"] == "notify"


def test_required_is_asked_again_in_a_second_round(engine: Engine) -> None:
    # A variable left by an earlier round does not satisfy a required field: the decision is made anew.
    form = field(constraints(constraint("required")), field_id="approved", label="是否批准", type_="boolean")
    engine.deploy([("decision.bpmn", form_model(form))])
    started = engine.start(key="penalty_decision", variables={"approved": True})
    task_id = only_task(engine, started["id"])["id"]
    with pytest.raises(InvalidForm) as refused:
        engine.complete(task_id, {})
    assert [p["problem"] for p in refused.value.to_dict()["fields"]] == ["required"]


def test_invalid_variables_are_still_refused_before_the_form(engine: Engine, case: dict[str, Any]) -> None:
    with pytest.raises(InvalidVariables) as refused:
        engine.complete(case["task"], {"_private": 1})
    assert refused.value.code == "invalid_variables"


def _nested(inner: str) -> bytes:
    return process(
        "nested_forms",
        '<bpmn:startEvent id="start"/>'
        '<bpmn:subProcess id="sub"><bpmn:startEvent id="sub_start"/>'
        + inner
        + '<bpmn:endEvent id="sub_end"/>'
        + chain("sub_start", "decide", "sub_end")
        + "</bpmn:subProcess>"
        '<bpmn:endEvent id="end"/>' + chain("start", "sub", "end"),
    )


REQUIRED_AMOUNT = field(constraints(constraint("required")), field_id="amount", label="金额", type_="long")


@pytest.mark.parametrize(
    "loop",
    [
        "",
        "<bpmn:multiInstanceLoopCharacteristics><bpmn:loopCardinality>2</bpmn:loopCardinality>"
        "</bpmn:multiInstanceLoopCharacteristics>",
    ],
    ids=["embedded-subprocess", "multi-instance-in-subprocess"],
)
def test_forms_are_checked_inside_subprocesses_and_multi_instance_tasks(engine: Engine, loop: str) -> None:
    task = user_task(REQUIRED_AMOUNT).replace("</bpmn:userTask>", f"{loop}</bpmn:userTask>")
    engine.deploy([("nested.bpmn", _nested(task))])
    started = engine.start(key="nested_forms")
    for _round in range(2 if loop else 1):
        task_id = tasks(engine, instance_id=started["id"])[0]["id"]
        with pytest.raises(InvalidForm) as refused:
            engine.complete(task_id, {"amount": "12"})
        assert refused.value.to_dict()["fields"][0]["problem"] == "wrong_type"
        engine.complete(task_id, {"amount": 12})
    assert instance(engine, started["id"])["state"] == "completed"
