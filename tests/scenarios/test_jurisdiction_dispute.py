"""C jurisdiction dispute coordination (bpmn/jurisdiction_dispute.bpmn), given/when/then.

Paths: agreement in negotiation; coordination by the justice bureau whose opinion both accept; coordination that
fails, so the district government decides; an emergency in which the coordinator names an interim lead agency
first; each missed deadline of the coordination (materials 5, acceptance review 3, reply 7 working days →
司法局督办), on the working-day calendar across the 2026 National Day holiday and the adjusted working Saturday
2026-10-10; and the process called from another one through the agreed call-activity interface.
"""

from __future__ import annotations

from datetime import datetime

import pytest

from engine.commands import Engine
from engine.errors import InvalidForm
from tests.conftest import ManualClock
from tests.scenarios.support import (
    Case,
    advance_to,
    assert_supervised,
    assert_task,
    deploy_models,
    end_of_day,
    shanghai,
    start,
    timer_firings,
)

KEY = "jurisdiction_dispute"
SENDER = "market_regulation"
RECEIVER = "urban_management"
COORDINATOR = ["justice_bureau:coordinator"]

LANE_SENDER = "争议机关·移送机关执法人员"
LANE_RECEIVER = "争议机关·接收机关执法人员"
LANE_COORDINATOR = "区司法局·协调人员"
LANE_SUPERVISOR = "区司法局·督办人员"
LANE_GOVERNMENT = "区人民政府·负责人"
LANE_DESIGNATED = "指定管辖机关·登记人员"
LANE_INTERIM = "临时牵头机关·执法人员"

FAILED = {"negotiation_result": "failed", "negotiation_record": "双方均认为不属本机关职责"}
NOTIFY = {"coordination_notice_no": "湖司协〔2026〕4号", "emergency": False}
SENDER_MATERIALS = {"sender_materials": "移送函、现场照片", "sender_opinion": "属城市管理职责"}
RECEIVER_MATERIALS = {"receiver_materials": "复函", "receiver_opinion": "属市场监管职责"}
ACCEPT = {"acceptance_opinion": "材料齐全，予以受理"}
AGREED = {
    "coordination_result": "agreed",
    "opinion_agency": RECEIVER,
    "coordination_opinion": "占道经营属城市管理综合执法事项，由区城市管理局管辖",
}
NOT_AGREED = {**AGREED, "coordination_result": "failed"}
REPORT = {"report_no": "湖司报〔2026〕2号", "proposed_agency": RECEIVER}
GOVERNMENT = {"decided_agency": RECEIVER, "government_decision_no": "湖政决〔2026〕9号"}
TAKE_OVER = {"takeover_date": "2026-10-20"}
SUPERVISE = {"supervision_measure": "notice", "supervision_note": "请即提交"}


def _given(engine: Engine) -> None:
    deploy_models(engine, KEY)


def _start(engine: Engine, clock: ManualClock, at: datetime | None = None) -> Case:
    if at is not None:
        advance_to(engine, clock, at)
    return start(
        engine,
        clock,
        KEY,
        case_no="HB-C-001",
        sender_agency=SENDER,
        receiver_agency=RECEIVER,
        objection_reason="占道经营不属本局职责",
    )


def _notified(
    engine: Engine, clock: ManualClock, at: datetime | None = None, emergency: bool = False
) -> Case:
    """Given a negotiation that failed and the coordinator's notice to submit materials."""
    case = _start(engine, clock, at)
    case.complete("negotiate", FAILED, user="zhangwei")
    case.complete("notify_parties", {**NOTIFY, "emergency": emergency}, user="gaoyan")
    return case


def _accepted(engine: Engine, clock: ManualClock, at: datetime | None = None) -> Case:
    case = _notified(engine, clock, at)
    case.complete("submit_sender", SENDER_MATERIALS, user="zhangwei")
    case.complete("submit_receiver", RECEIVER_MATERIALS, user="sunlei")
    case.complete("accept_review", ACCEPT, user="gaoyan")
    return case


