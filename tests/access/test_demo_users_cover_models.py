"""The demo users (deployments/users.yaml) can do every step of the five district models.

For every user task of ``bpmn/*.bpmn`` and every agency its candidate groups can be routed to (the district's
enforcement departments and townships a model offers, and the fixed agencies it names), some demo user is a
candidate and meets the task's ``caseflow:requires`` on 2026-10-01; a task needing a certified officer has two of
them (investigation and transfers by two officers). Then the engine itself, with the directory enforced and its
clock at 2026-10-01, lets each routable agency's people claim their first steps.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime
from itertools import product
from typing import Any

import pytest
import yaml

from engine.commands import Engine
from engine.directory import Directory, User
from tests.access.conftest import AGENCIES_FILE, open_task
from tests.conftest import ManualClock
from tests.scenarios.models import (
    DISTRICT_MODELS,
    NS,
    bpmn_doc,
    candidate_groups,
    caseflow,
    split_list,
    user_tasks,
)
from tests.scenarios.support import deploy_fixture, deploy_models, start

DAY = date(2026, 10, 1)
TEMPLATE = re.compile(r"^\$\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}:([a-z_]+)$")
# The approving department of model B when the case names none (init_case).
FIXED_VARIABLES = {"approving_agency": ("data_bureau",)}


def _agencies() -> list[dict[str, Any]]:
    return list(yaml.safe_load(AGENCIES_FILE.read_text(encoding="utf-8"))["agencies"])


def routable_agencies() -> list[str]:
    """The enforcement departments and townships a model offers to route a case to (its enum options)."""
    kinds = {a["code"]: a["kind"] for a in _agencies()}
    offered: set[str] = set()
    for stem in DISTRICT_MODELS:
        for value in bpmn_doc(stem).xpath("//camunda:formField[@type='enum']/camunda:value", namespaces=NS):
            if kinds.get(value.get("id")) in ("department", "township"):
                offered.add(str(value.get("id")))
    return sorted(offered)


def _user_tasks() -> list[tuple[str, Any]]:
    return [(stem, node) for stem in DISTRICT_MODELS for node in user_tasks(bpmn_doc(stem))]


def _groups_for(node: Any, routable: list[str]) -> list[list[str]]:
    """Every concrete candidate-group list a task can have: each template variable over what it may be."""
    raw = candidate_groups(node)
    variables = sorted({m.group(1) for g in raw if (m := TEMPLATE.match(g))})
    choices = [FIXED_VARIABLES.get(v, tuple(routable)) for v in variables]
    out = []
    for values in product(*choices):
        binding = dict(zip(variables, values, strict=True))
        concrete = []
        for group in raw:
            match = TEMPLATE.match(group)
            concrete.append(f"{binding[match.group(1)]}:{match.group(2)}" if match else group)
        out.append(concrete)
    return out


def _able(directory: Directory, groups: list[str], requires: list[str]) -> list[User]:
    return [u for u in directory if u.groups & set(groups) and not u.missing(requires, DAY)]


def test_the_models_route_to_the_district_s_enforcement_departments_and_townships() -> None:
    routable = routable_agencies()
    assert {"market_regulation", "urban_management", "ecology_environment", "township_jiaokou"} <= set(
        routable
    )
    assert len(routable) >= 10


@pytest.mark.parametrize("stem", DISTRICT_MODELS)
def test_some_demo_user_can_claim_every_user_task_for_every_routable_agency(
    stem: str, directory: Directory
) -> None:
    routable = routable_agencies()
    uncovered = []
    checked = 0
    for model, node in _user_tasks():
        if model != stem:
            continue
        requires = split_list(caseflow(node, "requires"))
        needed = 2 if "certified_officer" in requires else 1
        for groups in _groups_for(node, routable):
            able = _able(directory, groups, requires)
            checked += 1
            if len(able) < needed:
                uncovered.append(
                    f"{node.get('id')} ({node.get('name')}) {groups} requires {requires}: "
                    f"{[u.id for u in able]}"
                )
    assert checked
    assert not uncovered, f"{stem}: no (or too few) demo users for:\n" + "\n".join(uncovered)


def test_the_deliberate_counter_examples_stay(directory: Directory) -> None:
    """刘洋 is a clerk without a certificate and 王强's certificate has expired: tests rely on both."""
    liuyang, wangqiang = directory.get("liuyang"), directory.get("wangqiang")
    assert liuyang is not None and liuyang.missing(["certified_officer"], DAY) == ["certified_officer"]
    assert wangqiang is not None and "market_regulation:officer" in wangqiang.groups
    assert wangqiang.missing(["certified_officer"], DAY) == ["certified_officer"]


