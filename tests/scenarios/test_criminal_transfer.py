"""A2 transfer of a suspected crime to the police, procuratorate supervising (bpmn/criminal_transfer.bpmn).

国务院令第310号 and the police procedure rules, given/when/then: the police and the procuratorate are external
systems, so each test checks the envelopes the case puts in the outbox (name, addressee, payload keys,
correlation on case_no) and answers with their messages. Paths: filed → items handed over → prosecuted; the
head refusing (reasons on record); not competent → passed on; incomplete → supplemented; not filed →
reconsideration → filed / refused → procuratorate supervision → ordered (police file) or not; the rights
lapsing; non-criminal closure and non-prosecution back to an administrative penalty; every missed deadline
(督办 for the agency's own deadlines, a notice to the procuratorate for the police's).
"""

from __future__ import annotations

from datetime import timedelta

import pytest

from engine.commands import Engine
from tests.conftest import ManualClock
from tests.scenarios.criminal_steps import APPROVED, EVIDENCE, HANDED_OVER, KEY, REPORT, reported
from tests.scenarios.support import (
    Case,
    advance,
    advance_to,
    assert_supervised,
    assert_task,
    deploy_models,
    shanghai,
    start,
    timer_firings,
)

AGENCY = "market_regulation"
CASE_NO = "HB-A2-001"

TRANSFER = {"transfer_letter_no": "湖市监移刑〔2026〕1号", "other_materials": "询问笔录 3 份、现场照片 20 张"}
TRANSFER_KEYS = {
    "case_no",
    "sender_agency",
    "transfer_letter_no",
    "suspected_crime",
    "investigation_report",
    "seized_items_list",
    "inspection_report",
    "other_materials",
}
FILED = {"filed": True, "filing_notice_no": "湖公立〔2026〕77号"}
NOT_FILED = {"filed": False, "not_filed_reasons": "现有证据不足以证明货值达到追诉标准"}


def _given(engine: Engine, clock: ManualClock, case_no: str = CASE_NO) -> Case:
    deploy_models(engine, "criminal_transfer")
    return start(engine, clock, "criminal_transfer", case_no=case_no, sender_agency=AGENCY)


def _reported(engine: Engine, clock: ManualClock, case_no: str = CASE_NO) -> Case:
    """Given evidence preserved and the team's written report: the head has to decide."""
    deploy_models(engine, KEY)
    return reported(engine, clock, case_no, AGENCY)


def _transferred(engine: Engine, clock: ManualClock, case_no: str = CASE_NO) -> Case:
    """Given the transfer approved and sent: the police have to sign the receipt."""
    case = _reported(engine, clock, case_no)
    case.complete("head_approval", APPROVED)
    case.complete("transfer_to_police", TRANSFER)
    return case


def _accepted(engine: Engine, clock: ManualClock, case_no: str = CASE_NO) -> Case:
    """Given the police's receipt: they have to decide on filing."""
    case = _transferred(engine, clock, case_no)
    case.reply("police_receipt", {"receipt_no": "湖公回〔2026〕15号"})
    return case


def _not_filed(engine: Engine, clock: ManualClock) -> Case:
    case = _accepted(engine, clock)
    case.reply("police_filing_decision", NOT_FILED)
    return case


def _reconsideration_refused(engine: Engine, clock: ManualClock) -> Case:
    case = _not_filed(engine, clock)
    case.complete(
        "decide_reconsideration",
        {
            "files_returned": True,
            "request_reconsideration": True,
            "reconsideration_reason": "货值已达追诉标准",
        },
    )
    case.reply(
        "police_reconsideration_decision",
        {"reconsideration_filed": False, "reconsideration_decision_no": "湖公复〔2026〕4号"},
    )
    return case


def _supervision_proposed(engine: Engine, clock: ManualClock) -> Case:
    case = _reconsideration_refused(engine, clock)
    case.complete(
        "decide_supervision_proposal", {"propose_supervision": True, "supervision_reason": "应当立案"}
    )
    return case


