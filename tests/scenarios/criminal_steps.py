"""Given-steps and form values of model A2 (bpmn/criminal_transfer.bpmn) shared by the scenarios that need an A2
case as a preamble: its own scenarios, the forged replies, the district gates and A3's confidentiality check."""

from __future__ import annotations

from typing import Any

from engine.commands import Engine
from tests.conftest import ManualClock
from tests.scenarios.support import Case, start

KEY = "criminal_transfer"
EVIDENCE: dict[str, Any] = {
    "seized_items_list": "假冒注册商标白酒 120 箱（清单 1 份）",
    "inspection_agency": "河南省产品质量监督检验院",
    "inspection_report": "豫质检〔2026〕0312号",
}
# Investigated by two certified officers of market_regulation (张伟 and 李娜, deployments/users.yaml).
REPORT: dict[str, Any] = {
    "officer_1_id": "zhangwei",
    "officer_1_cert": "豫执 4112020101",
    "officer_2_id": "lina",
    "officer_2_cert": "豫执 4112020102",
    "suspected_crime": "销售假冒注册商标的商品罪",
    "investigation_report": "经查，当事人销售假冒白酒，货值金额 18 万元……",
    "transfer_report_no": "湖市监报〔2026〕3号",
}
APPROVED: dict[str, Any] = {"transfer_approved": True, "approval_opinion": "同意移送"}
HANDED_OVER: dict[str, Any] = {"handover_list_no": "湖市监交〔2026〕2号", "items_handed_over": True}


def reported(
    engine: Engine,
    clock: ManualClock,
    case_no: str,
    agency: str = "market_regulation",
    user: str | None = None,
) -> Case:
    """Given an A2 case started by ``agency`` (deployed already) whose evidence is preserved and whose team
    report is written (by ``user`` when the directory is enforced): the head has to decide."""
    case = start(engine, clock, KEY, case_no=case_no, sender_agency=agency)
    case.complete("preserve_evidence", EVIDENCE, user=user)
    case.complete("write_report", REPORT, user=user)
    return case
