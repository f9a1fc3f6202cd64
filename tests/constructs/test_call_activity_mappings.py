"""Camunda variable mappings through commands, on SQLite and PostgreSQL.

A call activity with ``camunda:in`` passes only the mapped variables into the called process, one with
``camunda:out`` takes back only the mapped ones; without any mapping everything flows both ways (the
library's behaviour). A confidential variable of the caller (a discipline-commission clue) must then be
absent from the called process's data and from its part of the stored snapshot. ``camunda:inputOutput``
makes variables local to a user or service task. Bad expressions are refused at deploy time naming the
element; expressions that fail at run time are incidents on the element, and a retry with the missing
variables continues. After every command the stored snapshot must load and dump back unchanged
(``assert_round_trip``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from SpiffWorkflow.util.task import TaskState
from sqlalchemy import select

from engine.commands import Engine
from engine.errors import InvalidModel
from engine.store import queries
from engine.store.db import read_only
from engine.store.tables import process_instance
from tests.bpmn_util import chain, process
from tests.constructs.support import assert_round_trip
from tests.constructs.support_b import incidents, instance, jobs, one_task, step, tasks

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "call_mappings"
CHILD = "线索核查_子流程.bpmn"
MAPPED = "线索移送_映射.bpmn"
ALL_IN = "线索移送_全部变量.bpmn"
PLAIN = "线索移送_无映射.bpmn"
IN_ONLY = "线索移送_仅输入.bpmn"
OUT_FAILS = "线索移送_输出失败.bpmn"
BAD = "线索移送_坏表达式.bpmn"
LOCALS = "立案审批_局部变量.bpmn"

SECRET = "纪委移送线索：某局长涉嫌违规收受礼金"
PARENT_VARS: dict[str, Any] = {
    "case_no": "JW-2026-017",
    "amount": 80,
    "discipline_clue": SECRET,
    "handler": "王五",
}
CHILD_RESULT = {"found": True, "child_private": "核查人员内部备注"}


def _deploy(engine: Engine, *names: str) -> dict[str, Any]:
    return engine.deploy(
        [(n, (FIXTURES / n).read_bytes()) for n in names], name="call_mappings", actor="tester"
    )


def _definitions(engine: Engine) -> list[dict[str, Any]]:
    with read_only(engine.db) as conn:
        return queries.definitions(conn)


def _workflow(engine: Engine, instance_id: str) -> Any:
    with read_only(engine.db) as conn:
        row = conn.execute(
            select(process_instance.c.definition_id, process_instance.c.snapshot).where(
                process_instance.c.id == instance_id
            )
        ).one()
    return engine.runtime.load(engine.model(row.definition_id), row.snapshot)


def _child_data(engine: Engine, instance_id: str, element_id: str) -> dict[str, Any]:
    """The data of the open task ``element_id`` inside the called process, as stored."""
    workflow = _workflow(engine, instance_id)
    found = [
        task
        for sub in workflow.subprocesses.values()
        for task in sub.get_tasks(spec_name=element_id)
        if not task.has_state(TaskState.FINISHED_MASK)
    ]
    assert len(found) == 1, f"expected one '{element_id}' task in the called process, got {found}"
    return dict(found[0].data)


def _stored_child_part(engine: Engine, instance_id: str) -> str:
    """The called process's part of the stored snapshot, as text (after checking the round trip)."""
    stored = assert_round_trip(engine, instance_id)
    assert stored["subprocesses"], "the called process is not in the snapshot"
    return json.dumps(stored["subprocesses"], ensure_ascii=False)


def _start(engine: Engine, key: str, variables: dict[str, Any] | None = None) -> str:
    started = engine.start(
        key=key,
        business_key="JW-2026-017",
        variables=PARENT_VARS if variables is None else variables,
        actor="clerk.1",
    )
    view = step(engine, started)
    assert view["state"] == "running", view
    return str(started["id"])


