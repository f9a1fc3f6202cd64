"""A1 clue transfer between district departments (bpmn/clue_transfer.bpmn), given/when/then.

Paths: the happy path (register → head approves → written transfer → receiver acknowledges → accepts →
handles → feeds back → sender closes), the head refusing, the receiver objecting (jurisdiction_dispute, here
its test double with the agreed interface), the missed acknowledgement and the missed handling deadline
(督办 by the justice bureau). Deadlines on the working-day calendar, including the 2026 National Day holiday
and the adjusted working Saturday 2026-10-10.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from engine.commands import Engine
from engine.errors import InvalidForm
from tests.conftest import ManualClock
from tests.scenarios.support import (
    Case,
    advance,
    advance_to,
    assert_supervised,
    assert_task,
    deploy_fixture,
    deploy_models,
    shanghai,
    start,
    timer_firings,
)

SENDER = "market_regulation"
RECEIVER = "urban_management"

REGISTER = {
    "clue_summary": "某小区门前占道经营、私搭棚架",
    "violation_place": "湖滨区湖滨街道某小区南门",
    "receiver_agency": RECEIVER,
    "jurisdiction_basis": "《行政处罚法》第二十二条，属城市管理部门职责",
}
APPROVE = {"transfer_approved": True, "approval_opinion": "同意移送区城市管理局"}
LETTER = {"transfer_letter_no": "湖市监移〔2026〕12号", "transfer_materials": "现场照片3张、询问笔录1份"}
ACK = {"receipt_no": "湖城管收〔2026〕40号", "materials_complete": True}
ACCEPT = {"accepted": True, "reply_letter_no": "湖城管复〔2026〕7号"}
HANDLED = {
    "handling_result": "penalty",
    "decision_no": "湖城管罚〔2026〕88号",
    "handling_summary": "责令拆除并罚款",
}
FEEDBACK = {"feedback_letter_no": "湖城管馈〔2026〕5号"}


def _given(engine: Engine) -> None:
    deploy_fixture(engine, "jurisdiction_dispute_stub.bpmn")
    deploy_models(engine, "clue_transfer")


def _start(engine: Engine, clock: ManualClock, case_no: str = "HB-A1-001") -> Case:
    return start(engine, clock, "clue_transfer", case_no=case_no, sender_agency=SENDER)


def _transferred(engine: Engine, clock: ManualClock, case_no: str = "HB-A1-001") -> Case:
    """Given a clue registered, approved and transferred in writing: the receiver has to acknowledge."""
    case = _start(engine, clock, case_no)
    case.complete("register_clue", REGISTER)
    case.complete("approve_transfer", APPROVE)
    case.complete("issue_transfer_letter", LETTER)
    return case


def _state_objection(case: Case) -> None:
    """The receiver's head states the objection in writing (河南省行政执法条例 Art. 17: reasons in writing)."""
    assert_task(
        case.task("state_objection"),
        name="书面说明不予接收的理由",
        lane="接收机关负责人",
        groups=[f"{RECEIVER}:head"],
    )
    with pytest.raises(InvalidForm):
        case.complete("state_objection", {})  # no objection without its reasons
    case.complete("state_objection", {"objection_reason": "占道经营属市场监管范围"})