# ----------------------------------------------------------------------------------------------- happy path
def test_happy_path_approved_transferred_with_copy_filed_items_handed_over_prosecuted(
    engine: Engine, clock: ManualClock
) -> None:
    case = _given(engine, clock)
    assert_task(
        case.task("preserve_evidence"),
        name="保存证据、登记涉案物品并送检",
        lane="移送机关执法人员",
        groups=[f"{AGENCY}:officer"],
    )
    case.complete("preserve_evidence", EVIDENCE)
    assert_task(case.task("write_report"), lane="移送机关执法人员", groups=[f"{AGENCY}:officer"])
    case.complete("write_report", REPORT)

    # Monday 09:00 report; the head decides within 3 working days: Tue, Wed, Thu → ends Friday 00:00.
    head = case.task("head_approval")
    assert_task(
        head,
        name="正职负责人审批是否移送",
        lane="移送机关负责人",
        groups=[f"{AGENCY}:head"],
        due=shanghai(2026, 3, 6, 0, 0),
    )
    assert case.due("approval_overdue") == shanghai(2026, 3, 6, 0, 0)
    clock.advance(hours=5)
    approved_at = clock()
    case.complete("head_approval", APPROVED)

    assert_task(
        case.task("transfer_to_police"),
        lane="移送机关执法人员",
        groups=[f"{AGENCY}:officer"],
        due=approved_at + timedelta(hours=24),
    )
    assert case.due("transfer_overdue") == approved_at + timedelta(hours=24)
    assert case.sent() == []
    case.complete("transfer_to_police", TRANSFER)

    transfer, copy = case.sent()
    assert (transfer.name, transfer.to) == ("criminal_case_transfer", "public_security")
    assert set(transfer.payload) == TRANSFER_KEYS
    assert transfer.payload["transfer_letter_no"] == "湖市监移刑〔2026〕1号"
    assert transfer.payload["seized_items_list"] == EVIDENCE["seized_items_list"]
    assert transfer.correlation_keys == {"case_no": CASE_NO}
    assert transfer.sender == AGENCY and copy.sender == AGENCY
    assert (copy.name, copy.to) == ("criminal_case_transfer_copy", "procuratorate")
    assert set(copy.payload) == {"case_no", "sender_agency", "transfer_letter_no", "suspected_crime"}
    assert "investigation_report" not in copy.payload
    assert copy.correlation_keys == {"case_no": CASE_NO}
    assert case.waiting_for_messages() == ["police_not_competent", "police_receipt"]

    case.reply("police_receipt", {"receipt_no": "湖公回〔2026〕15号"})
    assert case.waiting_for_messages() == [
        "police_filing_decision",
        "police_materials_incomplete",
        "police_not_competent",
    ]
    assert set(case.timers()) == {"filing_overdue"}
    case.reply("police_filing_decision", FILED)
    assert case.timers().keys() == {"handover_overdue"}

    assert_task(
        case.task("hand_over_items"),
        name="3日内向公安机关移交涉案物品",
        lane="移送机关执法人员",
        groups=[f"{AGENCY}:officer"],
    )
    case.complete("hand_over_items", HANDED_OVER)
    assert case.waiting_for_messages() == [
        "police_case_closed_non_criminal",
        "procuratorate_non_prosecution",
        "procuratorate_prosecuted",
    ]
    case.reply("procuratorate_prosecuted", {"indictment_no": "湖检诉〔2026〕9号"})
    assert case.state == "completed"
    documents = case.variables
    for name in ("seized_items_list", "inspection_report", "investigation_report", "transfer_letter_no"):
        assert documents[name], name
    assert documents["receipt_no"] == "湖公回〔2026〕15号"
    assert documents["filing_notice_no"] == "湖公立〔2026〕77号"
    assert documents["handover_list_no"] == "湖市监交〔2026〕2号"
    assert len(case.sent()) == 2
    case.check_stable()