def _finish_child(engine: Engine, instance_id: str) -> dict[str, Any]:
    verify = one_task(engine, instance_id, "verify")
    assert verify["instance_id"] == instance_id and verify["candidate_groups"] == ["inspector"]
    return step(engine, engine.complete(verify["id"], CHILD_RESULT, user="inspector.1"))


def _finish_parent(engine: Engine, instance_id: str) -> dict[str, Any]:
    view = step(
        engine,
        engine.complete(
            one_task(engine, instance_id, "decide")["id"], {"decision": "立案"}, user="officer.1"
        ),
    )
    assert view["state"] == "completed"
    return view


# ============================================================================================ call activities
def test_only_mapped_variables_enter_and_leave_the_called_process(engine: Engine) -> None:
    _deploy(engine, CHILD, MAPPED)
    iid = _start(engine, "transfer_mapped")
    assert {"call_check", "verify"} <= set(instance(engine, iid)["activities"])

    # In: case_no by source/target, doubled by sourceExpression; the business-key mapping adds nothing.
    assert _child_data(engine, iid, "verify") == {"case_no": "JW-2026-017", "doubled": 160}
    child_part = _stored_child_part(engine, iid)
    for leaked in (SECRET, "discipline_clue", "handler", "王五"):
        assert leaked not in child_part
    # The caller keeps its variables meanwhile.
    assert instance(engine, iid)["variables"] == PARENT_VARS

    view = _finish_child(engine, iid)
    assert view["activities"] == ["decide"]
    # Out: only the mapped results come back; the child's own variables (found, child_private, result and
    # the mapped-in doubled) stay in the child; the caller's variables, the secret included, are intact.
    assert view["variables"] == {**PARENT_VARS, "check_result": "属实", "escalate": True}
    done = _finish_parent(engine, iid)
    assert done["variables"]["discipline_clue"] == SECRET and "child_private" not in done["variables"]


def test_variables_all_passes_everything_in_and_out_takes_only_the_mapped(engine: Engine) -> None:
    _deploy(engine, CHILD, ALL_IN)
    iid = _start(engine, "transfer_all")
    assert _child_data(engine, iid, "verify") == PARENT_VARS
    assert SECRET in _stored_child_part(engine, iid)  # variables="all" means all
    view = _finish_child(engine, iid)
    assert view["variables"] == {**PARENT_VARS, "result": "属实"}
    _finish_parent(engine, iid)


def test_without_mappings_every_variable_flows_both_ways(engine: Engine) -> None:
    _deploy(engine, CHILD, PLAIN)
    iid = _start(engine, "transfer_plain")
    assert _child_data(engine, iid, "verify") == PARENT_VARS
    view = _finish_child(engine, iid)
    assert view["variables"] == {**PARENT_VARS, **CHILD_RESULT, "result": "属实"}
    _finish_parent(engine, iid)


def test_in_mappings_alone_keep_the_secret_out_and_take_nothing_back(engine: Engine) -> None:
    _deploy(engine, CHILD, IN_ONLY)
    iid = _start(engine, "transfer_in_only")
    assert _child_data(engine, iid, "verify") == {"case_no": "JW-2026-017"}
    child_part = _stored_child_part(engine, iid)
    assert SECRET not in child_part and "discipline_clue" not in child_part
    view = _finish_child(engine, iid)
    # No camunda:out: as in Camunda 7, nothing of the child comes back; the caller's variables are all kept.
    assert view["variables"] == PARENT_VARS
    _finish_parent(engine, iid)


