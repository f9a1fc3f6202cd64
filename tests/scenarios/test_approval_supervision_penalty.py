"""B approval → supervision → penalty (bpmn/approval_supervision_penalty.bpmn), given/when/then.

Paths: the happy path of a general case (no hearing right, no legal review), a major case (legal review and
collective discussion), a hearing requested (7 working days' notice, the chair may not be an investigator), a
hearing right that lapses after 5 working days, a failed legal review that loops back, the same officer entered
twice, a township's filing report to the justice bureau, a licence refused, and each missed deadline of the
agencies (push, claim, 90-day decision, delivery, publicity → 司法局督办; payment → surcharge notice). Deadlines
run on the working-day calendar, including the 2026 National Day holiday and the adjusted working Saturday
2026-10-10.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import pytest

from engine.commands import Engine
from engine.errors import Forbidden, InvalidForm
from tests.conftest import ManualClock
from tests.scenarios.support import (
    Case,
    advance,
    advance_to,
    assert_supervised,
    assert_task,
    deploy_models,
    end_of_day,
    shanghai,
    start,
    timer_firings,
)

KEY = "approval_supervision_penalty"
AGENCY = "market_regulation"
TOWNSHIP = "township_jiaokou"

LANE_APPROVAL_HEAD = "审批部门·负责人"
LANE_APPROVAL_STAFF = "审批部门·登记人员"
LANE_SUPERVISION_STAFF = "监管部门·登记人员"
LANE_OFFICER = "监管部门·执法人员"
LANE_LEGAL = "监管部门·法制审核人员"
LANE_HEAD = "监管部门·负责人"
LANE_JUSTICE_STAFF = "区司法局·登记人员"
LANE_JUSTICE_SUPERVISOR = "区司法局·督办人员"

APPROVE = {"approved": True, "licence_no": "JY14112020260001", "licence_opinion": "材料齐全，准予许可"}
PUSH = {"push_confirmed": True}
CLAIM = {"claimed": True, "supervising_unit": "食品经营监管科"}
NO_FINDINGS = {
    "inspection_date": "2026-04-03",
    "inspectors": "zhangwei, lina",
    "findings": False,
    "findings_summary": "未发现问题",
    "continue_supervision": False,
}
FINDINGS = {**NO_FINDINGS, "findings": True, "findings_summary": "超范围经营、未公示许可证"}
FILE = {"case_no": "湖市监立〔2026〕31号", "filing_date": "2026-04-03", "violation_summary": "超范围经营"}
OFFICERS = {
    "officer_1_id": "zhangwei",
    "officer_1_cert": "豫执 4112020101",
    "officer_2_id": "lina",
    "officer_2_cert": "豫执 4112020102",
}
GENERAL = {
    **OFFICERS,
    "facts": "经营范围外销售预包装食品，货值3000元",
    "measure": "warning",
    "fine_amount": 5000,
    "confiscation_amount": 3000,
    "public_interest": False,
    "complex_case": False,
}
MAJOR = {**GENERAL, "measure": "none", "fine_amount": 200000, "facts": "销售过期食品，货值5万元"}
REVOCATION = {**GENERAL, "measure": "licence_revocation", "fine_amount": 0, "confiscation_amount": 0}
NOTICE = {"notice_no": "湖市监告〔2026〕31号", "notice_date": "2026-04-07"}
DEFENCE = {"defence_made": True, "defence_summary": "当事人称系初次违法", "hearing_requested": False}
HEARING_WANTED = {**DEFENCE, "hearing_requested": True}
HEARING_NOTICE = {"hearing_notice_no": "湖市监听通〔2026〕3号", "hearing_place": "湖滨分局三楼听证室"}
HEARING = {"hearing_chair_id": "chenjing", "hearing_summary": "当事人到场陈述", "record_signed": True}
REVIEW_PASSED = {"review_passed": True, "review_opinion": "事实清楚，证据确凿，程序合法，适用依据正确"}
REVIEW_FAILED = {"review_passed": False, "review_opinion": "货值认定证据不足，请补充进货凭证"}
DISCUSSION = {"discussion_participants": "赵敏、局长、分管副局长", "discussion_minutes": "同意给予罚款"}
DECIDE = {
    "decision_no": "湖市监罚〔2026〕31号",
    "decision_date": "2026-04-20",
    "fine_amount": 5000,
    "decision_summary": "警告，罚款5000元",
}
DELIVER = {"delivery_date": "2026-04-21", "delivery_method": "direct", "credit_repair_notice_delivered": True}
PUBLICIZE = {
    "publicity_date": "2026-04-22",
    "publicity_period": "three_months",
    "publicity_ref": "GS-2026-31",
}
PAY = {"paid": True, "payment_date": "2026-04-30", "receipt_no": "FS-0031"}
FEEDBACK = {"licence_follow_up": "none"}
SUPERVISE = {"supervision_measure": "notice", "supervision_note": "请即办理并说明超期原因"}
CREDIT_PAYLOAD = {
    "case_no",
    "licence_no",
    "enterprise",
    "decision_no",
    "decision_date",
    "fine_amount",
    "measure",
    "publicity_period",
}


# ------------------------------------------------------------------------------------------------- given
def _given(engine: Engine) -> None:
    deploy_models(engine, KEY, "major_decision", "inspection_frequency")


def _start(
    engine: Engine,
    clock: ManualClock,
    agency: str = AGENCY,
    credit_risk_class: str = "D",
    at: datetime | None = None,
    **extra: Any,
) -> Case:
    if at is not None:
        advance_to(engine, clock, at)
    return start(
        engine,
        clock,
        KEY,
        case_no="XK-2026-0001",
        enterprise="三门峡某食品经营有限公司",
        credit_risk_class=credit_risk_class,
        supervising_agency=agency,
        **extra,
    )


def _claimed(engine: Engine, clock: ManualClock, agency: str = AGENCY, **extra: Any) -> Case:
    """Given a licence approved, pushed and claimed: the enterprise waits for its random inspection."""
    case = _start(engine, clock, agency, **extra)
    case.complete("approve_licence", APPROVE, user="tangbo")
    case.complete("push_licence", PUSH, user="hanxue")
    case.complete("claim_licence", CLAIM, user="liuyang")
    return case


def _filed(engine: Engine, clock: ManualClock, agency: str = AGENCY, **extra: Any) -> Case:
    """Given a claimed licence whose random inspection found a violation and a case filed on it."""
    case = _claimed(engine, clock, agency, **extra)
    advance_to(engine, clock, case.due("inspection_due"))  # class D: inspected monthly
    case.complete("random_inspection", FINDINGS, user="zhangwei")
    case.complete("file_case", FILE, user="zhangwei")
    return case


def _noticed(engine: Engine, clock: ManualClock, proposal: dict[str, Any], **extra: Any) -> Case:
    """Given a filed case investigated with ``proposal`` and the notice of the proposed penalty served."""
    case = _filed(engine, clock, **extra)
    case.complete("investigate", proposal, user="zhangwei")
    case.complete("notify_penalty", NOTICE, user="zhangwei")
    return case


def _decided(engine: Engine, clock: ManualClock, **extra: Any) -> Case:
    """Given a general case decided: delivery and publicity are open."""
    case = _noticed(engine, clock, GENERAL, **extra)
    case.complete("record_defence", DEFENCE, user="zhangwei")
    case.complete("decide", DECIDE, user="zhaomin")
    return case


# ------------------------------------------------------------------------------------------------- paths
def test_happy_path_general_case_without_hearing_or_legal_review(engine: Engine, clock: ManualClock) -> None:
    _given(engine)
    case = _start(engine, clock, credit_risk_class="B")
    assert_task(
        case.task("approve_licence"),
        name="作出行政许可决定",
        lane=LANE_APPROVAL_HEAD,
        groups=["data_bureau:head"],
    )
    case.complete("approve_licence", APPROVE, user="tangbo")
    assert_task(
        case.task("push_licence"),
        name="推送许可信息至监管部门（双告知）",
        lane=LANE_APPROVAL_STAFF,
        groups=["data_bureau:staff"],
    )
    case.complete("push_licence", PUSH, user="hanxue")
    assert_task(
        case.task("claim_licence"),
        name="认领许可信息（双反馈）",
        lane=LANE_SUPERVISION_STAFF,
        groups=[f"{AGENCY}:staff"],
    )
    case.complete("claim_licence", CLAIM, user="liuyang")

    # Credit-risk class B: the next random inspection is six calendar months away.
    variables = case.variables
    assert variables["inspection"]["interval"] == "P6M"
    assert variables["inspection"]["ratio_percent"] == 5
    assert set(case.timers()) == {"inspection_due"}
    assert case.tasks() == []
    advance(engine, clock, days=200)
    assert_task(
        case.task("random_inspection"), name="双随机抽查检查", lane=LANE_OFFICER, groups=[f"{AGENCY}:officer"]
    )
    case.complete("random_inspection", FINDINGS, user="zhangwei")
    assert_task(case.task("file_case"), name="立案", lane=LANE_OFFICER, groups=[f"{AGENCY}:officer"])
    case.complete("file_case", FILE, user="zhangwei")

    # A district department files no report with the justice bureau; the 90-day decision limit runs.
    assert case.open_elements() == ["investigate"]
    assert set(case.timers()) == {"decision_overdue"}
    assert_task(
        case.task("investigate"),
        name="调查取证（两名以上持证执法人员）",
        lane=LANE_OFFICER,
        groups=[f"{AGENCY}:officer"],
    )
    case.complete("investigate", GENERAL, user="zhangwei")
    assert case.variables["proposed"] == {"major": False, "hearing": False, "basis": "一般程序案件"}
    assert_task(case.task("notify_penalty"), name="送达行政处罚事先告知书", lane=LANE_OFFICER)
    case.complete("notify_penalty", NOTICE, user="zhangwei")
    assert_task(case.task("record_defence"), name="听取陈述申辩、登记听证申请", lane=LANE_OFFICER)
    case.complete("record_defence", DEFENCE, user="zhangwei")

    # Not major: straight to the head's decision, no legal review, no collective discussion.
    assert_task(case.task("decide"), name="作出行政处罚决定", lane=LANE_HEAD, groups=[f"{AGENCY}:head"])
    case.complete("decide", DECIDE, user="zhaomin")
    assert case.open_elements() == ["deliver_decision", "publicize"]
    assert_task(
        case.task("deliver_decision"),
        name="送达处罚决定书及信用修复告知书（双书同达）",
        lane=LANE_OFFICER,
        groups=[f"{AGENCY}:officer"],
    )
    case.complete("deliver_decision", DELIVER, user="zhangwei")
    case.complete("publicize", PUBLICIZE, user="lina")
    assert_task(case.task("payment"), name="确认罚款缴纳", lane=LANE_OFFICER)
    case.complete("payment", PAY, user="zhangwei")

    assert_task(
        case.task("receive_feedback"),
        name="接收处罚结果反馈（抄告审批部门）",
        lane=LANE_APPROVAL_STAFF,
        groups=["data_bureau:staff"],
    )
    [credit] = case.sent()
    assert credit.name == "penalty_result" and credit.to == "credit_platform"
    assert set(credit.payload) == CREDIT_PAYLOAD  # only what travels: no facts, officers or defence
    assert credit.payload["decision_no"] == "湖市监罚〔2026〕31号"
    assert credit.payload["licence_no"] == "JY14112020260001"
    assert credit.payload["case_no"] == "湖市监立〔2026〕31号"
    assert credit.correlation_keys == {"case_no": "湖市监立〔2026〕31号"}
    assert credit.envelope["from"] == AGENCY  # caseflow:from="${supervising_agency}"
    case.complete("receive_feedback", FEEDBACK, user="hanxue")

    assert case.state == "completed"
    documents = case.variables
    assert documents["decision_no"] == "湖市监罚〔2026〕31号"
    assert documents["receipt_no"] == "FS-0031"
    assert documents["credit_repair_notice_delivered"] is True
    assert documents["licence_follow_up"] == "none"
    assert (
        not {"legal_review", "collective_discussion", "notice_hearing", "hold_hearing"}
        & case.visited_elements()
    )
    assert not any(e.startswith("supervise_") for e in case.visited_elements())
    case.check_stable()


def test_major_case_passes_legal_review_and_collective_discussion(engine: Engine, clock: ManualClock) -> None:
    _given(engine)
    case = _noticed(engine, clock, MAJOR)
    assert case.variables["proposed"] == {"major": True, "hearing": True, "basis": "对单位处较大数额罚款"}
    case.complete("record_defence", DEFENCE, user="zhangwei")  # hearing right told, not used

    review = case.task("legal_review")
    assert_task(review, name="法制审核", lane=LANE_LEGAL, groups=[f"{AGENCY}:legal_reviewer"])
    assert not case.has_task("decide")  # no decision without a passed review
    case.complete("legal_review", REVIEW_PASSED, user="chenjing")
    assert_task(
        case.task("collective_discussion"), name="负责人集体讨论", lane=LANE_HEAD, groups=[f"{AGENCY}:head"]
    )
    assert not case.has_task("decide")
    case.complete("collective_discussion", DISCUSSION, user="zhaomin")
    case.complete("decide", {**DECIDE, "fine_amount": 200000}, user="zhaomin")

    documents = case.variables
    assert documents["assessment"]["major"] is True
    assert documents["review_opinion"] == REVIEW_PASSED["review_opinion"]
    assert documents["discussion_minutes"] == "同意给予罚款"
    assert case.open_elements() == ["deliver_decision", "publicize"]
    assert "notice_hearing" not in case.visited_elements()
    case.check_stable()


def test_hearing_requested_is_held_seven_working_days_after_notice_by_a_non_investigator(
    engine: Engine, clock: ManualClock
) -> None:
    _given(engine)
    # Licensed 2026-08-28; class D is inspected a month later, at the end of 09-28: filed and noticed 09-29.
    case = _noticed(engine, clock, REVOCATION, at=shanghai(2026, 8, 28, 10))
    assert case.variables["proposed"] == {"major": True, "hearing": True, "basis": "吊销许可证件"}
    case.complete("record_defence", HEARING_WANTED, user="zhangwei")
    assert_task(case.task("notice_hearing"), name="发出听证通知书", lane=LANE_OFFICER)
    case.complete("notice_hearing", HEARING_NOTICE, user="zhangwei")

    # Notified on 2026-09-29: seven working days are 09-30, 10-08, 10-09, 10-10 (adjusted Saturday), 10-12,
    # 10-13, 10-14 — the National Day holiday does not count. The hearing opens after the end of 10-14.
    assert case.tasks() == []
    assert case.due("hearing_notice_period") == end_of_day(shanghai(2026, 10, 14))
    advance_to(engine, clock, shanghai(2026, 10, 14, 23, 59))
    assert not case.has_task("hold_hearing")
    advance_to(engine, clock, shanghai(2026, 10, 15, 9))
    assert_task(
        case.task("hold_hearing"),
        name="举行听证并制作听证笔录",
        lane=LANE_LEGAL,
        groups=[f"{AGENCY}:legal_reviewer"],
    )

    # An investigator may not chair the hearing: the task comes back with the reason.
    case.complete("hold_hearing", {**HEARING, "hearing_chair_id": "lina"}, user="chenjing")
    assert case.open_elements() == ["hold_hearing"]
    assert "非本案调查人员主持" in case.variables["hearing_refusal"]
    case.complete("hold_hearing", HEARING, user="chenjing")
    assert case.open_elements() == ["legal_review"]
    case.complete("legal_review", REVIEW_PASSED, user="chenjing")
    case.complete("collective_discussion", DISCUSSION, user="zhaomin")
    assert case.open_elements() == ["decide"]
    assert case.variables["hearing_chair_id"] == "chenjing"
    case.check_stable()


def test_hearing_right_lapses_after_five_working_days_without_application(
    engine: Engine, clock: ManualClock
) -> None:
    _given(engine)
    # Licensed 2026-08-29, inspected at the end of 09-29: noticed on 09-30.
    case = _noticed(engine, clock, MAJOR, at=shanghai(2026, 8, 29, 10))
    defence = case.task("record_defence")
    # Five working days from 09-30: 10-08, 10-09, 10-10 (adjusted Saturday), 10-12, 10-13.
    assert_task(defence, lane=LANE_OFFICER, due=end_of_day(shanghai(2026, 10, 13)))
    assert case.due("defence_period_over") == end_of_day(shanghai(2026, 10, 13))
    advance_to(engine, clock, shanghai(2026, 10, 14, 0, 0, 1))

    assert timer_firings(case, "defence_period_over")
    assert case.variables["hearing_requested"] is False
    assert case.variables["defence_made"] is False
    assert case.open_elements() == ["legal_review"]  # major: the review gate, no hearing
    case.check_stable()


def test_failed_legal_review_loops_back_until_a_review_passes(engine: Engine, clock: ManualClock) -> None:
    _given(engine)
    case = _noticed(engine, clock, MAJOR)
    case.complete("record_defence", DEFENCE, user="zhangwei")
    case.complete("legal_review", REVIEW_FAILED, user="chenjing")

    assert_task(
        case.task("correct_case"), name="按法制审核意见补正", lane=LANE_OFFICER, groups=[f"{AGENCY}:officer"]
    )
    assert not case.has_task("decide") and not case.has_task("collective_discussion")
    correction = {
        "correction_summary": "补充进货凭证，货值调整为4万元",
        "measure": "none",
        "fine_amount": 150000,
        "confiscation_amount": 0,
    }
    case.complete("correct_case", correction, user="zhangwei")
    # Still major: reviewed again before anything else.
    assert case.open_elements() == ["legal_review"]
    assert case.variables["review_passed"] is False
    case.complete("legal_review", REVIEW_PASSED, user="chenjing")
    assert case.open_elements() == ["collective_discussion"]
    assert case.variables["fine_amount"] == 150000
    reviews = [t for t in case.tasks(state=None) if t["element_id"] == "legal_review"]
    assert len(reviews) == 2
    case.check_stable()


def test_a_correction_that_raises_the_penalty_is_notified_again(engine: Engine, clock: ManualClock) -> None:
    _given(engine)
    case = _noticed(engine, clock, MAJOR)
    assert case.variables["notified_fine"] == 200000
    case.complete("record_defence", DEFENCE, user="zhangwei")
    case.complete("legal_review", REVIEW_FAILED, user="chenjing")
    heavier = {
        "correction_summary": "补充证据后认定货值8万元",
        "measure": "suspension",
        "fine_amount": 300000,
        "confiscation_amount": 0,
    }
    case.complete("correct_case", heavier, user="zhangwei")
    # The party was told of 200000 yuan and no suspension: a new notice and a new defence period first.
    assert case.open_elements() == ["notify_penalty"]
    case.complete("notify_penalty", {**NOTICE, "notice_no": "湖市监告〔2026〕31-1号"}, user="zhangwei")
    assert case.variables["notified_fine"] == 300000
    assert case.variables["proposed"]["basis"] == "责令停产停业"
    case.complete("record_defence", HEARING_WANTED, user="zhangwei")
    assert case.open_elements() == ["notice_hearing"]  # suspension gives a hearing right, now used
    case.check_stable()


def test_a_decision_heavier_than_the_notice_is_refused(engine: Engine, clock: ManualClock) -> None:
    _given(engine)
    case = _noticed(engine, clock, GENERAL)
    case.complete("record_defence", DEFENCE, user="zhangwei")
    case.complete("decide", {**DECIDE, "fine_amount": 8000}, user="zhaomin")
    assert case.open_elements() == ["decide"]
    assert "第四十五条" in case.variables["decision_refusal"]
    case.complete("decide", {**DECIDE, "fine_amount": 4000}, user="zhaomin")  # lighter after the defence
    assert case.open_elements() == ["deliver_decision", "publicize"]
    assert case.variables["fine_amount"] == 4000
    case.check_stable()


def test_the_same_officer_twice_is_refused_and_the_investigation_comes_back(
    engine: Engine, clock: ManualClock
) -> None:
    _given(engine)
    case = _filed(engine, clock)
    same = {**GENERAL, "officer_2_id": "zhangwei", "officer_2_cert": "豫执 4112020101"}
    case.complete("investigate", same, user="zhangwei")
    assert case.open_elements() == ["investigate"]
    assert "两名不同的持证执法人员" in case.variables["investigation_refusal"]
    assert "proposed" not in case.variables

    # Same person under another certificate number is refused too.
    case.complete("investigate", {**GENERAL, "officer_2_id": "zhangwei"}, user="zhangwei")
    assert case.open_elements() == ["investigate"]
    case.complete("investigate", GENERAL, user="zhangwei")
    assert case.open_elements() == ["notify_penalty"]
    case.check_stable()


def test_township_files_its_report_with_the_justice_bureau(engine: Engine, clock: ManualClock) -> None:
    _given(engine)
    case = _filed(engine, clock, TOWNSHIP)
    assert case.variables["is_township"] is True
    assert case.open_elements() == ["investigate", "register_filing_report"]
    assert_task(
        case.task("register_filing_report"),
        name="登记乡（街道）立案报备",
        lane=LANE_JUSTICE_STAFF,
        groups=["justice_bureau:staff"],
    )
    assert_task(case.task("investigate"), groups=[f"{TOWNSHIP}:officer"])
    case.complete("register_filing_report", {"report_registered": True, "report_no": "BB-2026-007"}, user="s")
    assert case.open_elements() == ["investigate"]
    assert case.variables["report_no"] == "BB-2026-007"
    case.check_stable()


def test_licence_refused_ends_without_supervision(engine: Engine, clock: ManualClock) -> None:
    _given(engine)
    case = _start(engine, clock)
    case.complete(
        "approve_licence", {**APPROVE, "approved": False, "licence_opinion": "不符合条件"}, user="t"
    )
    assert case.state == "completed"
    assert case.sent() == [] and case.timers() == {}


def test_inspection_without_findings_goes_to_the_next_round_or_is_archived(
    engine: Engine, clock: ManualClock
) -> None:
    _given(engine)
    case = _claimed(engine, clock, credit_risk_class="A")
    assert case.variables["inspection"]["interval"] == "P12M"
    # A year on is 2027-03-02, past the official calendar data: computed Monday–Friday and flagged, not silent.
    [flag] = case.view()["flags"]
    assert (flag["kind"], flag["element_id"]) == ("deadline_estimated", "inspection_due")
    assert "2027" in flag["note"]
    advance(engine, clock, days=400)
    case.complete("random_inspection", {**NO_FINDINGS, "continue_supervision": True}, user="zhangwei")
    assert set(case.timers()) == {"inspection_due"} and case.tasks() == []
    advance(engine, clock, days=400)
    case.complete("random_inspection", NO_FINDINGS, user="zhangwei")
    assert case.state == "completed"
    case.check_stable()


# --------------------------------------------------------------------------------------- missed deadlines
def test_push_missed_over_national_day_creates_a_supervision_task(engine: Engine, clock: ManualClock) -> None:
    _given(engine)
    advance_to(engine, clock, shanghai(2026, 9, 29, 10))
    case = _start(engine, clock)
    case.complete("approve_licence", APPROVE, user="tangbo")
    # Two working days after 09-29: 09-30 and 10-08 (10-01..10-07 National Day holiday).
    deadline = end_of_day(shanghai(2026, 10, 8))
    assert_task(case.task("push_licence"), due=deadline)
    assert case.due("push_overdue") == deadline

    advance_to(engine, clock, shanghai(2026, 10, 8, 23, 59))
    assert not case.has_task("supervise_push")
    advance_to(engine, clock, shanghai(2026, 10, 9, 0, 0, 1))
    assert_supervised(
        case,
        "supervise_push",
        name="司法局督办：许可信息推送超期",
        lane=LANE_JUSTICE_SUPERVISOR,
        timer="push_overdue",
    )
    assert case.has_task("push_licence")  # the push is still owed
    case.complete("supervise_push", SUPERVISE, user="xuming")
    case.complete("push_licence", PUSH, user="hanxue")
    assert case.open_elements() == ["claim_licence"]
    case.check_stable()


def test_the_u_parameters_are_set_by_the_model_not_by_whoever_starts_the_case(
    engine: Engine, clock: ManualClock
) -> None:
    """[U]/[S] periods are variables set once when the case starts, to the practice values written in the
    model (one place for an editor to change); a start variable cannot loosen them."""
    _given(engine)
    advance_to(engine, clock, shanghai(2026, 9, 29, 10))
    longer = start(
        engine,
        clock,
        KEY,
        case_no="XK-2026-0002",
        enterprise="三门峡某餐饮管理有限公司",
        credit_risk_class="C",
        supervising_agency=AGENCY,
        push_period="P30D",
    )
    assert {k: longer.variables[k] for k in ("push_period", "claim_period", "publicity_period_days")} == {
        "push_period": "P2D",
        "claim_period": "P2D",
        "publicity_period_days": "P7D",
    }
    longer.complete("approve_licence", APPROVE, user="tangbo")
    # Two working days after 09-29: 09-30 and 10-08, whatever the starter asked for.
    assert longer.due("push_overdue") == end_of_day(shanghai(2026, 10, 8))
    assert_task(longer.task("push_licence"), due=end_of_day(shanghai(2026, 10, 8)))

    # An enterprise not yet classified is inspected like class B (the table's last row).
    unclassified = start(
        engine, clock, KEY, case_no="XK-2026-0003", enterprise="某个体户", supervising_agency=AGENCY
    )
    unclassified.complete("approve_licence", APPROVE, user="tangbo")
    unclassified.complete("push_licence", PUSH, user="hanxue")
    unclassified.complete("claim_licence", CLAIM, user="liuyang")
    assert unclassified.variables["credit_risk_class"] == ""
    assert unclassified.variables["inspection"]["interval"] == "P6M"


def test_claim_missed_ends_on_the_adjusted_working_saturday(engine: Engine, clock: ManualClock) -> None:
    _given(engine)
    advance_to(engine, clock, shanghai(2026, 10, 8, 10))
    case = _start(engine, clock)
    case.complete("approve_licence", APPROVE, user="tangbo")
    case.complete("push_licence", PUSH, user="hanxue")
    # Two working days after Thursday 10-08: Friday 10-09 and Saturday 10-10 (an adjusted working day).
    deadline = end_of_day(shanghai(2026, 10, 10))
    assert_task(case.task("claim_licence"), due=deadline)
    assert case.due("claim_overdue") == deadline
    advance_to(engine, clock, shanghai(2026, 10, 11, 8))
    assert_supervised(
        case, "supervise_claim", name="司法局督办：许可信息认领超期", lane=LANE_JUSTICE_SUPERVISOR
    )
    assert case.has_task("claim_licence")
    case.check_stable()


def test_no_decision_within_90_days_of_filing_creates_a_supervision_task(
    engine: Engine, clock: ManualClock
) -> None:
    _given(engine)
    case = _claimed(engine, clock)
    # Licensed 2026-03-02 (class D, monthly): inspected and filed when 04-02 has ended, i.e. on 04-03.
    assert case.due("inspection_due") == end_of_day(shanghai(2026, 4, 2))
    advance_to(engine, clock, case.due("inspection_due"))
    case.complete("random_inspection", FINDINGS, user="zhangwei")
    case.complete("file_case", FILE, user="zhangwei")
    # 90 calendar days after 2026-04-03: 2026-07-02 (a Thursday), to its end.
    deadline = end_of_day(shanghai(2026, 7, 2))
    assert case.due("decision_overdue") == deadline
    case.complete("investigate", GENERAL, user="zhangwei")
    advance_to(engine, clock, shanghai(2026, 7, 3, 9))
    assert_supervised(
        case,
        "supervise_decision",
        name="司法局督办：立案满90日未作出处罚决定",
        lane=LANE_JUSTICE_SUPERVISOR,
        timer="decision_overdue",
    )
    assert case.has_task("notify_penalty")  # the case goes on
    case.complete("supervise_decision", SUPERVISE, user="xuming")
    case.complete("notify_penalty", NOTICE, user="zhangwei")
    case.complete("record_defence", DEFENCE, user="zhangwei")
    case.complete("decide", DECIDE, user="zhaomin")
    assert case.open_elements() == ["deliver_decision", "publicize"]
    case.check_stable()


def test_delivery_and_publicity_missed_create_supervision_tasks(engine: Engine, clock: ManualClock) -> None:
    _given(engine)
    case = _claimed(engine, clock, at=shanghai(2026, 8, 27, 10))
    # A month after 08-27 is Sunday 09-27, a Mid-Autumn rest day: the period runs to the end of Monday 09-28.
    assert case.due("inspection_due") == end_of_day(shanghai(2026, 9, 28))
    advance_to(engine, clock, case.due("inspection_due"))
    case.complete("random_inspection", FINDINGS, user="zhangwei")
    case.complete("file_case", FILE, user="zhangwei")
    case.complete("investigate", GENERAL, user="zhangwei")
    case.complete("notify_penalty", NOTICE, user="zhangwei")
    case.complete("record_defence", DEFENCE, user="zhangwei")
    case.complete("decide", DECIDE, user="zhaomin")
    # Seven working days after Tuesday 09-29: 09-30, 10-08, 10-09, 10-10 (adjusted Saturday), 10-12, 10-13,
    # 10-14.
    deadline = end_of_day(shanghai(2026, 10, 14))
    assert_task(case.task("deliver_decision"), due=deadline)
    assert_task(case.task("publicize"), due=deadline)
    assert case.due("delivery_overdue") == deadline and case.due("publicity_overdue") == deadline

    # An organisation must receive the credit-repair notice with the decision (双书同达).
    case.complete("deliver_decision", {**DELIVER, "credit_repair_notice_delivered": False}, user="zhangwei")
    assert case.has_task("deliver_decision")
    assert "双书同达" in case.variables["delivery_refusal"]
    case.complete("deliver_decision", DELIVER, user="zhangwei")

    advance_to(engine, clock, shanghai(2026, 10, 15, 9))
    assert_supervised(
        case,
        "supervise_publicity",
        name="司法局督办：处罚信息公示超期",
        lane=LANE_JUSTICE_SUPERVISOR,
        timer="publicity_overdue",
    )
    assert not case.has_task("supervise_delivery")  # delivered in time
    case.complete("supervise_publicity", SUPERVISE, user="xuming")
    case.complete("publicize", PUBLICIZE, user="lina")
    assert case.open_elements() == ["payment"]
    case.check_stable()


def test_delivery_missed_creates_a_supervision_task(engine: Engine, clock: ManualClock) -> None:
    _given(engine)
    case = _decided(engine, clock)
    case.complete("publicize", PUBLICIZE, user="lina")
    # Decided on Friday 04-03; 04-04..04-06 are the Qingming holiday: 04-07..04-10, 04-13..04-15.
    assert case.due("delivery_overdue") == end_of_day(shanghai(2026, 4, 15))
    advance_to(engine, clock, shanghai(2026, 4, 15, 23, 59))
    assert not case.has_task("supervise_delivery")
    advance(engine, clock, minutes=2)
    assert_supervised(
        case,
        "supervise_delivery",
        name="司法局督办：处罚决定书送达超期",
        lane=LANE_JUSTICE_SUPERVISOR,
        timer="delivery_overdue",
    )
    assert case.has_task("deliver_decision")
    case.check_stable()


def test_delivery_and_publicity_missed_together_are_each_supervised_and_audited(
    engine: Engine, clock: ManualClock
) -> None:
    _given(engine)
    case = _decided(engine, clock)
    advance_to(engine, clock, shanghai(2026, 4, 16, 9))  # both 7-working-day deadlines ended with 04-15
    assert {"supervise_delivery", "supervise_publicity"} <= set(case.open_elements())
    fired = sorted(e["element_id"] for e in case.audit() if e["command"] == "timer")
    assert fired == ["delivery_overdue", "inspection_due", "publicity_overdue"]
    case.check_stable()


def test_fine_unpaid_after_15_days_gets_a_surcharge_notice(engine: Engine, clock: ManualClock) -> None:
    _given(engine)
    case = _decided(engine, clock, at=shanghai(2026, 8, 14, 10))  # decided on 09-15
    case.complete("publicize", PUBLICIZE, user="lina")
    advance_to(engine, clock, shanghai(2026, 9, 16, 10))
    case.complete("deliver_decision", DELIVER, user="zhangwei")
    # 15 calendar days after 09-16: 10-01 falls in the National Day holiday, so the period runs to the first
    # working day after it, 10-08 (民法典 第二百零三条).
    deadline = end_of_day(shanghai(2026, 10, 8))
    assert_task(case.task("payment"), lane=LANE_OFFICER, due=deadline)
    assert case.due("payment_overdue") == deadline
    advance_to(engine, clock, shanghai(2026, 10, 9, 9))
    assert_task(case.task("surcharge_notice"), name="逾期缴纳：告知加处罚款", lane=LANE_OFFICER)
    assert not case.has_task("supervise_payment")  # the party's deadline: no 督办 of the agency
    case.complete("surcharge_notice", {"surcharge_notice_no": "CG-1", "surcharge_note": "每日3%"}, user="z")
    case.complete("payment", PAY, user="zhangwei")
    assert case.open_elements() == ["receive_feedback"]
    assert [m.to for m in case.sent()] == ["credit_platform"]
    case.check_stable()


# ------------------------------------------------------------------------------------- roles and forms
def test_roles_and_forms_gate_the_enforcement_steps(guarded: Engine, clock: ManualClock) -> None:
    """With the demo users directory: only certified officers investigate, only a legally qualified reviewer
    reviews, only the head discusses and decides; a form missing a required field is refused (422)."""
    engine = guarded
    _given(engine)
    case = _start(engine, clock)
    with pytest.raises(Forbidden):
        case.complete("approve_licence", APPROVE, user="hanxue")  # registry staff, not the head
    case.complete("approve_licence", APPROVE, user="tangbo")
    case.complete("push_licence", PUSH, user="hanxue")
    case.complete("claim_licence", CLAIM, user="liuyang")
    advance_to(engine, clock, case.due("inspection_due"))
    case.complete("random_inspection", FINDINGS, user="zhangwei")
    case.complete("file_case", FILE, user="zhangwei")

    investigate = case.task("investigate")
    assert investigate["deadline_note"] is None  # 2026 is in the official calendar data
    with pytest.raises(Forbidden):
        engine.claim(investigate["id"], "liuyang")  # a candidate's colleague without a certificate
    with pytest.raises(Forbidden):
        engine.claim(investigate["id"], "wangqiang")  # certificate expired 2025-12-31
    engine.claim(investigate["id"], "zhangwei")
    incomplete = {k: v for k, v in MAJOR.items() if k != "officer_2_cert"}
    with pytest.raises(InvalidForm) as refused:
        case.complete("investigate", incomplete, user="zhangwei")
    assert [f["field"] for f in refused.value.to_dict()["fields"]] == ["officer_2_cert"]
    case.complete("investigate", MAJOR, user="zhangwei")
    case.complete("notify_penalty", NOTICE, user="zhangwei")
    case.complete("record_defence", DEFENCE, user="zhangwei")

    with pytest.raises(Forbidden):
        case.complete("legal_review", REVIEW_PASSED, user="lina")  # an officer is no legal reviewer
    case.complete("legal_review", REVIEW_PASSED, user="chenjing")
    with pytest.raises(Forbidden):
        case.complete("collective_discussion", DISCUSSION, user="zhangwei")
    case.complete("collective_discussion", DISCUSSION, user="zhaomin")
    case.complete("decide", {**DECIDE, "fine_amount": 200000}, user="zhaomin")
    assert case.open_elements() == ["deliver_decision", "publicize"]
    case.check_stable()