def test_agreement_in_negotiation_designates_the_agreed_agency(engine: Engine, clock: ManualClock) -> None:
    _given(engine)
    case = _start(engine, clock)
    assert_task(
        case.task("negotiate"),
        name="争议双方协商管辖",
        lane=LANE_SENDER,
        groups=[f"{SENDER}:officer", f"{RECEIVER}:officer"],
    )
    case.complete("negotiate", {"negotiation_result": "receiver", "negotiation_record": "同意由城管局管辖"})
    assert case.variables["designated_agency"] == RECEIVER
    assert case.variables["designation_basis"] == "协商一致"
    assert_task(
        case.task("take_over"),
        name="指定管辖机关接收案件",
        lane=LANE_DESIGNATED,
        groups=[f"{RECEIVER}:staff"],
    )
    case.complete("take_over", TAKE_OVER, user="s")
    assert case.state == "completed"
    assert case.variables["objection_reason"] == "占道经营不属本局职责"
    assert case.sent() == []  # every party works in the district engine
    assert not case.visited_elements() & {"notify_parties", "coordinate"}
    case.check_stable()


def test_coordination_opinion_accepted_by_both_parties(engine: Engine, clock: ManualClock) -> None:
    _given(engine)
    case = _start(engine, clock)
    case.complete("negotiate", FAILED, user="zhangwei")
    assert_task(
        case.task("notify_parties"),
        name="发出协调通知（限期提交材料）",
        lane=LANE_COORDINATOR,
        groups=COORDINATOR,
    )
    case.complete("notify_parties", NOTIFY, user="gaoyan")
    assert case.open_elements() == ["submit_receiver", "submit_sender"]
    assert_task(
        case.task("submit_sender"),
        name="移送机关提交协调材料",
        lane=LANE_SENDER,
        groups=[f"{SENDER}:officer"],
    )
    assert_task(
        case.task("submit_receiver"),
        name="接收机关提交协调材料",
        lane=LANE_RECEIVER,
        groups=[f"{RECEIVER}:officer"],
    )
    case.complete("submit_sender", SENDER_MATERIALS, user="zhangwei")
    assert case.open_elements() == ["submit_receiver"]  # the review waits for both
    case.complete("submit_receiver", RECEIVER_MATERIALS, user="sunlei")
    assert_task(case.task("accept_review"), name="协调受理审查", lane=LANE_COORDINATOR, groups=COORDINATOR)
    case.complete("accept_review", ACCEPT, user="gaoyan")
    assert_task(case.task("coordinate"), name="组织协调并答复", lane=LANE_COORDINATOR, groups=COORDINATOR)
    case.complete("coordinate", AGREED, user="gaoyan")

    documents = case.variables
    assert documents["designated_agency"] == RECEIVER
    assert documents["designation_basis"] == "协调意见"
    assert documents["sender_opinion"] == "属城市管理职责"
    assert documents["receiver_materials"] == "复函"
    assert_task(case.task("take_over"), lane=LANE_DESIGNATED, groups=[f"{RECEIVER}:staff"])
    assert "government_decision" not in case.visited_elements()
    case.complete("take_over", TAKE_OVER, user="s")
    assert case.state == "completed"
    case.check_stable()


def test_failed_coordination_goes_to_the_district_government_for_a_decision(
    engine: Engine, clock: ManualClock
) -> None:
    _given(engine)
    case = _accepted(engine, clock)
    case.complete("coordinate", NOT_AGREED, user="gaoyan")
    assert_task(
        case.task("report_government"),
        name="出具协调意见并报请区政府决定",
        lane=LANE_COORDINATOR,
        groups=COORDINATOR,
    )
    case.complete("report_government", REPORT, user="gaoyan")
    assert_task(
        case.task("government_decision"),
        name="区政府作出管辖决定",
        lane=LANE_GOVERNMENT,
        groups=["government:head"],
    )
    with pytest.raises(InvalidForm):  # the designated agency is one of the district's, chosen from a list
        case.complete("government_decision", {**GOVERNMENT, "decided_agency": "城管"}, user="yangfan")
    case.complete("government_decision", {**GOVERNMENT, "decided_agency": SENDER}, user="yangfan")
    assert case.variables["designated_agency"] == SENDER
    assert case.variables["designation_basis"] == "区政府决定"
    assert case.variables["government_decision_no"] == "湖政决〔2026〕9号"
    assert_task(case.task("take_over"), lane=LANE_DESIGNATED, groups=[f"{SENDER}:staff"])
    case.complete("take_over", TAKE_OVER, user="s")
    assert case.state == "completed"
    case.check_stable()