def test_a_failing_input_mapping_is_an_incident_and_a_retry_starts_the_called_process(engine: Engine) -> None:
    _deploy(engine, CHILD, MAPPED)
    no_amount = {k: v for k, v in PARENT_VARS.items() if k != "amount"}
    started = engine.start(key="transfer_mapped", variables=no_amount)
    iid = str(started["id"])
    view = step(engine, iid)
    assert view["state"] == "incident"
    [incident] = incidents(engine, iid)
    assert incident["element_id"] == "call_check"
    assert "doubled" in incident["message"] and "amount" in incident["message"]
    assert tasks(engine, iid) == []  # the called process did not start
    assert assert_round_trip(engine, iid)["subprocesses"] == {}

    view = step(engine, engine.retry_incident(incident["id"], {"amount": 60})["instance"])
    assert view["state"] == "running" and incidents(engine, iid) == []
    assert _child_data(engine, iid, "verify") == {"case_no": "JW-2026-017", "doubled": 120}
    view = _finish_child(engine, iid)
    assert view["variables"] == {**no_amount, "amount": 60, "check_result": "属实", "escalate": True}
    _finish_parent(engine, iid)


def test_a_failing_output_mapping_is_an_incident_and_a_retry_supplies_the_value(engine: Engine) -> None:
    _deploy(engine, CHILD, OUT_FAILS)
    iid = _start(engine, "transfer_out_fails")
    view = _finish_child(engine, iid)
    assert view["state"] == "incident"
    [incident] = incidents(engine, iid)
    assert incident["element_id"] == "call_check" and "review_score" in incident["message"]
    assert "decide" not in view["activities"]

    view = step(engine, engine.retry_incident(incident["id"], {"review_score": 7})["instance"])
    assert view["state"] == "running" and view["activities"] == ["decide"]
    # The retry's value served the mapping; it is not a variable of the caller.
    assert view["variables"] == {**PARENT_VARS, "score": 70}
    _finish_parent(engine, iid)


def test_multi_instance_call_activity_maps_each_instance(engine: Engine) -> None:
    engine.deploy(
        [
            (CHILD, (FIXTURES / CHILD).read_bytes()),
            (
                "each.bpmn",
                process(
                    "transfer_each",
                    f"""
  <bpmn:startEvent id="start"/>
  <bpmn:callActivity id="call_each" name="逐条核查" calledElement="clue_check">
    <bpmn:extensionElements>
      <camunda:in source="clue" target="case_no"/>
      <camunda:out source="result" target="last_result"/>
    </bpmn:extensionElements>
    <bpmn:multiInstanceLoopCharacteristics camunda:collection="${{clues}}" camunda:elementVariable="clue"/>
  </bpmn:callActivity>
  <bpmn:endEvent id="end"/>
  {chain("start", "call_each", "end")}""",
                ),
            ),
        ]
    )
    variables = {"clues": ["JW-1", "JW-2"], "discipline_clue": SECRET}
    iid = _start(engine, "transfer_each", variables)
    workflow = _workflow(engine, iid)
    assert sorted(
        dict(task.data)["case_no"]
        for sub in workflow.subprocesses.values()
        for task in sub.get_tasks(spec_name="verify")
    ) == ["JW-1", "JW-2"]
    assert all(
        set(task.data) == {"case_no"}
        for sub in workflow.subprocesses.values()
        for task in sub.get_tasks(spec_name="verify")
    )
    assert SECRET not in _stored_child_part(engine, iid)
    first, second = tasks(engine, iid)
    step(engine, engine.complete(first["id"], {"found": True}))
    view = step(engine, engine.complete(second["id"], {"found": False}))
    # Each instance maps its result out (the last to finish wins, as in Camunda); nothing else comes back.
    assert view["state"] == "completed"
    assert view["variables"] == {**variables, "last_result": "不实"}


def test_embedded_subprocess_shares_the_callers_variables(engine: Engine) -> None:
    engine.deploy(
        [
            (
                "embedded.bpmn",
                process(
                    "embedded_review",
                    f"""
  <bpmn:startEvent id="start"/>
  <bpmn:subProcess id="inner" name="内部核查">
    <bpmn:startEvent id="inner_start"/>
    <bpmn:userTask id="inner_review" name="内部审核" camunda:candidateGroups="inspector"/>
    <bpmn:endEvent id="inner_end"/>
    {chain("inner_start", "inner_review", "inner_end")}
  </bpmn:subProcess>
  <bpmn:endEvent id="end"/>
  {chain("start", "inner", "end")}""",
                ),
            )
        ]
    )
    iid = _start(engine, "embedded_review")
    assert _child_data(engine, iid, "inner_review") == PARENT_VARS
    view = step(engine, engine.complete(one_task(engine, iid, "inner_review")["id"], {"ok": True}))
    assert view["state"] == "completed" and view["variables"] == {**PARENT_VARS, "ok": True}


