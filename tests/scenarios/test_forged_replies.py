"""A reply from another agency sets only what its catch declares (``caseflow:payload`` on the catching element).

The police, the procuratorate and the discipline commission answer the district's cases with messages. A reply
carrying ``sender_agency="justice_bureau"``, another ``case_no`` or a period would otherwise overwrite the case's
routing and deadlines, or plant the confidential clue's content in another case. Static: every catching message
element of ``bpmn/*.bpmn`` (intermediate catch, boundary, message start, receive task) declares the variables it
takes, none of them a routing variable, a period or anything the case's own staff enter. Scenarios (both
databases): each model's replies, forged with extra fields, change none of those fields; the models without a
message catch (A1, B, C) cannot be reached by a reply at all.
"""

from __future__ import annotations

import re
from typing import Any

import pytest

from engine.commands import Engine
from engine.errors import MessageNotCorrelated
from tests.conftest import ManualClock
from tests.scenarios.criminal_steps import APPROVED, HANDED_OVER, reported
from tests.scenarios.models import (
    DISTRICT_MODELS,
    NS,
    bpmn_doc,
    bpmn_files,
    candidate_groups,
    caseflow,
    local_name,
    message_catches,
    split_list,
)
from tests.scenarios.support import Case, deploy_models, roles, start

IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
ASSIGNED = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_]*)\s*=", re.MULTILINE)
TEMPLATE = re.compile(r"\$\{\s*([A-Za-z_][A-Za-z0-9_]*)")

# What a reply must never set: who the case belongs to and is routed to, its number, its periods, and the
# confidential clue's content.
ROUTING = {
    "sender_agency": "justice_bureau",
    "receiver_agency": "justice_bureau",
    "handling_agency": "justice_bureau",
    "supervising_agency": "justice_bureau",
    "approving_agency": "justice_bureau",
    "designated_agency": "justice_bureau",
    "interim_lead_agency": "justice_bureau",
    "case_no": "FORGED-1",
}
PERIODS = {
    "approval_period": "P300D",
    "filing_period": "P300D",
    "handover_period": "P300D",
    "transfer_period": "P300D",
    "registration_period": "P300D",
}
CONTENT = {
    "clue_summary": "伪造的线索内容",
    "official_name": "伪造",
    "official_position": "伪造",
    "evidence_list": "伪造",
    "transfer_letter_no": "伪造〔2026〕1号",
    "suspected_crime": "伪造",
    "investigation_report": "伪造",
    "seized_items_list": "伪造",
    "transfer_approved": False,
    "officer_1_id": "wangqiang",
    "refusal_reason": "伪造",
}
FORGED = {**ROUTING, **PERIODS, **CONTENT}
AGENCY = "market_regulation"


# ------------------------------------------------------------------------------------------------ static
def _declared(node: Any) -> list[tuple[str, str]]:
    """(variable, message field) pairs of a catch's caseflow:payload."""
    pairs = []
    for item in split_list(caseflow(node, "payload")):
        variable, _, field = item.partition("=")
        pairs.append((variable.strip(), (field or variable).strip()))
    return pairs


def _own_variables(doc: Any) -> set[str]:
    """What the case's own people and scripts set: form fields, script assignments, template variables."""
    fields = {f.get("id") for f in doc.xpath("//camunda:formField", namespaces=NS)}
    scripts = set()
    for script in doc.xpath("//bpmn:scriptTask/bpmn:script/text()", namespaces=NS):
        scripts |= set(ASSIGNED.findall(str(script)))
    templates = set()
    for node in doc.xpath("//bpmn:userTask", namespaces=NS):
        templates |= {variable for group in candidate_groups(node) for variable in TEMPLATE.findall(group)}
    return fields | scripts | templates


def test_every_catching_message_element_declares_what_a_message_may_set() -> None:
    files = bpmn_files()
    assert {f.stem for f in files} >= set(DISTRICT_MODELS)
    checked = 0
    for path in files:
        for node in message_catches(bpmn_doc(path)):
            where = f"{path.name}: {local_name(node)} {node.get('id')}"
            declared = _declared(node)
            assert declared, f"{where} has no caseflow:payload: a message could set any variable"
            for variable, field in declared:
                assert IDENTIFIER.match(variable) and IDENTIFIER.match(field), f"{where}: {variable}={field}"
            checked += 1
    assert checked >= 13  # A2's eleven catches and A3's two


