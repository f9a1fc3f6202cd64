"""The decision tables of model B, row by row: bpmn/major_decision.dmn and bpmn/inspection_frequency.dmn.

Each row is hit by at least one case (checked against the file, so a new row needs a case here), thresholds are
tested on both sides, and the ordering that makes hit policy FIRST equal to "any matching row" is checked on the
file itself: no row that gives less may come before a row that gives more.
"""

from __future__ import annotations

from typing import Any
from xml.etree import ElementTree

import pytest

from engine.commands import Engine
from tests.scenarios.support import MODELS, deploy_models

DMN_NS = {"dmn": "https://www.omg.org/spec/DMN/20191111/MODEL/"}

PROBE = """<?xml version="1.0" encoding="UTF-8"?>
<bpmn:definitions xmlns:bpmn="http://www.omg.org/spec/BPMN/20100524/MODEL"
                  xmlns:camunda="http://camunda.org/schema/1.0/bpmn"
                  id="defs_decision_probe" targetNamespace="http://caseflow.local/tests/scenarios">
  <bpmn:process id="decision_probe" name="决策表探针" isExecutable="true">
    <bpmn:startEvent id="start"/>
    <bpmn:businessRuleTask id="major" name="重大执法决定" camunda:decisionRef="major_decision"
                           camunda:resultVariable="assessment" camunda:mapDecisionResult="singleResult"/>
    <bpmn:businessRuleTask id="frequency" name="抽查频次" camunda:decisionRef="inspection_frequency"
                           camunda:resultVariable="inspection" camunda:mapDecisionResult="singleResult"/>
    <bpmn:endEvent id="end"/>
    <bpmn:sequenceFlow id="f1" sourceRef="start" targetRef="major"/>
    <bpmn:sequenceFlow id="f2" sourceRef="major" targetRef="frequency"/>
    <bpmn:sequenceFlow id="f3" sourceRef="frequency" targetRef="end"/>
  </bpmn:process>
</bpmn:definitions>
"""

BASE: dict[str, Any] = {
    "measure": "none",
    "party_type": "organisation",
    "fine_amount": 0,
    "confiscation_amount": 0,
    "public_interest": False,
    "complex_case": False,
    "credit_risk_class": "B",
}

# (rule id the case must hit first, inputs over BASE, major, hearing, basis)
MAJOR_CASES: list[tuple[str, dict[str, Any], bool, bool, str]] = [
    ("r_licence_revocation", {"measure": "licence_revocation"}, True, True, "吊销许可证件"),
    ("r_qualification_lowering", {"measure": "qualification_lowering"}, True, True, "降低资质等级"),
    ("r_suspension", {"measure": "suspension", "party_type": "individual"}, True, True, "责令停产停业"),
    ("r_closure", {"measure": "closure"}, True, True, "责令关闭"),
    ("r_practice_restriction", {"measure": "practice_restriction"}, True, True, "限制从业"),
    (
        "r_fine_individual",
        {"party_type": "individual", "fine_amount": 10000},
        True,
        True,
        "对个人处较大数额罚款",
    ),
    ("r_general", {"party_type": "individual", "fine_amount": 9999}, False, False, "一般程序案件"),
    ("r_fine_organisation", {"fine_amount": 100000}, True, True, "对单位处较大数额罚款"),
    ("r_general", {"fine_amount": 99999}, False, False, "一般程序案件"),
    ("r_general", {"fine_amount": 50000, "measure": "warning"}, False, False, "一般程序案件"),
    (
        "r_confiscation_individual",
        {"party_type": "individual", "confiscation_amount": 10000},
        True,
        True,
        "没收个人较大数额违法所得或较大价值非法财物",
    ),
    ("r_general", {"party_type": "individual", "confiscation_amount": 9999}, False, False, "一般程序案件"),
    (
        "r_confiscation_organisation",
        {"confiscation_amount": 100000},
        True,
        True,
        "没收单位较大数额违法所得或较大价值非法财物",
    ),
    ("r_general", {"confiscation_amount": 99999}, False, False, "一般程序案件"),
    ("r_public_interest", {"public_interest": True}, True, False, "涉及重大公共利益"),
    ("r_complex_case", {"complex_case": True}, True, False, "案件情况疑难复杂、涉及多个法律关系"),
    ("r_general", {}, False, False, "一般程序案件"),
    # FIRST: several rows match, the first (the heaviest) answers.
    (
        "r_licence_revocation",
        {"measure": "licence_revocation", "fine_amount": 200000},
        True,
        True,
        "吊销许可证件",
    ),
    (
        "r_fine_individual",
        {"party_type": "individual", "fine_amount": 20000, "public_interest": True},
        True,
        True,
        "对个人处较大数额罚款",
    ),
    ("r_public_interest", {"public_interest": True, "complex_case": True}, True, False, "涉及重大公共利益"),
]