# ----------------------------------------------------------------------------------------------- refusal
def test_one_officer_named_twice_is_not_a_team_and_the_report_comes_back(
    engine: Engine, clock: ManualClock
) -> None:
    case = _given(engine, clock)
    case.complete("preserve_evidence", EVIDENCE)
    case.complete("write_report", {**REPORT, "officer_2_id": "zhangwei", "officer_2_cert": "豫执 4112020101"})
    assert case.open_elements() == ["write_report"]  # 310令 Art. 5: at least two officers
    case.complete("write_report", REPORT)
    assert case.open_elements() == ["head_approval"]


def test_head_refuses_and_the_reasons_are_recorded_nothing_is_sent(
    engine: Engine, clock: ManualClock
) -> None:
    case = _reported(engine, clock)
    case.complete("head_approval", {"transfer_approved": False})
    assert_task(
        case.task("record_refusal"),
        name="不批准移送：将理由记录在案",
        lane="移送机关负责人",
        groups=[f"{AGENCY}:head"],
    )
    case.complete("record_refusal", {"refusal_reason": "货值未达追诉标准，依法给予行政处罚"})
    assert case.state == "completed"
    assert case.variables["refusal_reason"] == "货值未达追诉标准，依法给予行政处罚"
    assert case.sent() == []


# ----------------------------------------------------------------------------------------------- police side
def test_police_not_competent_pass_it_on_and_tell_the_agency(engine: Engine, clock: ManualClock) -> None:
    case = _transferred(engine, clock)
    case.reply("police_not_competent", {"passed_to": "三门峡市公安局经侦支队", "pass_on_reason": "级别管辖"})
    assert_task(case.task("record_pass_on"), lane="移送机关执法人员", groups=[f"{AGENCY}:officer"])
    assert "police_receipt" in case.waiting_for_messages()  # the competent police still sign the receipt
    case.complete("record_pass_on", {"pass_on_notice_no": "湖公转〔2026〕2号"})
    assert case.variables["passed_to"] == "三门峡市公安局经侦支队"
    case.reply("police_receipt", {"receipt_no": "门公经回〔2026〕1号"})
    assert case.waiting_for_messages() == [
        "police_filing_decision",
        "police_materials_incomplete",
        "police_not_competent",
    ]
    case.check_stable()


def test_police_pass_the_case_on_after_signing_the_receipt(engine: Engine, clock: ManualClock) -> None:
    case = _accepted(engine, clock)
    case.reply("police_not_competent", {"passed_to": "三门峡市公安局经侦支队", "pass_on_reason": "级别管辖"})
    assert_task(case.task("record_pass_on"), lane="移送机关执法人员", groups=[f"{AGENCY}:officer"])
    assert "police_filing_decision" in case.waiting_for_messages()  # the competent police decide on filing
    case.complete("record_pass_on", {"pass_on_notice_no": "湖公转〔2026〕3号"})
    case.reply("police_filing_decision", FILED)
    assert case.open_elements() == ["hand_over_items"]


def test_materials_incomplete_are_supplemented_within_three_days(engine: Engine, clock: ManualClock) -> None:
    case = _accepted(engine, clock)
    case.reply("police_materials_incomplete", {"missing_materials": "检验报告原件"})
    supplement = case.task("supplement_materials")
    assert_task(supplement, name="3日内补充移送材料", lane="移送机关执法人员", groups=[f"{AGENCY}:officer"])
    assert supplement["due_at"] is not None
    case.complete("supplement_materials", {"supplement_list": "检验报告原件 1 份"})
    [sent] = case.sent("criminal_case_supplement")
    assert sent.to == "public_security"
    assert set(sent.payload) == {"case_no", "sender_agency", "transfer_letter_no", "supplement_list"}
    # The police may not refuse for incompleteness: the filing decision is still awaited.
    assert "police_filing_decision" in case.waiting_for_messages()
    case.reply("police_filing_decision", FILED)
    assert case.open_elements() == ["hand_over_items"]


