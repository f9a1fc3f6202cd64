"""The modelling conventions of the five district models (A1-A3, B, C), checked on the files themselves.

Chinese names on the process and every task, event, gateway and lane; every user task in a lane, with
``<agency>:<role>`` candidate groups and a form whose fields have Chinese labels and at least one required field;
督办 tasks for the supervising department only; every timer with a calendar kind and documentation naming its
legal basis (and saying so when the value is a [U] parameter); in B and C each missed deadline of an agency leads
to a 司法局督办 task of the justice bureau's supervisors; a task's due date and its deadline timer agree; every
message correlated on ``case_no`` and every message throw addressed (``caseflow:to`` / ``caseflow:from``) with an
explicit payload.
"""

from __future__ import annotations

import re

import pytest

from tests.scenarios.models import (
    CHINESE,
    DISTRICT_MODELS,
    NS,
    bpmn_doc,
    camunda,
    candidate_groups,
    caseflow,
    deadline_timers,
    documentation,
    lane_names,
    local_name,
    message_throws,
    timers,
    user_tasks,
)

GROUP = re.compile(
    r"^(\$\{\w+\}|[a-z_]+):(officer|legal_reviewer|head|staff|supervisor|coordinator|case_supervision)$"
)
LEGAL_BASIS = re.compile(r"第[一二三四五六七八九十百零]+条|\[U\]|\[S\]")
CONFIDENTIAL = "discipline_clue_transfer"
# Who sends a model's messages (caseflow:from, and the second payload variable); A1 and C send none.
SENDER = {
    "clue_transfer": "sender_agency",
    "criminal_transfer": "sender_agency",
    "discipline_clue_transfer": "sender_agency",
    "approval_supervision_penalty": "supervising_agency",
}
# Tasks whose due date is watched by a deadline timer on the task itself, at least. A3's deadline runs over
# three steps (a timer on the subprocess), so no single task shows it.
MIN_DUE_DATES = {
    "clue_transfer": 1,
    "criminal_transfer": 1,
    "discipline_clue_transfer": 0,
    "approval_supervision_penalty": 4,
    "jurisdiction_dispute": 4,
}
# Models whose every missed agency deadline is a 司法局督办 task. Deadlines of the party, not of an agency, lapse
# a right or start a surcharge; nobody is supervised.
SUPERVISED_MODELS = ("approval_supervision_penalty", "jurisdiction_dispute")
PARTY_DEADLINES = {"defence_period_over", "payment_overdue"}
SUPERVISION = {
    "司法局督办": ["justice_bureau:supervisor"],
    "纪委监委督办": ["discipline_commission:case_supervision"],
}
SUPERVISOR_LANE = "区司法局·督办人员"  # B and C; A1 and A2 name the lane 司法局


@pytest.mark.parametrize("stem", DISTRICT_MODELS)
def test_every_flow_node_and_lane_has_a_chinese_name(stem: str) -> None:
    doc = bpmn_doc(stem)
    named = doc.xpath(
        "//bpmn:*[contains(local-name(), 'Task') or contains(local-name(), 'Event') or "
        "contains(local-name(), 'Gateway') or local-name()='lane' or local-name()='subProcess' or "
        "local-name()='callActivity' or local-name()='process'][not(contains(local-name(), 'EventDefinition'))]",
        namespaces=NS,
    )
    assert len(named) > 20
    assert "process" in {local_name(node) for node in named}
    for node in named:
        assert CHINESE.search(node.get("name") or ""), (
            f"{stem}: {local_name(node)} {node.get('id')} has no Chinese name"
        )


@pytest.mark.parametrize("stem", DISTRICT_MODELS)
def test_every_user_task_has_a_lane_role_groups_and_a_chinese_form(stem: str) -> None:
    doc = bpmn_doc(stem)
    lane_of = lane_names(doc)
    tasks = user_tasks(doc)
    assert tasks
    for node in tasks:
        where = f"{stem}: {node.get('id')}"
        assert node.get("id") in lane_of, f"{where} is in no lane"
        groups = candidate_groups(node)
        assert groups and all(GROUP.match(g) for g in groups), f"{where}: candidate groups {groups}"
        fields = node.xpath("bpmn:extensionElements/camunda:formData/camunda:formField", namespaces=NS)
        assert fields, f"{where} has no form"
        for field in fields:
            assert CHINESE.search(field.get("label") or ""), f"{where}: field {field.get('id')} label"
        required = node.xpath(".//camunda:constraint[@name='required']", namespaces=NS)
        assert required, f"{where}: no required field"