@pytest.mark.parametrize("stem", DISTRICT_MODELS)
def test_no_catch_lets_a_reply_set_routing_periods_content_or_what_staff_enter(stem: str) -> None:
    doc = bpmn_doc(stem)
    own = _own_variables(doc)
    for node in message_catches(doc):
        where = f"{stem}: {node.get('id')}"
        for variable, _ in _declared(node):
            assert variable not in FORGED, f"{where} lets a reply set '{variable}'"
            assert not variable.endswith(("_agency", "_period")), f"{where} lets a reply set '{variable}'"
            assert variable not in own, (
                f"{where}: a reply could overwrite '{variable}', set by the case itself"
            )


# ----------------------------------------------------------------------------------------------- A2
TRANSFER = {"transfer_letter_no": "湖市监移刑〔2026〕1号", "other_materials": "询问笔录 3 份"}


def _snapshot(case: Case) -> dict[str, Any]:
    variables = case.variables
    return {k: variables.get(k, "<absent>") for k in FORGED}


def _forged_reply(case: Case, name: str, genuine: dict[str, Any]) -> None:
    """The external agency's answer with every forged field added; none of them may change."""
    before = _snapshot(case)
    case.reply(name, {**FORGED, **genuine})
    assert _snapshot(case) == before, f"{name} changed {set(_snapshot(case).items()) - set(before.items())}"
    variables = case.variables
    for key, value in genuine.items():
        assert variables[key] == value, f"{name}: {key}"


def _transferred(engine: Engine, clock: ManualClock, case_no: str) -> Case:
    deploy_models(engine, "criminal_transfer")
    case = reported(engine, clock, case_no, AGENCY)
    case.complete("head_approval", APPROVED)
    case.complete("transfer_to_police", TRANSFER)
    return case


def _assert_still_ours(case: Case) -> None:
    for task in case.tasks():
        assert all(g.startswith((f"{AGENCY}:", "justice_bureau:supervisor")) for g in roles(task)), task


def test_a2_forged_police_answers_before_the_filing_decision(engine: Engine, clock: ManualClock) -> None:
    case = _transferred(engine, clock, "HB-FORGE-A2-1")
    _forged_reply(case, "police_not_competent", {"passed_to": "某公安分局", "pass_on_reason": "地域管辖"})
    case.complete("record_pass_on", {"pass_on_notice_no": "湖公转〔2026〕9号"})
    _forged_reply(case, "police_receipt", {"receipt_no": "湖公回〔2026〕30号"})
    _forged_reply(case, "police_materials_incomplete", {"missing_materials": "检验报告原件"})
    _assert_still_ours(case)
    _forged_reply(case, "police_not_competent", {"passed_to": "某公安分局", "pass_on_reason": "级别管辖"})
    _forged_reply(case, "police_filing_decision", {"filed": True, "filing_notice_no": "湖公立〔2026〕90号"})
    assert "hand_over_items" in case.open_elements()
    _assert_still_ours(case)
    # The [U] periods stay those of the model, whatever a reply said.
    assert case.variables["handover_period"] == "P3D"


def test_a2_forged_answers_through_reconsideration_and_supervision(
    engine: Engine, clock: ManualClock
) -> None:
    case = _transferred(engine, clock, "HB-FORGE-A2-2")
    case.reply("police_receipt", {"receipt_no": "湖公回〔2026〕31号"})
    _forged_reply(case, "police_filing_decision", {"filed": False, "not_filed_reasons": "证据不足"})
    case.complete(
        "decide_reconsideration",
        {"files_returned": True, "request_reconsideration": True, "reconsideration_reason": "已达追诉标准"},
    )
    _forged_reply(
        case,
        "police_reconsideration_decision",
        {"reconsideration_filed": False, "reconsideration_decision_no": "湖公复〔2026〕9号"},
    )
    case.complete(
        "decide_supervision_proposal", {"propose_supervision": True, "supervision_reason": "应当立案"}
    )
    _forged_reply(
        case, "procuratorate_supervision_result", {"ordered_to_file": True, "supervision_opinion": "通知立案"}
    )
    _forged_reply(case, "police_filing_decision", {"filed": True, "filing_notice_no": "湖公立〔2026〕91号"})
    assert case.open_elements() == ["hand_over_items"]
    _assert_still_ours(case)