def test_not_filed_reconsideration_requested_and_police_file_on_reconsideration(
    engine: Engine, clock: ManualClock
) -> None:
    case = _not_filed(engine, clock)
    assert_task(
        case.task("decide_reconsideration"),
        name="收到不予立案通知：决定是否申请复议",
        lane="移送机关负责人",
        groups=[f"{AGENCY}:head"],
    )
    assert case.variables["not_filed_reasons"] == NOT_FILED["not_filed_reasons"]
    case.complete(
        "decide_reconsideration",
        {
            "files_returned": True,
            "request_reconsideration": True,
            "reconsideration_reason": "货值已达追诉标准",
        },
    )
    [request] = case.sent("reconsideration_request")
    assert request.to == "public_security"
    assert set(request.payload) == {
        "case_no",
        "sender_agency",
        "transfer_letter_no",
        "reconsideration_reason",
    }
    assert set(case.timers()) == {"reconsideration_decision_overdue"}
    case.reply(
        "police_reconsideration_decision",
        {"reconsideration_filed": True, "filing_notice_no": "湖公立〔2026〕80号"},
    )
    assert case.open_elements() == ["hand_over_items"]


def test_reconsideration_refused_procuratorate_orders_filing_and_police_file(
    engine: Engine, clock: ManualClock
) -> None:
    case = _reconsideration_refused(engine, clock)
    assert_task(case.task("decide_supervision_proposal"), lane="移送机关负责人", groups=[f"{AGENCY}:head"])
    case.complete(
        "decide_supervision_proposal", {"propose_supervision": True, "supervision_reason": "应当立案"}
    )
    [proposal] = case.sent("filing_supervision_request")
    assert proposal.to == "procuratorate"
    assert set(proposal.payload) == {
        "case_no",
        "sender_agency",
        "transfer_letter_no",
        "suspected_crime",
        "supervision_reason",
    }
    assert case.waiting_for_messages() == ["procuratorate_supervision_result"]
    case.reply(
        "procuratorate_supervision_result",
        {"ordered_to_file": True, "supervision_opinion": "通知公安机关立案"},
    )
    assert case.waiting_for_messages() == ["police_filing_decision"]
    assert set(case.timers()) == {"filing_order_overdue"}
    case.reply("police_filing_decision", FILED)
    assert case.open_elements() == ["hand_over_items"]
    case.check_stable()


def test_procuratorate_finds_the_refusal_justified_back_to_administrative_handling(
    engine: Engine, clock: ManualClock
) -> None:
    case = _supervision_proposed(engine, clock)
    case.reply(
        "procuratorate_supervision_result",
        {"ordered_to_file": False, "supervision_opinion": "不立案理由成立"},
    )
    assert_task(
        case.task("administrative_handling"),
        name="依法作出行政处理",
        lane="移送机关执法人员",
        groups=[f"{AGENCY}:officer"],
    )


@pytest.mark.parametrize(
    ("message", "variables"),
    [
        ("police_case_closed_non_criminal", {"closing_reasons": "不构成犯罪，应予行政处罚"}),
        ("procuratorate_non_prosecution", {"non_prosecution_decision_no": "湖检不诉〔2026〕2号"}),
    ],
)
def test_no_criminal_outcome_returns_the_case_for_an_administrative_penalty(
    engine: Engine, clock: ManualClock, message: str, variables: dict[str, str]
) -> None:
    case = _accepted(engine, clock)
    case.reply("police_filing_decision", FILED)
    case.complete("hand_over_items", HANDED_OVER)
    case.reply(message, variables)
    assert_task(case.task("administrative_handling"), lane="移送机关执法人员", groups=[f"{AGENCY}:officer"])
    case.complete(
        "administrative_handling",
        {
            "administrative_result": "penalty",
            "penalty_decision_no": "湖市监罚〔2026〕31号",
            "administrative_summary": "罚款",
        },
    )
    assert case.state == "completed"
    assert case.variables["penalty_decision_no"] == "湖市监罚〔2026〕31号"


