"""BPMN error and escalation events through commands, on SQLite and PostgreSQL.

Errors: an error end event inside an embedded subprocess is caught by the boundary event with its errorCode
(the other tasks of the subprocess are cancelled); an error end event in a called process is caught by an
error boundary on the call activity. Escalations: an escalation end event (subprocess or called process)
caught by an interrupting boundary; an intermediate escalation throw caught by a non-interrupting boundary,
which stays armed for every further escalation while the subprocess runs. Snapshots round-trip after every
command.
"""

from __future__ import annotations

from engine.commands import Engine
from tests.bpmn_util import chain, process
from tests.constructs.support_b import (
    cancelled_elements,
    deploy_b,
    incidents,
    instance,
    one_task,
    open_elements,
    step,
    tasks,
)

REVIEW = "案件审核_子流程.bpmn"
CHILD = "证照核验_子流程.bpmn"
PARENT = "许可办理_调用核验.bpmn"


def _start_review(engine: Engine) -> str:
    deploy_b(engine, REVIEW)
    started = engine.start(
        key="case_review",
        business_key="AJ-2026-88",
        variables={"review_limit": "P5D", "case_no": "AJ-2026-88"},
    )
    step(engine, started)
    assert open_elements(engine, started["id"]) == ["check", "collect"]
    return str(started["id"])


def _decide(engine: Engine, iid: str, decision: str) -> dict[str, object]:
    done = engine.complete(one_task(engine, iid, "check")["id"], {"decision": decision}, user="officer.1")
    return step(engine, done)


# ----------------------------------------------------------------------------------------------- errors
def test_error_end_in_subprocess_is_caught_by_the_boundary_with_its_code(engine: Engine) -> None:
    iid = _start_review(engine)
    view = _decide(engine, iid, "reject")
    assert view["state"] == "running"
    assert view["activities"] == ["rework"]
    assert open_elements(engine, iid) == ["rework"]
    # The error ended the whole subprocess: the parallel evidence task was cancelled, not left open.
    assert cancelled_elements(engine, iid) == ["collect"]
    assert view["waiting_for"]["timers"] == []  # the subprocess' deadline went with it
    assert view["incidents"] == [] and incidents(engine, iid) == []
    assert view["variables"]["decision"] == "reject"
    rework = one_task(engine, iid, "rework")
    assert rework["name"] == "退回重办" and rework["candidate_groups"] == ["officer"]
    done = engine.complete(rework["id"], {}, user="officer.1")
    assert step(engine, done)["state"] == "completed"


def test_a_different_error_code_takes_its_own_boundary(engine: Engine) -> None:
    iid = _start_review(engine)
    view = _decide(engine, iid, "incomplete")
    assert view["activities"] == ["supplement"]
    assert open_elements(engine, iid) == ["supplement"]
    assert "rework" not in [t["element_id"] for t in tasks(engine, iid, state=None)]
    assert cancelled_elements(engine, iid) == ["collect"]


def test_error_boundary_without_error_ref_catches_any_error(engine: Engine) -> None:
    body = f"""
  <bpmn:startEvent id="start"/>
  <bpmn:subProcess id="sp" name="材料核对">
    <bpmn:startEvent id="sp_start"/>
    <bpmn:userTask id="verify" name="核对"/>
    <bpmn:endEvent id="failed"><bpmn:errorEventDefinition errorRef="err_any"/></bpmn:endEvent>
    {chain("sp_start", "verify", "failed")}
  </bpmn:subProcess>
  <bpmn:boundaryEvent id="on_any_error" attachedToRef="sp"><bpmn:errorEventDefinition/></bpmn:boundaryEvent>
  <bpmn:userTask id="handle" name="异常处理"/>
  <bpmn:endEvent id="end"/>
  <bpmn:endEvent id="end_error"/>
  {chain("start", "sp", "end")}
  {chain("on_any_error", "handle", "end_error")}"""
    extra = '<bpmn:error id="err_any" name="核对失败" errorCode="VERIFY_FAILED"/>'
    engine.deploy([("any.bpmn", process("catch_all", body, extra=extra))])
    started = engine.start(key="catch_all")
    done = engine.complete(one_task(engine, started["id"], "verify")["id"], {})
    view = step(engine, done)
    assert view["activities"] == ["handle"]
    assert open_elements(engine, started["id"]) == ["handle"]


