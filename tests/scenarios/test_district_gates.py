"""The gates of the district models A1-A3: who may claim a step (caseflow:requires against the demo users
directory) and which form fields a step refuses to go without (camunda:formData)."""

from __future__ import annotations

import pytest

from engine.commands import Engine
from engine.errors import Forbidden, InvalidForm
from tests.conftest import ManualClock
from tests.scenarios.criminal_steps import EVIDENCE, REPORT, reported
from tests.scenarios.support import deploy_models, start


def test_only_certified_officers_and_the_head_act_on_a_criminal_transfer(
    guarded: Engine, clock: ManualClock
) -> None:
    deploy_models(guarded, "criminal_transfer")
    case = start(guarded, clock, "criminal_transfer", case_no="HB-GATE-1", sender_agency="market_regulation")
    evidence = case.task("preserve_evidence")["id"]
    for user in ("liuyang", "wangqiang", "sunlei"):  # a clerk, an expired certificate, another agency
        with pytest.raises(Forbidden):
            guarded.claim(evidence, user)
    guarded.claim(evidence, "zhangwei")
    case.complete("preserve_evidence", EVIDENCE, user="zhangwei")
    report = case.task("write_report")["id"]
    guarded.claim(report, "lina")
    case.complete("write_report", REPORT, user="lina")
    approval = case.task("head_approval")["id"]
    with pytest.raises(Forbidden):
        guarded.claim(approval, "zhangwei")  # an officer is not the head (310 Art. 5)
    guarded.claim(approval, "zhaomin")


def test_a_refusal_is_not_recorded_without_its_reasons(engine: Engine, clock: ManualClock) -> None:
    deploy_models(engine, "criminal_transfer")
    case = reported(engine, clock, "HB-GATE-2")
    with pytest.raises(InvalidForm) as refused:
        case.complete("head_approval", {})
    assert "transfer_approved" in str(refused.value.details)
    case.complete("head_approval", {"transfer_approved": False})
    with pytest.raises(InvalidForm) as refused:
        case.complete("record_refusal", {})
    assert "refusal_reason" in str(refused.value.details)
    case.complete("record_refusal", {"refusal_reason": "货值未达追诉标准"})
    assert case.state == "completed"


@pytest.mark.parametrize(
    ("models", "element"),
    [
        (("jurisdiction_dispute", "clue_transfer"), "register_clue"),
        (("discipline_clue_transfer",), "register_clue"),
    ],
)
def test_registration_needs_its_fields(
    engine: Engine, clock: ManualClock, models: tuple[str, ...], element: str
) -> None:
    deploy_models(engine, *models)
    case = start(engine, clock, models[-1], case_no="HB-GATE-3", sender_agency="market_regulation")
    with pytest.raises(InvalidForm) as refused:
        case.complete(element, {"clue_summary": "只有摘要"})
    assert "clue_summary" not in str(refused.value.details)
    assert case.open_elements() == [element]