FREQUENCY_CASES: list[tuple[str, str, str, int, bool]] = [
    ("f_A", "A", "P12M", 3, False),
    ("f_B", "B", "P6M", 5, False),
    ("f_C", "C", "P3M", 10, True),
    ("f_D", "D", "P1M", 20, True),
    ("f_unclassified", "", "P6M", 5, False),
    ("f_unclassified", "E", "P6M", 5, False),
]


def _rules(stem: str) -> list[ElementTree.Element]:
    root = ElementTree.parse(MODELS / f"{stem}.dmn").getroot()
    return root.findall(".//dmn:rule", DMN_NS)


def _outputs(rule: ElementTree.Element) -> list[str]:
    return [
        (e.findtext("dmn:text", "", DMN_NS) or "").strip() for e in rule.findall("dmn:outputEntry", DMN_NS)
    ]


def _decide(engine: Engine, **inputs: Any) -> dict[str, Any]:
    deploy_models(engine, "major_decision", "inspection_frequency", extra=[("probe.bpmn", PROBE.encode())])
    started = engine.start(key="decision_probe", variables={**BASE, **inputs})
    assert started["state"] == "completed", started.get("incident")
    variables: dict[str, Any] = started["variables"]
    return variables


@pytest.mark.parametrize(("rule", "inputs", "major", "hearing", "basis"), MAJOR_CASES)
def test_major_decision_rows(
    engine: Engine, rule: str, inputs: dict[str, Any], major: bool, hearing: bool, basis: str
) -> None:
    assessment = _decide(engine, **inputs)["assessment"]
    assert assessment == {"major": major, "hearing": hearing, "basis": basis}, rule


@pytest.mark.parametrize(("rule", "risk_class", "interval", "ratio", "onsite"), FREQUENCY_CASES)
def test_inspection_frequency_rows(
    engine: Engine, rule: str, risk_class: str, interval: str, ratio: int, onsite: bool
) -> None:
    inspection = _decide(engine, credit_risk_class=risk_class)["inspection"]
    assert (inspection["interval"], inspection["ratio_percent"], inspection["onsite"]) == (
        interval,
        ratio,
        onsite,
    ), rule
    assert inspection["note"]


def test_every_row_has_a_case() -> None:
    assert {r.get("id") for r in _rules("major_decision")} == {case[0] for case in MAJOR_CASES}
    assert {r.get("id") for r in _rules("inspection_frequency")} == {case[0] for case in FREQUENCY_CASES}


def test_rows_are_ordered_so_that_the_first_match_is_the_heaviest() -> None:
    """Hit policy FIRST is only "any matching row" when outputs never grow further down the table: every
    hearing row is major, and no row gives more (major or hearing) than a row above it."""
    root = ElementTree.parse(MODELS / "major_decision.dmn").getroot()
    table = root.find(".//dmn:decisionTable", DMN_NS)
    assert table is not None and table.get("hitPolicy") == "FIRST"
    seen_not_major = seen_no_hearing = False
    for rule in _rules("major_decision"):
        major, hearing, _basis = _outputs(rule)
        assert not (hearing == "true" and major != "true"), f"{rule.get('id')}: a hearing row must be major"
        assert not (seen_not_major and major == "true"), f"{rule.get('id')} is major below a non-major row"
        assert not (seen_no_hearing and hearing == "true"), f"{rule.get('id')} gives a hearing too late"
        seen_not_major |= major == "false"
        seen_no_hearing |= hearing == "false"
        assert (rule.findtext("dmn:description", "", DMN_NS) or "").strip(), f"{rule.get('id')} has no basis"
    last = _rules("major_decision")[-1]
    inputs = [
        (e.findtext("dmn:text", "", DMN_NS) or "").strip() for e in last.findall("dmn:inputEntry", DMN_NS)
    ]
    assert set(inputs) == {"-"}, "the last row catches every other case"