def _first(directory: Directory, group: str, requires: list[str]) -> str:
    able = _able(directory, [group], requires)
    assert able, f"no demo user of {group} meeting {requires}"
    return able[0].id


def _act(engine: Engine, instance_id: str, element_id: str, user: str, data: dict[str, Any]) -> None:
    """Claim the open task as ``user`` (the engine checks group and requirements) and complete it."""
    found = open_task(engine, instance_id, element_id)
    assert engine.claim(found["id"], user)["assignee"] == user
    engine.complete(found["id"], data, user=user)


@pytest.mark.parametrize("agency", routable_agencies())
def test_the_engine_lets_each_agency_s_people_claim_their_steps(
    guarded: Engine, clock: ManualClock, directory: Directory, agency: str
) -> None:
    """With the directory enforced and the clock at 2026-10-01, the agency's people act on a clue transferred to
    it (registry clerk, head, two certified officers) and on a criminal transfer it sends (officer, head)."""
    clock.set(datetime(2026, 10, 1, 2, 0, tzinfo=UTC))
    deploy_fixture(guarded, "jurisdiction_dispute_stub.bpmn")
    deploy_models(guarded, "clue_transfer", "criminal_transfer")
    sender = "market_regulation" if agency != "market_regulation" else "urban_management"
    officers = [u.id for u in _able(directory, [f"{agency}:officer"], ["certified_officer"])]
    assert len(officers) >= 2, agency

    clue = start(guarded, clock, "clue_transfer", case_no=f"HB-USERS-A1-{agency}", sender_agency=sender)
    sender_officer = _first(directory, f"{sender}:officer", ["certified_officer"])
    _act(
        guarded,
        clue.id,
        "register_clue",
        sender_officer,
        {
            "clue_summary": "某商户占道经营",
            "violation_place": "湖滨区某路口",
            "receiver_agency": agency,
            "jurisdiction_basis": "《行政处罚法》第二十二条",
        },
    )
    _act(
        guarded,
        clue.id,
        "approve_transfer",
        _first(directory, f"{sender}:head", ["head"]),
        {"transfer_approved": True, "approval_opinion": "同意移送"},
    )
    _act(
        guarded,
        clue.id,
        "issue_transfer_letter",
        sender_officer,
        {"transfer_letter_no": "移〔2026〕1号", "transfer_materials": "现场照片3张"},
    )
    _act(
        guarded,
        clue.id,
        "acknowledge_receipt",
        _first(directory, f"{agency}:staff", []),
        {"receipt_no": "收〔2026〕1号", "materials_complete": True},
    )
    _act(
        guarded,
        clue.id,
        "review_jurisdiction",
        _first(directory, f"{agency}:head", ["head"]),
        {"accepted": True, "reply_letter_no": "复〔2026〕1号"},
    )
    handle = open_task(guarded, clue.id, "handle_case")
    for officer in officers[:2]:  # either of two officers may take it
        assert guarded.claim(handle["id"], officer)["assignee"] == officer
        guarded.unclaim(handle["id"])

    criminal = start(
        guarded, clock, "criminal_transfer", case_no=f"HB-USERS-A2-{agency}", sender_agency=agency
    )
    first = open_task(guarded, criminal.id, "preserve_evidence")
    assert guarded.claim(first["id"], officers[0])["assignee"] == officers[0]