@pytest.mark.parametrize(
    ("answer", "proposal"),
    [
        pytest.param(
            {
                "files_returned": True,
                "request_reconsideration": False,
                "reconsideration_reason": "接受不立案决定",
            },
            None,
            id="no-request",
        ),
        pytest.param(
            None, {"propose_supervision": False, "supervision_reason": "接受复议决定"}, id="no-proposal"
        ),
    ],
)
def test_agency_accepts_the_police_decision_and_handles_administratively(
    engine: Engine, clock: ManualClock, answer: dict[str, object] | None, proposal: dict[str, object] | None
) -> None:
    if answer is not None:
        case = _not_filed(engine, clock)
        case.complete("decide_reconsideration", answer)
    else:
        case = _reconsideration_refused(engine, clock)
        case.complete("decide_supervision_proposal", proposal)
    assert case.open_elements() == ["administrative_handling"]
    assert case.sent("filing_supervision_request") == []


# ---------------------------------------------------------------------------------------- missed deadlines
def test_head_does_not_decide_within_three_days_justice_bureau_supervises(
    engine: Engine, clock: ManualClock
) -> None:
    case = _reported(engine, clock)
    assert advance_to(engine, clock, case.due("approval_overdue") - timedelta(seconds=1)) == 0
    assert advance(engine, clock, seconds=1) == 1
    assert_supervised(
        case,
        "supervise_approval",
        name="司法局督办：负责人逾期未作移送审批决定",
        lane="司法局",
        timer="approval_overdue",
    )
    assert case.open_elements() == ["head_approval", "supervise_approval"]  # the head still has to decide


def test_transfer_not_made_within_24_hours_of_approval_justice_bureau_supervises(
    engine: Engine, clock: ManualClock
) -> None:
    case = _reported(engine, clock)
    case.complete("head_approval", APPROVED)
    approved_at = clock()
    assert advance(engine, clock, hours=23, minutes=59) == 0
    assert advance(engine, clock, minutes=1) == 1
    assert clock() == approved_at + timedelta(hours=24)
    assert_supervised(
        case,
        "supervise_transfer",
        name="司法局督办：批准后逾期未移送公安机关",
        lane="司法局",
        timer="transfer_overdue",
    )
    case.complete(
        "supervise_transfer",
        {
            "transfer_supervision_notice_no": "湖司督〔2026〕9号",
            "transfer_supervision_opinion": "责令当日移送",
        },
    )
    case.complete("transfer_to_police", TRANSFER)
    assert [m.name for m in case.sent()] == ["criminal_case_transfer", "criminal_case_transfer_copy"]


def test_supplement_not_made_within_three_days_justice_bureau_supervises(
    engine: Engine, clock: ManualClock
) -> None:
    case = _accepted(engine, clock)
    case.reply("police_materials_incomplete", {"missing_materials": "检验报告原件"})
    # The police's own filing deadline (3 working days from the receipt) ends at the same moment.
    assert case.due("supplement_overdue") == case.due("filing_overdue")
    assert advance_to(engine, clock, case.due("supplement_overdue")) == 2
    assert timer_firings(case, "supplement_overdue")
    assert_supervised(case, "supervise_supplement", name="司法局督办：逾期未补充移送材料", lane="司法局")
    assert "supplement_materials" in case.open_elements()