def test_happy_path_registered_approved_transferred_acknowledged_handled_fed_back_closed(
    engine: Engine, clock: ManualClock
) -> None:
    _given(engine)
    case = _start(engine, clock)
    assert_task(
        case.task("register_clue"),
        name="登记线索并提出移送意见",
        lane="移送机关执法人员",
        groups=[f"{SENDER}:officer"],
    )
    case.complete("register_clue", REGISTER)
    assert_task(
        case.task("approve_transfer"), name="负责人审批移送", lane="移送机关负责人", groups=[f"{SENDER}:head"]
    )
    case.complete("approve_transfer", APPROVE)
    assert_task(case.task("issue_transfer_letter"), lane="移送机关执法人员", groups=[f"{SENDER}:officer"])
    case.complete("issue_transfer_letter", LETTER)

    ack = case.task("acknowledge_receipt")
    assert_task(ack, name="签收移送材料", lane="接收机关登记人员", groups=[f"{RECEIVER}:staff"])
    assert set(case.timers()) == {"ack_overdue"}
    case.complete("acknowledge_receipt", ACK)
    assert case.timers() == {}  # acknowledged in time: the deadline is gone

    assert_task(case.task("review_jurisdiction"), lane="接收机关负责人", groups=[f"{RECEIVER}:head"])
    case.complete("review_jurisdiction", ACCEPT)

    assert_task(
        case.task("handle_case"),
        name="立案调查并作出处理",
        lane="承办机关执法人员",
        groups=[f"{RECEIVER}:officer"],
    )
    assert set(case.timers()) == {"handling_overdue"}
    case.complete("handle_case", HANDLED)
    assert_task(case.task("feedback_result"), lane="承办机关执法人员", groups=[f"{RECEIVER}:officer"])
    case.complete("feedback_result", FEEDBACK)
    assert_task(case.task("close_case"), lane="移送机关执法人员", groups=[f"{SENDER}:officer"])
    case.complete("close_case", {"closing_note": "已收到处理结果，归档"})

    assert case.state == "completed"
    documents = case.variables
    assert documents["transfer_letter_no"] == "湖市监移〔2026〕12号"
    assert documents["receipt_no"] == "湖城管收〔2026〕40号"
    assert documents["handling_agency"] == RECEIVER
    assert documents["decision_no"] == "湖城管罚〔2026〕88号"
    assert documents["feedback_letter_no"] == "湖城管馈〔2026〕5号"
    assert case.sent() == []  # both departments work in the district engine: nothing leaves it
    case.check_stable()


def test_head_refuses_the_transfer_and_nothing_is_sent(engine: Engine, clock: ManualClock) -> None:
    _given(engine)
    case = _start(engine, clock)
    case.complete("register_clue", REGISTER)
    case.complete(
        "approve_transfer", {"transfer_approved": False, "approval_opinion": "属本局职责，不予移送，自行立案"}
    )
    assert case.state == "completed"
    assert case.open_elements() == []
    assert case.variables["approval_opinion"] == "属本局职责，不予移送，自行立案"
    assert "transfer_letter_no" not in case.variables
    assert case.timers() == {}


def test_receiver_objects_and_the_agency_designated_in_the_dispute_handles_the_case(
    engine: Engine, clock: ManualClock
) -> None:
    _given(engine)
    case = _transferred(engine, clock)
    case.complete("acknowledge_receipt", ACK)
    case.complete("review_jurisdiction", {"accepted": False, "reply_letter_no": "湖城管复〔2026〕8号"})
    _state_objection(case)
    # The objection is not passed on again: it goes to the coordination process (called in this instance).
    assert case.open_elements() == ["stub_designate"]
    assert_task(case.task("stub_designate"), groups=["justice_bureau:coordinator"])
    case.complete("stub_designate", {"designated_agency": "ecology_environment"})

    assert case.variables["designated_agency"] == "ecology_environment"
    assert case.variables["handling_agency"] == "ecology_environment"
    assert_task(case.task("handle_case"), lane="承办机关执法人员", groups=["ecology_environment:officer"])
    case.complete("handle_case", HANDLED)
    assert_task(case.task("feedback_result"), groups=["ecology_environment:officer"])
    case.complete("feedback_result", FEEDBACK)
    case.complete("close_case", {"closing_note": "已由被指定机关办结"})
    assert case.state == "completed"
    case.check_stable()


