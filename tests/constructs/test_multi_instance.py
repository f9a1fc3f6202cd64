"""Multi-instance user tasks through commands: parallel over camunda:collection, sequential, cardinality."""

from __future__ import annotations

import pytest

from engine.commands import Engine
from engine.errors import InvalidModel, TaskClaimed
from tests.bpmn_util import chain, process
from tests.constructs.support import audit_trail, deploy, instance, stable, tasks

MULTI = "会签_多实例.bpmn"
REVIEWERS = ["zhang.san", "li.si", "wang.wu"]


def test_parallel_collection_one_task_per_element_each_completed_separately(engine: Engine) -> None:
    deploy(engine, MULTI)
    started = engine.start(key="countersign", business_key="HQ-1", variables={"reviewers": REVIEWERS})
    iid = started["id"]
    stable(engine, iid)
    assert started["activities"] == ["sign_opinion"]
    open_tasks = tasks(engine, instance_id=iid)
    assert len(open_tasks) == 3
    assert {t["element_id"] for t in open_tasks} == {"sign_opinion"}
    # camunda:assignee="${reviewer}" is evaluated per instance with its element variable.
    assert sorted(t["assignee"] for t in open_tasks) == sorted(REVIEWERS)
    by_user = {t["assignee"]: t for t in open_tasks}
    assert [t["id"] for t in tasks(engine, assignee="li.si")] == [by_user["li.si"]["id"]]

    with pytest.raises(TaskClaimed):
        engine.complete(by_user["li.si"]["id"], {"opinion": "代签"}, user="zhang.san")

    for done_count, user in enumerate(["li.si", "wang.wu"], start=1):
        after = engine.complete(
            by_user[user]["id"], {"opinion": f"{user} 同意", f"agree_{done_count}": True}, user=user
        )
        stable(engine, iid)
        assert after["state"] == "running"
        assert after["activities"] == ["sign_opinion"]
        assert len(tasks(engine, instance_id=iid)) == 3 - done_count
        assert tasks(engine, candidate_group="office") == []
    last = engine.complete(
        by_user["zhang.san"]["id"], {"opinion": "zhang.san 同意", "agree_3": True}, user="zhang.san"
    )
    stable(engine, iid)
    assert last["activities"] == ["summary"]
    # What each reviewer entered is kept (the last to finish wins a shared name, as in Camunda); the element
    # variable stays local to its instance.
    assert last["variables"] == {
        "reviewers": REVIEWERS,
        "opinion": "zhang.san 同意",
        "agree_1": True,
        "agree_2": True,
        "agree_3": True,
    }
    closed = tasks(engine, instance_id=iid, state="completed")
    assert sorted(t["completed_by"] for t in closed) == sorted(REVIEWERS)

    [summary] = tasks(engine, candidate_group="office")
    done = engine.complete(summary["id"], {"result": "会签通过"}, user="office.1")
    stable(engine, iid)
    assert done["state"] == "completed"
    assert [r["command"] for r in audit_trail(engine, iid)] == [
        "start",
        "complete",
        "complete",
        "complete",
        "complete",
    ]


def test_parallel_collection_that_is_empty_goes_straight_on(engine: Engine) -> None:
    deploy(engine, MULTI)
    started = engine.start(key="countersign", variables={"reviewers": []})
    stable(engine, started["id"])
    assert started["activities"] == ["summary"]


def test_sequential_collection_one_task_at_a_time_in_order(engine: Engine) -> None:
    deploy(engine, MULTI)
    approvers = ["科长.陈", "处长.林", "局长.周"]
    started = engine.start(key="chain_approval", business_key="ZJ-9", variables={"approvers": approvers})
    iid = started["id"]
    stable(engine, iid)
    seen = []
    for position, approver in enumerate(approvers):
        [current] = tasks(engine, instance_id=iid)
        assert current["element_id"] == "approve"
        assert current["assignee"] == approver
        seen.append(approver)
        result = engine.complete(
            current["id"], {"last_approver": approver, f"step_{position}": "同意"}, user=approver
        )
        stable(engine, iid)
        assert result["state"] == ("running" if position < len(approvers) - 1 else "completed")
    assert seen == approvers
    final = instance(engine, iid)
    assert final["variables"]["last_approver"] == "局长.周"
    assert {final["variables"][f"step_{i}"] for i in range(3)} == {"同意"}
    assert "approver" not in final["variables"]


def test_loop_cardinality_creates_n_tasks(engine: Engine) -> None:
    deploy(engine, MULTI)
    started = engine.start(key="spot_checks", variables={"copies": 3})
    iid = started["id"]
    stable(engine, iid)
    checks = tasks(engine, candidate_group="inspectors")
    assert len(checks) == 3
    assert {t["instance_id"] for t in checks} == {iid}
    engine.claim(checks[1]["id"], "inspector.2")
    stable(engine, iid)
    for index, check in enumerate(checks):
        user = "inspector.2" if index == 1 else f"inspector.{index}x"
        result = engine.complete(check["id"], {f"site_{index}": "合格"}, user=user)
        stable(engine, iid)
        assert len(tasks(engine, instance_id=iid)) == 2 - index
    assert result["state"] == "completed"
    assert {k: v for k, v in result["variables"].items() if k.startswith("site_")} == {
        "site_0": "合格",
        "site_1": "合格",
        "site_2": "合格",
    }
    assert [
        t["completed_by"]
        for t in tasks(engine, instance_id=iid, state="completed")
        if t["id"] == checks[1]["id"]
    ] == ["inspector.2"]


def test_collection_must_name_a_variable(engine: Engine) -> None:
    body = f"""
  <bpmn:startEvent id="start"/>
  <bpmn:userTask id="sign" camunda:assignee="${{reviewer}}">
    <bpmn:multiInstanceLoopCharacteristics camunda:collection="${{reviewers.split(',')}}"
                                           camunda:elementVariable="reviewer"/>
  </bpmn:userTask>
  <bpmn:endEvent id="end"/>
  {chain("start", "sign", "end")}"""
    with pytest.raises(InvalidModel) as refused:
        engine.deploy([("bad.bpmn", process("bad_collection", body))])
    assert refused.value.details["element_id"] == "sign"
    assert "camunda:collection" in refused.value.message
    # The bare variable name works as well as ${name}.
    fine = body.replace("${reviewers.split(',')}", "reviewers")
    engine.deploy([("good.bpmn", process("good_collection", fine))])
    started = engine.start(key="good_collection", variables={"reviewers": ["a", "b"]})
    stable(engine, started["id"])
    assert sorted(t["assignee"] for t in tasks(engine, instance_id=started["id"])) == ["a", "b"]