def test_a_bad_mapping_expression_is_refused_at_deploy_naming_the_element(engine: Engine) -> None:
    with pytest.raises(InvalidModel) as caught:
        _deploy(engine, CHILD, BAD)
    error = caught.value
    assert error.status == 400 and error.code == "invalid_model"
    assert error.details["element_id"] == "call_check"
    assert error.details["resource"] == BAD
    assert isinstance(error.details.get("line"), int)
    assert "doubled" in error.message and "${amount *}" in error.message
    assert _definitions(engine) == []


def _caller_with(extension: str) -> bytes:
    return process(
        "bad_caller",
        f"""
  <bpmn:startEvent id="start"/>
  <bpmn:callActivity id="call_check" calledElement="clue_check">
    <bpmn:extensionElements>{extension}</bpmn:extensionElements>
  </bpmn:callActivity>
  <bpmn:endEvent id="end"/>
  {chain("start", "call_check", "end")}""",
    )


def _task_with(extension: str) -> bytes:
    return process(
        "bad_task",
        f"""
  <bpmn:startEvent id="start"/>
  <bpmn:userTask id="approve" camunda:candidateGroups="officer">
    <bpmn:extensionElements><camunda:inputOutput>{extension}</camunda:inputOutput></bpmn:extensionElements>
  </bpmn:userTask>
  <bpmn:endEvent id="end"/>
  {chain("start", "approve", "end")}""",
    )


@pytest.mark.parametrize(
    ("document", "element", "words"),
    [
        (
            _caller_with('<camunda:out sourceExpression="${result +}" target="x"/>'),
            "call_check",
            ["camunda:out 'x'", "${result +}"],
        ),
        (
            _caller_with('<camunda:in sourceExpression="${__import__(1)}" target="x"/>'),
            "call_check",
            ["camunda:in 'x'", "__import__"],
        ),
        (_caller_with('<camunda:in source="case_no"/>'), "call_check", ["camunda:in", "target"]),
        (
            _caller_with('<camunda:in source="${case_no}" target="case_no"/>'),
            "call_check",
            ["source '${case_no}'", "sourceExpression"],
        ),
        (_caller_with('<camunda:in variables="some"/>'), "call_check", ['variables="some"']),
        (
            _caller_with('<camunda:in source="a" sourceExpression="${b}" target="c"/>'),
            "call_check",
            ["both source and sourceExpression"],
        ),
        (_caller_with('<camunda:out businessKey="${case_no}"/>'), "call_check", ["businessKey"]),
        (
            _task_with('<camunda:inputParameter name="x">${1 +}</camunda:inputParameter>'),
            "approve",
            ["camunda:inputParameter 'x'"],
        ),
        (
            _task_with(
                '<camunda:outputParameter name="y"><camunda:list><camunda:value>${z z}</camunda:value>'
                "</camunda:list></camunda:outputParameter>"
            ),
            "approve",
            ["camunda:outputParameter 'y'"],
        ),
        (
            _task_with(
                '<camunda:inputParameter name="x">'
                '<camunda:script scriptFormat="javascript">1</camunda:script></camunda:inputParameter>'
            ),
            "approve",
            ["script format 'javascript'"],
        ),
        (
            _task_with('<camunda:inputParameter name="not a name">1</camunda:inputParameter>'),
            "approve",
            ["'not a name'"],
        ),
    ],
    ids=[
        "out-syntax",
        "in-unsafe",
        "in-no-target",
        "in-source-expression",
        "variables-some",
        "both",
        "out-business-key",
        "input-syntax",
        "output-list-syntax",
        "input-script",
        "input-name",
    ],
)
def test_bad_mappings_are_refused_at_deploy(
    engine: Engine, document: bytes, element: str, words: list[str]
) -> None:
    with pytest.raises(InvalidModel) as caught:
        engine.deploy([("bad.bpmn", document), (CHILD, (FIXTURES / CHILD).read_bytes())])
    error = caught.value
    assert error.status == 400
    assert error.details["element_id"] == element and error.details["resource"] == "bad.bpmn"
    for word in words:
        assert word in error.message
    assert _definitions(engine) == []