def test_error_end_in_called_process_is_caught_on_the_call_activity(engine: Engine) -> None:
    deploy_b(engine, CHILD)
    deploy_b(engine, PARENT)
    started = engine.start(
        key="licence_apply", business_key="XK-2026-404", variables={"amount": 500, "applicant": "王五"}
    )
    iid = started["id"]
    step(engine, started)
    done = engine.complete(one_task(engine, iid, "lookup")["id"], {"found": False}, user="records.1")
    view = step(engine, done)
    assert view["state"] == "running"
    assert view["activities"] == ["ask_applicant"]
    assert open_elements(engine, iid) == ["ask_applicant"]
    assert "fee" not in view["variables"]  # the child's normal path (the fee script) never ran
    assert incidents(engine, iid) == []
    done = engine.complete(one_task(engine, iid, "ask_applicant")["id"], {"notified": True}, user="officer.1")
    view = step(engine, done)
    assert view["state"] == "completed"


# ------------------------------------------------------------------------------------------ escalations
def test_escalation_end_in_called_process_interrupts_the_call_activity(engine: Engine) -> None:
    deploy_b(engine, CHILD, PARENT)
    started = engine.start(key="licence_apply", variables={"amount": 20000, "applicant": "赵六"})
    iid = started["id"]
    done = engine.complete(one_task(engine, iid, "lookup")["id"], {"found": True}, user="records.1")
    view = step(engine, done)
    assert view["activities"] == ["head_review"]
    assert open_elements(engine, iid) == ["head_review"]
    assert "decide" not in [t["element_id"] for t in tasks(engine, iid, state=None)]
    assert one_task(engine, iid, "head_review")["candidate_groups"] == ["section_head"]


def test_escalation_end_in_subprocess_caught_by_interrupting_boundary(engine: Engine) -> None:
    iid = _start_review(engine)
    view = _decide(engine, iid, "legal")
    assert view["state"] == "running"
    assert view["activities"] == ["legal"]
    assert open_elements(engine, iid) == ["legal"]
    assert cancelled_elements(engine, iid) == ["collect"]
    assert view["waiting_for"]["timers"] == []
    assert one_task(engine, iid, "legal")["candidate_groups"] == ["legal"]
    done = engine.complete(one_task(engine, iid, "legal")["id"], {"legal_opinion": "合法"}, user="legal.1")
    assert step(engine, done)["state"] == "completed"


def test_escalation_throw_caught_by_non_interrupting_boundary_every_time(engine: Engine) -> None:
    iid = _start_review(engine)
    view = _decide(engine, iid, "help")
    # The subprocess goes on (the throw loops back to the check); a helper task runs beside it.
    assert open_elements(engine, iid) == ["assist", "check", "collect"]
    assert "review_sp" in view["activities"] and "on_help" in view["activities"]
    assert cancelled_elements(engine, iid) == []

    # A second escalation is caught as well: the boundary stays armed while the subprocess runs.
    view = _decide(engine, iid, "help")
    assert open_elements(engine, iid) == ["assist", "assist", "check", "collect"]
    assert "on_help" in view["activities"]

    view = _decide(engine, iid, "ok")
    assert open_elements(engine, iid) == ["assist", "assist", "collect"]
    done = engine.complete(one_task(engine, iid, "collect")["id"], {}, user="investigator.1")
    view = step(engine, done)
    # The subprocess completed: the main path continues and the helpers keep their tasks.
    assert open_elements(engine, iid) == ["assist", "assist", "sign"]
    assert "on_help" not in view["activities"] and "review_sp" not in view["activities"]
    assert cancelled_elements(engine, iid) == []

    for item in tasks(engine, iid):
        step(engine, engine.complete(item["id"], {}, user="head.1"))
    final = instance(engine, iid)
    assert final["state"] == "completed"
    assert sorted(t["element_id"] for t in tasks(engine, iid, state="completed")) == [
        "assist",
        "assist",
        "check",
        "check",
        "check",
        "collect",
        "sign",
    ]


def test_help_escalation_then_error_keeps_the_helper_and_cancels_the_rest(engine: Engine) -> None:
    iid = _start_review(engine)
    _decide(engine, iid, "help")
    view = _decide(engine, iid, "reject")
    assert open_elements(engine, iid) == ["assist", "rework"]
    assert cancelled_elements(engine, iid) == ["collect"]
    assert "on_help" not in view["activities"]
    # No stale boundary: escalating again is impossible, and nothing else is waiting.
    assert view["waiting_for"] == {"messages": [], "timers": [], "jobs": []}
