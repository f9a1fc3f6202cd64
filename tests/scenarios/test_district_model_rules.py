"""The modelling conventions of the district models A1-A3, checked on the files themselves.

Chinese names on every task, event, gateway and lane; every user task in a lane, with ``<agency>:<role>``
candidate groups and a form; every timer with a calendar kind and documentation naming its legal basis (and
saying so when the value is a [U] parameter); every message throw addressed (``caseflow:to`` / ``caseflow:from``)
with an explicit payload and correlated on ``case_no``.
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
MODELS = ("clue_transfer", "criminal_transfer", "discipline_clue_transfer")


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
        "local-name()='callActivity'][not(contains(local-name(), 'EventDefinition'))]",
        namespaces=NS,
    )
    assert named
    for node in named:
        assert CHINESE.search(node.get("name") or ""), (
            f"{stem}: {_local(node)} {node.get('id')} has no Chinese name"
        )


@pytest.mark.parametrize("stem", MODELS)
def test_every_user_task_has_a_lane_role_groups_and_a_form(stem: str) -> None:
    doc = _doc(stem)
    in_lanes = {ref.text.strip() for ref in doc.xpath("//bpmn:flowNodeRef", namespaces=NS)}
    for node in doc.xpath("//bpmn:userTask", namespaces=NS):
        where = f"{stem}: {node.get('id')}"
        assert node.get("id") in in_lanes, f"{where} is in no lane"
        groups = [
            g.strip() for g in (node.get(f"{{{CAMUNDA}}}candidateGroups") or "").split(",") if g.strip()
        ]
        assert groups and all(GROUP.match(g) for g in groups), f"{where}: candidate groups {groups}"
        assert node.xpath("bpmn:extensionElements/camunda:formData/camunda:formField", namespaces=NS), where
        if node.get("name", "").startswith(("司法局督办", "纪委监委督办")):
            assert groups in (["justice_bureau:supervisor"], ["discipline_commission:case_supervision"]), (
                where
            )


@pytest.mark.parametrize("stem", MODELS)
def test_every_timer_declares_its_calendar_and_legal_basis(stem: str) -> None:
    doc = _doc(stem)
    timers = doc.xpath("//bpmn:*[bpmn:timerEventDefinition]", namespaces=NS)
    assert timers
    for node in timers:
        where = f"{stem}: {node.get('id')}"
        assert node.get(f"{{{CASEFLOW}}}calendar") in ("working_days", "calendar_days", "hours"), where
        text = "".join(node.xpath("bpmn:documentation/text()", namespaces=NS))
        assert LEGAL_BASIS.search(text), (
            f"{where}: documentation names no article or [U]/[S] parameter: {text!r}"
        )
        assert CHINESE.search(text), where


@pytest.mark.parametrize("stem", MODELS)
def test_every_message_throw_is_addressed_with_an_explicit_payload_on_case_no(stem: str) -> None:
    doc = _doc(stem)
    messages = {m.get("id"): m for m in doc.xpath("//bpmn:message", namespaces=NS)}
    for m in messages.values():
        assert m.get(f"{{{CASEFLOW}}}correlationKeys") == "case_no", f"{stem}: message {m.get('id')}"
    throws = doc.xpath("//bpmn:intermediateThrowEvent[bpmn:messageEventDefinition]", namespaces=NS)
    confidential = doc.xpath("//bpmn:process", namespaces=NS)[0].get(f"{{{CASEFLOW}}}confidential") == "true"
    assert confidential == (stem == "discipline_clue_transfer")
    for node in throws:
        where = f"{stem}: {node.get('id')}"
        to = node.get(f"{{{CASEFLOW}}}to")
        assert to, where
        assert node.get(f"{{{CASEFLOW}}}from") == "${sender_agency}", where
        payload = [p.split("=")[0].strip() for p in (node.get(f"{{{CASEFLOW}}}payload") or "").split(",")]
        assert payload[:2] == ["case_no", "sender_agency"], where
        if confidential:
            assert to == "discipline_commission", where


@pytest.mark.parametrize("stem", MODELS)
def test_a_task_due_date_and_its_deadline_timer_agree(stem: str) -> None:
    """Where a task shows a due date and a boundary timer watches the same deadline, both say the same thing
    (value and calendar kind), so an editor cannot change one and forget the other unnoticed."""
    doc = _doc(stem)
    checked = 0
    for node in doc.xpath("//bpmn:userTask[@camunda:dueDate]", namespaces=NS):
        timers = doc.xpath(
            f"//bpmn:boundaryEvent[@attachedToRef='{node.get('id')}'][bpmn:timerEventDefinition]",
            namespaces=NS,
        )
        assert len(timers) == 1, f"{stem}: {node.get('id')} has a due date but {len(timers)} deadline timers"
        [timer] = timers
        duration = timer.xpath("string(bpmn:timerEventDefinition/bpmn:timeDuration)", namespaces=NS).strip()
        assert node.get(f"{{{CAMUNDA}}}dueDate") == duration, f"{stem}: {node.get('id')}"
        assert node.get(f"{{{CASEFLOW}}}calendar") == timer.get(f"{{{CASEFLOW}}}calendar"), (
            f"{stem}: {node.get('id')}"
        )
        checked += 1
    # A3's deadline runs over three steps (a timer on the subprocess), so no single task shows it.
    assert checked or stem == "discipline_clue_transfer"
