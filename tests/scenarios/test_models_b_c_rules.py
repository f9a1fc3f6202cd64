"""The modelling conventions of models B and C (approval_supervision_penalty, jurisdiction_dispute), checked on
the files: Chinese names everywhere; every user task in a lane with ``<agency>:<role>`` groups and a form whose
fields have Chinese labels and at least one required field; every timer with a calendar kind and documentation
naming its legal basis; each missed deadline of an agency leads to a 司法局督办 task of the justice bureau's
supervisors; a due date and its deadline timer agree; message throws are addressed with an explicit payload and
correlated on ``case_no``.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from lxml import etree

from engine.definitions.xml import parse_xml

BPMN_DIR = Path(__file__).resolve().parents[2] / "bpmn"
BPMN = "http://www.omg.org/spec/BPMN/20100524/MODEL"
CAMUNDA = "http://camunda.org/schema/1.0/bpmn"
CASEFLOW = "http://caseflow.local/schema/bpmn/1.0"
NS = {"bpmn": BPMN, "camunda": CAMUNDA}
CHINESE = re.compile(r"[\u4e00-\u9fff]")
GROUP = re.compile(
    r"^(\$\{\w+\}|[a-z_]+):(officer|legal_reviewer|head|staff|supervisor|coordinator|case_supervision)$"
)
LEGAL_BASIS = re.compile(r"第[一二三四五六七八九十百零]+条|\[U\]|\[S\]")
MODELS = ("approval_supervision_penalty", "jurisdiction_dispute")
# Deadlines of the party, not of an agency: they lapse a right or start a surcharge, nobody is supervised.
PARTY_DEADLINES = {"defence_period_over", "payment_overdue"}


def _doc(stem: str) -> Any:
    return parse_xml((BPMN_DIR / f"{stem}.bpmn").read_bytes(), f"{stem}.bpmn")


def _local(node: Any) -> str:
    return str(etree.QName(node).localname)


@pytest.mark.parametrize("stem", MODELS)
def test_every_flow_node_and_lane_has_a_chinese_name(stem: str) -> None:
    doc = _doc(stem)
    named = doc.xpath(
        "//bpmn:*[contains(local-name(), 'Task') or contains(local-name(), 'Event') or "
        "contains(local-name(), 'Gateway') or local-name()='lane' or local-name()='subProcess' or "
        "local-name()='callActivity' or local-name()='process'][not(contains(local-name(), 'EventDefinition'))]",
        namespaces=NS,
    )
    assert len(named) > 20
    for node in named:
        assert CHINESE.search(node.get("name") or ""), f"{stem}: {_local(node)} {node.get('id')} has no name"


@pytest.mark.parametrize("stem", MODELS)
def test_every_user_task_has_a_lane_role_groups_and_a_chinese_form(stem: str) -> None:
    doc = _doc(stem)
    lane_of = {
        ref.text.strip(): ref.getparent().get("name")
        for ref in doc.xpath("//bpmn:flowNodeRef", namespaces=NS)
    }
    for node in doc.xpath("//bpmn:userTask", namespaces=NS):
        where = f"{stem}: {node.get('id')}"
        assert node.get("id") in lane_of, f"{where} is in no lane"
        groups = [
            g.strip() for g in (node.get(f"{{{CAMUNDA}}}candidateGroups") or "").split(",") if g.strip()
        ]
        assert groups and all(GROUP.match(g) for g in groups), f"{where}: candidate groups {groups}"
        fields = node.xpath("bpmn:extensionElements/camunda:formData/camunda:formField", namespaces=NS)
        assert fields, f"{where} has no form"
        for field in fields:
            assert CHINESE.search(field.get("label") or ""), f"{where}: field {field.get('id')} label"
        required = node.xpath(".//camunda:constraint[@name='required']", namespaces=NS)
        assert required, f"{where}: no required field"
        if node.get("name", "").startswith("司法局督办"):
            assert groups == ["justice_bureau:supervisor"], where
            assert lane_of[node.get("id")] == "区司法局·督办人员", where


@pytest.mark.parametrize("stem", MODELS)
def test_every_timer_declares_its_calendar_and_legal_basis(stem: str) -> None:
    doc = _doc(stem)
    timers = doc.xpath("//bpmn:*[bpmn:timerEventDefinition]", namespaces=NS)
    assert timers
    for node in timers:
        where = f"{stem}: {node.get('id')}"
        assert node.get(f"{{{CASEFLOW}}}calendar") in ("working_days", "calendar_days", "hours"), where
        text = "".join(node.xpath("bpmn:documentation/text()", namespaces=NS))
        assert LEGAL_BASIS.search(text) and CHINESE.search(text), f"{where}: documentation {text!r}"


@pytest.mark.parametrize("stem", MODELS)
def test_each_missed_agency_deadline_leads_to_a_supervision_task(stem: str) -> None:
    doc = _doc(stem)
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
        assert _local(target) == "userTask" and target.get("name", "").startswith("司法局督办："), where


@pytest.mark.parametrize("stem", MODELS)
def test_a_task_due_date_and_its_deadline_timer_agree(stem: str) -> None:
    doc = _doc(stem)
    checked = 0
    for node in doc.xpath("//bpmn:userTask[@camunda:dueDate]", namespaces=NS):
        [timer] = doc.xpath(
            f"//bpmn:boundaryEvent[@attachedToRef='{node.get('id')}'][bpmn:timerEventDefinition]",
            namespaces=NS,
        )
        duration = timer.xpath("string(bpmn:timerEventDefinition/bpmn:timeDuration)", namespaces=NS).strip()
        assert node.get(f"{{{CAMUNDA}}}dueDate") == duration, f"{stem}: {node.get('id')}"
        assert node.get(f"{{{CASEFLOW}}}calendar") == timer.get(f"{{{CASEFLOW}}}calendar"), node.get("id")
        checked += 1
    assert checked >= 4


def test_the_credit_platform_gets_an_addressed_message_with_an_explicit_payload() -> None:
    doc = _doc("approval_supervision_penalty")
    for message in doc.xpath("//bpmn:message", namespaces=NS):
        assert message.get(f"{{{CASEFLOW}}}correlationKeys") == "case_no"
    [throw] = doc.xpath("//bpmn:intermediateThrowEvent[bpmn:messageEventDefinition]", namespaces=NS)
    assert throw.get(f"{{{CASEFLOW}}}to") == "credit_platform"
    assert throw.get(f"{{{CASEFLOW}}}from") == "${supervising_agency}"
    payload = [p.strip() for p in (throw.get(f"{{{CASEFLOW}}}payload") or "").split(",")]
    assert payload[0] == "case_no" and "facts" not in payload and "officer_1_id" not in payload
    # C talks to nobody outside the district engine.
    assert not _doc("jurisdiction_dispute").xpath("//bpmn:messageEventDefinition", namespaces=NS)