@pytest.mark.parametrize("stem", DISTRICT_MODELS)
def test_supervision_tasks_go_to_the_supervising_department_only(stem: str) -> None:
    doc = bpmn_doc(stem)
    lane_of = lane_names(doc)
    for node in user_tasks(doc):
        where = f"{stem}: {node.get('id')}"
        name = node.get("name", "")
        for prefix, groups in SUPERVISION.items():
            if name.startswith(prefix):
                assert candidate_groups(node) == groups, where
                if prefix == "司法局督办" and stem in SUPERVISED_MODELS:
                    assert lane_of[node.get("id")] == SUPERVISOR_LANE, where


@pytest.mark.parametrize("stem", DISTRICT_MODELS)
def test_every_timer_declares_its_calendar_and_legal_basis(stem: str) -> None:
    found = timers(bpmn_doc(stem))
    assert found
    for node in found:
        where = f"{stem}: {node.get('id')}"
        assert caseflow(node, "calendar") in ("working_days", "calendar_days", "hours"), where
        text = documentation(node)
        assert LEGAL_BASIS.search(text), (
            f"{where}: documentation names no article or [U]/[S] parameter: {text!r}"
        )
        assert CHINESE.search(text), f"{where}: documentation {text!r}"


@pytest.mark.parametrize("stem", SUPERVISED_MODELS)
def test_each_missed_agency_deadline_leads_to_a_supervision_task(stem: str) -> None:
    doc = bpmn_doc(stem)
    by_id = {n.get("id"): n for n in doc.xpath("//bpmn:*[@id]", namespaces=NS)}
    deadlines = doc.xpath("//bpmn:boundaryEvent[bpmn:timerEventDefinition]", namespaces=NS)
    assert deadlines
    for node in deadlines:
        where = f"{stem}: {node.get('id')}"
        if node.get("id") in PARTY_DEADLINES:
            continue
        assert node.get("cancelActivity") == "false", f"{where}: a missed deadline must not cancel the work"
        [flow] = doc.xpath(f"//bpmn:sequenceFlow[@sourceRef='{node.get('id')}']", namespaces=NS)
        target = by_id[flow.get("targetRef")]
        assert local_name(target) == "userTask" and target.get("name", "").startswith("司法局督办："), where


@pytest.mark.parametrize("stem", DISTRICT_MODELS)
def test_a_task_due_date_and_its_deadline_timer_agree(stem: str) -> None:
    """Where a task shows a due date and a boundary timer watches the same deadline, both say the same thing
    (value and calendar kind), so an editor cannot change one and forget the other unnoticed."""
    doc = bpmn_doc(stem)
    checked = 0
    for node in doc.xpath("//bpmn:userTask[@camunda:dueDate]", namespaces=NS):
        where = f"{stem}: {node.get('id')}"
        found = deadline_timers(doc, node.get("id"))
        assert len(found) == 1, f"{where} has a due date but {len(found)} deadline timers"
        [timer] = found
        duration = timer.xpath("string(bpmn:timerEventDefinition/bpmn:timeDuration)", namespaces=NS).strip()
        assert camunda(node, "dueDate") == duration, where
        assert caseflow(node, "calendar") == caseflow(timer, "calendar"), where
        checked += 1
    assert checked >= MIN_DUE_DATES[stem]


@pytest.mark.parametrize("stem", DISTRICT_MODELS)
def test_every_message_throw_is_addressed_with_an_explicit_payload_on_case_no(stem: str) -> None:
    doc = bpmn_doc(stem)
    for message in doc.xpath("//bpmn:message", namespaces=NS):
        assert caseflow(message, "correlationKeys") == "case_no", f"{stem}: message {message.get('id')}"
    [process] = doc.xpath("//bpmn:process", namespaces=NS)
    confidential = caseflow(process, "confidential") == "true"
    assert confidential == (stem == CONFIDENTIAL)
    for node in message_throws(doc):
        where = f"{stem}: {node.get('id')}"
        to = caseflow(node, "to")
        assert to, where
        assert caseflow(node, "from") == f"${{{SENDER[stem]}}}", where
        payload = [p.split("=")[0].strip() for p in (caseflow(node, "payload") or "").split(",")]
        assert payload[0] == "case_no", where
        if stem != "approval_supervision_penalty":
            assert payload[:2] == ["case_no", SENDER[stem]], where
        if confidential:
            assert to == "discipline_commission", where


def test_the_credit_platform_gets_an_addressed_message_with_an_explicit_payload() -> None:
    [throw] = message_throws(bpmn_doc("approval_supervision_penalty"))
    assert caseflow(throw, "to") == "credit_platform"
    assert caseflow(throw, "from") == "${supervising_agency}"
    payload = [p.strip() for p in (caseflow(throw, "payload") or "").split(",")]
    assert payload[0] == "case_no" and "facts" not in payload and "officer_1_id" not in payload
    # C talks to nobody outside the district engine.
    assert not bpmn_doc("jurisdiction_dispute").xpath("//bpmn:messageEventDefinition", namespaces=NS)
