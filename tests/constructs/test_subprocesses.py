"""Call activities and embedded subprocesses through commands, on SQLite and PostgreSQL.

A call activity runs its called process inside the caller's instance (one instance, one snapshot): the child's
user tasks belong to the parent instance, every variable flows in and back out. The called process may come
from an earlier deployment or from the same one; a call that leads back into its own process is refused at
deploy time naming the element. After every command the stored snapshot must load and dump back unchanged.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from engine.commands import Engine
from engine.errors import InvalidModel
from engine.store import queries
from engine.store.db import read_only
from tests.bpmn_util import chain, process
from tests.conftest import ManualClock
from tests.constructs.support_b import (
    cancelled_elements,
    deploy_b,
    instance,
    instances,
    one_task,
    open_elements,
    step,
    tasks,
    timer_dues,
)

T0 = datetime(2026, 3, 2, 1, 0, tzinfo=UTC)
CHILD = "证照核验_子流程.bpmn"
PARENT = "许可办理_调用核验.bpmn"
REVIEW = "案件审核_子流程.bpmn"


def _definitions(engine: Engine) -> list[dict[str, object]]:
    with read_only(engine.db) as conn:
        return queries.definitions(conn)


def _run_licence_check(engine: Engine) -> None:
    started = engine.start(
        key="licence_apply", business_key="XK-2026-0301", variables={"amount": 300, "applicant": "张三"}
    )
    iid = started["id"]
    view = step(engine, started)
    assert view["state"] == "running"
    # The child's user task is a task of the parent instance; the call activity is active around it.
    assert {"call_check", "lookup"} <= set(view["activities"])
    lookup = one_task(engine, iid, "lookup")
    assert lookup["instance_id"] == iid and lookup["candidate_groups"] == ["records"]
    assert lookup["name"] == "查询证照库"
    assert len(instances(engine)) == 1  # no separate child instance

    done = engine.complete(lookup["id"], {"found": True, "licence_no": "JY-3301-0001"}, user="records.1")
    view = step(engine, done)
    assert view["activities"] == ["decide"]
    # In: the child computed its fee from the parent's amount. Out: the child's results are the parent's now.
    assert view["variables"] == {
        "amount": 300,
        "applicant": "张三",
        "found": True,
        "licence_no": "JY-3301-0001",
        "fee": 600,
        "checked_by": "records",
    }
    decided = engine.complete(one_task(engine, iid, "decide")["id"], {"granted": True}, user="officer.1")
    view = step(engine, decided)
    assert view["state"] == "completed"
    assert view["variables"]["granted"] is True and view["variables"]["fee"] == 600


def test_call_activity_calls_a_process_from_an_earlier_deployment(engine: Engine) -> None:
    child = deploy_b(engine, CHILD)
    parent = deploy_b(engine, PARENT)
    assert child["id"] != parent["id"]
    assert [d["key"] for d in parent["definitions"]] == ["licence_apply"]
    _run_licence_check(engine)


def test_call_activity_calls_a_process_from_the_same_deployment(engine: Engine) -> None:
    deployed = deploy_b(engine, PARENT, CHILD)
    assert sorted(d["key"] for d in deployed["definitions"]) == ["licence_apply", "licence_check"]
    _run_licence_check(engine)
    # The called process can also be started on its own.
    alone = engine.start(key="licence_check", variables={"amount": 10})
    done = engine.complete(one_task(engine, alone["id"], "lookup")["id"], {"found": True})
    view = step(engine, done)
    assert view["state"] == "completed" and view["variables"]["fee"] == 20


def test_a_fresh_engine_continues_the_parent_inside_the_child(engine: Engine, clock: ManualClock) -> None:
    """Nothing of the called process lives only in memory: a second engine on the same database continues."""
    deploy_b(engine, CHILD)
    deploy_b(engine, PARENT)
    started = engine.start(key="licence_apply", variables={"amount": 7, "applicant": "李四"})
    other = Engine(engine.db, clock, engine.config)
    done = other.complete(one_task(engine, started["id"], "lookup")["id"], {"found": True})
    view = step(other, done)
    assert view["activities"] == ["decide"] and view["variables"]["fee"] == 14


def test_calling_a_process_that_is_not_deployed_is_refused(engine: Engine) -> None:
    with pytest.raises(InvalidModel) as caught:
        deploy_b(engine, PARENT)
    assert caught.value.status == 400
    assert "licence_check" in caught.value.message
    assert _definitions(engine) == []


def _self_caller() -> bytes:
    return process(
        "self_caller",
        f"""
  <bpmn:startEvent id="start"/>
  <bpmn:callActivity id="again" name="再次调用本流程" calledElement="self_caller"/>
  <bpmn:endEvent id="end"/>
  {chain("start", "again", "end")}""",
    )


def test_call_activity_calling_its_own_process_is_refused_naming_the_element(engine: Engine) -> None:
    with pytest.raises(InvalidModel) as caught:
        engine.deploy([("self.bpmn", _self_caller())])
    error = caught.value
    assert error.status == 400 and error.code == "invalid_model"
    assert error.details["element_id"] == "again"
    assert error.details["resource"] == "self.bpmn"
    assert isinstance(error.details.get("line"), int)
    assert "'again'" in error.message and "self_caller" in error.message
    assert error.to_dict()["error"] == "invalid_model"
    assert _definitions(engine) == []


def _caller(pid: str, element: str, target: str) -> bytes:
    return process(
        pid,
        f"""
  <bpmn:startEvent id="start"/>
  <bpmn:callActivity id="{element}" calledElement="{target}"/>
  <bpmn:endEvent id="end"/>
  {chain("start", element, "end")}""",
    )


def test_indirect_recursion_is_refused_within_and_across_deployments(engine: Engine) -> None:
    with pytest.raises(InvalidModel) as caught:
        engine.deploy(
            [
                ("a.bpmn", _caller("proc_a", "call_b", "proc_b")),
                ("b.bpmn", _caller("proc_b", "call_a", "proc_a")),
            ]
        )
    assert caught.value.details["element_id"] in ("call_a", "call_b")
    assert _definitions(engine) == []

    # proc_a v1 calls nobody; proc_b calls proc_a; a proc_a v2 calling proc_b would close the loop.
    leaf = process("proc_a", f'<bpmn:startEvent id="s"/><bpmn:endEvent id="e"/>{chain("s", "e")}')
    engine.deploy([("a.bpmn", leaf)])
    engine.deploy([("b.bpmn", _caller("proc_b", "call_a", "proc_a"))])
    with pytest.raises(InvalidModel) as caught:
        engine.deploy([("a.bpmn", _caller("proc_a", "call_b", "proc_b"))])
    assert caught.value.details["element_id"] in ("call_a", "call_b")
    assert sorted((d["key"], d["version"]) for d in _definitions(engine)) == [("proc_a", 1), ("proc_b", 1)]


# ----------------------------------------------------------------------------------- embedded subprocess
def test_embedded_subprocess_with_user_tasks_completes_and_disarms_its_boundary_timer(
    engine: Engine, clock: ManualClock
) -> None:
    deploy_b(engine, REVIEW)
    started = engine.start(key="case_review", business_key="AJ-2026-17", variables={"review_limit": "P5D"})
    iid = started["id"]
    view = step(engine, started)
    assert open_elements(engine, iid) == ["check", "collect"]
    assert "review_sp" in view["activities"]
    assert timer_dues(engine, iid) == [("sp_deadline", T0 + timedelta(days=5))]
    check = one_task(engine, iid, "check")
    assert check["candidate_groups"] == ["officer"] and check["instance_id"] == iid

    clock.advance(days=1)
    done = engine.complete(check["id"], {"decision": "ok", "opinion": "材料齐全"}, user="officer.1")
    view = step(engine, done)
    assert open_elements(engine, iid) == ["collect"]
    assert timer_dues(engine, iid) == [("sp_deadline", T0 + timedelta(days=5))]  # still inside the subprocess

    done = engine.complete(
        one_task(engine, iid, "collect")["id"], {"evidence": ["照片", "笔录"]}, user="investigator.1"
    )
    view = step(engine, done)
    assert view["activities"] == ["sign"]
    assert view["waiting_for"]["timers"] == []
    assert view["variables"]["opinion"] == "材料齐全" and view["variables"]["evidence"] == ["照片", "笔录"]

    clock.advance(days=10)
    assert engine.fire_due_timers() == 0
    assert open_elements(engine, iid) == ["sign"] and cancelled_elements(engine, iid) == []
    signed = engine.complete(one_task(engine, iid, "sign")["id"], {}, user="head.1")
    assert step(engine, signed)["state"] == "completed"


def test_boundary_timer_on_the_subprocess_cancels_its_tasks(engine: Engine, clock: ManualClock) -> None:
    deploy_b(engine, REVIEW)
    started = engine.start(key="case_review", variables={"review_limit": "PT48H"})
    iid = started["id"]
    step(engine, started)
    done = engine.complete(one_task(engine, iid, "collect")["id"], {"evidence": []}, user="investigator.1")
    step(engine, done)
    assert open_elements(engine, iid) == ["check"]

    clock.set(T0 + timedelta(hours=47, minutes=59))
    assert engine.fire_due_timers() == 0
    clock.set(T0 + timedelta(hours=48))
    assert engine.fire_due_timers() == 1
    view = step(engine, iid)
    assert view["state"] == "running"
    assert view["activities"] == ["overdue"]
    assert open_elements(engine, iid) == ["overdue"]
    assert cancelled_elements(engine, iid) == ["check"]
    assert sorted(t["element_id"] for t in tasks(engine, iid, state="completed")) == ["collect"]
    overdue = one_task(engine, iid, "overdue")
    assert overdue["candidate_groups"] == ["section_head"] and overdue["name"] == "超期处理"
    assert instance(engine, iid)["waiting_for"]["timers"] == []


def test_subprocess_boundary_timer_value_is_read_from_the_instance_variables(engine: Engine) -> None:
    deploy_b(engine, REVIEW)
    fast = engine.start(key="case_review", variables={"review_limit": "PT1H"})
    slow = engine.start(key="case_review", variables={"review_limit": "P10D"})
    assert timer_dues(engine, fast["id"]) == [("sp_deadline", T0 + timedelta(hours=1))]
    assert timer_dues(engine, slow["id"]) == [("sp_deadline", T0 + timedelta(days=10))]
    step(engine, fast)
    step(engine, slow)