def test_missed_acknowledgement_is_escalated_to_the_justice_bureau(
    engine: Engine, clock: ManualClock
) -> None:
    _given(engine)
    case = _transferred(engine, clock)
    due = case.due("ack_overdue")
    clock.set(due)
    clock.advance(seconds=-1)
    assert advance(engine, clock) == 0  # one second before the deadline nothing happens
    assert not case.has_task("supervise_ack")

    assert advance(engine, clock, seconds=1) == 1
    supervision = case.task("supervise_ack")
    assert_task(
        supervision,
        name="司法局督办：接收机关逾期未签收",
        lane="司法局",
        groups=["justice_bureau:supervisor"],
    )
    assert timer_firings(case, "ack_overdue"), "the missed deadline is in the audit trail"
    # Non-interrupting: the receiver still has to acknowledge, and the case goes on.
    assert case.open_elements() == ["acknowledge_receipt", "supervise_ack"]
    assert case.variables["transfer_letter_no"] == LETTER["transfer_letter_no"]
    case.complete(
        "supervise_ack",
        {"ack_supervision_notice_no": "湖司督〔2026〕3号", "ack_supervision_opinion": "限1日内签收"},
    )
    case.complete("acknowledge_receipt", ACK)
    assert case.open_elements() == ["review_jurisdiction"]
    assert len(timer_firings(case, "ack_overdue")) == 1  # it fires once
    case.check_stable()


def test_missed_handling_deadline_is_escalated_to_the_justice_bureau(
    engine: Engine, clock: ManualClock
) -> None:
    _given(engine)
    case = _transferred(engine, clock)
    case.complete("acknowledge_receipt", ACK)
    case.complete("review_jurisdiction", ACCEPT)
    due = case.due("handling_overdue")
    assert advance_to(engine, clock, due) == 1
    assert_supervised(case, "supervise_handling", name="司法局督办：移送案件逾期未办结", lane="司法局")
    assert case.open_elements() == ["handle_case", "supervise_handling"]
    assert timer_firings(case, "handling_overdue")
    case.check_stable()


# ------------------------------------------------------------------------------ deadlines on the calendar
def _acknowledgement_due(engine: Engine, clock: ManualClock, sent_at: datetime, case_no: str) -> Case:
    clock.set(sent_at)
    return _transferred(engine, clock, case_no)


@pytest.mark.parametrize(
    ("sent_at", "due", "case_no"),
    [
        # Transferred on Friday 2026-03-06: the weekend does not count; Monday and Tuesday do.
        pytest.param(shanghai(2026, 3, 6, 16, 30), shanghai(2026, 3, 11, 0, 0), "HB-A1-CAL-1", id="weekend"),
        # Transferred on Wednesday 2026-09-30: 10-01..10-07 are holidays; 10-08 and 10-09 are the two working days.
        pytest.param(
            shanghai(2026, 9, 30, 10, 0), shanghai(2026, 10, 10, 0, 0), "HB-A1-CAL-2", id="national-day"
        ),
        # Transferred on Thursday 2026-10-08: Friday 10-09 and the adjusted working Saturday 10-10 count.
        pytest.param(
            shanghai(2026, 10, 8, 11, 0), shanghai(2026, 10, 11, 0, 0), "HB-A1-CAL-3", id="adjusted-saturday"
        ),
    ],
)
def test_acknowledgement_deadline_is_two_working_days_ending_at_midnight(
    engine: Engine, clock: ManualClock, sent_at: datetime, due: datetime, case_no: str
) -> None:
    _given(engine)
    case = _acknowledgement_due(engine, clock, sent_at, case_no)
    assert case.due("ack_overdue") == due
    assert_task(case.task("acknowledge_receipt"), due=due)
    assert advance_to(engine, clock, due - timedelta(minutes=1)) == 0
    assert not case.has_task("supervise_ack")
    assert advance_to(engine, clock, due) == 1
    assert_supervised(
        case, "supervise_ack", name="司法局督办：接收机关逾期未签收", lane="司法局", timer="ack_overdue"
    )