# ================================================================================ input/output parameters
APPROVAL_VARS: dict[str, Any] = {"dept": "法制科", "level": "普通", "amount": 500}


def test_input_parameters_are_local_to_the_user_task_and_outputs_come_back(engine: Engine) -> None:
    _deploy(engine, LOCALS)
    iid = _start(engine, "approval_locals", APPROVAL_VARS)
    approve = one_task(engine, iid, "approve")
    # The task's expressions see its input parameters (text, expression, list).
    assert approve["assignee"] == "leader_法制科"
    assert approve["candidate_groups"] == ["legal", "法制科"]
    assert instance(engine, iid)["variables"] == APPROVAL_VARS

    view = step(engine, engine.complete(approve["id"], {"opinion": "同意立案"}, user="leader_法制科"))
    assert view["activities"] == ["notify"]
    # The locals are gone (level has its process value back); outputs and the submitted variable stay.
    assert view["variables"] == {
        **APPROVAL_VARS,
        "opinion": "同意立案",
        "approved_by": "leader_法制科",
        "approval_level": "特急",
        "meta_amount": 500,
        "nothing_was": None,
        "opinion_copy": "同意立案",
    }


def test_service_task_parameters_and_a_failing_output_retried_without_a_new_job(engine: Engine) -> None:
    _deploy(engine, LOCALS)
    iid = _start(engine, "approval_locals", APPROVAL_VARS)
    step(
        engine,
        engine.complete(one_task(engine, iid, "approve")["id"], {"opinion": "同意"}, user="leader_法制科"),
    )
    [job] = jobs(engine, "notify")

    # The worker reports no 'ack': the output parameter 'receipt' cannot be evaluated.
    view = step(engine, engine.complete_job(job["id"], {"sent": True}))
    assert view["state"] == "incident"
    [incident] = incidents(engine, iid)
    assert incident["element_id"] == "notify" and "receipt" in incident["message"]
    assert "ack" in incident["message"]
    assert jobs(engine, "notify") == []

    view = step(engine, engine.retry_incident(incident["id"], {"ack": "OK"})["instance"])
    assert view["state"] == "completed"
    assert jobs(engine, "notify") == []  # completed again, not offered to a worker again
    variables = view["variables"]
    assert variables["receipt"] == "R-OK" and variables["channel_used"] == "sms"
    assert variables["sent"] is True and "channel" not in variables


def test_a_failing_input_parameter_is_an_incident_and_a_retry_offers_the_task(engine: Engine) -> None:
    _deploy(engine, LOCALS)
    started = engine.start(key="approval_locals", variables={"level": "普通", "amount": 1})
    iid = str(started["id"])
    view = step(engine, iid)
    assert view["state"] == "incident" and tasks(engine, iid) == []
    [incident] = incidents(engine, iid)
    assert incident["element_id"] == "approve"
    assert "reviewer" in incident["message"] and "dept" in incident["message"]

    view = step(engine, engine.retry_incident(incident["id"], {"dept": "稽查科"})["instance"])
    assert view["state"] == "running"
    approve = one_task(engine, iid, "approve")
    assert approve["assignee"] == "leader_稽查科" and approve["candidate_groups"] == ["legal", "稽查科"]
    view = step(engine, engine.complete(approve["id"], {"opinion": "同意"}, user="leader_稽查科"))
    assert view["variables"]["approved_by"] == "leader_稽查科" and "reviewer" not in view["variables"]
