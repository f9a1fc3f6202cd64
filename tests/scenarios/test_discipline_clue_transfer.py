"""A3 problem clue about a public official to the discipline commission (bpmn/discipline_clue_transfer.bpmn).

Given/when/then: register → head approves (or returns it for more) → sealed transfer to the commission within 15
working days → the commission's case supervision department registers it, or passes it on and says so; the
missed transfer deadline (督办 by case supervision, who may know the clue anyway) and the commission's silence
(the head follows up). Confidentiality: the clue travels only to the discipline commission, and the case is
absent from general task lists, instance searches and other agencies' reads of the instance and its audit trail.
"""

from __future__ import annotations

import json

import pytest
from sqlalchemy import select

from engine.commands import Engine
from engine.directory import SYSTEM, Viewer
from engine.errors import NotFound
from engine.store import queries
from engine.store.db import read_only
from engine.store.tables import outbox
from tests.conftest import ManualClock
from tests.scenarios.criminal_steps import reported
from tests.scenarios.support import (
    Case,
    advance_to,
    assert_supervised,
    assert_task,
    deploy_models,
    shanghai,
    start,
)

AGENCY = "market_regulation"
CASE_NO = "XS-2026-0007"  # neutral: it is the business key and the correlation key
CLUE = {
    "clue_summary": "某街道办工作人员在占道经营整治中收受商户财物，为其免予处罚",
    "official_name": "王某某",
    "official_position": "湖滨街道办事处城管中队副队长",
    "clue_source": "执法检查中商户陈述并提供转账记录",
    "evidence_list": "询问笔录 2 份、转账记录截图 3 张",
}
APPROVED = {"clue_transfer_approved": True, "approval_opinion": "同意移送区纪委监委"}
LETTER = {"transfer_letter_no": "湖市监纪移〔2026〕1号", "sealed_material_count": 3}
OFFICER = Viewer(user="zhangsan", groups=frozenset({f"{AGENCY}:officer"}), agency=AGENCY)
OTHER_AGENCY = Viewer(
    user="wangwu", groups=frozenset({"urban_management:officer"}), agency="urban_management"
)
JUSTICE = Viewer(user="xuming", groups=frozenset({"justice_bureau:supervisor"}), agency="justice_bureau")
CASE_SUPERVISION = Viewer(
    user="caoyun",
    groups=frozenset({"discipline_commission:case_supervision"}),
    agency="discipline_commission",
)


def _given(engine: Engine, clock: ManualClock) -> Case:
    deploy_models(engine, "discipline_clue_transfer")
    return start(engine, clock, "discipline_clue_transfer", case_no=CASE_NO, sender_agency=AGENCY)


def _sent(engine: Engine, clock: ManualClock) -> Case:
    """Given the clue registered, approved and sent to the commission."""
    case = _given(engine, clock)
    case.complete("register_clue", CLUE)
    case.complete("head_approval", APPROVED)
    case.complete("prepare_transfer", LETTER)
    return case


def test_happy_path_registered_approved_sealed_transfer_registered_by_the_commission(
    engine: Engine, clock: ManualClock
) -> None:
    case = _given(engine, clock)
    assert_task(
        case.task("register_clue"),
        name="登记问题线索（涉密）",
        lane="移送机关执法人员",
        groups=[f"{AGENCY}:officer"],
    )
    assert set(case.timers()) == {"transfer_overdue"}  # the 15 working days run from the first step
    case.complete("register_clue", CLUE)
    assert_task(
        case.task("head_approval"),
        name="负责人审批移送问题线索",
        lane="移送机关负责人",
        groups=[f"{AGENCY}:head"],
    )
    case.complete("head_approval", APPROVED)
    assert_task(case.task("prepare_transfer"), lane="移送机关执法人员", groups=[f"{AGENCY}:officer"])
    case.complete("prepare_transfer", LETTER)

    [sent] = case.sent()
    assert (sent.name, sent.to, sent.sender) == ("discipline_clue_transfer", "discipline_commission", AGENCY)
    assert sent.correlation_keys == {"case_no": CASE_NO}
    assert set(sent.payload) == {
        "case_no",
        "sender_agency",
        "transfer_letter_no",
        "sealed_material_count",
        *CLUE,
    }
    assert sent.payload["clue_summary"] == CLUE["clue_summary"]
    assert set(case.timers()) == {
        "registration_overdue"
    }  # transferred in time: the transfer deadline is gone
    assert case.waiting_for_messages() == ["discipline_clue_passed_on", "discipline_clue_registered"]

    case.reply("discipline_clue_registered", {"registration_no": "湖纪线〔2026〕15号"})
    assert case.state == "completed"
    assert case.variables["registration_no"] == "湖纪线〔2026〕15号"
    assert case.variables["transfer_letter_no"] == LETTER["transfer_letter_no"]
    case.check_stable()