def test_emergency_interim_lead_agency_acts_while_coordination_goes_on(
    engine: Engine, clock: ManualClock
) -> None:
    _given(engine)
    case = _notified(engine, clock, emergency=True)
    assert case.open_elements() == ["name_interim_lead", "submit_receiver", "submit_sender"]
    assert_task(
        case.task("name_interim_lead"), name="指定临时牵头机关", lane=LANE_COORDINATOR, groups=COORDINATOR
    )
    case.complete(
        "name_interim_lead",
        {"interim_lead_agency": "township_jiaokou", "interim_measures": "先行制止占道经营"},
        user="gaoyan",
    )
    assert_task(
        case.task("interim_handling"),
        name="临时牵头机关先行处置",
        lane=LANE_INTERIM,
        groups=["township_jiaokou:officer"],
    )
    case.complete("interim_handling", {"interim_actions": "已劝离并登记"}, user="majun")
    assert case.variables["interim_lead_agency"] == "township_jiaokou"

    case.complete("submit_sender", SENDER_MATERIALS, user="zhangwei")
    case.complete("submit_receiver", RECEIVER_MATERIALS, user="sunlei")
    case.complete("accept_review", ACCEPT, user="gaoyan")
    case.complete("coordinate", AGREED, user="gaoyan")
    case.complete("take_over", TAKE_OVER, user="s")
    assert case.state == "completed"
    assert case.variables["designated_agency"] == RECEIVER  # the interim lead is not the designation
    case.check_stable()


def test_materials_missed_over_national_day_create_supervision_tasks(
    engine: Engine, clock: ManualClock
) -> None:
    _given(engine)
    case = _notified(engine, clock, at=shanghai(2026, 9, 29, 10))
    # Five working days after 09-29: 09-30, 10-08, 10-09, 10-10 (adjusted Saturday), 10-12.
    deadline = end_of_day(shanghai(2026, 10, 12))
    assert_task(case.task("submit_sender"), due=deadline)
    assert_task(case.task("submit_receiver"), due=deadline)
    assert case.due("sender_materials_overdue") == deadline
    case.complete("submit_receiver", RECEIVER_MATERIALS, user="sunlei")
    advance_to(engine, clock, shanghai(2026, 10, 12, 23, 59))
    assert not case.has_task("supervise_sender_materials")
    advance_to(engine, clock, shanghai(2026, 10, 13, 8))
    assert_supervised(
        case, "supervise_sender_materials", name="司法局督办：移送机关协调材料逾期未交", lane=LANE_SUPERVISOR
    )
    assert not case.has_task("supervise_receiver_materials")  # the receiver submitted in time
    assert timer_firings(case, "sender_materials_overdue")
    case.complete("supervise_sender_materials", SUPERVISE, user="xuming")
    case.complete("submit_sender", SENDER_MATERIALS, user="zhangwei")
    assert case.open_elements() == ["accept_review"]
    case.check_stable()


def test_receiver_materials_missed_creates_a_supervision_task(engine: Engine, clock: ManualClock) -> None:
    _given(engine)
    case = _notified(engine, clock, at=shanghai(2026, 10, 8, 10))
    # Five working days after 10-08: 10-09, 10-10 (adjusted Saturday), 10-12, 10-13, 10-14.
    assert case.due("receiver_materials_overdue") == end_of_day(shanghai(2026, 10, 14))
    case.complete("submit_sender", SENDER_MATERIALS, user="zhangwei")
    advance_to(engine, clock, shanghai(2026, 10, 15, 8))
    assert_supervised(
        case,
        "supervise_receiver_materials",
        name="司法局督办：接收机关协调材料逾期未交",
        lane=LANE_SUPERVISOR,
    )
    case.check_stable()


def test_acceptance_review_missed_ends_on_the_adjusted_working_saturday(
    engine: Engine, clock: ManualClock
) -> None:
    _given(engine)
    case = _notified(engine, clock, at=shanghai(2026, 10, 8, 10))
    case.complete("submit_sender", SENDER_MATERIALS, user="zhangwei")
    advance_to(engine, clock, shanghai(2026, 10, 8, 15))
    case.complete("submit_receiver", RECEIVER_MATERIALS, user="sunlei")
    # Three working days after Thursday 10-08: Friday 10-09, Saturday 10-10 (an adjusted working day) and
    # Monday 10-12; the Sunday between does not count.
    deadline = end_of_day(shanghai(2026, 10, 12))
    assert_task(case.task("accept_review"), due=deadline)
    advance_to(engine, clock, shanghai(2026, 10, 13, 8))
    assert_supervised(
        case,
        "supervise_acceptance",
        name="司法局督办：协调受理审查超期",
        lane=LANE_SUPERVISOR,
        timer="acceptance_overdue",
    )
    case.check_stable()