def test_handling_deadline_is_ninety_calendar_days(engine: Engine, clock: ManualClock) -> None:
    _given(engine)
    clock.set(shanghai(2026, 3, 2, 9, 0))
    case = _transferred(engine, clock, "HB-A1-CAL-4")
    case.complete("acknowledge_receipt", ACK)
    case.complete("review_jurisdiction", ACCEPT)
    # 90 calendar days after 2026-03-02 is Sunday 2026-05-31, a rest day: the period ends with Monday 06-01.
    assert case.due("handling_overdue") == shanghai(2026, 6, 2, 0, 0)
    assert_task(case.task("handle_case"), due=shanghai(2026, 6, 2, 0, 0))


def test_objection_through_the_real_jurisdiction_dispute_designates_the_sender(
    engine: Engine, clock: ManualClock
) -> None:
    """The same objection path over bpmn/jurisdiction_dispute.bpmn (models-B): the agreed interface in and out."""
    deploy_models(engine, "jurisdiction_dispute", "clue_transfer")
    case = _transferred(engine, clock, "HB-A1-JD-1")
    case.complete("acknowledge_receipt", ACK)
    case.complete("review_jurisdiction", {"accepted": False, "reply_letter_no": "湖城管复〔2026〕9号"})
    _state_objection(case)
    assert_task(case.task("negotiate"), groups=[f"{SENDER}:officer", f"{RECEIVER}:officer"])
    case.complete(
        "negotiate", {"negotiation_result": "sender", "negotiation_record": "协商一致，由市场监管局管辖"}
    )
    case.complete("take_over", {"takeover_date": "2026-03-03", "takeover_note": "已接收"})
    assert case.variables["designated_agency"] == SENDER
    # The agency that objected may not pass the case on again: the designated agency handles it.
    assert_task(case.task("handle_case"), lane="承办机关执法人员", groups=[f"{SENDER}:officer"])
    case.complete("handle_case", HANDLED)
    case.complete("feedback_result", FEEDBACK)
    case.complete("close_case", {"closing_note": "由本机关依协商结果办结"})
    assert case.state == "completed"
    case.check_stable()


def test_the_receiver_is_chosen_from_the_district_agencies(engine: Engine, clock: ManualClock) -> None:
    _given(engine)
    case = _start(engine, clock)
    with pytest.raises(InvalidForm) as refused:
        case.complete(
            "register_clue", {**REGISTER, "receiver_agency": "区城管局"}
        )  # a name, not one of the codes
    assert "receiver_agency" in str(refused.value.details)
    case.complete("register_clue", REGISTER)
    assert case.variables["receiver_agency"] == RECEIVER


def test_a_handling_deadline_in_an_unknown_calendar_year_is_flagged_not_silently_computed(
    engine: Engine, clock: ManualClock
) -> None:
    _given(engine)
    clock.set(shanghai(2026, 11, 20, 10, 0))
    case = _transferred(engine, clock, "HB-A1-CAL-5")
    case.complete("acknowledge_receipt", ACK)
    case.complete("review_jurisdiction", ACCEPT)
    # 90 calendar days end in February 2027, a year whose holiday arrangement is not published yet.
    task = case.task("handle_case")
    assert_task(task, due=shanghai(2027, 2, 19, 0, 0))
    assert task["deadline_note"] and "2027" in task["deadline_note"]
    flagged = {f["element_id"] for f in case.view()["flags"] if f["kind"] == "deadline_estimated"}
    assert flagged == {"handle_case", "handling_overdue"}


def test_the_supervised_agency_cannot_set_its_own_deadline(engine: Engine, clock: ManualClock) -> None:
    """The [U] periods are parameters of the model (set_periods), not of the case: a start variable is ignored."""
    _given(engine)
    clock.set(shanghai(2026, 3, 6, 16, 30))
    case = start(engine, clock, "clue_transfer", case_no="HB-A1-P", sender_agency=SENDER, ack_period="P30D")
    case.complete("register_clue", REGISTER)
    case.complete("approve_transfer", APPROVE)
    case.complete("issue_transfer_letter", LETTER)
    assert case.due("ack_overdue") == shanghai(2026, 3, 11, 0, 0)
    assert case.variables["ack_period"] == "P2D"