def test_head_returns_the_clue_for_more_before_approving(engine: Engine, clock: ManualClock) -> None:
    case = _given(engine, clock)
    case.complete("register_clue", CLUE)
    case.complete("head_approval", {"clue_transfer_approved": False, "approval_opinion": "补充转账记录原件"})
    assert case.open_elements() == ["register_clue"]
    assert case.sent() == []
    case.complete("register_clue", {**CLUE, "evidence_list": "询问笔录 2 份、转账记录原件 3 份"})
    case.complete("head_approval", APPROVED)
    case.complete("prepare_transfer", LETTER)
    [sent] = case.sent()
    assert sent.payload["evidence_list"] == "询问笔录 2 份、转账记录原件 3 份"


def test_commission_not_competent_passes_it_on_and_tells_the_agency(
    engine: Engine, clock: ManualClock
) -> None:
    case = _sent(engine, clock)
    case.reply(
        "discipline_clue_passed_on",
        {"passed_to": "三门峡市纪委监委", "pass_on_notice_no": "湖纪转〔2026〕2号"},
    )
    assert_task(
        case.task("record_passed_on"),
        name="登记纪委监委转送告知",
        lane="移送机关执法人员",
        groups=[f"{AGENCY}:officer"],
    )
    assert case.timers() == {}
    case.complete("record_passed_on", {"pass_on_recorded_no": "登-2026-3"})
    assert case.state == "completed"
    assert case.variables["passed_to"] == "三门峡市纪委监委"


def test_not_transferred_within_fifteen_working_days_case_supervision_supervises(
    engine: Engine, clock: ManualClock
) -> None:
    case = _given(engine, clock)  # discovered Monday 2026-03-02 09:00
    case.complete("register_clue", CLUE)
    assert case.due("transfer_overdue") == shanghai(2026, 3, 24, 0, 0)  # 15th working day: Monday 03-23
    assert advance_to(engine, clock, shanghai(2026, 3, 23, 23, 59)) == 0
    assert advance_to(engine, clock, shanghai(2026, 3, 24, 0, 0)) == 1
    assert_supervised(
        case,
        "supervise_transfer",
        name="纪委监委督办：问题线索逾期未移送",
        lane="纪委监委案件监督管理部门",
        timer="transfer_overdue",
        groups=["discipline_commission:case_supervision"],
    )
    assert case.open_elements() == ["head_approval", "supervise_transfer"]  # the transfer is still owed
    case.complete("head_approval", APPROVED)
    case.complete("prepare_transfer", LETTER)
    assert [m.to for m in case.sent()] == ["discipline_commission"]


def test_transfer_deadline_runs_over_mid_autumn_and_national_day(engine: Engine, clock: ManualClock) -> None:
    deploy_models(engine, "discipline_clue_transfer")
    clock.set(shanghai(2026, 9, 22, 9, 0))
    case = start(engine, clock, "discipline_clue_transfer", case_no="XS-2026-0930", sender_agency=AGENCY)
    # 09-25..09-27 and 10-01..10-07 are holidays, Saturday 10-10 is worked: the 15th working day is 10-20.
    assert case.due("transfer_overdue") == shanghai(2026, 10, 21, 0, 0)