def test_reply_missed_creates_a_supervision_task(engine: Engine, clock: ManualClock) -> None:
    _given(engine)
    case = _accepted(engine, clock, at=shanghai(2026, 9, 29, 10))
    # Seven working days after 09-29: 09-30, 10-08, 10-09, 10-10, 10-12, 10-13, 10-14.
    deadline = end_of_day(shanghai(2026, 10, 14))
    assert_task(case.task("coordinate"), due=deadline)
    assert case.due("reply_overdue") == deadline
    advance_to(engine, clock, shanghai(2026, 10, 15, 8))
    assert_supervised(case, "supervise_reply", name="司法局督办：协调答复超期", lane=LANE_SUPERVISOR)
    assert case.has_task("coordinate")  # the reply is still owed
    case.complete("coordinate", AGREED, user="gaoyan")
    assert case.open_elements() == ["supervise_reply", "take_over"]
    case.check_stable()


# ------------------------------------------------------------------------------------ called as a process
CALLER = """<?xml version="1.0" encoding="UTF-8"?>
<bpmn:definitions xmlns:bpmn="http://www.omg.org/spec/BPMN/20100524/MODEL"
                  xmlns:camunda="http://camunda.org/schema/1.0/bpmn"
                  id="defs_dispute_caller" targetNamespace="http://caseflow.local/tests/scenarios">
  <bpmn:process id="dispute_caller" name="异议调用方" isExecutable="true">
    <bpmn:startEvent id="start"/>
    <bpmn:callActivity id="call_dispute" name="管辖争议协调" calledElement="jurisdiction_dispute">
      <bpmn:extensionElements>
        <camunda:in source="case_no" target="case_no"/>
        <camunda:in source="sender_agency" target="sender_agency"/>
        <camunda:in source="receiver_agency" target="receiver_agency"/>
        <camunda:in source="objection_reason" target="objection_reason"/>
        <camunda:out source="designated_agency" target="designated_agency"/>
      </bpmn:extensionElements>
    </bpmn:callActivity>
    <bpmn:userTask id="handle" name="承办" camunda:candidateGroups="${designated_agency}:officer"/>
    <bpmn:endEvent id="end"/>
    <bpmn:sequenceFlow id="f1" sourceRef="start" targetRef="call_dispute"/>
    <bpmn:sequenceFlow id="f2" sourceRef="call_dispute" targetRef="handle"/>
    <bpmn:sequenceFlow id="f3" sourceRef="handle" targetRef="end"/>
  </bpmn:process>
</bpmn:definitions>
"""


def test_called_through_the_clue_transfer_interface(engine: Engine, clock: ManualClock) -> None:
    deploy_models(engine, KEY, extra=[("dispute_caller.bpmn", CALLER.encode())])
    case = start(
        engine,
        clock,
        "dispute_caller",
        case_no="HB-A1-009",
        sender_agency=SENDER,
        receiver_agency=RECEIVER,
        objection_reason="不属本局职责",
        clue_summary="只在调用方",
    )
    negotiate = case.task("negotiate")
    assert_task(negotiate, lane=LANE_SENDER, groups=[f"{SENDER}:officer", f"{RECEIVER}:officer"])
    case.complete("negotiate", FAILED, user="zhangwei")
    case.complete("notify_parties", NOTIFY, user="gaoyan")
    case.complete("submit_sender", SENDER_MATERIALS, user="zhangwei")
    case.complete("submit_receiver", RECEIVER_MATERIALS, user="sunlei")
    case.complete("accept_review", ACCEPT, user="gaoyan")
    case.complete("coordinate", AGREED, user="gaoyan")
    case.complete("take_over", TAKE_OVER, user="sunlei")

    variables = case.variables
    assert variables["designated_agency"] == RECEIVER  # camunda:out
    assert "coordination_opinion" not in variables  # nothing else comes back
    assert_task(case.task("handle"), groups=[f"{RECEIVER}:officer"])
    case.check_stable()
