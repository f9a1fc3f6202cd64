"""Role requirements on claim, assign and complete (enforcement rules: roles that gate steps).

Given the demo users directory and a case of 市场监管 with an investigation that requires a valid 河南省行政执法证,
a legal review that requires the 法律职业资格 and an approval that requires the head.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from engine.commands import Engine
from engine.definitions.compiler import Checkers, compile_resources
from engine.directory import Directory, parse_directory
from engine.errors import Forbidden, InvalidModel
from engine.lang.expressions import Evaluator
from tests.access.conftest import deploy, open_task
from tests.bpmn_util import process
from tests.conftest import ManualClock


def start_case(engine: Engine, agency: str = "market_regulation") -> dict[str, Any]:
    deploy(engine, "enforcement_case.bpmn")
    return engine.start(
        key="enforcement_case",
        business_key="湖市监罚〔2026〕1号",
        variables={"agency": agency},
        actor="zhaomin",
    )


def test_requirements_are_stored_on_the_task(guarded: Engine) -> None:
    case = start_case(guarded)
    task = open_task(guarded, case["id"], "investigate")
    assert task["requires"] == ["certified_officer"]
    assert set(task["candidate_groups"]) == {"market_regulation:officer", "market_regulation:staff"}
    assert task["confidential"] is False


def test_certified_officer_claims_the_investigation(guarded: Engine) -> None:
    case = start_case(guarded)
    task = open_task(guarded, case["id"], "investigate")
    assert guarded.claim(task["id"], "zhangwei") == {"id": task["id"], "assignee": "zhangwei"}
    result = guarded.complete(task["id"], {"facts": "现场检查笔录"}, user="zhangwei")
    assert [t["element_id"] for t in result["tasks"]] == ["legal_review"]


def test_uncertified_clerk_may_not_claim_an_enforcement_task(guarded: Engine) -> None:
    case = start_case(guarded)
    task = open_task(guarded, case["id"], "investigate")
    with pytest.raises(Forbidden) as refused:
        guarded.claim(task["id"], "liuyang")  # 刘洋: registry staff, a candidate, but holds no certificate
    assert refused.value.status == 403 and refused.value.code == "forbidden"
    assert "certified_officer" in refused.value.message
    assert "holds no 河南省行政执法证" in refused.value.message
    assert open_task(guarded, case["id"], "investigate")["assignee"] is None


def test_expired_certificate_is_refused(guarded: Engine) -> None:
    case = start_case(guarded)
    task = open_task(guarded, case["id"], "investigate")
    with pytest.raises(Forbidden) as refused:
        guarded.claim(task["id"], "wangqiang")  # 王强: certificate valid until 2025-12-31
    assert "expired on 2025-12-31" in refused.value.message
    assert refused.value.details["missing"] == ["certified_officer"]


def test_certificate_validity_follows_the_engine_clock(guarded: Engine, clock: ManualClock) -> None:
    case = start_case(guarded)
    task = open_task(guarded, case["id"], "investigate")
    # 李娜's certificate is valid until 2027-06-30: its last day still counts (the engine's time zone's date).
    clock.set(datetime(2027, 6, 30, 23, 0, tzinfo=UTC))
    assert guarded.claim(task["id"], "lina")["assignee"] == "lina"
    guarded.unclaim(task["id"], actor="lina")
    clock.set(datetime(2027, 7, 1, 1, 0, tzinfo=UTC))
    with pytest.raises(Forbidden, match="expired on 2027-06-30"):
        guarded.claim(task["id"], "lina")


def test_officer_of_another_agency_is_not_a_candidate(guarded: Engine) -> None:
    case = start_case(guarded)
    task = open_task(guarded, case["id"], "investigate")
    with pytest.raises(Forbidden, match="not a candidate") as refused:
        guarded.claim(task["id"], "sunlei")  # 孙磊: certified, but of 区城市管理局
    assert "market_regulation:officer" in refused.value.message


def test_unknown_user_is_refused(guarded: Engine) -> None:
    case = start_case(guarded)
    task = open_task(guarded, case["id"], "investigate")
    with pytest.raises(Forbidden, match="not a user of the directory"):
        guarded.claim(task["id"], "nobody")


def test_legal_review_needs_the_legal_qualification(engine: Engine, directory: Directory) -> None:
    # A first-time reviewer without the 法律职业资格 (行政处罚法 Art. 58) joins the demo directory.
    extra = {
        "id": "xiaohe",
        "name": "肖禾",
        "agency": "market_regulation",
        "roles": ["legal_reviewer"],
    }
    users = [
        {
            "id": u.id,
            "name": u.name,
            "agency": u.agency,
            "roles": list(u.roles),
            "legal_qualification": u.legal_qualification,
            "certificate": (
                {"number": u.certificate.number, "valid_until": u.certificate.valid_until}
                if u.certificate
                else None
            ),
        }
        for u in directory
    ]
    engine.directory = parse_directory({"users": [*users, extra]}, "test")
    case = start_case(engine)
    investigate = open_task(engine, case["id"], "investigate")
    engine.complete(investigate["id"], {}, user="zhangwei")
    review = open_task(engine, case["id"], "legal_review")
    assert review["requires"] == ["legal_qualification"]
    with pytest.raises(Forbidden, match="legal_qualification"):
        engine.claim(review["id"], "xiaohe")
    with pytest.raises(Forbidden, match="not a candidate"):
        engine.claim(review["id"], "zhangwei")  # an officer is no legal reviewer
    assert engine.claim(review["id"], "chenjing")["assignee"] == "chenjing"  # 陈静 holds the qualification


def test_approval_needs_the_head(guarded: Engine) -> None:
    case = start_case(guarded)
    guarded.complete(open_task(guarded, case["id"], "investigate")["id"], {}, user="zhangwei")
    guarded.complete(open_task(guarded, case["id"], "legal_review")["id"], {}, user="chenjing")
    approve = open_task(guarded, case["id"], "approve")
    with pytest.raises(Forbidden, match="not a candidate"):
        guarded.claim(approve["id"], "chenjing")
    result = guarded.complete(approve["id"], {"approved": True}, user="zhaomin")  # 赵敏: head
    assert result["state"] == "completed"


def test_assign_checks_the_assignee(guarded: Engine) -> None:
    case = start_case(guarded)
    task = open_task(guarded, case["id"], "investigate")
    with pytest.raises(Forbidden, match="certified_officer"):
        guarded.assign(task["id"], "liuyang", actor="zhaomin")
    assert guarded.assign(task["id"], "zhangwei", actor="zhaomin")["assignee"] == "zhangwei"
    assert guarded.assign(task["id"], None, actor="zhaomin")["assignee"] is None  # unassigning needs nobody


def test_complete_checks_the_user(guarded: Engine) -> None:
    case = start_case(guarded)
    task = open_task(guarded, case["id"], "investigate")
    with pytest.raises(Forbidden, match="expired"):
        guarded.complete(task["id"], {}, user="wangqiang")
    with pytest.raises(Forbidden, match="no user was named"):
        guarded.complete(task["id"], {})
    assert open_task(guarded, case["id"], "investigate")["state"] == "open"


def test_without_a_directory_anyone_may_act(engine: Engine) -> None:
    case = start_case(engine)
    task = open_task(engine, case["id"], "investigate")
    assert engine.claim(task["id"], "liuyang")["assignee"] == "liuyang"
    engine.complete(task["id"], {}, user="liuyang")


def test_unknown_requirement_is_refused_at_deploy(engine: Engine) -> None:
    bad = process(
        "bad_requires",
        '<bpmn:startEvent id="s"/><bpmn:userTask id="t" caseflow:requires="certified_officer, wizard"/>'
        '<bpmn:endEvent id="e"/><bpmn:sequenceFlow id="f1" sourceRef="s" targetRef="t"/>'
        '<bpmn:sequenceFlow id="f2" sourceRef="t" targetRef="e"/>',
    )
    with pytest.raises(InvalidModel, match="wizard") as refused:
        engine.deploy([("bad.bpmn", bad)])
    assert "element 't'" in refused.value.message


def test_requirements_parse_into_the_spec() -> None:
    xml = process(
        "p",
        '<bpmn:startEvent id="s"/><bpmn:userTask id="t" caseflow:requires="head,certified_officer,head"/>'
        '<bpmn:endEvent id="e"/><bpmn:sequenceFlow id="f1" sourceRef="s" targetRef="t"/>'
        '<bpmn:sequenceFlow id="f2" sourceRef="t" targetRef="e"/>',
    )
    checker = Evaluator({})
    compiled = compile_resources([("p.bpmn", xml)], Checkers(checker.check, checker.check_script))
    spec = compiled.processes["p"].spec.task_specs["t"]
    assert spec.assignment.requires == ("head", "certified_officer")
    assert compiled.processes["p"].confidential is False