def test_commission_silent_for_five_working_days_the_head_follows_up(
    engine: Engine, clock: ManualClock
) -> None:
    clock.set(shanghai(2026, 9, 29, 9, 0))
    case = _sent(engine, clock)
    # 09-30, 10-08, 10-09, the adjusted working Saturday 10-10 and Monday 10-12.
    assert case.due("registration_overdue") == shanghai(2026, 10, 13, 0, 0)
    assert advance_to(engine, clock, shanghai(2026, 10, 13, 0, 0)) == 1
    assert_task(
        case.task("follow_up_commission"),
        name="逾期未收到登记或转送告知：向纪委监委查询",
        lane="移送机关负责人",
        groups=[f"{AGENCY}:head"],
    )
    case.reply("discipline_clue_registered", {"registration_no": "湖纪线〔2026〕20号"})
    assert case.open_elements() == ["follow_up_commission"]


# ------------------------------------------------------------------------------------------ confidentiality
def test_the_clue_travels_only_to_the_discipline_commission(engine: Engine, clock: ManualClock) -> None:
    deploy_models(engine, "discipline_clue_transfer", "criminal_transfer")
    case = _sent(engine, clock)
    # Another case of the same agency in the same engine sends its own messages.
    other = reported(engine, clock, "HB-A2-900", AGENCY)
    other.complete("head_approval", {"transfer_approved": True})
    other.complete("transfer_to_police", {"transfer_letter_no": "t", "other_materials": "无"})

    with read_only(engine.db) as conn:
        rows = conn.execute(select(outbox.c.instance_id, outbox.c.target, outbox.c.envelope)).all()
    assert len(rows) == 3
    assert {r.target for r in rows if r.instance_id == case.id} == {"discipline_commission"}
    for secret in (CLUE["clue_summary"], CLUE["official_name"]):
        carrying = [r.target for r in rows if secret in json.dumps(r.envelope, ensure_ascii=False)]
        assert carrying == ["discipline_commission"], secret


def test_the_case_is_absent_from_general_lists_searches_and_other_agencies_reads(
    engine: Engine, clock: ManualClock
) -> None:
    case = _given(engine, clock)
    case.complete("register_clue", CLUE)
    task_id = case.task("head_approval")["id"]
    with read_only(engine.db) as conn:
        for viewer in (None, OTHER_AGENCY, JUSTICE):
            listed = queries.tasks(conn, viewer=viewer)
            assert all(t["instance_id"] != case.id for t in listed), viewer
            found = queries.instances(conn, key="discipline_clue_transfer", viewer=viewer)
            assert found == [], viewer
            assert queries.instances(conn, business_key=CASE_NO, viewer=viewer) == [], viewer
        # The people the case names see it, and so does case supervision.
        head = Viewer(user="lisi", groups=frozenset({f"{AGENCY}:head"}), agency=AGENCY)
        for named in (OFFICER, head, CASE_SUPERVISION):
            assert [t["id"] for t in queries.tasks(conn, instance_id=case.id, viewer=named)] == [task_id]
        assert [i["id"] for i in queries.instances(conn, business_key=CASE_NO, viewer=CASE_SUPERVISION)] == [
            case.id
        ]
    for viewer in (OTHER_AGENCY, JUSTICE):
        with pytest.raises(NotFound):
            engine.read_instance(case.id, viewer)
        with pytest.raises(NotFound):
            engine.read_audit(case.id, viewer)
        with pytest.raises(NotFound):
            engine.read_task(task_id, viewer)
    seen = engine.read_instance(case.id, CASE_SUPERVISION)
    assert seen["variables"]["clue_summary"] == CLUE["clue_summary"]
    assert any(e["command"] == "read" for e in engine.read_audit(case.id, SYSTEM)), "every read is logged"


def test_supervision_of_the_missed_deadline_does_not_widen_who_knows(
    engine: Engine, clock: ManualClock
) -> None:
    case = _given(engine, clock)
    advance_to(engine, clock, case.due("transfer_overdue"))
    assert case.has_task("supervise_transfer")
    with read_only(engine.db) as conn:
        assert queries.tasks(conn, candidate_group="justice_bureau:supervisor", viewer=JUSTICE) == []
        supervision = queries.tasks(
            conn, candidate_group="discipline_commission:case_supervision", viewer=CASE_SUPERVISION
        )
    assert [t["element_id"] for t in supervision] == ["supervise_transfer"]
    with pytest.raises(NotFound):
        engine.read_instance(case.id, JUSTICE)