@pytest.mark.parametrize(
    ("message", "genuine", "next_task"),
    [
        ("police_case_closed_non_criminal", {"closing_reasons": "不构成犯罪"}, "administrative_handling"),
        ("procuratorate_non_prosecution", {"non_prosecution_decision_no": "湖检不诉〔2026〕5号"}, None),
        ("procuratorate_prosecuted", {"indictment_no": "湖检诉〔2026〕12号"}, None),
    ],
)
def test_a2_forged_outcome_of_the_criminal_proceedings(
    engine: Engine, clock: ManualClock, message: str, genuine: dict[str, Any], next_task: str | None
) -> None:
    case = _transferred(engine, clock, "HB-FORGE-A2-3")
    case.reply("police_receipt", {"receipt_no": "湖公回〔2026〕32号"})
    case.reply("police_filing_decision", {"filed": True, "filing_notice_no": "湖公立〔2026〕92号"})
    case.complete("hand_over_items", HANDED_OVER)
    _forged_reply(case, message, genuine)
    if next_task is not None:
        assert case.open_elements() == [next_task]
    _assert_still_ours(case)


# ----------------------------------------------------------------------------------------------- A3
CLUE = {
    "clue_summary": "某工作人员收受商户财物",
    "official_name": "王某某",
    "official_position": "中队副队长",
    "clue_source": "执法检查中商户陈述",
    "evidence_list": "询问笔录 2 份",
}


def _clue_sent(engine: Engine, clock: ManualClock) -> Case:
    deploy_models(engine, "discipline_clue_transfer")
    case = start(engine, clock, "discipline_clue_transfer", case_no="XS-FORGE-1", sender_agency=AGENCY)
    case.complete("register_clue", CLUE)
    case.complete("head_approval", {"clue_transfer_approved": True, "approval_opinion": "同意"})
    case.complete(
        "prepare_transfer", {"transfer_letter_no": "湖市监纪移〔2026〕9号", "sealed_material_count": 2}
    )
    return case


def test_a3_forged_registration_keeps_the_clue_and_its_sender(engine: Engine, clock: ManualClock) -> None:
    case = _clue_sent(engine, clock)
    _forged_reply(case, "discipline_clue_registered", {"registration_no": "湖纪线〔2026〕30号"})
    assert case.state == "completed"
    assert {k: case.variables[k] for k in CLUE} == CLUE


def test_a3_forged_pass_on_notice_goes_to_the_sender_s_officers(engine: Engine, clock: ManualClock) -> None:
    case = _clue_sent(engine, clock)
    _forged_reply(
        case,
        "discipline_clue_passed_on",
        {"passed_to": "三门峡市纪委监委", "pass_on_notice_no": "湖纪转〔2026〕5号"},
    )
    assert roles(case.task("record_passed_on")) == [f"{AGENCY}:officer"]
    assert {k: case.variables[k] for k in CLUE} == CLUE


# ------------------------------------------------------------------------------------------- A1, B, C
def _message_names() -> set[str]:
    names: set[str] = set()
    for path in bpmn_files():
        names |= {str(m.get("name")) for m in bpmn_doc(path).xpath("//bpmn:message", namespaces=NS)}
    return names


def test_a1_b_c_cannot_be_reached_by_any_reply(engine: Engine, clock: ManualClock) -> None:
    """They wait for nobody outside the district engine: every message name of the district, addressed to
    their case numbers, finds no door, and the cases are unchanged."""
    deploy_models(
        engine,
        "clue_transfer",
        "jurisdiction_dispute",
        "approval_supervision_penalty",
        "major_decision",
        "inspection_frequency",
    )
    cases = [
        start(engine, clock, "clue_transfer", case_no="HB-FORGE-A1", sender_agency=AGENCY),
        start(
            engine,
            clock,
            "jurisdiction_dispute",
            case_no="HB-FORGE-C",
            sender_agency=AGENCY,
            receiver_agency="urban_management",
            objection_reason="不属本机关职责",
        ),
        start(
            engine,
            clock,
            "approval_supervision_penalty",
            case_no="XK-FORGE-B",
            enterprise="某食品经营有限公司",
            supervising_agency=AGENCY,
            credit_risk_class="B",
        ),
    ]
    names = _message_names()
    assert len(names) >= 15
    for case in cases:
        before = case.variables
        for name in sorted(names):
            with pytest.raises(MessageNotCorrelated):
                case.reply(name, FORGED)
        assert case.variables == before, case.case_no