def test_police_do_not_decide_on_filing_within_three_days_the_agency_tells_the_procuratorate(
    engine: Engine, clock: ManualClock
) -> None:
    case = _accepted(engine, clock)
    assert advance_to(engine, clock, case.due("filing_overdue")) == 1
    assert_task(
        case.task("report_filing_overdue"),
        name="公安机关逾期未作立案决定：告知检察院",
        lane="移送机关执法人员",
        groups=[f"{AGENCY}:officer"],
    )
    case.complete("report_filing_overdue", {"filing_overdue_notice_no": "湖市监告〔2026〕1号"})
    [notice] = case.sent("police_overdue_notice")
    assert notice.to == "procuratorate"
    assert notice.payload == {
        "case_no": CASE_NO,
        "sender_agency": AGENCY,
        "transfer_letter_no": TRANSFER["transfer_letter_no"],
        "overdue": "filing_decision",
        "notice_no": "湖市监告〔2026〕1号",
    }
    case.reply("police_filing_decision", FILED)  # late, but still taken
    assert case.open_elements() == ["hand_over_items"]


def test_items_not_handed_over_within_three_days_justice_bureau_supervises(
    engine: Engine, clock: ManualClock
) -> None:
    case = _accepted(engine, clock)
    case.reply("police_filing_decision", FILED)
    assert advance_to(engine, clock, case.due("handover_overdue")) == 1
    assert_supervised(
        case,
        "supervise_handover",
        name="司法局督办：逾期未移交涉案物品",
        lane="司法局",
        timer="handover_overdue",
    )


def test_reconsideration_right_lapses_after_three_days(engine: Engine, clock: ManualClock) -> None:
    case = _not_filed(engine, clock)
    assert advance_to(engine, clock, case.due("reconsideration_window")) == 1
    assert case.open_elements() == ["administrative_handling"]  # interrupting: the right has lapsed
    assert case.sent("reconsideration_request") == []


def test_supervision_proposal_right_lapses_after_three_days(engine: Engine, clock: ManualClock) -> None:
    case = _reconsideration_refused(engine, clock)
    assert advance_to(engine, clock, case.due("proposal_window")) == 1
    assert case.open_elements() == ["administrative_handling"]


def test_police_do_not_decide_the_reconsideration_within_three_days(
    engine: Engine, clock: ManualClock
) -> None:
    case = _not_filed(engine, clock)
    case.complete(
        "decide_reconsideration",
        {
            "files_returned": True,
            "request_reconsideration": True,
            "reconsideration_reason": "货值已达追诉标准",
        },
    )
    assert advance_to(engine, clock, case.due("reconsideration_decision_overdue")) == 1
    assert_task(
        case.task("report_reconsideration_overdue"), lane="移送机关执法人员", groups=[f"{AGENCY}:officer"]
    )
    case.complete(
        "report_reconsideration_overdue", {"reconsideration_overdue_notice_no": "湖市监告〔2026〕2号"}
    )
    [notice] = case.sent("police_overdue_notice")
    assert notice.to == "procuratorate" and notice.payload["overdue"] == "reconsideration_decision"


def test_no_supervision_result_after_seven_days_the_agency_follows_up(
    engine: Engine, clock: ManualClock
) -> None:
    case = _supervision_proposed(engine, clock)
    assert advance_to(engine, clock, case.due("explanation_overdue")) == 1
    assert_task(case.task("follow_up_supervision"), lane="移送机关执法人员", groups=[f"{AGENCY}:officer"])
    assert case.waiting_for_messages() == ["procuratorate_supervision_result"]


def test_police_do_not_file_within_fifteen_days_of_the_order(engine: Engine, clock: ManualClock) -> None:
    case = _supervision_proposed(engine, clock)
    case.reply(
        "procuratorate_supervision_result", {"ordered_to_file": True, "supervision_opinion": "通知立案"}
    )
    assert advance_to(engine, clock, case.due("filing_order_overdue")) == 1
    assert_task(case.task("report_order_overdue"), lane="移送机关执法人员", groups=[f"{AGENCY}:officer"])
    case.complete("report_order_overdue", {"order_overdue_notice_no": "湖市监告〔2026〕3号"})
    [notice] = case.sent("police_overdue_notice")
    assert notice.to == "procuratorate" and notice.payload["overdue"] == "filing_after_order"


# ------------------------------------------------------------------------------------ the working-day calendar
def test_head_approval_deadline_over_national_day_lands_on_the_adjusted_working_saturday(
    engine: Engine, clock: ManualClock
) -> None:
    # Report on Wednesday 2026-09-30; 10-01..10-07 are holidays; 10-08, 10-09 and Saturday 10-10 (调休上班) count.
    clock.set(shanghai(2026, 9, 30, 15, 0))
    case = _reported(engine, clock, "HB-A2-CAL-1")
    assert case.due("approval_overdue") == shanghai(2026, 10, 11, 0, 0)
    assert_task(case.task("head_approval"), due=shanghai(2026, 10, 11, 0, 0))
    assert advance_to(engine, clock, shanghai(2026, 10, 10, 23, 59, 59)) == 0
    assert advance_to(engine, clock, shanghai(2026, 10, 11, 0, 0)) == 1
    assert case.has_task("supervise_approval")


def test_twenty_four_hours_run_through_the_holiday(engine: Engine, clock: ManualClock) -> None:
    # Approved on 2026-09-30 at 20:00: "24小时" is counted in hours, National Day or not.
    clock.set(shanghai(2026, 9, 30, 9, 0))
    case = _reported(engine, clock, "HB-A2-CAL-2")
    clock.set(shanghai(2026, 9, 30, 20, 0))
    case.complete("head_approval", APPROVED)
    assert case.due("transfer_overdue") == shanghai(2026, 10, 1, 20, 0)
    assert_task(case.task("transfer_to_police"), due=shanghai(2026, 10, 1, 20, 0))


def test_filing_decision_deadline_spans_national_day(engine: Engine, clock: ManualClock) -> None:
    # Receipt on Tuesday 2026-09-29: 09-30, 10-08 and 10-09 are the three working days.
    clock.set(shanghai(2026, 9, 29, 10, 0))
    case = _accepted(engine, clock, "HB-A2-CAL-3")
    assert case.due("filing_overdue") == shanghai(2026, 10, 10, 0, 0)


# ------------------------------------------------------------------------- with the simulated external systems
class _DirectClient:
    """Stands in for adapters.client.AgencyClient: a reply is correlated straight into the engine."""

    def __init__(self, engine: Engine, agency: str) -> None:
        self.engine = engine
        self.agency = agency

    def reply(
        self, received: dict[str, object], name: str, payload: dict[str, object], message_id: str
    ) -> object:
        keys = {"case_no": payload["case_no"]}
        variables = {k: v for k, v in payload.items() if k != "case_no"}
        return self.engine.correlate(name, correlation_keys=keys, variables=variables, message_id=message_id)


def test_the_simulated_police_and_procuratorate_understand_the_model(
    engine: Engine, clock: ManualClock
) -> None:
    """adapters/agency_sim.py (caseflow agency-sim) answers the envelopes this model sends, by the same names."""
    from adapters.agency_sim import Simulator

    simulators = {
        agency: Simulator(_DirectClient(engine, agency), filing_delay=0)
        for agency in ("public_security", "procuratorate")
    }
    for simulator in simulators.values():
        # Answer "later" at once, in this thread.
        simulator._later = lambda _delay, received, name, payload, s=simulator: s._reply(
            received, name, payload
        )
    case = _transferred(engine, clock)
    for sent in case.sent():
        assert sent.to is not None
        simulators[sent.to].on_message(sent.envelope)
    assert case.variables["receipt_no"].startswith("回执-")
    assert case.variables["filed"] is True
    assert case.open_elements() == ["hand_over_items"]
    assert [e["name"] for e in simulators["procuratorate"].received] == ["criminal_case_transfer_copy"]
